//! The kinds of connector (connectors.md §5). Each kind is one module holding its keys, its
//! validation and (later) its operations; this registry is the only place that names them.

pub mod exec;
pub mod ldap;
pub mod postgresql;
pub mod postgresql_tls;

use crate::config::{Doc, Table};
use serde_json::Value;
use toml::Spanned;

/// A connector's kind with its own validated keys.
#[derive(Debug)]
pub enum KindConfig {
    /// PostgreSQL role membership (§5.1).
    Postgresql(postgresql::PostgresqlConfig),
    /// LDAP group membership (§5.2).
    Ldap(ldap::LdapConfig),
    /// A program the operator provides (§5.3).
    Exec(exec::ExecConfig),
}

impl KindConfig {
    /// The kind's name as the file writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Postgresql(_) => "postgresql",
            Self::Ldap(_) => "ldap",
            Self::Exec(_) => "exec",
        }
    }

    /// The kind's finishing step of principal mapping (§3.2).
    pub fn principal(
        &self,
        mapped: &str,
    ) -> Result<String, rolegate_core::provisioning::UnmappedReason> {
        match self {
            Self::Postgresql(_) => postgresql::principal(mapped),
            Self::Ldap(c) => ldap::principal(c.member_template.as_deref(), mapped),
            Self::Exec(_) => exec::principal(mapped),
        }
    }

    /// A principal as the kind compares principals: an LDAP DN canonicalised (case and
    /// spacing of attribute types, escapes), anything else as is.
    pub fn comparable_principal(&self, principal: &str) -> String {
        match self {
            Self::Ldap(_) => ldap::canonical_dn(principal).unwrap_or_else(|| principal.to_string()),
            Self::Postgresql(_) | Self::Exec(_) => principal.to_string(),
        }
    }

    /// The connector's own account as a principal of its kind (the PostgreSQL user, the
    /// LDAP bind DN), whose memberships Rolegate never changes (§11.1); `None` for `exec`.
    pub fn own_account(&self) -> Option<String> {
        match self {
            Self::Postgresql(c) => postgresql_tls::split_uri(&c.url)
                .0
                .parse::<tokio_postgres::Config>()
                .ok()?
                .get_user()
                .map(str::to_string),
            Self::Ldap(c) => Some(c.bind_dn.clone()),
            Self::Exec(_) => None,
        }
    }

    /// The secrets its file gave it (a password, environment values from files or the
    /// environment).
    pub fn secrets(&self) -> Vec<&crate::secret::Secret> {
        match self {
            Self::Postgresql(c) => c.password.iter().collect(),
            Self::Ldap(c) => vec![&c.bind_password],
            Self::Exec(c) => c.secrets().collect(),
        }
    }

    /// Where it connects, without any secret: a URL, or for `exec` the command array.
    pub fn endpoint(&self) -> Value {
        match self {
            Self::Postgresql(c) => Value::String(c.url.clone()),
            Self::Ldap(c) => Value::String(c.url.clone()),
            Self::Exec(c) => Value::from(c.command.clone()),
        }
    }
}

/// The certificates of the PEM file `path` as trusted roots (`tls_ca_file`,
/// `sslrootcert`); why not, in words.
pub(crate) fn pem_roots(path: &str) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("a certificate of {path} cannot be used: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(roots)
}

/// The connector of a validated configuration: the registry of kinds.
pub fn build(
    c: &crate::config::ConnectorConfig,
) -> Result<Box<dyn crate::connector::Connector>, String> {
    Ok(match &c.kind {
        KindConfig::Postgresql(k) => Box::new(postgresql::PostgresqlConnector::new(
            &c.name,
            k,
            &c.ignore_members,
            c.timeout,
            c.concurrency,
        )?),
        KindConfig::Ldap(k) => Box::new(ldap::LdapConnector::new(k, &c.ignore_members, c.timeout)),
        KindConfig::Exec(k) => Box::new(exec::ExecConnector::new(&c.name, k.clone(), c.timeout)),
    })
}

/// The kinds' names, as the file writes them.
pub const KINDS: [&str; 3] = ["postgresql", "ldap", "exec"];

/// Why `target` is not valid for the kind named `kind` (§3.1), if it is not.
pub(crate) fn target_problem(kind: &str, target: &str) -> Option<String> {
    match kind {
        "postgresql" => postgresql::target_problem(target),
        "ldap" => ldap::target_problem(target),
        "exec" => exec::target_problem(target),
        _ => None,
    }
}

/// Reads the keys of the kind named `kind` from the connector's table.
pub(crate) fn read(
    doc: &mut Doc<'_>,
    t: &mut Table<'_, '_>,
    kind: &Spanned<String>,
    insecure: bool,
) -> Option<KindConfig> {
    match kind.get_ref().as_str() {
        "postgresql" => postgresql::read(doc, t, insecure).map(KindConfig::Postgresql),
        "ldap" => ldap::read(doc, t, insecure).map(KindConfig::Ldap),
        "exec" => exec::read(doc, t).map(KindConfig::Exec),
        other => {
            doc.problem(
                kind.span(),
                &t.field("kind"),
                format!("unknown kind \"{other}\"; use {}", KINDS.join(", ")),
            );
            None
        }
    }
}

/// Whether `host` is this machine (127.0.0.0/8, `::1`, `localhost`): the only hosts a
/// connection may reach without TLS unless `insecure` (§11.2).
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
