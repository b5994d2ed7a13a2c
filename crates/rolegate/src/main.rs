//! `rolegate`: the server and its admin commands, in one binary. This file only wires
//! things together; the rules live in `rolegate-core`.

mod audit;
mod connectors;
mod database;
mod demo;
mod listen;
mod mail;
mod maintenance;
mod notify;
mod provisioning;
mod scheduler;
mod seed;

/// jemalloc rather than glibc's allocator: the group-commit writer builds what the handlers
/// then free on other threads, and under glibc it slept on the arena locks those frees hold
/// (docs/benchmarks.md "The allocator, again").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use database::{Database, OpenOptions};
use rolegate_api::auth::{Authenticator, development_token};
use rolegate_api::discovery::{BASE_CLI_SCOPES, ClientDiscovery};
use rolegate_api::limits::{IpRange, Rate, RateLimits};
use rolegate_api::oidc::{JwksSource, OidcConfig, OidcVerifier};
use rolegate_api::scim::ProvisioningToken;
use rolegate_api::{AppState, router_with};
use rolegate_core::clock::{Clock, SystemClock};
use rolegate_core::notification::TargetPolicy;
use rolegate_core::session::SessionLifetime;
use rolegate_core::store::Store;
use rolegate_portal::PortalConfig;
use rolegate_store::Synchronous;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "rolegate",
    version,
    about = "Just-in-time, approved and audited access to privileged roles: the server, its admin commands, and the client",
    after_help = "Examples:
  rolegate serve --demo                                   run a server with demo data
  rolegate login --server https://pim.example.com         sign in (device code)
  rolegate roles                                          my eligible and active roles
  rolegate activate Contributor --scope rg-web --for 2h --reason \"hotfix\" --wait
  rolegate approvals                                      requests waiting for me"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: rolegate_cli::Connection,
    #[command(flatten)]
    output: rolegate_cli::OutputArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the server.
    Serve(Box<ServeArgs>),
    /// Prints a development (HS256) bearer token.
    Token(TokenArgs),
    /// Builds a large synthetic tenant in an empty database, for benchmarks.
    Seed(SeedArgs),
    /// Checks or exports the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Creates the database schema or brings it to this build's version, then exits (for
    /// operators who start `serve --no-migrate`).
    Migrate(MigrateArgs),
    /// Writes a consistent copy of a SQLite database to a new file, safe while servers run
    /// on it (PostgreSQL: prints the `pg_dump` command to use).
    Backup(maintenance::BackupArgs),
    /// Copies a whole tenant into an empty database, e.g. SQLite to PostgreSQL: every row,
    /// audit hash chain and list order included. Stop the servers first.
    Copy(maintenance::CopyArgs),
    /// Provisioning connectors: checks their configuration file.
    #[command(subcommand)]
    Connectors(connectors::ConnectorsCommand),
    /// Prints a shell completion script.
    #[command(after_help = "Examples:
  rolegate completion bash > ~/.local/share/bash-completion/completions/rolegate
  rolegate completion zsh > \"${fpath[1]}/_rolegate\"")]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(rolegate_cli::ClientCommand),
}

#[derive(clap::Args, Debug)]
struct MigrateArgs {
    /// Database URL: `sqlite://PATH` or `postgres://…[?schema=NAME]`.
    #[arg(
        long,
        env = "ROLEGATE_DATABASE_URL",
        default_value = "sqlite://rolegate.db"
    )]
    database: String,
}

#[derive(clap::Args, Debug)]
struct SeedArgs {
    /// Database URL: `sqlite://PATH` or `postgres://…[?schema=NAME]`.
    #[arg(
        long,
        env = "ROLEGATE_DATABASE_URL",
        default_value = "sqlite://rolegate-bench.db"
    )]
    database: String,
    /// Resources in the tree (management groups, subscriptions, resource groups, resources).
    #[arg(long, default_value_t = 10_000)]
    resources: usize,
    /// Users.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Groups (each user belongs to two).
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    /// Role assignments.
    #[arg(long, default_value_t = 1_000_000)]
    assignments: usize,
    /// Where to write the ids the load generator uses.
    #[arg(long, default_value = "bench-manifest.json")]
    manifest: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "ROLEGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Provisioning connectors (docs/connectors.md): a TOML file of rules that grant
    /// database roles, directory groups or a program's targets to whoever holds a role. It
    /// is validated before the server listens; any problem stops it (exit 2).
    #[arg(long, env = "ROLEGATE_CONNECTORS", value_name = "PATH")]
    connectors: Option<String>,
    /// Database URL: `sqlite://PATH` (created and migrated on start) or
    /// `postgres://user:password@host:port/database[?schema=NAME]` (several nodes may share it).
    #[arg(
        long,
        env = "ROLEGATE_DATABASE_URL",
        default_value = "sqlite://rolegate.db"
    )]
    database: String,
    /// PostgreSQL: the most connections this node holds.
    #[arg(long, env = "ROLEGATE_DATABASE_POOL_SIZE", default_value_t = 16)]
    database_pool_size: usize,
    /// PostgreSQL: do not migrate on start; refuse a schema that `rolegate migrate` has not
    /// brought to this build's version.
    #[arg(long)]
    no_migrate: bool,
    /// Seed a demo tenant (if the database is empty) and print tokens and example calls.
    #[arg(long)]
    demo: bool,
    /// Development authentication: verify HS256 tokens with this secret.
    #[arg(long, env = "ROLEGATE_AUTH_HS256_SECRET", hide_env_values = true)]
    auth_hs256_secret: Option<String>,
    /// Production authentication: the issuer (`iss`) of RS256/ES256 tokens; needs
    /// --oidc-audience. Without --jwks-file or --jwks-url the key set is found through
    /// ISSUER/.well-known/openid-configuration.
    #[arg(long, env = "ROLEGATE_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// Production authentication: the audience (`aud`) tokens must name.
    #[arg(long, env = "ROLEGATE_OIDC_AUDIENCE")]
    oidc_audience: Option<String>,
    /// The web portal's OpenID client id (sign-in with the authorization code flow and PKCE;
    /// needs --oidc-issuer and --public-url, and the issuer must accept the redirect URI
    /// {public-url}/ui/auth/callback).
    #[arg(long, env = "ROLEGATE_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,
    /// A file holding the portal's client secret (a confidential client; without it the
    /// portal is a public client). Never logged.
    #[arg(long, env = "ROLEGATE_OIDC_CLIENT_SECRET_FILE")]
    oidc_client_secret_file: Option<PathBuf>,
    /// A scope the portal asks for besides `openid profile email` (repeatable).
    #[arg(long = "oidc-scope")]
    oidc_scopes: Vec<String>,
    /// The `acr` value that counts as multi-factor authentication (besides `amr`
    /// containing `mfa`); asked for with `acr_values` at an MFA step-up.
    #[arg(long, env = "ROLEGATE_OIDC_MFA_ACR")]
    oidc_mfa_acr: Option<String>,
    /// The command line's OpenID client id: a public client registered at the issuer with
    /// the device authorization grant and the loopback redirect `http://127.0.0.1/callback`
    /// (any port); `rolegate login` reads it from /.well-known/rolegate-configuration.
    #[arg(long, env = "ROLEGATE_OIDC_CLI_CLIENT_ID")]
    oidc_cli_client_id: Option<String>,
    /// A scope the command line asks for besides `openid profile email offline_access`
    /// (repeatable), e.g. the one that gets access tokens for --oidc-audience.
    #[arg(long = "oidc-cli-scope")]
    oidc_cli_scopes: Vec<String>,
    /// Production authentication: the issuer's JSON Web Key Set, from a file.
    #[arg(long, env = "ROLEGATE_JWKS_FILE")]
    jwks_file: Option<PathBuf>,
    /// Production authentication: the issuer's JSON Web Key Set URL (https; plain http only
    /// for loopback hosts).
    #[arg(long, env = "ROLEGATE_JWKS_URL")]
    jwks_url: Option<String>,
    /// An AuthZEN enforcement point (a gateway's token subject or directory id) that may ask
    /// /access/v1 about anyone (repeatable; adds to ROLEGATE_AUTHZEN_CLIENTS, comma
    /// separated). It gets nothing else.
    #[arg(long = "authzen-client")]
    authzen_clients: Vec<String>,
    /// A tenant administrator's subject id (repeatable; adds to ROLEGATE_ADMINS).
    #[arg(long = "admin")]
    admins: Vec<String>,
    /// SQLite durability: `full` survives power loss; `normal` is ~10x faster to commit.
    #[arg(long, value_enum, default_value_t = SyncMode::Full)]
    sqlite_synchronous: SyncMode,
    /// Seconds between background scheduler passes (provisioning future-start grants,
    /// expiring assignments, timing out approvals, sending reminders); fractions allowed,
    /// e.g. `0.5`.
    #[arg(
        long,
        env = "ROLEGATE_SCHEDULER_INTERVAL",
        default_value = "5",
        value_parser = scheduler::parse_interval
    )]
    scheduler_interval: std::time::Duration,
    /// SCIM provisioning clients (Entra ID, Okta): a file holding a long-lived bearer
    /// secret (at least 32 bytes; surrounding whitespace trimmed) accepted on /scim only,
    /// besides tenant administrators' tokens. The secret is never logged.
    #[arg(long, env = "ROLEGATE_SCIM_TOKEN_FILE")]
    scim_token_file: Option<PathBuf>,
    /// Hosts that change-notification webhooks may reach over plain http (comma-separated;
    /// every other notificationUrl must be https).
    #[arg(
        long,
        env = "ROLEGATE_WEBHOOK_ALLOW_HTTP_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    webhook_allow_http_hosts: Vec<String>,
    /// Hosts that webhooks may reach although they resolve to private, loopback or
    /// link-local addresses (comma-separated; the SSRF guard refuses them otherwise).
    #[arg(
        long,
        env = "ROLEGATE_WEBHOOK_ALLOW_PRIVATE_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    webhook_allow_private_hosts: Vec<String>,
    /// The `tenantId` carried by change notifications.
    #[arg(
        long,
        env = "ROLEGATE_TENANT_ID",
        default_value = "00000000-0000-0000-0000-000000000000"
    )]
    tenant_id: String,
    /// The first webhook retry's delay in milliseconds (doubling after); for tests.
    #[arg(long, hide = true, default_value_t = 5_000)]
    webhook_retry_base_ms: u64,
    /// How often the notification outbox is polled, in milliseconds; for tests.
    #[arg(long, hide = true, default_value_t = 500)]
    webhook_poll_ms: u64,
    /// E-mail notifications through this SMTP relay: `smtp://host:port` (plain),
    /// `smtp://host:port?starttls=required` (STARTTLS) or `smtps://host:port` (implicit
    /// TLS), each optionally with `user:password@` (percent-encoded) for AUTH PLAIN/LOGIN;
    /// credentials go only over TLS or to a loopback relay. Prefer the environment variable
    /// when the URL holds a password. Off when not set.
    #[arg(long, env = "ROLEGATE_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Also trust the PEM certificates in this file for the SMTP relay's TLS (a private
    /// CA, or a self-signed relay certificate).
    #[arg(long, env = "ROLEGATE_SMTP_CA_FILE")]
    smtp_ca_file: Option<PathBuf>,
    /// The sender address of e-mail notifications (required with --smtp-url).
    #[arg(long, env = "ROLEGATE_SMTP_FROM")]
    smtp_from: Option<String>,
    /// The URL clients reach this server at, for links in e-mail (default: http://, or
    /// https:// with --tls-cert, and the listening address).
    #[arg(long, env = "ROLEGATE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key); re-read with the key on
    /// SIGHUP.
    #[arg(long, env = "ROLEGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ROLEGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a request may take (reading its body included) before it is answered
    /// `503 ServiceUnavailable`; fractions allowed.
    #[arg(
        long,
        env = "ROLEGATE_REQUEST_TIMEOUT",
        default_value = "30",
        value_parser = scheduler::parse_interval
    )]
    request_timeout: std::time::Duration,
    /// Do not serve the web portal (`/ui/` then answers `404`).
    #[arg(long, env = "ROLEGATE_NO_UI")]
    no_ui: bool,
    /// Minutes a portal session may stay unused before it ends (it ends 12 hours after
    /// sign-in in any case).
    #[arg(long, env = "ROLEGATE_UI_SESSION_IDLE", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=720))]
    ui_session_idle: u32,
    /// Requests a second one client address may make (bursts of twice that); `0` turns the
    /// limit off. Counted before authentication.
    #[arg(long, env = "ROLEGATE_RATE_LIMIT_PER_IP", default_value_t = 1000)]
    rate_limit_per_ip: u32,
    /// Requests a second one authenticated subject may make (bursts of twice that); `0`
    /// turns the limit off.
    #[arg(long, env = "ROLEGATE_RATE_LIMIT_PER_SUBJECT", default_value_t = 500)]
    rate_limit_per_subject: u32,
    /// A reverse proxy (address or network, e.g. `10.0.0.0/8`; repeatable) whose
    /// `X-Forwarded-For` names the client for the per-address rate limit.
    #[arg(
        long = "trusted-proxy",
        env = "ROLEGATE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<IpRange>,
    /// Connections held open at most; over it, new connections wait in the kernel's
    /// accept queue until one closes. Default: three quarters of the open-file limit,
    /// between 64 and 16,384.
    #[arg(long, env = "ROLEGATE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Milliseconds a connection may go without a request in flight (a client still
    /// sending its headers included) before it is closed; for tests.
    #[arg(long, hide = true, default_value_t = 10_000)]
    idle_timeout_ms: u64,
    /// The first e-mail retry's delay in milliseconds (doubling after); for tests.
    #[arg(long, hide = true, default_value_t = 5_000)]
    smtp_retry_base_ms: u64,
    /// How often the e-mail outbox is polled, in milliseconds; for tests.
    #[arg(long, hide = true, default_value_t = 500)]
    smtp_poll_ms: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SyncMode {
    Full,
    Normal,
}

#[derive(clap::Args, Debug)]
struct TokenArgs {
    /// The HS256 secret the server verifies with.
    #[arg(long, env = "ROLEGATE_AUTH_HS256_SECRET", hide_env_values = true)]
    secret: String,
    /// The subject (`sub`): a directory subject id or external id, or an administrator id.
    #[arg(long)]
    subject: String,
    /// Mark the token as MFA-authenticated (`amr: ["pwd","mfa"]`).
    #[arg(long)]
    mfa: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
    /// Display name (`name`).
    #[arg(long)]
    name: Option<String>,
}

/// Production authentication settings, when any of its flags is given.
fn oidc_config(args: &ServeArgs) -> anyhow::Result<Option<OidcConfig>> {
    if args.oidc_issuer.is_none()
        && args.oidc_audience.is_none()
        && args.jwks_file.is_none()
        && args.jwks_url.is_none()
    {
        return Ok(None);
    }
    let Some(issuer) = args.oidc_issuer.clone() else {
        bail!("production authentication needs --oidc-issuer (or ROLEGATE_OIDC_ISSUER)");
    };
    let Some(audience) = args.oidc_audience.clone() else {
        bail!("production authentication needs --oidc-audience (or ROLEGATE_OIDC_AUDIENCE)");
    };
    let source = match (&args.jwks_file, &args.jwks_url) {
        (Some(_), Some(_)) => bail!("pass --jwks-file or --jwks-url, not both"),
        (Some(f), None) => JwksSource::File(f.clone()),
        (None, Some(u)) => JwksSource::Url(u.clone()),
        (None, None) => JwksSource::Discovery,
    };
    Ok(Some(OidcConfig {
        issuer,
        audience,
        source,
    }))
}

/// What `/.well-known/rolegate-configuration` tells clients (cli.md §1).
async fn client_discovery(
    args: &ServeArgs,
    auth: &Authenticator,
    development: bool,
) -> anyhow::Result<ClientDiscovery> {
    let issuer = auth.oidc_verifier().map(|v| v.issuer().to_string());
    let mut scopes: Vec<String> = BASE_CLI_SCOPES.iter().map(|s| s.to_string()).collect();
    scopes.extend(args.oidc_cli_scopes.iter().cloned());
    let device_authorization = match (&issuer, &args.oidc_cli_client_id) {
        (Some(issuer), Some(_)) => {
            let issuer = issuer.clone();
            tokio::task::spawn_blocking(move || rolegate_api::oidc::discover_endpoints(&issuer))
                .await?
                .map_err(|e| anyhow::anyhow!("the command line's OpenID sign-in: {e}"))?
                .device_authorization
                .is_some()
        }
        (None, Some(_)) => bail!(
            "--oidc-cli-client-id needs production authentication (--oidc-issuer, --oidc-audience)"
        ),
        _ => false,
    };
    Ok(ClientDiscovery {
        issuer,
        cli_client_id: args.oidc_cli_client_id.clone(),
        scopes,
        device_authorization,
        development,
    })
}

/// The portal's OpenID client (`--oidc-client-id`), with the issuer's endpoints discovered.
async fn portal_oidc(
    args: &ServeArgs,
    state: &AppState,
) -> anyhow::Result<Option<rolegate_portal::oidc::OidcClient>> {
    let Some(client_id) = args.oidc_client_id.clone() else {
        if args.oidc_client_secret_file.is_some() || args.oidc_mfa_acr.is_some() {
            bail!("--oidc-client-secret-file and --oidc-mfa-acr need --oidc-client-id");
        }
        return Ok(None);
    };
    let Some(verifier) = state.auth.oidc_verifier().cloned() else {
        bail!("--oidc-client-id needs production authentication (--oidc-issuer, --oidc-audience)");
    };
    if args.public_url.is_none() {
        bail!(
            "--oidc-client-id needs --public-url (the redirect URI is {{public-url}}/ui/auth/callback)"
        );
    }
    let client_secret = match &args.oidc_client_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --oidc-client-secret-file {}", path.display()))?;
            let secret = text.trim().to_string();
            if secret.is_empty() {
                bail!("--oidc-client-secret-file {} is empty", path.display());
            }
            Some(secret)
        }
        None => None,
    };
    let issuer = verifier.issuer().to_string();
    let endpoints =
        tokio::task::spawn_blocking(move || rolegate_api::oidc::discover_endpoints(&issuer))
            .await?
            .map_err(|e| anyhow::anyhow!("the portal's OpenID sign-in: {e}"))?;
    tracing::info!(%client_id, confidential = client_secret.is_some(), "portal sign-in with OpenID Connect");
    Ok(Some(rolegate_portal::oidc::OidcClient {
        client_id,
        client_secret,
        extra_scopes: args.oidc_scopes.clone(),
        mfa_acr: args.oidc_mfa_acr.clone(),
        endpoints,
        verifier,
    }))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // The connectors file is validated first: any problem stops the server with exit 2
    // and one line per problem (connectors.md §2.1).
    let connectors =
        args.connectors.as_deref().map(|path| {
            match rolegate_connectors::config::load(
                path,
                &rolegate_connectors::secret::ProcessEnvironment,
            ) {
                Ok(c) => {
                    for w in &c.warnings {
                        tracing::warn!(warning = %w, "connectors configuration");
                    }
                    c
                }
                Err(problems) => {
                    eprint!("{}", rolegate_connectors::config::report(&problems));
                    std::process::exit(2);
                }
            }
        });
    // Settle authentication before touching the database.
    let oidc = oidc_config(&args)?;
    let secret = match (&oidc, &args.auth_hs256_secret, args.demo) {
        (Some(_), Some(_), _) => bail!(
            "production authentication (--oidc-issuer, --oidc-audience, --jwks-file, --jwks-url) cannot be combined with --auth-hs256-secret (or ROLEGATE_AUTH_HS256_SECRET); pick one"
        ),
        (Some(_), None, true) => bail!(
            "--demo prints development (HS256) tokens and cannot be combined with production authentication"
        ),
        (Some(_), None, false) => None,
        (None, Some(s), _) => Some(s.clone()),
        (None, None, true) => Some(format!("demo-{}", uuid::Uuid::new_v4().simple())),
        (None, None, false) => bail!(
            "no authentication configured: pass --oidc-issuer and --oidc-audience (production), --auth-hs256-secret (or ROLEGATE_AUTH_HS256_SECRET) for development, or --demo"
        ),
    };
    let scim_token = args
        .scim_token_file
        .as_deref()
        .map(ProvisioningToken::from_file)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--scim-token-file: {e}"))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(listen::TlsFiles::load(cert, key)?)),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together: pass both or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let database = Database::parse(&args.database)?;
    // The stores are synchronous (the PostgreSQL client runs its own small runtime): call
    // them off this runtime's worker.
    let store: Arc<dyn Store> = tokio::task::block_in_place(|| {
        database.open(OpenOptions {
            sync: match args.sqlite_synchronous {
                SyncMode::Full => Synchronous::Full,
                SyncMode::Normal => Synchronous::Normal,
            },
            pool_size: args.database_pool_size,
            migrate: !args.no_migrate,
        })
    })?;
    let mut admins = args.admins.clone();
    if let Ok(env) = std::env::var("ROLEGATE_ADMINS") {
        admins.extend(
            env.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    if args.demo {
        admins.push(demo::ADMIN.to_string());
        tokio::task::block_in_place(|| demo::seed(store.as_ref(), clock.as_ref()))?;
    }
    // E-mail to tenant administrators (decisions.md §10) finds them by these ids.
    let admin_ids = admins.clone();
    let auth = match (oidc, &secret) {
        (Some(config), _) => {
            let (issuer, audience) = (config.issuer.clone(), config.audience.clone());
            let verifier = OidcVerifier::new(config, Arc::clone(&clock))
                .await
                .map_err(|e| anyhow::anyhow!("production authentication: {e}"))?;
            tracing::info!(
                %issuer,
                %audience,
                keys = verifier.key_count(),
                "production authentication (RS256/ES256)"
            );
            Authenticator::oidc(verifier, admins)
        }
        (None, Some(secret)) => Authenticator::hs256(secret.as_bytes(), None, None, admins)?,
        (None, None) => bail!("no authentication configured"),
    };
    let hosts = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect()
    };
    let webhooks = TargetPolicy {
        allow_http_hosts: hosts(&args.webhook_allow_http_hosts),
        allow_private_hosts: hosts(&args.webhook_allow_private_hosts),
    };
    let relay = match (&args.smtp_url, &args.smtp_from) {
        (None, _) => None,
        (Some(url), Some(from)) => {
            let relay = mail::Relay::parse(url).map_err(|e| anyhow::anyhow!("--smtp-url: {e}"))?;
            mail::check_sender(from.trim()).map_err(|e| anyhow::anyhow!("--smtp-from: {e}"))?;
            let tls = mail::tls_config(args.smtp_ca_file.as_deref())
                .map_err(|e| anyhow::anyhow!("--smtp-ca-file: {e}"))?;
            Some((relay, tls, from.trim().to_string()))
        }
        (Some(_), None) => bail!("--smtp-url needs --smtp-from (the sender address)"),
    };
    let mail_policy = relay
        .as_ref()
        .map(|_| rolegate_core::email::MailPolicy { admins: admin_ids });
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| {
            if addr.ip().is_unspecified() {
                format!("{scheme}://localhost:{}", addr.port())
            } else {
                format!("{scheme}://{addr}")
            }
        });
    let mut authzen_clients = args.authzen_clients.clone();
    if let Ok(env) = std::env::var("ROLEGATE_AUTHZEN_CLIENTS") {
        authzen_clients.extend(
            env.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    let discovery = client_discovery(&args, &auth, secret.is_some()).await?;
    let state = Arc::new(
        tokio::task::block_in_place(|| {
            AppState::new(Arc::clone(&store), Arc::clone(&clock), auth)
        })?
        .with_scim_token(scim_token)
        .with_webhook_policy(webhooks.clone())
        .with_mail(mail_policy)
        .with_request_timeout(args.request_timeout)
        .with_discovery(discovery)
        .with_authzen_clients(&authzen_clients)
        .with_public_url(&public_url)
        .with_rate_limits(RateLimits::new(
            Rate::per_second(args.rate_limit_per_ip),
            Rate::per_second(args.rate_limit_per_subject),
            args.trusted_proxies.clone(),
        )),
    );
    if args.demo
        && let Some(secret) = &secret
        && let Err(e) = tokio::task::block_in_place(|| {
            demo::print_guide(
                store.as_ref(),
                secret,
                &format!("{scheme}://{addr}"),
                clock.now(),
            )
        })
    {
        eprintln!("this database was not seeded by --demo, so there is no guide to print ({e})");
    }
    println!("rolegate listening on {scheme}://{addr}");
    tracing::info!(%addr, %scheme, database = %database.describe(), "rolegate listening");
    // The scheduler stops when the shutdown signal arrives, or when serving ends for any
    // other reason (the signal future, and with it `stop`, is dropped then).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let provisioning = match (connectors, &args.connectors) {
        (Some(c), Some(path)) => {
            let p =
                provisioning::Provisioning::start(Arc::clone(&state), path, c, stop.subscribe())?;
            tracing::info!(connectors = p.links().len(), "provisioning connectors on");
            tokio::spawn(reload_connectors_on_sighup(Arc::clone(&p)));
            Some(p)
        }
        _ => None,
    };
    let jobs = tokio::spawn(scheduler::run(
        Arc::clone(&state),
        args.scheduler_interval,
        stopped,
    ));
    let deliveries = tokio::spawn(notify::run(
        Arc::clone(&state),
        notify::Config {
            policy: webhooks,
            retry_base: std::time::Duration::from_millis(args.webhook_retry_base_ms.max(1)),
            timeout: std::time::Duration::from_secs(5),
            poll: std::time::Duration::from_millis(args.webhook_poll_ms.max(10)),
            tenant_id: args.tenant_id.clone(),
        },
        stop.subscribe(),
    ));
    let mailer = relay.map(|(relay, tls, from)| {
        if args.public_url.is_none() && addr.ip().is_unspecified() {
            tracing::warn!(
                "listening on all interfaces: links in e-mail use localhost; set --public-url"
            );
        }
        let base_url = public_url.clone();
        tracing::info!(
            host = %relay.host,
            port = relay.port,
            tls = relay.security.as_str(),
            auth = relay.credentials.is_some(),
            "e-mail notifications on"
        );
        tokio::spawn(mail::run(
            Arc::clone(&state),
            mail::Config {
                relay,
                tls,
                from,
                base_url,
                retry_base: std::time::Duration::from_millis(args.smtp_retry_base_ms.max(1)),
                timeout: std::time::Duration::from_secs(10),
                poll: std::time::Duration::from_millis(args.smtp_poll_ms.max(10)),
            },
            stop.subscribe(),
        ))
    });
    if let Some(files) = &tls {
        tokio::spawn(reload_tls_on_sighup(Arc::clone(files)));
    }
    let signal = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    let portal_oidc = portal_oidc(&args, &state).await?;
    let portal = (!args.no_ui).then(|| {
        rolegate_portal::router(
            Arc::clone(&state),
            PortalConfig {
                public_url: args.public_url.clone(),
                development_sign_in: secret.is_some(),
                demo_users: if args.demo { demo::users() } else { Vec::new() },
                lifetime: SessionLifetime {
                    idle: jiff::SignedDuration::from_mins(i64::from(args.ui_session_idle)),
                    ..SessionLifetime::default()
                },
                oidc: portal_oidc,
            },
        )
    });
    let max_connections = args
        .max_connections
        .map_or_else(listen::default_max_connections, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        });
    tracing::info!(max_connections, "connection limit");
    listen::serve(
        listener,
        tls,
        router_with(state, portal),
        std::time::Duration::from_millis(args.idle_timeout_ms.max(1)),
        max_connections,
        signal,
    )
    .await;
    if let Err(e) = jobs.await {
        tracing::error!(error = %e, "scheduler task failed");
    }
    if let Err(e) = deliveries.await {
        tracing::error!(error = %e, "notification worker failed");
    }
    if let Some(mailer) = mailer
        && let Err(e) = mailer.await
    {
        tracing::error!(error = %e, "e-mail worker failed");
    }
    if let Some(p) = provisioning {
        p.finished().await;
    }
    tracing::info!("rolegate stopped");
    Ok(())
}

/// Re-reads `--tls-cert` and `--tls-key` on every SIGHUP, so a rotated certificate is served
/// to new connections without a restart; files that do not load keep the current ones.
async fn reload_tls_on_sighup(files: Arc<listen::TlsFiles>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be watched: TLS files are read at start only");
            return;
        };
        while hup.recv().await.is_some() {
            match files.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: TLS files not reloaded; the current certificate stays"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    drop(files);
}

/// Re-reads the connectors file on every SIGHUP (connectors.md §2.1): a valid file replaces
/// the running configuration, an invalid one is logged line by line and changes nothing.
async fn reload_connectors_on_sighup(p: Arc<provisioning::Provisioning>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be watched: the connectors file is read at start only");
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = p.reload().await {
                tracing::error!(error = %e, "SIGHUP: the connectors reload could not be recorded");
            }
        }
    }
    #[cfg(not(unix))]
    drop(p);
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish before exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Client commands print their own one-line errors and exit with cli.md's codes; a bug
    // that panics says so in one line (no backtrace) and exits 1.
    let client = |run: &dyn Fn() -> i32| -> ! {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("error: internal error ({info}); please report it");
        }));
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or(1);
        std::process::exit(code)
    };
    match &cli.command {
        Command::Client(command) => {
            client(&|| rolegate_cli::run(&cli.connection, &cli.output, command))
        }
        Command::Audit(audit::AuditCommand::List(args)) => {
            client(&|| rolegate_cli::run_audit_list(&cli.connection, &cli.output, args))
        }
        Command::Connectors(command) => std::process::exit(connectors::run(
            command,
            cli.output.output == rolegate_cli::output::Format::Json,
        )),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "rolegate",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(*args)),
        Command::Seed(a) => {
            let store = Database::parse(&a.database)?.open(OpenOptions {
                sync: Synchronous::Normal,
                ..OpenOptions::default()
            })?;
            let size = seed::SeedSize {
                resources: a.resources,
                users: a.users,
                groups: a.groups,
                assignments: a.assignments,
            };
            seed::seed(store.as_ref(), size, SystemClock.now(), &a.manifest)
        }
        Command::Migrate(a) => {
            let database = Database::parse(&a.database)?;
            database.open(OpenOptions::default())?;
            println!("{}: schema up to date", database.describe());
            Ok(())
        }
        Command::Backup(a) => maintenance::backup(&a),
        Command::Copy(a) => maintenance::copy(&a),
        Command::Client(_) | Command::Completion { .. } | Command::Connectors(_) => Ok(()),
        Command::Audit(a) => {
            if !audit::run(a)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Token(t) => {
            println!(
                "{}",
                development_token(
                    t.secret.as_bytes(),
                    &t.subject,
                    t.name,
                    t.mfa,
                    t.ttl,
                    SystemClock.now()
                )?
            );
            Ok(())
        }
    }
}
