//! The `ldap` kind against a real OpenLDAP `slapd` started by the test on a free loopback
//! port with a throwaway configuration (connectors.md §5.2): the service account may write
//! the `member` attribute of the managed group only. Skipped, saying so, without Debian's
//! `slapd` (`.ci/run` installs it).

use ldap3::{LdapConnAsync, Mod, Scope, SearchEntry};
use rolegate_connectors::config::parse;
use rolegate_connectors::connector::{ApplyContext, Connector, Grant};
use rolegate_connectors::kind::KindConfig;
use rolegate_connectors::kind::ldap::{LdapConnector, canonical_dn, principal};
use std::collections::HashSet;
use std::time::Duration;

#[path = "support/slapd.rs"]
mod slapd;
use slapd::*;

fn connector(url: &str, ignore: &[&str]) -> LdapConnector {
    connector_with(url, ignore, "")
}

/// A connector with `extra` keys (TLS settings).
fn connector_with(url: &str, ignore: &[&str], extra: &str) -> LdapConnector {
    let text = format!(
        "[connectors.dir]\nkind = \"ldap\"\nurl = \"{url}\"\n{extra}\nbind_dn = \"{SERVICE}\"\n\
         bind_password = \"${{LDAP_PW}}\"\nmember_template = \"{TEMPLATE}\"\n\
         placeholder_member = \"{PLACEHOLDER}\"\nignore_members = {ignore:?}\n\
         [[connectors.dir.rules]]\nrole = \"Owner\"\n\
         scope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"{MANAGED}\"\n"
    );
    let config =
        parse("t.toml", &text, &[("LDAP_PW", SERVICE_PW)]).unwrap_or_else(|p| panic!("{p:#?}"));
    let c = &config.connectors[0];
    let KindConfig::Ldap(l) = &c.kind else {
        panic!("{:?}", c.kind)
    };
    LdapConnector::new(l, &c.ignore_members, c.timeout)
}

/// A session as the directory's administrator.
async fn admin(url: &str) -> ldap3::Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ldap3::drive!(conn);
    ldap.simple_bind(ADMIN, ADMIN_PW)
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("{e}"));
    ldap
}

/// The member values of `group`, read as the directory's administrator.
async fn members(url: &str, group: &str) -> Vec<String> {
    let (entries, _) = admin(url)
        .await
        .search(group, Scope::Base, "(objectClass=*)", vec!["member"])
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out: Vec<String> = entries
        .into_iter()
        .flat_map(|e| {
            SearchEntry::construct(e)
                .attrs
                .remove("member")
                .unwrap_or_default()
        })
        .collect();
    out.sort();
    out
}

async fn admin_modify(url: &str, group: &str, m: Mod<String>) {
    admin(url)
        .await
        .modify(group, vec![m])
        .await
        .and_then(|r| r.success())
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The canonical forms of `dns`, sorted.
fn canon(dns: &[impl AsRef<str>]) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = dns.iter().map(|d| canonical_dn(d.as_ref())).collect();
    out.sort();
    out
}

fn grant(value: &str) -> Grant {
    Grant {
        target: MANAGED.into(),
        principal: principal(Some(TEMPLATE), value).unwrap_or_else(|e| panic!("{e:?}")),
    }
}

#[tokio::test]
async fn members_are_added_listed_and_removed_in_the_managed_group() {
    let Some(server) = slapd() else { return };
    let url = server.url.as_str();
    let c = connector(url, &["uid=dba-oncall,ou=people,dc=example,dc=net"]);
    let ctx = ApplyContext::default();

    c.apply(&grant("alice"), &ctx).await.unwrap();
    c.apply(&grant("alice"), &ctx).await.unwrap();
    c.apply(&grant("j+doe"), &ctx).await.unwrap();
    // slapd stores `\+` as `\2B`: the same DN, compared by its parsed form.
    assert_eq!(
        canon(&members(url, MANAGED).await),
        canon(&[
            PLACEHOLDER,
            "uid=alice,ou=people,dc=example,dc=net",
            "uid=j\\+doe,ou=people,dc=example,dc=net",
        ]),
    );

    // A member added by hand in another spelling, and an ignored one.
    admin_modify(
        url,
        MANAGED,
        Mod::Add(
            "member".into(),
            HashSet::from(["UID=Bob, OU=People,DC=example,DC=net".to_string()]),
        ),
    )
    .await;
    admin_modify(
        url,
        MANAGED,
        Mod::Add(
            "member".into(),
            HashSet::from(["uid=dba-oncall,ou=people,dc=example,dc=net".to_string()]),
        ),
    )
    .await;
    let listed = c.list(&[MANAGED.to_string()]).await.unwrap();
    let canonical: Vec<Option<String>> =
        listed.iter().map(|g| canonical_dn(&g.principal)).collect();
    let mut want = vec![
        canonical_dn("uid=alice,ou=people,dc=example,dc=net"),
        canonical_dn("uid=bob,ou=people,dc=example,dc=net"),
        canonical_dn("uid=j\\+doe,ou=people,dc=example,dc=net"),
    ];
    want.sort();
    let mut got = canonical.clone();
    got.sort();
    assert_eq!(
        got, want,
        "no placeholder, no service account, no ignored member: {listed:?}"
    );

    // Removed whatever the spelling; the last member leaves the placeholder in place.
    c.revoke(&grant("bob"), &ctx).await.unwrap();
    c.revoke(&grant("alice"), &ctx).await.unwrap();
    c.revoke(&grant("alice"), &ctx).await.unwrap();
    c.revoke(&grant("j+doe"), &ctx).await.unwrap();
    assert_eq!(
        canon(&members(url, MANAGED).await),
        canon(&[PLACEHOLDER, "uid=dba-oncall,ou=people,dc=example,dc=net"])
    );

    // The last member removed: the placeholder keeps the group valid (groupOfNames needs a
    // member).
    let member = |dn: &str| HashSet::from([dn.to_string()]);
    let carol = "uid=carol,ou=people,dc=example,dc=net";
    admin_modify(url, MANAGED, Mod::Add("member".into(), member(carol))).await;
    for dn in [PLACEHOLDER, "uid=dba-oncall,ou=people,dc=example,dc=net"] {
        admin_modify(url, MANAGED, Mod::Delete("member".into(), member(dn))).await;
    }
    c.apply(&grant("alice"), &ctx).await.unwrap();
    admin_modify(url, MANAGED, Mod::Delete("member".into(), member(carol))).await;
    assert_eq!(
        canon(&members(url, MANAGED).await),
        canon(&["uid=alice,ou=people,dc=example,dc=net"])
    );
    c.revoke(&grant("alice"), &ctx).await.unwrap();
    assert_eq!(canon(&members(url, MANAGED).await), canon(&[PLACEHOLDER]));

    // The service account may not write other groups: least privilege holds.
    let other = Grant {
        target: UNMANAGED.into(),
        principal: "uid=alice,ou=people,dc=example,dc=net".into(),
    };
    let e = c.apply(&other, &ctx).await.unwrap_err();
    assert!(!e.unreachable, "{e}");
    assert_eq!(members(url, UNMANAGED).await, vec![PLACEHOLDER.to_string()]);

    // A group that does not exist: list fails whole, never an empty answer.
    let e = c
        .list(&[
            MANAGED.to_string(),
            "cn=absent,ou=groups,dc=example,dc=net".to_string(),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.code, "TargetNotFound", "{e}");
}

#[tokio::test]
async fn a_wrong_password_or_a_down_server_fails_clearly() {
    if let Some(server) = slapd() {
        let text = format!(
            "[connectors.dir]\nkind = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{SERVICE}\"\n\
             bind_password = \"${{LDAP_PW}}\"\n[[connectors.dir.rules]]\nrole = \"Owner\"\n\
             scope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"{MANAGED}\"\n",
            server.url
        );
        let config = parse("t.toml", &text, &[("LDAP_PW", "wrong-Password-3")])
            .unwrap_or_else(|p| panic!("{p:#?}"));
        let KindConfig::Ldap(l) = &config.connectors[0].kind else {
            panic!("{:?}", config.connectors[0].kind)
        };
        let c = LdapConnector::new(l, &[], Duration::from_secs(5));
        let e = c.list(&[MANAGED.to_string()]).await.unwrap_err();
        assert_eq!(e.code, "BindFailed", "{e}");
        assert!(!e.unreachable);
        assert!(!e.message.contains("wrong-Password-3"), "{e}");
    }
    let down = connector("ldap://127.0.0.1:9", &[]);
    let e = down.list(&[MANAGED.to_string()]).await.unwrap_err();
    assert!(e.unreachable, "{e}");
    assert!(!e.message.contains(SERVICE_PW));
}

#[tokio::test]
async fn tls_is_verified_for_ldaps_and_starttls() {
    let Some(server) = slapd() else { return };
    let ca = format!("tls_ca_file = \"{}\"", tls_file("ca.pem"));
    let targets = [MANAGED.to_string()];
    // ldaps:// and StartTLS, each verifying the server against the given CA and host name.
    let ldaps = connector_with(&format!("ldaps://localhost:{}", server.tls_port), &[], &ca);
    ldaps
        .apply(&grant("alice"), &ApplyContext::default())
        .await
        .unwrap();
    assert_eq!(ldaps.list(&targets).await.unwrap().len(), 1);
    let starttls = connector_with(
        &format!("ldap://localhost:{}", server.port),
        &[],
        &format!("{ca}\nstarttls = true"),
    );
    starttls
        .revoke(&grant("alice"), &ApplyContext::default())
        .await
        .unwrap();
    assert!(starttls.list(&targets).await.unwrap().is_empty());
    // Not trusted without the CA (the system's roots do not know it), and a certificate
    // for localhost does not do for 127.0.0.1: verification cannot be switched off.
    let untrusted = connector_with(&format!("ldaps://localhost:{}", server.tls_port), &[], "");
    let e = untrusted.list(&targets).await.unwrap_err();
    assert!(e.unreachable && e.message.contains("UnknownIssuer"), "{e}");
    let wrong_name = connector_with(&format!("ldaps://127.0.0.1:{}", server.tls_port), &[], &ca);
    let e = wrong_name.list(&targets).await.unwrap_err();
    assert!(
        e.unreachable && e.message.contains("not valid for name"),
        "{e}"
    );
}
