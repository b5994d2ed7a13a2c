//! `rolegate login`, `logout` and the token refresh (cli.md §1): the server's
//! `/.well-known/rolegate-configuration` says how; the device authorization grant
//! (RFC 8628) by default, `--browser` for the authorization code with PKCE and a loopback
//! redirect (RFC 8252), `--dev-user` on development servers, `--token-stdin` anywhere.

use crate::config::{Credential, Files, Profile};
use crate::error::{Exit, Failure, Outcome};
use crate::http::{self, Answer};
use crate::session::{self, Api, Connection, now};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `rolegate login`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rolegate login --server https://pim.example.com
  rolegate login --browser
  rolegate login --server http://127.0.0.1:8080 --dev-user alice --mfa --secret-file dev-secret
  vault read -field=token secret/rolegate | rolegate login --token-stdin")]
pub struct LoginArgs {
    /// Sign in with a browser on this machine (authorization code with PKCE and a
    /// loopback redirect) instead of a device code.
    #[arg(long, conflicts_with_all = ["dev_user", "token_stdin"])]
    pub browser: bool,
    /// Development servers only: sign in as this subject (a directory id or externalId,
    /// e.g. the demo's `alice`) with a token minted from --secret-file.
    #[arg(
        long,
        value_name = "SUBJECT",
        requires = "secret_file",
        conflicts_with = "token_stdin"
    )]
    pub dev_user: Option<String>,
    /// With --dev-user: the token says MFA was used.
    #[arg(long, requires = "dev_user")]
    pub mfa: bool,
    /// With --dev-user: a file holding the server's HS256 secret.
    #[arg(long, value_name = "PATH", requires = "dev_user")]
    pub secret_file: Option<PathBuf>,
    /// Store a bearer token read from standard input.
    #[arg(long)]
    pub token_stdin: bool,
}

/// What `/.well-known/rolegate-configuration` says.
#[derive(Debug, Clone, Default)]
struct ServerSignIn {
    issuer: Option<String>,
    cli_client_id: Option<String>,
    scopes: Vec<String>,
    device_authorization: bool,
    development: bool,
}

/// The issuer's endpoints (its discovery document).
struct Issuer {
    token: String,
    authorization: Option<String>,
    device_authorization: Option<String>,
}

/// Tokens from the issuer's token endpoint.
struct Tokens {
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<i64>,
}

/// How long a person has to finish a browser sign-in.
const BROWSER_WAIT: Duration = Duration::from_secs(300);

/// `rolegate login`: signs in and saves the profile and its credentials.
pub fn login(conn: &Connection, args: &LoginArgs) -> Outcome<()> {
    let files = Files::locate()?;
    let mut config = files.config()?;
    let mut target = session::target(conn, &config)?;
    // `login --server URL` with no profile named signs in the profile `default` (cli.md
    // §1), never re-pointing whatever profile happens to be the default one.
    if conn.server.is_some()
        && conn.profile.is_none()
        && std::env::var("ROLEGATE_PROFILE").map_or(true, |p| p.trim().is_empty())
    {
        target.profile = crate::config::DEFAULT_PROFILE.to_string();
    }
    let Some(server) = target.server.clone() else {
        return Err(Failure::usage(
            "which server? pass --server URL (it is saved in the profile)",
        ));
    };
    let agent = http::agent(&server, target.ca_file.as_deref())?;
    let (token, refresh) = if args.token_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(format!("reading the token from standard input: {e}")))?;
        let token = text.trim().to_string();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(Failure::usage("standard input holds no bearer token"));
        }
        let expires_at = session::token_expiry(&token);
        (
            Tokens {
                access_token: token,
                refresh_token: None,
                expires_at,
            },
            None,
        )
    } else {
        let sign_in = server_sign_in(&agent, &server)?;
        if let Some(subject) = &args.dev_user {
            (dev_token(&sign_in, subject, args)?, None)
        } else {
            let (Some(issuer_url), Some(client_id)) = (&sign_in.issuer, &sign_in.cli_client_id)
            else {
                return Err(Failure::usage(if sign_in.development {
                    format!(
                        "{server} uses development sign-in: `rolegate login --dev-user SUBJECT --secret-file PATH`, or --token-stdin"
                    )
                } else {
                    format!(
                        "{server} offers no command-line sign-in (its operator sets --oidc-cli-client-id); use --token-stdin"
                    )
                }));
            };
            let issuer_agent = http::agent(issuer_url, target.ca_file.as_deref())?;
            let issuer = discover_issuer(&issuer_agent, issuer_url)?;
            let scope = sign_in.scopes.join(" ");
            let tokens = if args.browser {
                browser_flow(&issuer_agent, &issuer, client_id, &scope)?
            } else {
                if !sign_in.device_authorization {
                    return Err(Failure::usage(format!(
                        "{issuer_url} offers no device sign-in: use `rolegate login --browser`"
                    )));
                }
                device_flow(&issuer_agent, &issuer, client_id, &scope)?
            };
            (tokens, Some((issuer.token, client_id.clone())))
        }
    };
    let api = Api::with_token(&server, agent, token.access_token.clone());
    let me = api.me().map_err(|f| {
        if f.exit == Exit::SignIn || f.exit == Exit::Forbidden {
            Failure {
                exit: Exit::SignIn,
                message: format!("{server} does not accept this sign-in: {}", f.message),
                ..f
            }
        } else {
            f
        }
    })?;
    let (token_endpoint, client_id) = refresh.unzip();
    let credential = Credential {
        server: server.clone(),
        access_token: token.access_token,
        expires_at: token.expires_at,
        refresh_token: token.refresh_token,
        token_endpoint,
        client_id,
        subject_id: me["id"].as_str().map(str::to_string),
    };
    {
        let _lock = files.lock_credentials()?;
        let mut credentials = files.credentials()?;
        credentials
            .profiles
            .insert(target.profile.clone(), credential);
        files.save_credentials(&credentials)?;
    }
    let profile = config.profiles.entry(target.profile.clone()).or_default();
    let changed =
        profile.server != server || (conn.ca_file.is_some() && profile.ca_file != conn.ca_file);
    if changed {
        *profile = Profile {
            server: server.clone(),
            ca_file: conn.ca_file.clone().or(profile.ca_file.clone()),
        };
    }
    let default_changed = config.default_profile.is_none();
    if default_changed {
        config.default_profile = Some(target.profile.clone());
    }
    if changed || default_changed {
        files.save_config(&config)?;
    }
    let name = me["displayName"].as_str().unwrap_or_default();
    let upn = me["principalName"].as_str().unwrap_or_default();
    eprintln!(
        "Signed in to {server} as {name}{} (profile {}).",
        if upn.is_empty() {
            String::new()
        } else {
            format!(" <{upn}>")
        },
        target.profile
    );
    Ok(())
}

/// `rolegate logout`: forgets the profile's tokens (the profile stays).
pub fn logout(conn: &Connection) -> Outcome<()> {
    let files = Files::locate()?;
    let config = files.config()?;
    let target = session::target(conn, &config)?;
    let _lock = files.lock_credentials()?;
    let mut credentials = files.credentials()?;
    if credentials.profiles.remove(&target.profile).is_some() {
        files.save_credentials(&credentials)?;
        eprintln!("Signed out (profile {}).", target.profile);
    } else {
        eprintln!("Not signed in (profile {}).", target.profile);
    }
    Ok(())
}

/// Refreshes an expired access token with the credential's refresh token (exit 5, saying
/// to sign in again, when that is not possible).
pub fn refresh(c: &Credential, ca_file: Option<&Path>) -> Outcome<Credential> {
    let again = |why: &str| Failure::sign_in(format!("{why}: run `rolegate login`"));
    let (Some(refresh_token), Some(endpoint), Some(client_id)) =
        (&c.refresh_token, &c.token_endpoint, &c.client_id)
    else {
        return Err(again("your session has expired"));
    };
    let agent = http::agent(endpoint, ca_file)?;
    let answer = http::exchange(
        "refreshing the session",
        agent.post(endpoint).send_form([
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", client_id.as_str()),
        ]),
    )?;
    let tokens =
        token_answer(&answer).map_err(|e| again(&format!("your session has expired ({e})")))?;
    Ok(Credential {
        access_token: tokens.access_token,
        expires_at: tokens.expires_at,
        refresh_token: tokens.refresh_token.or(c.refresh_token.clone()),
        ..c.clone()
    })
}

fn server_sign_in(agent: &ureq::Agent, server: &str) -> Outcome<ServerSignIn> {
    let url = format!("{server}/.well-known/rolegate-configuration");
    let answer = http::exchange(&format!("GET {url}"), agent.get(&url).call())?;
    if answer.status != 200 {
        return Err(Failure::server(format!(
            "{server} did not say how to sign in ({url} answered {}); is it a Rolegate server?",
            answer.status
        )));
    }
    let doc = answer.json()?;
    Ok(ServerSignIn {
        issuer: doc["issuer"].as_str().map(str::to_string),
        cli_client_id: doc["cli_client_id"].as_str().map(str::to_string),
        scopes: doc["scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        device_authorization: doc["device_authorization"].as_bool().unwrap_or(false),
        development: doc["development"].as_bool().unwrap_or(false),
    })
}

fn dev_token(sign_in: &ServerSignIn, subject: &str, args: &LoginArgs) -> Outcome<Tokens> {
    if !sign_in.development {
        return Err(Failure::usage(
            "--dev-user works only with servers on development authentication",
        ));
    }
    let path = args
        .secret_file
        .as_deref()
        .ok_or_else(|| Failure::usage("--dev-user needs --secret-file PATH"))?;
    let secret = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("reading --secret-file {}: {e}", path.display())))?;
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(Failure::usage(format!(
            "--secret-file {} is empty",
            path.display()
        )));
    }
    let ttl = 12 * 3600;
    let at = now();
    let token = rolegate_api::auth::development_token(
        secret.as_bytes(),
        subject.trim(),
        None,
        args.mfa,
        ttl,
        at,
    )
    .map_err(|e| Failure::usage(e.message))?;
    Ok(Tokens {
        access_token: token,
        refresh_token: None,
        expires_at: Some(at.as_second() + ttl),
    })
}

fn discover_issuer(agent: &ureq::Agent, issuer: &str) -> Outcome<Issuer> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let answer = http::exchange(&format!("GET {url}"), agent.get(&url).call())?;
    if answer.status != 200 {
        return Err(Failure::server(format!(
            "the issuer's discovery document {url} answered {}",
            answer.status
        )));
    }
    let doc = answer.json()?;
    let endpoint = |name: &str| -> Outcome<Option<String>> {
        match doc[name].as_str() {
            Some(u) => {
                rolegate_api::oidc::check_url(u).map_err(Failure::server)?;
                Ok(Some(u.to_string()))
            }
            None => Ok(None),
        }
    };
    Ok(Issuer {
        token: endpoint("token_endpoint")?
            .ok_or_else(|| Failure::server(format!("{url} names no token_endpoint")))?,
        authorization: endpoint("authorization_endpoint")?,
        device_authorization: endpoint("device_authorization_endpoint")?,
    })
}

/// Reads a token endpoint's answer: the tokens, or the issuer's `error` (RFC 6749 §5.2).
fn token_answer(answer: &Answer) -> Result<Tokens, String> {
    let doc: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    if answer.status != 200 {
        let error = doc["error"].as_str().unwrap_or("an error");
        return Err(match doc["error_description"].as_str() {
            Some(d) => format!("{error}: {d}"),
            None => format!("{error} ({})", answer.status),
        });
    }
    let access_token = doc["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("the issuer sent no access_token")?
        .to_string();
    let expires_at = doc["expires_in"]
        .as_i64()
        .map(|s| now().as_second().saturating_add(s))
        .or_else(|| session::token_expiry(&access_token));
    Ok(Tokens {
        access_token,
        refresh_token: doc["refresh_token"].as_str().map(str::to_string),
        expires_at,
    })
}

/// The device authorization grant (RFC 8628): prints where to go and the code, then polls.
fn device_flow(
    agent: &ureq::Agent,
    issuer: &Issuer,
    client_id: &str,
    scope: &str,
) -> Outcome<Tokens> {
    let endpoint = issuer
        .device_authorization
        .as_deref()
        .ok_or_else(|| Failure::usage("the issuer offers no device sign-in: use --browser"))?;
    let answer = http::exchange(
        "asking the issuer for a device code",
        agent
            .post(endpoint)
            .send_form([("client_id", client_id), ("scope", scope)]),
    )?;
    let doc = answer.json()?;
    if answer.status != 200 {
        return Err(Failure::sign_in(format!(
            "the issuer refused a device code: {}",
            doc["error_description"]
                .as_str()
                .or(doc["error"].as_str())
                .unwrap_or("no reason given")
        )));
    }
    let text = |k: &str| doc[k].as_str().map(str::to_string);
    let (Some(device_code), Some(user_code), Some(uri)) = (
        text("device_code"),
        text("user_code"),
        text("verification_uri"),
    ) else {
        return Err(Failure::server(
            "the issuer's device code answer is incomplete",
        ));
    };
    let mut interval = Duration::from_secs(doc["interval"].as_u64().unwrap_or(5).clamp(1, 60));
    let expires = Duration::from_secs(doc["expires_in"].as_u64().unwrap_or(600).min(3600));
    eprintln!("To sign in, open {uri} and enter the code {user_code}");
    if let Some(complete) = text("verification_uri_complete") {
        eprintln!("or open {complete}");
    }
    eprintln!(
        "Waiting for you to confirm (the code expires in {} minutes)…",
        expires.as_secs().div_ceil(60)
    );
    let deadline = Instant::now() + expires;
    loop {
        std::thread::sleep(interval);
        if Instant::now() > deadline {
            return Err(Failure::sign_in(
                "the device code expired before it was confirmed: run `rolegate login` again",
            ));
        }
        let answer = http::exchange(
            "polling the issuer",
            agent.post(&issuer.token).send_form([
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", client_id),
            ]),
        )?;
        if answer.status == 200 {
            return token_answer(&answer).map_err(Failure::sign_in);
        }
        let doc: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        match doc["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some("expired_token") => {
                return Err(Failure::sign_in(
                    "the device code expired before it was confirmed: run `rolegate login` again",
                ));
            }
            Some("access_denied") => {
                return Err(Failure::sign_in("the sign-in was refused at the issuer"));
            }
            _ => {
                return Err(Failure::sign_in(format!(
                    "the issuer ended the sign-in: {}",
                    token_answer(&answer).err().unwrap_or_default()
                )));
            }
        }
    }
}

fn random_url_safe(bytes: usize) -> Outcome<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Failure::server(format!("no randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// The authorization code flow with PKCE (S256) and a loopback redirect (RFC 8252 §7.3).
fn browser_flow(
    agent: &ureq::Agent,
    issuer: &Issuer,
    client_id: &str,
    scope: &str,
) -> Outcome<Tokens> {
    let endpoint = issuer
        .authorization
        .as_deref()
        .ok_or_else(|| Failure::server("the issuer names no authorization_endpoint"))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::server(format!("cannot listen on 127.0.0.1 for the sign-in: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::server(format!("the loopback listener: {e}")))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = random_url_safe(32)?;
    let state = random_url_safe(16)?;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let url = http::with_query(
        endpoint,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", &redirect_uri),
            ("scope", scope),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    eprintln!("To sign in, open this address in a browser on this machine:");
    eprintln!("{url}");
    open_browser(&url);
    let code = wait_for_code(&listener, &state)?;
    let answer = http::exchange(
        "exchanging the code",
        agent.post(&issuer.token).send_form([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", client_id),
            ("code_verifier", verifier.as_str()),
        ]),
    )?;
    token_answer(&answer).map_err(|e| Failure::sign_in(format!("the issuer refused the code: {e}")))
}

/// Opens `url` in `$BROWSER`, else the desktop's opener; failures only leave the printed URL.
fn open_browser(url: &str) {
    let program = std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').next().map(str::to_string))
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            }
            .to_string()
        });
    let _ = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Serves the loopback redirect until the browser brings a code with our `state`.
fn wait_for_code(listener: &TcpListener, state: &str) -> Outcome<String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::server(format!("the loopback listener: {e}")))?;
    let deadline = Instant::now() + BROWSER_WAIT;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(result) = callback(stream, state) {
                    return result;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(Failure::server(format!("the loopback listener: {e}"))),
        }
    }
    Err(Failure::sign_in(
        "nobody finished the sign-in in the browser within 5 minutes",
    ))
}

/// Answers one request on the loopback listener: `Some` when it was the redirect.
fn callback(mut stream: TcpStream, state: &str) -> Option<Outcome<String>> {
    let _ = stream.set_nonblocking(false);
    // Browsers open spare connections they may never use: do not wait long on one.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
    reader.by_ref().take(8192).read_line(&mut line).ok()?;
    // Drain the headers (bounded) so the browser gets its answer cleanly.
    let mut header = String::new();
    while reader.by_ref().take(8192).read_line(&mut header).ok()? > 2 {
        header.clear();
    }
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    let Some(query) = target.strip_prefix("/callback?") else {
        respond(&mut stream, "404 Not Found", "Not found", "");
        return None;
    };
    let params = parse_query(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("state").as_deref() != Some(state) {
        respond(
            &mut stream,
            "400 Bad Request",
            "Sign-in failed",
            "This answer does not belong to the sign-in the command line started.",
        );
        return None;
    }
    if let Some(error) = get("error") {
        let why = get("error_description").unwrap_or(error);
        respond(
            &mut stream,
            "200 OK",
            "Sign-in failed",
            &format!("The issuer said: {why}. Return to the terminal."),
        );
        return Some(Err(Failure::sign_in(format!(
            "the issuer refused the sign-in: {why}"
        ))));
    }
    let Some(code) = get("code") else {
        respond(
            &mut stream,
            "400 Bad Request",
            "Sign-in failed",
            "The issuer sent no code.",
        );
        return Some(Err(Failure::sign_in("the issuer sent no code")));
    };
    respond(
        &mut stream,
        "200 OK",
        "Signed in to Rolegate",
        "You can close this tab and return to the terminal.",
    );
    Some(Ok(code))
}

fn respond(stream: &mut TcpStream, status: &str, title: &str, text: &str) {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><main><h1>{}</h1><p>{}</p></main></body></html>",
        esc(title),
        esc(title),
        esc(text)
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .to_string()
            };
            (decode(k), decode(v))
        })
        .collect()
}
