//! `ldap`: group membership (`member` or `uniqueMember`) added and removed in an LDAP
//! directory (connectors.md §5.2): the kind's keys and their validation, RFC 4514
//! distinguished names, and the connector. No subject data ever goes into a search filter:
//! `list` reads each managed group by its DN.

use crate::config::{Doc, Table};
use crate::connector::{ApplyContext, BoxFuture, Connector, ConnectorError, Grant};
use crate::secret::{Secret, redact};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use rolegate_core::provisioning::UnmappedReason;
use std::collections::HashSet;
use std::time::Duration;

/// `attributeOrValueExists`: adding a present member is success.
const RC_VALUE_EXISTS: u32 = 20;
/// `noSuchAttribute`: removing an absent member is success.
const RC_NO_SUCH_ATTRIBUTE: u32 = 16;

/// `noSuchObject`.
const RC_NO_SUCH_OBJECT: u32 = 32;

/// The most members read from one group (a bound on ranged retrieval).
const MAX_MEMBERS: usize = 10_000_000;

/// Whether `attr` is a ranged form of `member_attribute` (`member;range=0-1499`): `None`
/// if not; `Some(None)` for the last range (`member;range=1500-*`); `Some(Some(n))` when
/// values from `n` on remain to be asked for.
fn member_range(attr: &str, member_attribute: &str) -> Option<Option<u64>> {
    let (name, options) = attr.split_once(';')?;
    if !name.eq_ignore_ascii_case(member_attribute) {
        return None;
    }
    let range = options.split(';').find_map(|o| {
        let (key, value) = o.split_once('=')?;
        key.eq_ignore_ascii_case("range").then_some(value)
    })?;
    let (_, high) = range.split_once('-')?;
    if high == "*" {
        return Some(None);
    }
    // A bound that cannot be read ends the retrieval with what was read.
    Some(high.parse::<u64>().ok().and_then(|h| h.checked_add(1)))
}

/// The keys of an `ldap` connector.
#[derive(Debug)]
pub struct LdapConfig {
    /// `ldaps://host[:port]` or `ldap://host[:port]`.
    pub url: String,
    /// StartTLS before binding (with `ldap://`).
    pub starttls: bool,
    /// The TLS configuration trusting `tls_ca_file`'s certificates (read at load); the
    /// system roots when absent.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The service account's DN.
    pub bind_dn: String,
    /// Its password.
    pub bind_password: Secret,
    /// `member` or `uniqueMember`.
    pub member_attribute: String,
    /// The principal's DN with `{value}` for the mapped value, if any.
    pub member_template: Option<String>,
    /// A DN kept in every managed group so it is never empty.
    pub placeholder_member: Option<String>,
}

/// One attribute-value assertion of an RDN: the attribute type and the value, unescaped.
pub type Ava = (String, String);

/// Parses a distinguished name (RFC 4514): RDNs separated by `,`, multi-valued RDNs by `+`,
/// values unescaped (`\,` and `\2C` alike; `#…` hex strings kept as written). `None` when it
/// is not a DN, including the empty one.
pub fn parse_dn(text: &str) -> Option<Vec<Vec<Ava>>> {
    let mut rdns = Vec::new();
    let mut rdn: Vec<Ava> = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut attr = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=') {
            attr.push(c);
        }
        chars.next()?; // '='
        let attr = attr.trim().to_string();
        let keystring = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let oid = !attr.is_empty()
            && attr
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !keystring && !oid {
            return None;
        }
        let mut value = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let flush = |bytes: &mut Vec<u8>, value: &mut String| -> Option<()> {
            if !bytes.is_empty() {
                value.push_str(std::str::from_utf8(bytes).ok()?);
                bytes.clear();
            }
            Some(())
        };
        let mut end = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let e = chars.next()?;
                    if e.is_ascii_hexdigit() {
                        let lo = chars.next().filter(char::is_ascii_hexdigit)?;
                        let hex: String = [e, lo].iter().collect();
                        bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                    } else if "\\\"+,;<>=# ".contains(e) {
                        flush(&mut bytes, &mut value)?;
                        value.push(e);
                    } else {
                        return None;
                    }
                }
                ',' | '+' => {
                    end = Some(c);
                    break;
                }
                '"' | ';' | '<' | '>' => return None,
                c => {
                    flush(&mut bytes, &mut value)?;
                    value.push(c);
                }
            }
        }
        flush(&mut bytes, &mut value)?;
        rdn.push((attr, value.trim().to_string()));
        match end {
            Some('+') => continue,
            Some(_) => rdns.push(std::mem::take(&mut rdn)),
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
        }
    }
}

/// `value` escaped as an RFC 4514 attribute value (§5.2): `\\ " + , ; < >` anywhere, `#` or
/// space first, space last, NUL as `\\00`; so `j+doe` stays one RDN.
pub fn escape_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' | '"' | '+' | ',' | ';' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The principal of a mapped value (§3.2): `member_template` with `{value}` escaped, or,
/// without one, the value itself when it is a DN.
pub fn principal(template: Option<&str>, mapped: &str) -> Result<String, UnmappedReason> {
    let dn = match template {
        Some(t) => t.replace("{value}", &escape_value(mapped)),
        None => mapped.to_string(),
    };
    if dn.len() > 1024 || parse_dn(&dn).is_none() {
        return Err(UnmappedReason::InvalidValue);
    }
    Ok(dn)
}

/// The comparable form of a DN (§5.2): attribute types and values lower-cased, values
/// unescaped with runs of spaces collapsed, multi-valued RDNs sorted, then written back
/// escaped. So `UID=Alice, OU=People` and `uid=alice,ou=people` are the same member.
pub fn canonical_dn(dn: &str) -> Option<String> {
    let rdns = parse_dn(dn)?;
    let parts: Vec<String> = rdns
        .into_iter()
        .map(|rdn| {
            let mut avas: Vec<String> = rdn
                .into_iter()
                .map(|(attr, value)| {
                    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                    format!(
                        "{}={}",
                        attr.to_ascii_lowercase(),
                        escape_value(&value.to_lowercase())
                    )
                })
                .collect();
            avas.sort();
            avas.join("+")
        })
        .collect();
    Some(parts.join(","))
}

/// An `ldap` connector. Each operation binds on a connection of its own.
pub struct LdapConnector {
    url: String,
    starttls: bool,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    bind_dn: String,
    bind_password: Secret,
    member_attribute: String,
    placeholder: Option<String>,
    /// Canonical DNs never reported: the placeholder, the service account, ignore_members.
    left_out: HashSet<String>,
    timeout: Duration,
}

impl LdapConnector {
    /// The connector of `config`; `timeout` bounds connecting and each operation.
    pub fn new(config: &LdapConfig, ignore_members: &[String], timeout: Duration) -> Self {
        let left_out = ignore_members
            .iter()
            .chain(config.placeholder_member.iter())
            .chain(std::iter::once(&config.bind_dn))
            .filter_map(|dn| canonical_dn(dn))
            .collect();
        Self {
            url: config.url.clone(),
            starttls: config.starttls,
            tls: config.tls.clone(),
            bind_dn: config.bind_dn.clone(),
            bind_password: config.bind_password.clone(),
            member_attribute: config.member_attribute.clone(),
            placeholder: config.placeholder_member.clone(),
            left_out,
            timeout,
        }
    }

    fn refused(&self, code: &str, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::refused(code, redact(&e.to_string(), [&self.bind_password]))
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::unreachable(redact(&e.to_string(), [&self.bind_password]))
    }

    /// Binds, runs `op`, and unbinds whatever `op` answered.
    async fn session<T>(
        &self,
        op: impl AsyncFnOnce(&mut Ldap) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let mut ldap = self.bind().await?;
        let out = op(&mut ldap).await;
        let _ = ldap.unbind().await;
        out
    }

    async fn bind(&self) -> Result<Ldap, ConnectorError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls);
        if let Some(config) = &self.tls {
            settings = settings.set_config(config.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| self.unreachable(e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.timeout);
        let bound = ldap
            .simple_bind(&self.bind_dn, self.bind_password.expose())
            .await
            .map_err(|e| self.unreachable(e))?;
        if bound.rc != 0 {
            return Err(self.refused("BindFailed", bound));
        }
        Ok(ldap)
    }

    /// The member values of `group` as the directory holds them, following ranged
    /// retrieval (Active Directory answers a group of more than 1,500 members with
    /// `member;range=0-1499` and the rest is asked for as `member;range=1500-*`).
    async fn members(&self, ldap: &mut Ldap, group: &str) -> Result<Vec<String>, ConnectorError> {
        let mut out = Vec::new();
        let mut asked = self.member_attribute.clone();
        let mut from = 0;
        loop {
            let mut more = None;
            for (attr, values) in self.read_entry(ldap, group, &asked).await? {
                match member_range(&attr, &self.member_attribute) {
                    Some(step) => {
                        out.extend(values);
                        more = step;
                    }
                    None if attr.eq_ignore_ascii_case(&self.member_attribute) => out.extend(values),
                    None => {}
                }
            }
            match more {
                Some(next) if next > from && out.len() < MAX_MEMBERS => {
                    from = next;
                    asked = format!("{};range={next}-*", self.member_attribute);
                }
                Some(_) => {
                    return Err(self.refused(
                        "TargetError",
                        format!(
                            "group {group}'s ranged members do not advance or exceed {MAX_MEMBERS}"
                        ),
                    ));
                }
                None => return Ok(out),
            }
        }
    }

    /// The attributes `attribute` of entry `dn`.
    async fn read_entry(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attribute: &str,
    ) -> Result<Vec<(String, Vec<String>)>, ConnectorError> {
        let found = ldap
            .with_timeout(self.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", vec![attribute])
            .await
            .map_err(|e| self.unreachable(e))?;
        if found.1.rc == RC_NO_SUCH_OBJECT {
            return Err(self.refused("TargetNotFound", format!("no group entry {dn}")));
        }
        let (entries, _) = found
            .success()
            .map_err(|e| self.refused("TargetError", e))?;
        let mut out = Vec::new();
        for e in entries {
            let entry = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                SearchEntry::construct(e)
            }))
            .map_err(|_| {
                self.refused(
                    "TargetError",
                    "the server sent an entry that cannot be read",
                )
            })?;
            out.extend(entry.attrs);
        }
        Ok(out)
    }

    async fn modify(
        &self,
        ldap: &mut Ldap,
        group: &str,
        mods: Vec<Mod<String>>,
        ok: u32,
    ) -> Result<(), ConnectorError> {
        let done = ldap
            .with_timeout(self.timeout)
            .modify(group, mods)
            .await
            .map_err(|e| self.unreachable(e))?;
        match done.rc {
            0 => Ok(()),
            rc if rc == ok => Ok(()),
            RC_NO_SUCH_OBJECT => {
                Err(self.refused("TargetNotFound", format!("no group entry {group}")))
            }
            _ => Err(self.refused("TargetError", done)),
        }
    }
}

/// A rustls configuration trusting the certificates of the PEM file `path` (chain and host
/// name always verified).
fn tls_config(path: &str) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(super::pem_roots(path)?)
        .with_no_client_auth())
}

impl Connector for LdapConnector {
    fn apply<'a>(
        &'a self,
        grant: &'a Grant,
        _ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.session(async move |ldap: &mut Ldap| {
            let add = Mod::Add(
                self.member_attribute.clone(),
                HashSet::from([grant.principal.clone()]),
            );
            self.modify(ldap, &grant.target, vec![add], RC_VALUE_EXISTS)
                .await
        }))
    }

    fn revoke<'a>(
        &'a self,
        grant: &'a Grant,
        _ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.session(async move |ldap: &mut Ldap| {
            // A principal that is not a DN cannot be a member.
            let Some(wanted) = canonical_dn(&grant.principal) else {
                return Ok(());
            };
            let members = self.members(ldap, &grant.target).await?;
            let Some(value) = members
                .iter()
                .find(|m| canonical_dn(m).as_ref() == Some(&wanted))
            else {
                return Ok(());
            };
            let mut mods = vec![Mod::Delete(
                self.member_attribute.clone(),
                HashSet::from([value.clone()]),
            )];
            // The group's last member: keep it valid with the placeholder.
            if members.len() == 1
                && let Some(p) = &self.placeholder
            {
                mods.push(Mod::Add(
                    self.member_attribute.clone(),
                    HashSet::from([p.clone()]),
                ));
            }
            self.modify(ldap, &grant.target, mods, RC_NO_SUCH_ATTRIBUTE)
                .await
        }))
    }

    fn list<'a>(
        &'a self,
        targets: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Grant>, ConnectorError>> {
        Box::pin(self.session(async move |ldap: &mut Ldap| {
            let mut out = Vec::new();
            for target in targets {
                for m in self.members(ldap, target).await? {
                    if canonical_dn(&m).is_some_and(|c| !self.left_out.contains(&c)) {
                        out.push(Grant {
                            target: target.clone(),
                            principal: m,
                        });
                    }
                }
            }
            out.sort();
            Ok(out)
        }))
    }
}

/// Reads `ldap[s]://host[:port]` (an optional trailing `/`): the host and whether it is
/// `ldaps`.
fn parse_url(url: &str) -> Option<(String, bool)> {
    let (rest, tls) = match url.strip_prefix("ldaps://") {
        Some(r) => (r, true),
        None => (url.strip_prefix("ldap://")?, false),
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() || hostport.contains(['/', '?', '@']) {
        return None;
    }
    let host = match hostport.strip_prefix('[') {
        Some(b) => b.split(']').next().unwrap_or("").to_string(),
        None => {
            let (h, port) = hostport.split_once(':').unwrap_or((hostport, "1"));
            port.parse::<u16>().ok()?;
            h.to_string()
        }
    };
    Some((host, tls))
}

fn dn_field(doc: &mut Doc<'_>, t: &mut Table<'_, '_>, key: &str, required: bool) -> Option<String> {
    let v = if required {
        t.required_string(doc, key)?
    } else {
        t.string(doc, key)?
    };
    if parse_dn(v.get_ref()).is_none() {
        doc.problem(
            v.span(),
            &t.field(key),
            "must be an LDAP DN such as cn=rolegate,ou=services,dc=example,dc=net".into(),
        );
        return None;
    }
    Some(v.into_inner())
}

pub(crate) fn read(doc: &mut Doc<'_>, t: &mut Table<'_, '_>, insecure: bool) -> Option<LdapConfig> {
    let url = t.required_string(doc, "url");
    let starttls = t.boolean(doc, "starttls", false);
    let tls = t
        .string(doc, "tls_ca_file")
        .and_then(|f| match tls_config(f.get_ref()) {
            Ok(config) => Some(std::sync::Arc::new(config)),
            Err(e) => {
                doc.problem(f.span(), &t.field("tls_ca_file"), e);
                None
            }
        });
    let bind_dn = dn_field(doc, t, "bind_dn", true);
    let bind_password = t.required_secret(doc, "bind_password");
    let member_attribute = t
        .choice(
            doc,
            "member_attribute",
            "member",
            &[("member", "member"), ("uniqueMember", "uniqueMember")],
        )
        .to_string();
    let member_template = t.string(doc, "member_template").and_then(|s| {
        let sample = s.get_ref().replace("{value}", "x");
        if !s.get_ref().contains("{value}") || parse_dn(&sample).is_none() {
            doc.problem(
                s.span(),
                &t.field("member_template"),
                "must be a DN with {value} where the mapped value goes, such as uid={value},ou=people,dc=example,dc=net".into(),
            );
            return None;
        }
        Some(s.into_inner())
    });
    let placeholder_member = dn_field(doc, t, "placeholder_member", false);
    let url = url?;
    let field = t.field("url");
    let Some((host, ldaps)) = parse_url(url.get_ref()) else {
        doc.problem(
            url.span(),
            &field,
            "must be ldaps://HOST[:PORT] or ldap://HOST[:PORT]".into(),
        );
        return None;
    };
    if ldaps && starttls {
        doc.problem(
            url.span(),
            &t.field("starttls"),
            "StartTLS is for ldap:// URLs; ldaps:// is already TLS".into(),
        );
        return None;
    }
    if !ldaps && !starttls && !insecure && !super::is_loopback(&host) {
        doc.problem(
            url.span(),
            &field,
            format!(
                "a connection to {host} must use TLS: use ldaps:// or starttls = true, or set insecure = true"
            ),
        );
        return None;
    }
    Some(LdapConfig {
        url: url.into_inner(),
        starttls,
        tls,
        bind_dn: bind_dn?,
        bind_password: bind_password?,
        member_attribute,
        member_template,
        placeholder_member,
    })
}

/// A group DN.
pub(crate) fn target_problem(target: &str) -> Option<String> {
    parse_dn(target)
        .is_none()
        .then(|| "must be an LDAP DN such as cn=admins,ou=groups,dc=example,dc=net".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_member_values_say_where_the_next_range_starts() {
        assert_eq!(
            member_range("member;range=0-1499", "member"),
            Some(Some(1500))
        );
        assert_eq!(
            member_range("Member;Range=1500-2999", "member"),
            Some(Some(3000))
        );
        assert_eq!(member_range("member;range=3000-*", "member"), Some(None));
        // Other options beside the range, and a bound that cannot be read (last range).
        assert_eq!(
            member_range("member;binary;range=0-9", "member"),
            Some(Some(10))
        );
        assert_eq!(member_range("member;range=0-x", "member"), Some(None));
        // Not a ranged member value.
        assert_eq!(member_range("member", "member"), None);
        assert_eq!(member_range("uniqueMember;range=0-9", "member"), None);
        assert_eq!(member_range("member;lang-en", "member"), None);
    }

    #[test]
    fn dns_parse_with_escapes_and_multi_valued_rdns() {
        assert_eq!(
            parse_dn("uid=j\\+doe,ou=People, dc=example,dc=net"),
            Some(vec![
                vec![("uid".into(), "j+doe".into())],
                vec![("ou".into(), "People".into())],
                vec![("dc".into(), "example".into())],
                vec![("dc".into(), "net".into())],
            ])
        );
        assert_eq!(parse_dn("cn=a+sn=b,dc=x").map(|d| d[0].len()), Some(2));
        assert_eq!(
            parse_dn("cn=caf\\C3\\A9,dc=x").map(|d| d[0][0].1.clone()),
            Some("café".into())
        );
        assert_eq!(
            parse_dn("2.5.4.3=x,dc=y").map(|d| d[0][0].0.clone()),
            Some("2.5.4.3".into())
        );
        for bad in [
            "",
            "admins",
            "cn=a,",
            "=x",
            "cn=a\\",
            "cn=a;dc=b",
            "1cn=a",
            "cn=\\zz",
        ] {
            assert_eq!(parse_dn(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_are_escaped_so_a_principal_stays_one_rdn() {
        let t = Some("uid={value},ou=people,dc=example,dc=net");
        assert_eq!(
            principal(t, "j+doe"),
            Ok("uid=j\\+doe,ou=people,dc=example,dc=net".into())
        );
        let dn = principal(t, "#a, b;<c> \"d\"\\ ").unwrap();
        assert_eq!(
            dn,
            "uid=\\#a\\, b\\;\\<c\\> \\\"d\\\"\\\\\\ ,ou=people,dc=example,dc=net"
        );
        let parsed = parse_dn(&dn).unwrap();
        assert_eq!(parsed.len(), 4, "one RDN for the value");
        assert_eq!(escape_value("a\0b"), "a\\00b");
        assert_eq!(principal(None, "uid=x,dc=y"), Ok("uid=x,dc=y".into()));
        assert_eq!(principal(None, "alice"), Err(UnmappedReason::InvalidValue));
    }

    #[test]
    fn dns_compare_by_their_parsed_form() {
        assert_eq!(
            canonical_dn("UID=Alice,  OU=People ,dc=Example,DC=net"),
            canonical_dn("uid=alice,ou=people,dc=example,dc=net")
        );
        assert_eq!(
            canonical_dn("cn=a+sn=b,dc=x"),
            canonical_dn("SN=B+CN=A,dc=x")
        );
        assert_ne!(
            canonical_dn("uid=j\\+doe,dc=x"),
            canonical_dn("uid=j+doe=x,dc=x")
        );
        assert_eq!(
            canonical_dn("uid=j\\2Bdoe,dc=x"),
            canonical_dn("uid=J\\+Doe,dc=x")
        );
    }

    #[test]
    fn urls_name_a_host_and_say_whether_they_are_tls() {
        assert_eq!(
            parse_url("ldaps://ldap.example.net"),
            Some(("ldap.example.net".into(), true))
        );
        assert_eq!(
            parse_url("ldap://127.0.0.1:3890/"),
            Some(("127.0.0.1".into(), false))
        );
        for bad in [
            "http://x",
            "ldap://",
            "ldap://h:port",
            "ldap://h/dc=x",
            "ldap://u@h",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
    }
}
