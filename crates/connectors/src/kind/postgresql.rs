//! `postgresql`: role membership granted and revoked in a PostgreSQL server
//! (connectors.md §5.1): the kind's keys and their validation, and the connector. It only
//! ever sends `GRANT "target" TO "principal"` and `REVOKE` for targets its rules name,
//! identifiers double-quoted with `"` doubled, catalog values as bind parameters.

use super::postgresql_tls::{PostgresTls, split_uri};
use crate::config::{Doc, Table};
use crate::connector::{ApplyContext, BoxFuture, Connector, ConnectorError, Grant};
use crate::secret::{Secret, redact};
use rolegate_core::provisioning::UnmappedReason;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// The keys of a `postgresql` connector.
#[derive(Debug)]
pub struct PostgresqlConfig {
    /// The libpq URI, without a password.
    pub url: String,
    /// The account's password, when it uses one.
    pub password: Option<Secret>,
    /// Whether a revoke also ends the principal's sessions.
    pub terminate_sessions: bool,
    /// TLS as the URI's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` say.
    pub tls: PostgresTls,
}

/// What a libpq URI says about where it connects and how.
#[derive(Debug, PartialEq, Eq)]
struct Uri {
    host: String,
    has_password: bool,
    sslmode: Option<String>,
}

/// Reads `postgresql://[user[:password]@][host][:port][/dbname][?params]` far enough to
/// check it (§2.3, §11.2): the host (or a `host=` parameter, a Unix socket when it starts
/// with `/`), whether a password is carried, and `sslmode`.
fn parse_uri(url: &str) -> Option<Uri> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut has_password = userinfo.is_some_and(|u| u.contains(':'));
    let mut host = if let Some(bracketed) = hostport.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("").to_string()
    } else {
        hostport.split(':').next().unwrap_or("").to_string()
    };
    let mut sslmode = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .to_string();
        match k {
            "password" | "sslpassword" => has_password = true,
            "sslmode" => sslmode = Some(v),
            "host" => host = v,
            _ => {}
        }
    }
    if host.contains(',') {
        // Several hosts: each must pass; the strictest reading is "not loopback".
        host = "several hosts".into();
    }
    Some(Uri {
        host: percent_encoding::percent_decode_str(&host)
            .decode_utf8_lossy()
            .to_string(),
        has_password,
        sslmode,
    })
}

pub(crate) fn read(
    doc: &mut Doc<'_>,
    t: &mut Table<'_, '_>,
    insecure: bool,
) -> Option<PostgresqlConfig> {
    let url = t.required_string(doc, "url");
    let password = t.secret(doc, "password");
    let terminate_sessions = t.choice(
        doc,
        "on_revoke_sessions",
        false,
        &[("keep", false), ("terminate", true)],
    );
    let url = url?;
    let field = t.field("url");
    let Some(uri) = parse_uri(url.get_ref()) else {
        doc.problem(
            url.span(),
            &field,
            "must be a URI postgresql://USER@HOST:PORT/DBNAME?…".into(),
        );
        return None;
    };
    if uri.has_password {
        doc.problem(
            url.span(),
            &field,
            "the URL may not carry a password; use password_file or \"${NAME}\"".into(),
        );
        return None;
    }
    let local = uri.host.is_empty() || uri.host.starts_with('/') || super::is_loopback(&uri.host);
    let verified = matches!(uri.sslmode.as_deref(), Some("verify-full" | "verify-ca"));
    if !local && !verified && !insecure {
        doc.problem(
            url.span(),
            &field,
            format!(
                "a connection to {} must verify the server: add sslmode=verify-full (or verify-ca), or set insecure = true",
                uri.host
            ),
        );
        return None;
    }
    let tls = match PostgresTls::of(&split_uri(url.get_ref()).1) {
        Ok(tls) => tls,
        Err(message) => {
            doc.problem(url.span(), &field, message);
            return None;
        }
    };
    Some(PostgresqlConfig {
        url: url.into_inner(),
        password,
        terminate_sessions,
        tls,
    })
}

/// A role name: at most 63 bytes (longer would be silently truncated into another role's
/// name), no NUL.
pub(crate) fn target_problem(target: &str) -> Option<String> {
    if target.len() > 63 {
        Some(format!(
            "a PostgreSQL role name has at most 63 bytes (this one has {}); PostgreSQL would truncate it",
            target.len()
        ))
    } else if target.contains('\0') {
        Some("a PostgreSQL role name cannot contain NUL".into())
    } else {
        None
    }
}

/// The principal of a mapped value (§3.2): the login role's name as is, refused when
/// PostgreSQL could not hold it.
pub fn principal(mapped: &str) -> Result<String, UnmappedReason> {
    match target_problem(mapped) {
        None => Ok(mapped.to_string()),
        Some(_) => Err(UnmappedReason::InvalidValue),
    }
}

/// `name` as a PostgreSQL identifier: always double-quoted, `"` doubled, so case and
/// special characters are kept and nothing is case-folded.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `postgresql` connector: pooled connections (up to `concurrency`), kept open.
pub struct PostgresqlConnector {
    config: tokio_postgres::Config,
    tls: PostgresTls,
    ignore_members: Vec<String>,
    terminate_sessions: bool,
    secrets: Vec<Secret>,
    idle: tokio::sync::Mutex<Vec<Client>>,
    concurrency: usize,
}

impl PostgresqlConnector {
    /// The connector `name` of `config`; `timeout` bounds connecting and each statement.
    pub fn new(
        name: &str,
        config: &PostgresqlConfig,
        ignore_members: &[String],
        timeout: Duration,
        concurrency: u32,
    ) -> Result<Self, String> {
        let mut pg: tokio_postgres::Config = split_uri(&config.url)
            .0
            .parse()
            .map_err(|e| format!("url: {e}"))?;
        pg.ssl_mode(config.tls.ssl_mode());
        if let Some(p) = &config.password {
            pg.password(p.expose());
        }
        let ms = timeout.as_millis();
        pg.application_name(format!("rolegate-connector:{name}"))
            .connect_timeout(timeout)
            .options(format!("-c statement_timeout={ms} -c lock_timeout={ms}"));
        Ok(Self {
            config: pg,
            tls: config.tls.clone(),
            ignore_members: ignore_members.to_vec(),
            terminate_sessions: config.terminate_sessions,
            secrets: config.password.iter().cloned().collect(),
            idle: tokio::sync::Mutex::new(Vec::new()),
            concurrency: concurrency.max(1) as usize,
        })
    }

    fn error(&self, e: &tokio_postgres::Error) -> ConnectorError {
        let message = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                // tokio-postgres says "error performing TLS handshake"; the cause (say, an
                // unknown issuer) is in the chain of sources.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !text.contains(&cause_text) {
                        text.push_str(": ");
                        text.push_str(&cause_text);
                    }
                    source = cause.source();
                }
                text
            }
        };
        let message = redact(&message, &self.secrets);
        if e.as_db_error().is_some() {
            ConnectorError::refused("TargetError", message)
        } else {
            ConnectorError::unreachable(message)
        }
    }

    async fn client(&self) -> Result<Client, ConnectorError> {
        while let Some(c) = self.idle.lock().await.pop() {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        match self.tls.connector() {
            Some(tls) => self.connect(tls).await,
            None => self.connect(NoTls).await,
        }
    }

    /// A new connection over `tls`, its driver spawned.
    async fn connect<T>(&self, tls: T) -> Result<Client, ConnectorError>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
        T::Stream: Send + 'static,
    {
        let (client, connection) = self.config.connect(tls).await.map_err(|e| self.error(&e))?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn release(&self, client: Client) {
        let mut idle = self.idle.lock().await;
        if !client.is_closed() && idle.len() < self.concurrency {
            idle.push(client);
        }
    }

    /// Runs `op` on a pooled connection, returning the connection when it stays usable.
    async fn with_client<T>(
        &self,
        op: impl AsyncFnOnce(&mut Client) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let mut client = self.client().await?;
        let out = op(&mut client).await;
        // A connection that could not reach the server is dropped, not pooled.
        if !matches!(&out, Err(e) if e.unreachable) {
            self.release(client).await;
        }
        out
    }

    async fn apply_on(&self, c: &mut Client, g: &Grant) -> Result<(), ConnectorError> {
        let tx = c.transaction().await.map_err(|e| self.error(&e))?;
        let role = |name: &str| {
            let name = name.to_string();
            let tx = &tx;
            async move {
                tx.query_opt(
                    "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1",
                    &[&name],
                )
                .await
                .map(|row| row.map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1))))
            }
        };
        match role(&g.target).await.map_err(|e| self.error(&e))? {
            None => {
                return Err(ConnectorError::refused(
                    "TargetNotFound",
                    format!("the role {} does not exist", quote_ident(&g.target)),
                ));
            }
            Some((true, _)) => {
                return Err(ConnectorError::refused(
                    "TargetIsSuperuser",
                    format!(
                        "the role {} is a superuser role: membership would allow SET ROLE to a superuser",
                        quote_ident(&g.target)
                    ),
                ));
            }
            Some(_) => {}
        }
        match role(&g.principal).await.map_err(|e| self.error(&e))? {
            None => {
                return Err(ConnectorError::refused(
                    "PrincipalNotFound",
                    format!(
                        "the login role {} does not exist",
                        quote_ident(&g.principal)
                    ),
                ));
            }
            Some((_, false)) => {
                return Err(ConnectorError::refused(
                    "PrincipalCannotLogin",
                    format!("the role {} cannot log in", quote_ident(&g.principal)),
                ));
            }
            Some(_) => {}
        }
        tx.batch_execute(&format!(
            "GRANT {} TO {}",
            quote_ident(&g.target),
            quote_ident(&g.principal)
        ))
        .await
        .map_err(|e| self.error(&e))?;
        tx.commit().await.map_err(|e| self.error(&e))
    }

    async fn revoke_on(&self, c: &mut Client, g: &Grant) -> Result<(), ConnectorError> {
        // One row per grantor on 16+ (each is revoked under its grantor's name), with the
        // server's version: one round trip.
        let rows = c
            .query(
                "SELECT DISTINCT g.rolname, current_setting('server_version_num')::int \
                 FROM pg_auth_members m \
                 JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
                 JOIN pg_roles g ON g.oid = m.grantor WHERE r.rolname = $1 AND u.rolname = $2",
                &[&g.target, &g.principal],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let Some(version) = rows.first().map(|r| r.get::<_, i32>(1)) else {
            return Ok(());
        };
        let grantors: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let (t, p) = (quote_ident(&g.target), quote_ident(&g.principal));
        let statements: Vec<String> = if version >= 160_000 {
            grantors
                .iter()
                .map(|by| format!("REVOKE {t} FROM {p} GRANTED BY {} CASCADE", quote_ident(by)))
                .collect()
        } else {
            vec![format!("REVOKE {t} FROM {p}")]
        };
        for sql in statements {
            c.batch_execute(&sql).await.map_err(|e| self.error(&e))?;
        }
        if self.terminate_sessions {
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&g.principal],
            )
            .await
            .map_err(|e| self.error(&e))?;
        }
        Ok(())
    }

    async fn list_on(
        &self,
        c: &mut Client,
        targets: &[String],
    ) -> Result<Vec<Grant>, ConnectorError> {
        let rows = c
            .query(
                "SELECT DISTINCT r.rolname, u.rolname FROM pg_auth_members m \
                 JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
                 WHERE r.rolname = ANY($1) AND u.rolname <> current_user",
                &[&targets],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let mut out: Vec<Grant> = rows
            .iter()
            .map(|r| Grant {
                target: r.get(0),
                principal: r.get(1),
            })
            .filter(|g| !self.ignore_members.contains(&g.principal))
            .collect();
        out.sort();
        Ok(out)
    }
}

impl Connector for PostgresqlConnector {
    fn apply<'a>(
        &'a self,
        grant: &'a Grant,
        _ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.with_client(async move |c: &mut Client| self.apply_on(c, grant).await))
    }

    fn revoke<'a>(
        &'a self,
        grant: &'a Grant,
        _ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.with_client(async move |c: &mut Client| self.revoke_on(c, grant).await))
    }

    fn list<'a>(
        &'a self,
        targets: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Grant>, ConnectorError>> {
        Box::pin(self.with_client(async move |c: &mut Client| self.list_on(c, targets).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_role_names_postgresql_can_hold() {
        assert_eq!(principal("Alice.Smith"), Ok("Alice.Smith".into()));
        assert_eq!(
            principal(&"a".repeat(64)),
            Err(UnmappedReason::InvalidValue)
        );
        assert_eq!(principal("a\0"), Err(UnmappedReason::InvalidValue));
    }

    #[test]
    fn identifiers_are_always_quoted_with_quotes_doubled() {
        assert_eq!(quote_ident("app_admin"), "\"app_admin\"");
        assert_eq!(quote_ident("Alice"), "\"Alice\"");
        assert_eq!(quote_ident("we\"ird; DROP"), "\"we\"\"ird; DROP\"");
    }

    #[test]
    fn uris_give_their_host_password_and_sslmode() {
        let u = parse_uri(
            "postgresql://prov@db1.example.net:5432/postgres?sslmode=verify-full&sslrootcert=/ca.pem",
        );
        assert_eq!(
            u,
            Some(Uri {
                host: "db1.example.net".into(),
                has_password: false,
                sslmode: Some("verify-full".into())
            })
        );
        assert!(parse_uri("postgresql://u:pw@h/db").is_some_and(|u| u.has_password));
        assert!(parse_uri("postgres://u@h/db?sslpassword=x").is_some_and(|u| u.has_password));
        assert_eq!(
            parse_uri("postgresql://u@[::1]:5432/db").map(|u| u.host),
            Some("::1".into())
        );
        assert_eq!(
            parse_uri("postgresql:///db?host=%2Fvar%2Frun%2Fpostgresql").map(|u| u.host),
            Some("/var/run/postgresql".into())
        );
        assert_eq!(parse_uri("mysql://u@h/db"), None);
    }

    #[test]
    fn role_names_are_at_most_63_bytes_without_nul() {
        assert_eq!(target_problem("app_admin"), None);
        assert_eq!(target_problem(&"é".repeat(31)), None);
        assert!(target_problem(&"é".repeat(32)).is_some());
        assert!(target_problem("a\0b").is_some());
    }
}
