//! `postgresql`: role membership granted and revoked in a PostgreSQL server
//! (connectors.md §5.1). This file holds the kind's keys and their validation.

use crate::config::{Doc, Table};
use crate::secret::Secret;

/// The keys of a `postgresql` connector.
#[derive(Debug)]
pub struct PostgresqlConfig {
    /// The libpq URI, without a password.
    pub url: String,
    /// The account's password, when it uses one.
    pub password: Option<Secret>,
    /// Whether a revoke also ends the principal's sessions.
    pub terminate_sessions: bool,
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
    let terminate_sessions = match t.string(doc, "on_revoke_sessions") {
        None => false,
        Some(s) if s.get_ref() == "keep" => false,
        Some(s) if s.get_ref() == "terminate" => true,
        Some(s) => {
            doc.problem(
                s.span(),
                &t.field("on_revoke_sessions"),
                "must be \"keep\" or \"terminate\"".into(),
            );
            false
        }
    };
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
    Some(PostgresqlConfig {
        url: url.into_inner(),
        password,
        terminate_sessions,
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

#[cfg(test)]
mod tests {
    use super::*;

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
