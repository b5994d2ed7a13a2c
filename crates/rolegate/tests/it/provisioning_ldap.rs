//! The `ldap` connector end to end through `serve --connectors` (connectors.md §4–§8)
//! against a real OpenLDAP `slapd` started by the test on a loopback port with a throwaway
//! directory: activation adds the person's entry to the managed group, deactivation and the
//! end of a few-second schedule remove it, a group's (nested) members are added, an
//! ancestor scope counts and eligibility does not, a member added by hand is removed by
//! reconciliation with an audit record while an unmanaged group is never touched, and a
//! directory that is down leaves the activation successful and gets the member when it is
//! back. The directory is read and changed by hand with `ldapsearch`/`ldapmodify`. Skipped,
//! saying so, without Debian's `slapd` and `ldap-utils` (`.ci/run` installs them).

#[path = "../../../connectors/tests/support/slapd.rs"]
mod slapd;

use super::provisioning::{
    admin_add, assignment_of, cause_of, has_record, provisioning_records, scim_user,
};
use crate::fixture::*;
use crate::harness::{self, ADMIN, Server, TcpProxy, wait_until};
use serde_json::{Value, json};
use slapd::{
    ADMIN as DIRECTORY_ADMIN, ADMIN_PW, MANAGED, PLACEHOLDER, SERVICE, SERVICE_PW, UNMANAGED,
};
use std::io::Write;
use std::process::{Command, Stdio};

/// The entry of person `name` in the test directory.
fn entry(name: &str) -> String {
    format!("uid={name},ou=people,dc=example,dc=net")
}

/// The `member` values of `group`, read as the directory's administrator, lower-cased.
fn members(url: &str, group: &str) -> Vec<String> {
    let out = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            url,
            "-D",
            DIRECTORY_ADMIN,
        ])
        .args(["-w", ADMIN_PW, "-b", group, "-s", "base", "member"])
        .output()
        .unwrap_or_else(|e| panic!("ldapsearch: {e}"));
    assert!(
        out.status.success(),
        "ldapsearch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("member: "))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Adds `member` to `group` as the directory's administrator (a change behind Rolegate's
/// back).
fn add_by_hand(url: &str, group: &str, member: &str) {
    let mut child = Command::new("ldapmodify")
        .args(["-x", "-H", url, "-D", DIRECTORY_ADMIN, "-w", ADMIN_PW])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ldapmodify: {e}"));
    let ldif = format!("dn: {group}\nchangetype: modify\nadd: member\nmember: {member}\n");
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(ldif.as_bytes()))
        .unwrap_or_else(|| panic!("ldapmodify stdin"))
        .unwrap_or_else(|e| panic!("ldapmodify: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("ldapmodify: {e}"));
    assert!(
        out.status.success(),
        "ldapmodify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_ldap_connector_follows_activations_through_serve() {
    let test = "an_ldap_connector_follows_activations_through_serve";
    if !std::path::Path::new("/usr/bin/ldapmodify").exists() {
        harness::skip(test, "no ldapmodify (apt-get install ldap-utils)");
        return;
    }
    let Some(directory) = slapd::slapd() else {
        harness::skip(test, "no slapd (apt-get install slapd)");
        return;
    };
    let url = directory.url.clone();
    let has = |name: &str| members(&url, MANAGED).contains(&entry(name));
    // Rolegate reaches the directory through a proxy the test can cut.
    let proxy = TcpProxy::start(&format!("127.0.0.1:{}", directory.port));
    let sub_arm = format!("/subscriptions/{}", guid());
    let rg_arm = format!("{sub_arm}/resourceGroups/directory");
    let dir = std::env::temp_dir().join(format!("rolegate-it-ldap-{}", harness::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("connectors.toml");
    std::fs::write(
        &file,
        format!(
            "[connectors.dir]\nkind = \"ldap\"\nurl = \"ldap://127.0.0.1:{port}\"\n\
             bind_dn = \"{SERVICE}\"\nbind_password = \"${{LDAP_PW}}\"\n\
             member_template = \"uid={{value}},ou=people,dc=example,dc=net\"\n\
             placeholder_member = \"{PLACEHOLDER}\"\nprincipal = [\"userNameLocalPart\"]\n\
             reconcile_interval = \"1s\"\ntimeout = \"2s\"\n\
             [[connectors.dir.rules]]\nrole = \"Contributor\"\nscope = \"{rg_arm}\"\n\
             target = \"{MANAGED}\"\n",
            port = proxy.port,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = Server::start_with_env(&[
        ("ROLEGATE_CONNECTORS", &file.to_string_lossy()),
        ("LDAP_PW", SERVICE_PW),
    ]);
    let admin = harness::token(ADMIN, true);
    register(&s, &admin, &rg_arm);
    let sub = resource_id(&s, &admin, &sub_arm);
    let rg = resource_id(&s, &admin, &rg_arm);
    let sub_contributor = role_id(&s, &admin, &sub, CONTRIBUTOR);
    let rg_contributor = role_id(&s, &admin, &rg, CONTRIBUTOR);
    let person = |name: &str| {
        let id = scim_user(&s, &admin, &format!("{name}@example.test"), name);
        let token = harness::token(&id, true);
        (id, token)
    };

    // Alice, eligible on the subscription (an ancestor of the rule's scope), activates
    // there for a few seconds: added, then removed at the end.
    let (alice, alice_token) = person("alice");
    admin_add(
        &s,
        &admin,
        "Eligible",
        &sub,
        &sub_contributor,
        &alice,
        "P30D",
    );
    let eligible = assignment_of(&s, &admin, &sub, &alice);
    let r = post_request(
        &s,
        &alice_token,
        &activation(&sub, &sub_contributor, &alice, Some(&eligible), "PT4S"),
    );
    assert_eq!(r.status, 201, "activate: {}", r.text);
    wait_until(10, "alice's activation adds her to the group", || {
        has("alice")
    });
    wait_until(20, "the end of alice's activation removes her", || {
        !has("alice")
    });

    // Bob activates on the resource group for an hour and deactivates: removed.
    let (bob, bob_token) = person("bob");
    admin_add(&s, &admin, "Eligible", &rg, &rg_contributor, &bob, "P30D");
    let r = post_request(
        &s,
        &bob_token,
        &activation(&rg, &rg_contributor, &bob, None, "PT1H"),
    );
    assert_eq!(r.status, 201, "activate: {}", r.text);
    wait_until(10, "bob's activation adds him", || has("bob"));
    let remove = request_body("UserRemove", "Active", &rg, &rg_contributor, &bob);
    let r = post_request(&s, &bob_token, &remove);
    assert_eq!(r.status, 201, "deactivate: {}", r.text);
    wait_until(10, "bob's deactivation removes him", || !has("bob"));

    // A group with a nested group, active on the subscription: every member added.
    let (carol, _) = person("carol");
    let (dave, _) = person("dave");
    let inner = create_group(&s, &admin, "inner", &[&dave]);
    let group = create_group(&s, &admin, "operators", &[&carol, &inner]);
    admin_add(&s, &admin, "Active", &sub, &sub_contributor, &group, "P1D");
    wait_until(10, "the group's members are added", || {
        has("carol") && has("dave")
    });

    // A member added by hand is removed by reconciliation, with an audit record; the
    // unmanaged group keeps what was added to it by hand.
    add_by_hand(&url, MANAGED, &entry("mallory"));
    add_by_hand(&url, UNMANAGED, &entry("carol"));
    wait_until(
        15,
        "reconciliation removes the member added by hand",
        || !has("mallory"),
    );
    wait_until(10, "the removal is recorded", || {
        has_record(
            &provisioning_records(&s, &admin),
            "Revoke grant made outside Rolegate",
            &entry("mallory"),
        )
    });
    assert!(
        members(&url, UNMANAGED).contains(&entry("carol")),
        "an unmanaged group was touched"
    );
    assert!(
        members(&url, MANAGED).contains(&PLACEHOLDER.to_ascii_lowercase()),
        "the placeholder member was removed"
    );

    // Eligible only: nothing; alice is eligible on the subscription and no longer active.
    let (erin, _) = person("erin");
    admin_add(&s, &admin, "Eligible", &rg, &rg_contributor, &erin, "P30D");

    // The directory down: the activation still succeeds; the member is added once the
    // directory is back.
    proxy.cut();
    let (frank, _) = person("frank");
    let added = admin_add(&s, &admin, "Active", &rg, &rg_contributor, &frank, "P1D");
    assert_eq!(
        status_of(&added),
        ("Closed", "Provisioned"),
        "with the directory down"
    );
    wait_until(15, "a failed attempt is logged", || {
        s.log().contains("connector attempt failed; will retry")
    });
    assert!(!has("frank"));
    proxy.resume();
    wait_until(20, "frank is added once the directory is back", || {
        has("frank")
    });
    let mut now: Vec<String> = members(&url, MANAGED);
    now.sort();
    let mut expected = vec![
        entry("carol"),
        entry("dave"),
        entry("frank"),
        PLACEHOLDER.to_ascii_lowercase(),
    ];
    expected.sort();
    assert_eq!(now, expected, "erin (eligible) or another is in the group");

    // Directory changes through SCIM: carol leaves the group, frank is disabled, dave is
    // deleted; each loses the membership, with a revoke record.
    let patch = |path: &str, op: Value| {
        let r = s.call(
            "PATCH",
            path,
            Some(&admin),
            Some(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                         "Operations": [op]}),
            ),
        );
        assert!(r.status < 300, "PATCH {path}: {}", r.text);
    };
    patch(
        &format!("/scim/v2/Groups/{group}"),
        json!({"op": "remove", "path": format!("members[value eq \"{carol}\"]")}),
    );
    wait_until(10, "carol, out of the group, is removed", || !has("carol"));
    patch(
        &format!("/scim/v2/Users/{frank}"),
        json!({"op": "replace", "path": "active", "value": false}),
    );
    wait_until(10, "frank, disabled, is removed", || !has("frank"));
    let r = s.call(
        "DELETE",
        &format!("/scim/v2/Users/{dave}"),
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text);
    wait_until(10, "dave, deleted, is removed", || !has("dave"));
    assert_eq!(
        members(&url, MANAGED),
        vec![PLACEHOLDER.to_ascii_lowercase()],
        "the placeholder stays when the last member leaves"
    );

    // An assignment made to start a few seconds later is granted at its start.
    let (gina, _) = person("gina");
    let mut body = request_body("AdminAdd", "Active", &rg, &rg_contributor, &gina);
    body["schedule"] =
        json!({"type": "Once", "startDateTime": from_now(3).to_string(), "duration": "PT1H"});
    let r = post_request(&s, &admin, &body);
    assert_eq!(r.status, 201, "future AdminAdd: {}", r.text);
    assert!(!has("gina"), "granted before its start");
    wait_until(15, "gina is added when her assignment starts", || {
        has("gina")
    });

    // The directory is changed before each operation is settled and recorded.
    let expected_records = [
        ("Grant connector access", "alice"),
        ("Revoke connector access", "alice"),
        ("Revoke connector access", "bob"),
        ("Grant connector access", "frank"),
        ("Revoke connector access", "carol"),
        ("Revoke connector access", "frank"),
        ("Revoke connector access", "dave"),
        ("Grant connector access", "gina"),
    ];
    wait_until(10, "every operation is recorded", || {
        let records = provisioning_records(&s, &admin);
        expected_records
            .iter()
            .all(|(activity, who)| has_record(&records, activity, &entry(who)))
    });
    // Each record says why (connectors.md §5.3 `cause`).
    let records = provisioning_records(&s, &admin);
    let causes: Vec<(&str, &str, String)> = [
        ("Revoke connector access", "alice"),
        ("Revoke connector access", "bob"),
        ("Grant connector access", "dave"),
        ("Revoke connector access", "carol"),
        ("Revoke connector access", "frank"),
        ("Revoke connector access", "dave"),
        ("Grant connector access", "gina"),
    ]
    .into_iter()
    .map(|(activity, who)| {
        let cause = cause_of(&records, activity, &entry(who)).unwrap_or_default();
        (activity, who, cause)
    })
    .collect();
    let expected: Vec<(&str, &str, String)> = [
        ("Revoke connector access", "alice", "ended"),
        ("Revoke connector access", "bob", "assignment"),
        ("Grant connector access", "dave", "assignment"),
        ("Revoke connector access", "carol", "membership"),
        ("Revoke connector access", "frank", "directory"),
        ("Revoke connector access", "dave", "directory"),
        ("Grant connector access", "gina", "started"),
    ]
    .into_iter()
    .map(|(a, w, c)| (a, w, c.to_string()))
    .collect();
    assert_eq!(causes, expected);
    let log = s.log();
    assert!(!log.contains(SERVICE_PW), "the bind password is in the log");
    std::fs::remove_dir_all(dir).ok();
}
