//! A signed-in connection to one server: which server and profile (cli.md §1 precedence),
//! the bearer token (`ROLEGATE_TOKEN`, or the profile's credentials, refreshed when they
//! expire), and the API calls every command makes through it.

use crate::config::{Config, Credential, DEFAULT_PROFILE, Files};
use crate::error::{Exit, Failure, Outcome};
use crate::http::{self, Answer};
use rolegate_core::clock::{Clock, SystemClock};
use serde_json::Value;
use std::path::PathBuf;

/// The connection flags every client command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Connection {
    /// The server's URL (beats --profile and ROLEGATE_SERVER).
    #[arg(long, global = true, value_name = "URL", help_heading = "Connection")]
    pub server: Option<String>,
    /// The profile of config.toml to use (else ROLEGATE_PROFILE, else its default_profile).
    #[arg(long, global = true, value_name = "NAME", help_heading = "Connection")]
    pub profile: Option<String>,
    /// Also trust the PEM certificates in this file (else ROLEGATE_CA_FILE, else the
    /// profile's ca_file).
    #[arg(long, global = true, value_name = "PATH", help_heading = "Connection")]
    pub ca_file: Option<PathBuf>,
}

/// Which server, under which profile name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The profile whose credentials are used (and saved by `login`).
    pub profile: String,
    /// The server's URL, without a trailing `/`.
    pub server: Option<String>,
    /// Extra trusted certificates.
    pub ca_file: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Resolves the server and profile: `--server`, else the profile named by `--profile`, else
/// `ROLEGATE_SERVER`, else the profile named by `ROLEGATE_PROFILE`, else the default profile.
pub fn target(conn: &Connection, config: &Config) -> Outcome<Target> {
    let named = conn.profile.clone().or_else(|| env("ROLEGATE_PROFILE"));
    let profile_name = named
        .clone()
        .or_else(|| config.default_profile.clone())
        .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    let profile = config.profiles.get(&profile_name);
    if let (Some(name), None) = (&conn.profile, profile)
        && conn.server.is_none()
    {
        return Err(Failure::usage(format!(
            "there is no profile `{name}` in config.toml (`rolegate login --server URL --profile {name}` creates it)"
        )));
    }
    let server = conn
        .server
        .clone()
        .or_else(|| conn.profile.as_ref().and(profile.map(|p| p.server.clone())))
        .or_else(|| env("ROLEGATE_SERVER"))
        .or_else(|| profile.map(|p| p.server.clone()))
        .map(|s| s.trim().trim_end_matches('/').to_string());
    let ca_file = conn
        .ca_file
        .clone()
        .or_else(|| env("ROLEGATE_CA_FILE").map(PathBuf::from))
        .or_else(|| profile.and_then(|p| p.ca_file.clone()));
    Ok(Target {
        profile: profile_name,
        server,
        ca_file,
    })
}

/// The current time.
pub fn now() -> jiff::Timestamp {
    SystemClock.now()
}

/// A connection to a server with a bearer token.
pub struct Api {
    /// The server's URL.
    pub server: String,
    agent: ureq::Agent,
    token: String,
    /// The caller's directory subject id, when known without asking.
    subject_id: Option<String>,
}

impl Api {
    /// Connects as `conn` says, with `ROLEGATE_TOKEN` or the profile's credentials
    /// (refreshed when expired).
    pub fn connect(conn: &Connection) -> Outcome<Self> {
        let files = Files::locate()?;
        let config = files.config()?;
        let target = target(conn, &config)?;
        let Some(server) = target.server.clone() else {
            return Err(Failure::sign_in(
                "no server: pass --server URL, set ROLEGATE_SERVER, or run `rolegate login --server URL`",
            ));
        };
        let agent = http::agent(&server, target.ca_file.as_deref())?;
        if let Some(token) = env("ROLEGATE_TOKEN") {
            return Ok(Self {
                server,
                agent,
                token,
                subject_id: None,
            });
        }
        let mut credentials = files.credentials()?;
        let Some(credential) = credentials.profiles.get(&target.profile).cloned() else {
            return Err(Failure::sign_in(format!(
                "not signed in to {server}: run `rolegate login`{}",
                profile_hint(&target.profile)
            )));
        };
        if credential.server.trim_end_matches('/') != server {
            return Err(Failure::sign_in(format!(
                "the profile `{}` is signed in to {}, not {server}: run `rolegate login --server {server}`",
                target.profile, credential.server
            )));
        }
        let credential = if expired(&credential) {
            let fresh = crate::login::refresh(&credential, target.ca_file.as_deref())?;
            credentials
                .profiles
                .insert(target.profile.clone(), fresh.clone());
            files.save_credentials(&credentials)?;
            fresh
        } else {
            credential
        };
        Ok(Self {
            server,
            agent,
            token: credential.access_token,
            subject_id: credential.subject_id,
        })
    }

    /// A connection with `token`, for `login` to check what it got.
    pub fn with_token(server: &str, agent: ureq::Agent, token: String) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            agent,
            token,
            subject_id: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn answer(answer: Answer) -> Outcome<Value> {
        if (200..300).contains(&answer.status) {
            answer.json()
        } else {
            Err(answer.failure())
        }
    }

    /// `GET path` (with its query), as JSON.
    pub fn get(&self, path: &str) -> Outcome<Value> {
        let what = format!("GET {}", self.url(path));
        let result = self
            .agent
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json")
            .call();
        Self::answer(http::exchange(&what, result)?)
    }

    /// `GET path` as text (the CSV export).
    pub fn get_text(&self, path: &str) -> Outcome<String> {
        let what = format!("GET {}", self.url(path));
        let result = self
            .agent
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        let answer = http::exchange(&what, result)?;
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(answer.failure())
        }
    }

    /// Every item of a collection, following `@odata.nextLink` (on this server only).
    pub fn list(&self, path: &str) -> Outcome<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(path) = next.take() {
            let page = self.get(&path)?;
            match page["value"].as_array() {
                Some(values) => items.extend(values.iter().cloned()),
                None => {
                    return Err(Failure::server(format!(
                        "the server's answer to {path} has no `value` list"
                    )));
                }
            }
            next = page["@odata.nextLink"]
                .as_str()
                .and_then(|link| link.find("/beta/").map(|i| link[i..].to_string()));
        }
        Ok(items)
    }

    /// `POST path` with a JSON body; `null` for an empty answer.
    pub fn post(&self, path: &str, body: &Value) -> Outcome<Value> {
        let what = format!("POST {}", self.url(path));
        let result = self
            .agent
            .post(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body);
        Self::answer(http::exchange(&what, result)?)
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Outcome<Value> {
        let what = format!("PATCH {}", self.url(path));
        let result = self
            .agent
            .patch(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body);
        Self::answer(http::exchange(&what, result)?)
    }

    /// The caller: `GET /beta/me`.
    pub fn me(&self) -> Outcome<Value> {
        self.get("/beta/me")
    }

    /// The caller's directory subject id (remembered at sign-in, else asked).
    pub fn my_id(&mut self) -> Outcome<String> {
        if let Some(id) = &self.subject_id {
            return Ok(id.clone());
        }
        let me = self.me()?;
        let id = me["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::server("the server did not say who you are (/beta/me)"))?;
        self.subject_id = Some(id.clone());
        Ok(id)
    }

    /// The bearer token (for `whoami`'s expiry).
    pub fn token(&self) -> &str {
        &self.token
    }
}

fn profile_hint(profile: &str) -> String {
    if profile == DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" --profile {profile}")
    }
}

/// Whether a credential's access token has expired (or will within 30 seconds).
fn expired(c: &Credential) -> bool {
    c.expires_at
        .is_some_and(|at| at <= now().as_second().saturating_add(30))
}

/// The `exp` of a JWT, read without verifying it (for display and refresh timing only).
pub fn token_expiry(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()
}

/// Exit 5 unless `f` is already something else.
pub fn sign_in_failure(f: Failure) -> Failure {
    if f.exit == Exit::Failure {
        Failure {
            exit: Exit::SignIn,
            ..f
        }
    } else {
        f
    }
}
