//! Where the server is and who I am there (cli.md §1): profiles in
//! `$XDG_CONFIG_HOME/rolegate/config.toml`, credentials per profile in `credentials.json`
//! (mode `0600`; a file others may read is refused).

use crate::error::{Exit, Failure, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The profile used when none is named anywhere.
pub const DEFAULT_PROFILE: &str = "default";

/// `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    /// Named servers.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One `[profiles.NAME]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    /// The server's URL.
    pub server: String,
    /// Extra trusted CA certificates (PEM), besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `credentials.json`: one entry per profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// By profile name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Credential>,
}

/// How a profile is signed in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    /// The server these tokens are for (never sent anywhere else).
    pub server: String,
    /// The bearer token.
    pub access_token: String,
    /// When it expires (Unix seconds), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The refresh token, when the issuer gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The issuer's token endpoint (for refreshing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The OpenID client id (for refreshing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The directory subject id the server resolved the token to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
}

/// The files of one user's configuration.
#[derive(Debug, Clone)]
pub struct Files {
    /// `$XDG_CONFIG_HOME/rolegate`.
    pub dir: PathBuf,
}

impl Files {
    /// `$XDG_CONFIG_HOME/rolegate`, else `~/.config/rolegate`.
    pub fn locate() -> Outcome<Self> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })
            .ok_or_else(|| {
                Failure::usage("neither XDG_CONFIG_HOME nor HOME is set: cannot find config.toml")
            })?;
        Ok(Self {
            dir: base.join("rolegate"),
        })
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// `credentials.json`.
    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    /// Reads `config.toml` (empty when absent).
    pub fn config(&self) -> Outcome<Config> {
        let path = self.config_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                Failure::usage(format!("{} is not valid: {}", path.display(), e.message()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Failure::server(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Writes `config.toml`.
    pub fn save_config(&self, config: &Config) -> Outcome<()> {
        let text = toml::to_string_pretty(config)
            .map_err(|e| Failure::server(format!("cannot write config.toml: {e}")))?;
        write_private(&self.config_path(), text.as_bytes(), false)
    }

    /// Reads `credentials.json` (empty when absent); refuses a file others may read.
    pub fn credentials(&self) -> Outcome<Credentials> {
        let path = self.credentials_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials::default());
            }
            Err(e) => return Err(Failure::server(format!("reading {}: {e}", path.display()))),
        };
        check_private(&path)?;
        serde_json::from_str(&text).map_err(|e| {
            Failure::sign_in(format!(
                "{} is not valid ({e}); delete it and run `rolegate login`",
                path.display()
            ))
        })
    }

    /// Writes `credentials.json` with mode `0600`.
    pub fn save_credentials(&self, credentials: &Credentials) -> Outcome<()> {
        let text = serde_json::to_vec_pretty(credentials)
            .map_err(|e| Failure::server(format!("cannot write credentials: {e}")))?;
        write_private(&self.credentials_path(), &text, true)
    }
}

/// Refuses a credentials file that its group or others may read or write (exit 5).
#[cfg(unix)]
fn check_private(path: &Path) -> Outcome<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::server(format!("reading {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failure::new(
            Exit::SignIn,
            format!(
                "{} may be read by others (mode {mode:03o}); its tokens are refused. Fix it with `chmod 600 {}`, or delete it and run `rolegate login`",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Outcome<()> {
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file renamed over it; `secret` files get
/// mode `0600` from their creation. The directory is created (mode `0700`) when missing.
fn write_private(path: &Path, bytes: &[u8], secret: bool) -> Outcome<()> {
    use std::io::Write;
    let fail = |e: std::io::Error| Failure::server(format!("writing {}: {e}", path.display()));
    let dir = path
        .parent()
        .ok_or_else(|| Failure::server(format!("{} has no folder", path.display())))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(fail)?;
    // A fresh, unpredictable temporary name, created exclusively (never following a file
    // or link someone put there first), with its mode from the start.
    let mut noise = [0u8; 8];
    getrandom::fill(&mut noise).map_err(|e| Failure::server(format!("no randomness: {e}")))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        hex_string(&noise)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Holds `credentials.lock` exclusively while alive: one process at a time reads, refreshes
/// and writes the credentials (a refresh token used twice may end the sign-in).
pub struct CredentialsLock(std::fs::File);

impl Files {
    /// Waits for the credentials lock.
    pub fn lock_credentials(&self) -> Outcome<CredentialsLock> {
        let path = self.dir.join("credentials.lock");
        let fail = |e: std::io::Error| Failure::server(format!("locking {}: {e}", path.display()));
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.dir).map_err(fail)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(fail)?;
        file.lock().map_err(fail)?;
        Ok(CredentialsLock(file))
    }
}

impl Drop for CredentialsLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
