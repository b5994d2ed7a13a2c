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
    if let (Some(name), None) = (&named, profile)
        && conn.server.is_none()
        && (conn.profile.is_some() || env("ROLEGATE_SERVER").is_none())
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
    token: std::cell::RefCell<String>,
    /// The caller's directory subject id, when known without asking.
    subject_id: Option<String>,
    /// How to get a new token when the server refuses this one (stored credentials).
    refresher: Option<Refresher>,
    /// Whether this run already refreshed after a refusal (once is enough).
    refreshed: std::cell::Cell<bool>,
}

/// Refreshes a profile's stored credentials, one process at a time.
struct Refresher {
    files: Files,
    profile: String,
    ca_file: Option<PathBuf>,
}

impl Refresher {
    /// The profile's credential, refreshed when it has expired (or, with `force`, when it
    /// is still `stale`): under the credentials lock, re-read first, since another process
    /// may have refreshed it meanwhile (a refresh token must not be used twice).
    fn fresh(&self, stale: &str, force: bool) -> Outcome<Credential> {
        let _lock = self.files.lock_credentials()?;
        let mut credentials = self.files.credentials()?;
        let Some(c) = credentials.profiles.get(&self.profile).cloned() else {
            return Err(Failure::sign_in(format!(
                "not signed in: run `rolegate login`{}",
                profile_hint(&self.profile)
            )));
        };
        let renewed_elsewhere = c.access_token != stale;
        if !expired(&c) && (renewed_elsewhere || !force) {
            return Ok(c);
        }
        let fresh = crate::login::refresh(&c, self.ca_file.as_deref())?;
        credentials
            .profiles
            .insert(self.profile.clone(), fresh.clone());
        self.files.save_credentials(&credentials)?;
        Ok(fresh)
    }
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
            return Ok(Self::with_token(&server, agent, token));
        }
        let credentials = files.credentials()?;
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
        let refresher = Refresher {
            files,
            profile: target.profile.clone(),
            ca_file: target.ca_file.clone(),
        };
        let credential = if expired(&credential) {
            refresher.fresh(&credential.access_token, false)?
        } else {
            credential
        };
        let can_refresh = credential.refresh_token.is_some();
        Ok(Self {
            server,
            agent,
            token: std::cell::RefCell::new(credential.access_token),
            subject_id: credential.subject_id,
            refresher: can_refresh.then_some(refresher),
            refreshed: std::cell::Cell::new(false),
        })
    }

    /// Sends a request made by `send` with the current token; when the server refuses the
    /// token (401) and the profile has a refresh token, refreshes once and sends again.
    fn exchange(
        &self,
        what: &str,
        send: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Outcome<Answer> {
        let token = self.token.borrow().clone();
        let answer = http::exchange(what, send(&token))?;
        if answer.status != 401 || self.refreshed.get() {
            return Ok(answer);
        }
        let Some(refresher) = &self.refresher else {
            return Ok(answer);
        };
        self.refreshed.set(true);
        let fresh = refresher.fresh(&token, true)?;
        *self.token.borrow_mut() = fresh.access_token.clone();
        http::exchange(what, send(&fresh.access_token))
    }

    /// A connection with `token`, for `login` to check what it got.
    pub fn with_token(server: &str, agent: ureq::Agent, token: String) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            agent,
            token: std::cell::RefCell::new(token),
            subject_id: None,
            refresher: None,
            refreshed: std::cell::Cell::new(false),
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
        let url = self.url(path);
        let answer = self.exchange(&format!("GET {url}"), |token| {
            self.agent
                .get(&url)
                .header("Authorization", format!("Bearer {token}"))
                .header("Accept", "application/json")
                .call()
        })?;
        Self::answer(answer)
    }

    /// `GET path` as text (the CSV export).
    pub fn get_text(&self, path: &str) -> Outcome<String> {
        let url = self.url(path);
        let answer = self.exchange(&format!("GET {url}"), |token| {
            self.agent
                .get(&url)
                .header("Authorization", format!("Bearer {token}"))
                .call()
        })?;
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
        let url = self.url(path);
        let answer = self.exchange(&format!("POST {url}"), |token| {
            self.agent
                .post(&url)
                .header("Authorization", format!("Bearer {token}"))
                .send_json(body)
        })?;
        Self::answer(answer)
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Outcome<Value> {
        let url = self.url(path);
        let answer = self.exchange(&format!("PATCH {url}"), |token| {
            self.agent
                .patch(&url)
                .header("Authorization", format!("Bearer {token}"))
                .send_json(body)
        })?;
        Self::answer(answer)
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
    pub fn token(&self) -> String {
        self.token.borrow().clone()
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
