//! Provisioning connectors end to end (connectors.md §4, §6, §7, §8) against the machine's
//! real PostgreSQL: `serve --connectors FILE` grants a database role when a role is
//! activated, revokes it when the activation is removed or its few-second schedule ends
//! (with the scheduler slowed to a minute, so the connector's own timer does it), follows
//! groups and ancestor scopes, grants nothing for eligibility, and its reconciliation
//! revokes a grant made by hand, with audit records; a target that is down leaves the
//! activation successful and the grant is applied when it comes back. Each run creates its
//! own roles (random names) and drops them. Skipped, saying so, without PostgreSQL.

use crate::fixture::*;
use crate::harness::{self, ADMIN, Server, TcpProxy, wait_until};
use serde_json::{Value, json};

/// The roles of one run on the test PostgreSQL server, dropped at the end.
struct Roles {
    admin: postgres::Client,
    prefix: String,
}

impl Roles {
    /// A run's roles: `prefix_app_admin` (managed target), `prefix_other` (unmanaged),
    /// login roles for `people`, and `prefix_prov`, the connector's account, holding ADMIN
    /// OPTION on the managed target only. `None` without PostgreSQL.
    fn create(test: &str, people: &[&str]) -> Option<Roles> {
        let admin = match harness::postgres_client() {
            Ok(c) => c,
            Err(e) => {
                harness::skip(
                    test,
                    &format!("no PostgreSQL at {} ({e})", harness::postgres_url()),
                );
                return None;
            }
        };
        let digits: String = harness::uuid_like()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let mut roles = Roles {
            admin,
            prefix: format!("rgp{}", &digits[digits.len().saturating_sub(12)..]),
        };
        let mut sql = format!(
            "CREATE ROLE {0}_app_admin NOLOGIN; CREATE ROLE {0}_other NOLOGIN; \
             CREATE ROLE {0}_prov LOGIN NOINHERIT; GRANT {0}_app_admin TO {0}_prov WITH ADMIN OPTION;",
            roles.prefix
        );
        for p in people {
            sql.push_str(&format!("CREATE ROLE {}_{p} LOGIN;", roles.prefix));
        }
        roles
            .admin
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("create roles: {e}"));
        Some(roles)
    }

    fn name(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    /// The members of role `target`, sorted.
    fn members(&mut self, target: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .admin
            .query(
                "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1",
                &[&self.name(target)],
            )
            .unwrap_or_else(|e| panic!("members: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.sort();
        out
    }

    fn has(&mut self, target: &str, person: &str) -> bool {
        let who = self.name(person);
        self.members(target).contains(&who)
    }

    fn exec(&mut self, sql: &str) {
        self.admin
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        if let Ok(rows) = self.admin.query(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&self.prefix],
        ) {
            for r in rows {
                let name: String = r.get(0);
                let _ = self
                    .admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS {name}"));
            }
        }
    }
}

/// `host:port/database` of the test PostgreSQL server.
fn pg_address() -> (String, String) {
    let url = harness::postgres_url();
    let rest = url.rsplit_once('@').map_or(url.as_str(), |(_, r)| r);
    let (host, database) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let database = database.split('?').next().unwrap_or("postgres");
    (host.to_string(), database.to_string())
}

/// A connectors file granting `prefix_app_admin` to whoever holds Contributor on `scope`,
/// connecting as `prefix_prov` to `host`.
fn connectors_file(roles: &Roles, host: &str, scope: &str, extra: &str) -> std::path::PathBuf {
    let (_, database) = pg_address();
    let text = format!(
        "[connectors.pg]\nkind = \"postgresql\"\n\
         url = \"postgresql://{prov}@{host}/{database}\"\n\
         principal = [\"userNameLocalPart\"]\nreconcile_interval = \"1s\"\ntimeout = \"2s\"\n{extra}\n\
         [[connectors.pg.rules]]\nrole = \"Contributor\"\nscope = \"{scope}\"\ntarget = \"{target}\"\n",
        prov = roles.name("prov"),
        target = roles.name("app_admin"),
    );
    let dir = std::env::temp_dir().join(format!("rolegate-it-prov-{}", harness::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("connectors.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// A SCIM user whose `userName` local part is the run's role for `person`, and a token.
fn person(s: &Server, admin: &str, roles: &Roles, person: &str) -> (String, String) {
    let id = scim_user(
        s,
        admin,
        &format!("{}@example.test", roles.name(person)),
        person,
    );
    let token = harness::token(&id, true);
    (id, token)
}

/// A new SCIM user; its id.
pub(crate) fn scim_user(s: &Server, admin: &str, user_name: &str, display_name: &str) -> String {
    let r = s.call(
        "POST",
        "/scim/v2/Users",
        Some(admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "displayName": display_name,
        })),
    );
    assert_eq!(r.status, 201, "SCIM create user: {}", r.text);
    r.json["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no user id: {}", r.text))
        .to_string()
}

/// An AdminAdd of `state` (`Active`, `Eligible`) lasting `duration` from now, through
/// `s`, that must succeed; the request as answered.
pub(crate) fn admin_add(
    s: &Server,
    admin: &str,
    state: &str,
    resource: &str,
    role: &str,
    subject: &str,
    duration: &str,
) -> Value {
    let mut body = request_body("AdminAdd", state, resource, role, subject);
    body["schedule"] = lasting(duration);
    let r = post_request(s, admin, &body);
    assert_eq!(r.status, 201, "AdminAdd: {}", r.text);
    r.json
}

/// Provisioning audit records, newest first.
pub(crate) fn provisioning_records(s: &Server, token: &str) -> Vec<Value> {
    let r = s.get(
        &format!(
            "/beta/auditLogs/directoryAudits?$filter={}&$top=200",
            enc("category eq 'Provisioning'")
        ),
        token,
    );
    assert_eq!(r.status, 200, "audit: {}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

/// The id of `subject`'s assignment on `resource` (its first, as listed there).
pub(crate) fn assignment_of(s: &Server, admin: &str, resource: &str, subject: &str) -> String {
    list_assignments(s, admin, resource)
        .into_iter()
        .find(|a| a["subjectId"] == subject)
        .and_then(|a| a["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no assignment of {subject} on {resource}"))
}

/// `GET …/roleAssignments/{assignment}/connectorGrants` as `token`: the rows, after
/// checking the answer is 200.
fn connector_grants(s: &Server, token: &str, assignment: &str) -> Vec<Value> {
    let r = s.get(
        &format!(
            "/beta/privilegedAccess/azureResources/roleAssignments/{assignment}/connectorGrants"
        ),
        token,
    );
    assert_eq!(r.status, 200, "connectorGrants: {}", r.text);
    r.json["value"].as_array().cloned().unwrap_or_default()
}

/// The (principal, state) of each row, sorted.
fn grant_states(rows: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["principal"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

pub(crate) fn has_record(records: &[Value], activity: &str, principal: &str) -> bool {
    records.iter().any(|r| is_record(r, activity, principal))
}

/// Whether `record` is of `activity` about `principal`.
pub(crate) fn is_record(record: &Value, activity: &str, principal: &str) -> bool {
    record["activityDisplayName"] == activity
        && record["additionalDetails"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["key"] == "principal" && d["value"] == principal)
        })
}

#[test]
fn activations_grant_and_their_end_revokes_a_postgresql_role() {
    let Some(mut roles) = Roles::create(
        "activations_grant_and_their_end_revokes_a_postgresql_role",
        &["alice", "bob", "carol", "dave", "erin", "mallory"],
    ) else {
        return;
    };
    let sub_arm = format!("/subscriptions/{}", guid());
    let rg_arm = format!("{sub_arm}/resourceGroups/analytics");
    let (host, _) = pg_address();
    let file = connectors_file(&roles, &host, &rg_arm, "");
    let file = file.to_string_lossy().to_string();
    // The scheduler is slowed to a minute: ends are the connector's own timer's work.
    let s = Server::start_with(&["--connectors", &file, "--scheduler-interval", "60"]);
    let admin = harness::token(ADMIN, true);
    register(&s, &admin, &rg_arm);
    let sub = resource_id(&s, &admin, &sub_arm);
    let rg = resource_id(&s, &admin, &rg_arm);
    let contributor = role_id(&s, &admin, &sub, CONTRIBUTOR);
    let add = |subject: &str, state: &str, resource: &str, role: &str, duration: &str| {
        admin_add(&s, &admin, state, resource, role, subject, duration);
    };

    // Alice is eligible on the subscription (an ancestor of the rule's scope): nothing yet.
    let (alice, alice_token) = person(&s, &admin, &roles, "alice");
    add(&alice, "Eligible", &sub, &contributor, "P30D");
    // Erin is active on a resource group *below* nothing the rule covers: another group.
    let (erin, _) = person(&s, &admin, &roles, "erin");
    register(&s, &admin, &format!("{sub_arm}/resourceGroups/other"));
    let other = resource_id(&s, &admin, &format!("{sub_arm}/resourceGroups/other"));
    add(
        &erin,
        "Active",
        &other,
        &role_id(&s, &admin, &other, CONTRIBUTOR),
        "P1D",
    );
    // Alice activates for a few seconds: granted, then revoked at the end by the timer.
    let eligible = list_assignments(&s, &admin, &sub)
        .into_iter()
        .find(|a| a["subjectId"] == alice.as_str())
        .and_then(|a| a["id"].as_str().map(str::to_string))
        .expect("alice's eligibility");
    let r = post_request(
        &s,
        &alice_token,
        &activation(&sub, &contributor, &alice, Some(&eligible), "PT4S"),
    );
    assert_eq!(r.status, 201, "activate: {}", r.text);
    let alice_request = r.json["id"].as_str().unwrap_or_default().to_string();
    wait_until(10, "alice's activation is granted in PostgreSQL", || {
        roles.has("app_admin", "alice")
    });
    wait_until(20, "alice's activation ends in PostgreSQL", || {
        !roles.has("app_admin", "alice")
    });

    // Bob activates for an hour and deactivates himself: revoked.
    let (bob, bob_token) = person(&s, &admin, &roles, "bob");
    add(
        &bob,
        "Eligible",
        &rg,
        &role_id(&s, &admin, &rg, CONTRIBUTOR),
        "P30D",
    );
    let rg_contributor = role_id(&s, &admin, &rg, CONTRIBUTOR);
    let r = post_request(
        &s,
        &bob_token,
        &activation(&rg, &rg_contributor, &bob, None, "PT1H"),
    );
    assert_eq!(r.status, 201, "activate: {}", r.text);
    wait_until(10, "bob's activation is granted", || {
        roles.has("app_admin", "bob")
    });
    let remove = request_body("UserRemove", "Active", &rg, &rg_contributor, &bob);
    let r = post_request(&s, &bob_token, &remove);
    assert_eq!(r.status, 201, "deactivate: {}", r.text);
    wait_until(10, "bob's deactivation is revoked", || {
        !roles.has("app_admin", "bob")
    });

    // Carol and dave through a group active on the subscription: both granted.
    let (carol, carol_token) = person(&s, &admin, &roles, "carol");
    let (dave, _) = person(&s, &admin, &roles, "dave");
    let inner = create_group(&s, &admin, "inner", &[&dave]);
    let group = create_group(&s, &admin, "analysts", &[&carol, &inner]);
    add(&group, "Active", &sub, &contributor, "P1D");
    wait_until(10, "the group's members are granted", || {
        roles.has("app_admin", "carol") && roles.has("app_admin", "dave")
    });
    // The group's assignment shows each member's grant: carol sees her own row only, the
    // tenant administrator both, once their items are settled.
    let group_assignment = assignment_of(&s, &admin, &sub, &group);
    let applied = |who: &str| (roles.name(who), "applied".to_string());
    wait_until(10, "both grants show as applied", || {
        grant_states(&connector_grants(&s, &admin, &group_assignment))
            == vec![applied("carol"), applied("dave")]
    });
    let mine = connector_grants(&s, &carol_token, &group_assignment);
    assert_eq!(grant_states(&mine), vec![applied("carol")], "{mine:#?}");
    assert_eq!(mine[0]["connector"], "pg");
    assert_eq!(mine[0]["kind"], "postgresql");
    assert_eq!(mine[0]["target"], json!(roles.name("app_admin")));
    assert_eq!(mine[0]["subjectId"], json!(carol));
    assert!(mine[0]["since"].is_string(), "{mine:#?}");

    // Mallory is granted by hand, and the unmanaged role to carol too: reconciliation
    // revokes the first (an audit record says so) and never touches the second.
    let (mallory, other_role) = (roles.name("mallory"), roles.name("other"));
    roles.exec(&format!(
        "GRANT {} TO {mallory}; GRANT {other_role} TO {}",
        roles.name("app_admin"),
        roles.name("carol")
    ));
    wait_until(15, "reconciliation revokes the grant made by hand", || {
        !roles.has("app_admin", "mallory")
    });
    // The revocation is made in PostgreSQL before its run is settled and recorded.
    wait_until(10, "the revocation is recorded", || {
        has_record(
            &provisioning_records(&s, &admin),
            "Revoke grant made outside Rolegate",
            &mallory,
        )
    });
    assert!(roles.has("other", "carol"), "an unmanaged role was touched");
    // Eligible alone, or active elsewhere, never granted anything.
    assert!(!roles.has("app_admin", "alice"));
    assert!(
        !roles.has("app_admin", "erin"),
        "{erin} granted by a sibling scope"
    );

    let records = provisioning_records(&s, &admin);
    let alice_role = roles.name("alice");
    assert!(
        has_record(&records, "Grant connector access", &alice_role),
        "{records:#?}"
    );
    assert!(
        has_record(&records, "Revoke connector access", &alice_role),
        "{records:#?}"
    );
    assert!(
        has_record(&records, "Revoke grant made outside Rolegate", &mallory),
        "{records:#?}"
    );
    let grant = records
        .iter()
        .find(|r| r["activityDisplayName"] == "Grant connector access")
        .expect("a grant record");
    assert_eq!(
        grant["initiatedBy"]["app"]["displayName"],
        "Rolegate connectors"
    );
    assert_eq!(grant["targetResources"][0]["type"], "ConnectorTarget");
    let ended = records.iter().any(|r| {
        r["activityDisplayName"] == "Revoke connector access"
            && r["additionalDetails"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|d| d["key"] == "cause" && d["value"] == "ended")
            })
    });
    assert!(ended, "no revoke caused by an end: {records:#?}");
    // decisions §11: R3 holders read the records about their resources. An Owner of the
    // subscription reads the grant record of alice's activation there; a person without a
    // role there reads no audit at all.
    let grant_record = records
        .iter()
        .find(|r| is_record(r, "Grant connector access", &alice_role))
        .cloned()
        .unwrap_or_default();
    let detail = |r: &Value, key: &str| {
        r["additionalDetails"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["key"] == key))
            .map(|d| d["value"].clone())
    };
    assert_eq!(
        detail(&grant_record, "resourceId"),
        Some(json!(sub)),
        "{grant_record:#}"
    );
    // §7.5: the request behind the grant is named; a reconciliation's records name it.
    assert_eq!(
        detail(&grant_record, "requestId"),
        Some(json!(alice_request)),
        "{grant_record:#}"
    );
    let outside = records
        .iter()
        .find(|r| is_record(r, "Revoke grant made outside Rolegate", &mallory))
        .cloned()
        .unwrap_or_default();
    assert_eq!(detail(&outside, "cause"), Some(json!("reconcile")));
    assert!(
        detail(&outside, "reconcileId")
            .is_some_and(|id| id.as_str().is_some_and(|id| !id.is_empty())),
        "{outside:#}"
    );
    let (owner, owner_token) = person(&s, &admin, &roles, "owner");
    add(
        &owner,
        "Active",
        &sub,
        &role_id(&s, &admin, &sub, OWNER),
        "P1D",
    );
    // The revoke at the end of alice's activation names the same assignment and resource,
    // though the assignment has ended.
    let revoke_record = records
        .iter()
        .find(|r| is_record(r, "Revoke connector access", &alice_role))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        detail(&revoke_record, "resourceId"),
        Some(json!(sub)),
        "{revoke_record:#}"
    );
    assert_eq!(
        detail(&revoke_record, "assignmentId"),
        detail(&grant_record, "assignmentId"),
        "{revoke_record:#}"
    );
    // An Owner of the subscription (R3, not a tenant administrator) sees every member's
    // row of the group's assignment, as the administrator does (decisions §11).
    let owners_view = connector_grants(&s, &owner_token, &group_assignment);
    assert_eq!(
        grant_states(&owners_view),
        ["carol", "dave"]
            .map(|who| (roles.name(who), "applied".to_string()))
            .to_vec(),
        "{owners_view:#?}"
    );
    let seen = provisioning_records(&s, &owner_token);
    for record in [&grant_record, &revoke_record] {
        assert!(
            seen.iter().any(|r| r["id"] == record["id"]),
            "the subscription's Owner does not see {record:#}"
        );
    }
    let (_, stranger) = person(&s, &admin, &roles, "stranger");
    let r = s.get(
        &format!(
            "/beta/auditLogs/directoryAudits?$filter={}",
            enc("category eq 'Provisioning'")
        ),
        &stranger,
    );
    assert_eq!(r.status, 403, "{}", r.text);
    operator_api_shows_the_connector(&s, &admin, &mut roles, &carol);
    // The chain still verifies with the connectors' records in it.
    let verify = std::process::Command::new(harness::binary())
        .args(["audit", "verify", "--database", &s.database_url()])
        .output()
        .unwrap_or_else(|e| panic!("audit verify: {e}"));
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn a_target_that_is_down_leaves_the_activation_successful_and_gets_the_grant_later() {
    let Some(mut roles) = Roles::create(
        "a_target_that_is_down_leaves_the_activation_successful_and_gets_the_grant_later",
        &["alice"],
    ) else {
        return;
    };
    let (host, _) = pg_address();
    let proxy = TcpProxy::start(&host);
    proxy.cut();
    let sub_arm = format!("/subscriptions/{}", guid());
    let file = connectors_file(&roles, &format!("127.0.0.1:{}", proxy.port), &sub_arm, "");
    let s = Server::start_with(&["--connectors", &file.to_string_lossy()]);
    let admin = harness::token(ADMIN, true);
    register(&s, &admin, &sub_arm);
    let sub = resource_id(&s, &admin, &sub_arm);
    let contributor = role_id(&s, &admin, &sub, CONTRIBUTOR);
    let (alice, _) = person(&s, &admin, &roles, "alice");
    let added = admin_add(&s, &admin, "Active", &sub, &contributor, &alice, "P1D");
    assert_eq!(
        status_of(&added),
        ("Closed", "Provisioned"),
        "with the target down"
    );
    // The item is retried (a failed attempt is logged) while the target is down, and
    // alice sees it on her assignment without the error's details, which name the
    // target's host; the tenant administrator sees them.
    wait_until(15, "a failed attempt is logged", || {
        s.log().contains("connector attempt failed; will retry")
    });
    assert!(!roles.has("app_admin", "alice"));
    let assignment = assignment_of(&s, &admin, &sub, &alice);
    let alice_token = harness::token(&alice, true);
    let state = |token: &str| {
        connector_grants(&s, token, &assignment)
            .first()
            .cloned()
            .unwrap_or_default()
    };
    wait_until(10, "alice's grant shows as retrying", || {
        state(&alice_token)["state"] == "retrying"
    });
    let hers = state(&alice_token);
    assert!(
        hers["attempts"].as_u64().is_some_and(|n| n >= 1),
        "{hers:#}"
    );
    assert!(hers["nextAttemptDateTime"].is_string(), "{hers:#}");
    let message = hers["lastError"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("administrator") && !message.contains("127.0.0.1"),
        "{hers:#}"
    );
    let full = state(&admin);
    assert_ne!(full["lastError"]["message"], hers["lastError"]["message"]);
    // Someone who may not read the assignment learns nothing of it.
    let stranger = scim_user(&s, &admin, "stranger@example.test", "Stranger");
    let r = s.get(
        &format!(
            "/beta/privilegedAccess/azureResources/roleAssignments/{assignment}/connectorGrants"
        ),
        &harness::token(&stranger, true),
    );
    assert!(matches!(r.status, 403 | 404), "{}", r.text);
    // decisions §2: the assignment exists and is not theirs to read.
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.json["error"]["code"], "Authorization_RequestDenied",
        "{}",
        r.text
    );
    // An unknown assignment, an unknown provider, an assignment not under the resource
    // named: 404, as for the assignment itself.
    for path in [
        format!(
            "/beta/privilegedAccess/azureResources/roleAssignments/{}/connectorGrants",
            guid()
        ),
        format!("/beta/privilegedAccess/aadRoles/roleAssignments/{assignment}/connectorGrants"),
        format!(
            "/beta/privilegedAccess/azureResources/resources/{}/roleAssignments/{assignment}/connectorGrants",
            guid()
        ),
    ] {
        let r = s.get(&path, &admin);
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    // Under its own resource, as at the top.
    let nested = s.get(
        &format!(
            "/beta/privilegedAccess/azureResources/resources/{sub}/roleAssignments/{assignment}/connectorGrants"
        ),
        &alice_token,
    );
    assert_eq!(nested.status, 200, "{}", nested.text);
    assert_eq!(
        nested.json["value"][0]["connector"], "pg",
        "{}",
        nested.text
    );
    assert_eq!(
        nested.json["value"][0]["target"],
        json!(roles.name("app_admin")),
        "{}",
        nested.text
    );
    proxy.resume();
    wait_until(20, "the grant is applied once the target is back", || {
        roles.has("app_admin", "alice")
    });
    wait_until(10, "alice's grant shows as applied", || {
        state(&alice_token)["state"] == "applied"
    });
}

#[test]
fn a_bad_connectors_file_stops_the_server_with_every_problem() {
    let dir = std::env::temp_dir().join(format!("rolegate-it-prov-{}", harness::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("connectors.toml");
    std::fs::write(
        &path,
        "[connectors.pg]\nkind = \"postgresql\"\nurl = \"postgresql://p@127.0.0.1/db\"\n\
         password = \"hunter2-in-the-file\"\n\
         [[connectors.pg.rules]]\nrole = \"Redaer\"\nscope = \"/subscriptions/x\"\ntarget = \"t\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = path.to_string_lossy().to_string();
    let stderr = harness::refused_start(
        &[
            "--connectors",
            &file,
            "--auth-hs256-secret",
            "a-development-secret-of-32-bytes!",
        ],
        &[],
    );
    assert!(
        stderr.contains("rolegate: invalid connectors configuration (3 problems)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:4:12: connectors.pg.password")),
        "{stderr}"
    );
    assert!(
        stderr.contains("connectors.pg.rules[0].role: unknown role definition \"Redaer\""),
        "{stderr}"
    );
    assert!(stderr.contains("connectors.pg.rules[0].scope"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "a secret was printed: {stderr}"
    );
}

/// The operator API (§9) and the metrics (§10) of the running `pg` connector, with
/// `carol` granted through her group.
fn operator_api_shows_the_connector(s: &Server, admin: &str, roles: &mut Roles, carol: &str) {
    let r = s.get("/rolegate/v1/connectors", admin);
    assert_eq!(r.status, 200, "{}", r.text);
    let pg = &r.json["value"][0];
    assert_eq!(pg["name"], "pg");
    assert_eq!(pg["kind"], "postgresql");
    assert_eq!(pg["status"], "ok", "{pg:#}");
    assert_eq!(pg["rules"][0]["target"], roles.name("app_admin"));
    assert_eq!(pg["items"]["dead"], 0);
    assert!(pg["lastReconcile"]["id"].is_string(), "{pg:#}");
    assert!(!r.text.contains("password"), "{}", r.text);
    assert_eq!(
        s.get("/rolegate/v1/connectors/pg", admin).json["name"],
        "pg"
    );
    let missing = s.get("/rolegate/v1/connectors/nope", admin);
    assert_eq!((missing.status, missing.code()), (404, "ConnectorNotFound"));
    let (_, user_token) = person(s, admin, roles, "erin2");
    let denied = s.get("/rolegate/v1/connectors", &user_token);
    assert_eq!(
        (denied.status, denied.code()),
        (403, "Authorization_RequestDenied")
    );
    let anonymous = s.try_call("GET", "/rolegate/v1/connectors", None, None);
    assert_eq!(anonymous.map(|r| r.status).ok(), Some(401));
    // decisions §8: a request-id on every answer, the Graph envelope naming it on errors.
    assert!(r.header("request-id").is_some_and(|id| !id.is_empty()));
    assert_eq!(
        missing.json["error"]["innerError"]["request-id"].as_str(),
        missing.header("request-id"),
        "{}",
        missing.text
    );
    // Bad input is a 4xx, never a 5xx.
    for (path, status) in [
        ("/rolegate/v1/connectors/%00", 400),
        ("/rolegate/v1/connectors/pg/items?top=abc", 400),
        ("/rolegate/v1/connectors/pg/items?top=1001", 400),
        ("/rolegate/v1/connectors/pg/items?state=done", 400),
        ("/rolegate/v1/connectors/pg/grants?$skip=-1", 400),
        ("/rolegate/v1/connectors/%E2%82%AC/grants", 404),
    ] {
        let r = s.get(path, admin);
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert!(r.json["error"]["code"].is_string(), "{path}: {}", r.text);
    }

    let grants = s.get(
        &format!("/rolegate/v1/connectors/pg/grants?subjectId={carol}"),
        admin,
    );
    assert_eq!(grants.status, 200, "{}", grants.text);
    let row = &grants.json["value"][0];
    assert_eq!(row["principal"], roles.name("carol"), "{}", grants.text);
    assert_eq!(row["state"], "applied", "{row:#}");
    assert_eq!(
        (row["desired"].clone(), row["madeByRolegate"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(row["present"], true, "{row:#}");
    let items = s.get(
        "/rolegate/v1/connectors/pg/items?state=succeeded&top=5",
        admin,
    );
    assert_eq!(items.status, 200, "{}", items.text);
    let items = items.json["value"].as_array().cloned().unwrap_or_default();
    assert!(!items.is_empty() && items.len() <= 5);
    assert!(
        items
            .iter()
            .all(|i| i["state"] == "succeeded" && i["attempts"] == 1)
    );
    let bad = s.get("/rolegate/v1/connectors/pg/items?top=0", admin);
    assert_eq!(bad.status, 400, "{}", bad.text);

    let pass = s.post("/rolegate/v1/connectors/pg/reconcile", admin, &json!({}));
    assert_eq!(pass.status, 200, "{}", pass.text);
    // Its own pass, or (passes run every second here) the one it joined.
    assert!(
        pass.json["trigger"] == "operator" || pass.json["trigger"] == "interval",
        "{}",
        pass.text
    );
    assert_eq!(pass.json["status"], "succeeded", "{}", pass.text);
    assert_eq!(pass.json["stale"], 0);

    let metrics = s.get("/metrics", admin).text;
    for series in [
        "rolegate_connector_up{connector=\"pg\",kind=\"postgresql\"} 1",
        "rolegate_connector_items{connector=\"pg\",state=\"dead\"} 0",
        "rolegate_connector_propagation_seconds_count{connector=\"pg\",operation=\"grant\"}",
        "rolegate_connector_reconcile_total{connector=\"pg\",result=\"success\"}",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
    assert!(
        !metrics.contains(&roles.name("carol")),
        "a principal in the metrics"
    );
}

#[test]
fn a_reload_replaces_a_valid_file_and_refuses_an_invalid_one() {
    let Some(mut roles) = Roles::create(
        "a_reload_replaces_a_valid_file_and_refuses_an_invalid_one",
        &["alice"],
    ) else {
        return;
    };
    let (host, _) = pg_address();
    let sub_arm = format!("/subscriptions/{}", guid());
    let file = connectors_file(&roles, &host, &sub_arm, "");
    let s = Server::start_with(&["--connectors", &file.to_string_lossy()]);
    let admin = harness::token(ADMIN, true);
    register(&s, &admin, &sub_arm);
    let sub = resource_id(&s, &admin, &sub_arm);
    let reader = role_id(&s, &admin, &sub, "acdd72a7-3385-48ef-bd42-f606fba81ae7");
    let (alice, _) = person(&s, &admin, &roles, "alice");
    admin_add(&s, &admin, "Active", &sub, &reader, &alice, "P1D");

    // An invalid file: 400 with the problem lines, and the running configuration stays.
    let valid = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &file,
        format!("{valid}\n[connectors.pg2]\nkind = \"nosuch\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = s.post("/rolegate/v1/connectors/reload", &admin, &json!({}));
    assert_eq!(
        (r.status, r.code()),
        (400, "InvalidConnectorConfiguration"),
        "{}",
        r.text
    );
    assert!(r.text.contains("connectors.pg2.kind"), "{}", r.text);
    assert_eq!(
        s.get("/rolegate/v1/connectors", &admin).json["value"][0]["name"],
        "pg"
    );

    // A valid file that also grants the target to Readers: alice, a Reader, gets it.
    std::fs::write(
        &file,
        format!(
            "{valid}\n[[connectors.pg.rules]]\nrole = \"Reader\"\nscope = \"{sub_arm}\"\ntarget = \"{}\"\n",
            roles.name("app_admin")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = s.post("/rolegate/v1/connectors/reload", &admin, &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["value"][0]["rules"][1]["role"], "Reader",
        "{}",
        r.text
    );
    wait_until(10, "the reloaded rule grants alice", || {
        roles.has("app_admin", "alice")
    });

    // SIGHUP re-reads the file too: back to the Contributor rule alone, alice's grant goes.
    std::fs::write(&file, &valid).unwrap_or_else(|e| panic!("{e}"));
    let pid = s.pid().unwrap_or_else(|| panic!("no pid"));
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(hup.success());
    wait_until(10, "SIGHUP's reload revokes alice's grant", || {
        !roles.has("app_admin", "alice")
    });
    let records = provisioning_records(&s, &admin);
    let reloads: Vec<&str> = records
        .iter()
        .filter(|r| r["activityDisplayName"] == "Reload connector configuration")
        .filter_map(|r| r["result"].as_str())
        .collect();
    assert_eq!(reloads, ["success", "success", "failure"], "{records:#?}");
}

#[test]
fn without_a_connectors_file_the_operator_api_lists_none() {
    let s = Server::start();
    let admin = harness::token(ADMIN, true);
    let r = s.get("/rolegate/v1/connectors", &admin);
    assert_eq!((r.status, r.json.clone()), (200, json!({"value": []})));
    let r = s.post("/rolegate/v1/connectors/reload", &admin, &json!({}));
    assert_eq!((r.status, r.code()), (400, "InvalidConnectorConfiguration"));
    let r = s.get("/rolegate/v1/connectors/pg/grants", &admin);
    assert_eq!((r.status, r.code()), (404, "ConnectorNotFound"));
}

/// The `exec` program of [`an_exec_connector_applies_retries_and_revokes_through_serve`]:
/// keeps its grants in $STATE, fails its first attempt for each principal (printing the
/// secret it was given, which the server must redact), answers `list`.
const EXEC_PROGRAM: &str = r#"#!/usr/bin/python3
import json, os, sys
doc = json.load(sys.stdin)
state = os.environ["STATE"]
grants = json.load(open(state)) if os.path.exists(state) else []
if doc["operation"] == "list":
    print(json.dumps({"grants": [{"target": t, "principal": p} for t, p in grants if t in doc["targets"]]}))
    sys.exit(0)
key = [doc["target"], doc["principal"]]
marker = state + "." + doc["principal"] + ".failed"
if not os.path.exists(marker):
    open(marker, "w").write("1")
    sys.stderr.write("vault refused token " + os.environ["VAULT_TOKEN"] + "\n")
    sys.exit(3)
if doc["operation"] == "apply" and key not in grants:
    grants.append(key)
if doc["operation"] == "revoke" and key in grants:
    grants.remove(key)
json.dump(grants, open(state, "w"))
"#;

#[test]
fn an_exec_connector_applies_retries_and_revokes_through_serve() {
    use std::os::unix::fs::PermissionsExt;
    if !std::path::Path::new("/usr/bin/python3").exists() {
        harness::skip(
            "an_exec_connector_applies_retries_and_revokes_through_serve",
            "no /usr/bin/python3",
        );
        return;
    }
    const TOKEN: &str = "vault-Token-Secret-4242";
    let dir = std::env::temp_dir().join(format!("rolegate-it-exec-{}", harness::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let program = dir.join("vault-helper");
    std::fs::write(&program, EXEC_PROGRAM).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let state = dir.join("state.json");
    let sub_arm = format!("/subscriptions/{}", guid());
    let file = dir.join("connectors.toml");
    std::fs::write(
        &file,
        format!(
            "[connectors.vault]\nkind = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"5s\"\n\
             principal = [\"userNameLocalPart\"]\n\
             env = {{ STATE = \"{}\", VAULT_TOKEN = \"${{VAULT_TOKEN}}\" }}\n\
             [[connectors.vault.rules]]\nrole = \"Contributor\"\nscope = \"{sub_arm}\"\n\
             target = \"database/roles/payments-rw\"\n\
             [connectors.peer]\nkind = \"exec\"\n\
             command = [\"/bin/sh\", \"-c\", \"echo peer saw $SEEN >&2; exit 1\"]\n\
             env = {{ SEEN = \"{TOKEN}\" }}\n\
             [[connectors.peer.rules]]\nrole = \"Reader\"\nscope = \"{sub_arm}\"\n\
             target = \"peer-target\"\n",
            program.display(),
            state.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = Server::start_with_env(&[
        ("ROLEGATE_CONNECTORS", &file.to_string_lossy()),
        ("VAULT_TOKEN", TOKEN),
    ]);
    let admin = harness::token(ADMIN, true);
    register(&s, &admin, &sub_arm);
    let sub = resource_id(&s, &admin, &sub_arm);
    let contributor = role_id(&s, &admin, &sub, CONTRIBUTOR);
    let user = format!("x{}", harness::uuid_like().replace('-', ""));
    let id = scim_user(&s, &admin, &format!("{user}@example.test"), "Vault user");
    admin_add(&s, &admin, "Active", &sub, &contributor, &id, "PT6S");
    let granted = || {
        std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|g| g == json!([["database/roles/payments-rw", user.as_str()]]))
    };
    // The first attempt fails (exit 3), the retry a second later applies it.
    wait_until(
        15,
        "the program is asked to apply the grant, and retried",
        granted,
    );
    wait_until(20, "the end of the schedule revokes it", || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.trim() == "[]")
    });
    let log = s.log();
    assert!(
        log.contains("connector attempt failed; will retry"),
        "{log}"
    );
    assert!(log.contains("vault refused token ***"), "{log}");
    // Another connector's program printing vault's secret (written there as a plain
    // value) is redacted too (§2.3).
    assert!(log.contains("peer saw ***"), "{log}");
    assert!(!log.contains(TOKEN), "the secret is in the log: {log}");
    // The revoke is settled (and listed) just after the program wrote its state.
    let attempts = || -> Vec<(String, u64)> {
        let items = s.get(
            "/rolegate/v1/connectors/vault/items?state=succeeded",
            &admin,
        );
        items.json["value"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|i| {
                        (
                            i["operation"].as_str().unwrap_or_default().to_string(),
                            i["attempts"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected = [("revoke".to_string(), 1), ("grant".to_string(), 2)];
    wait_until(
        10,
        "the grant (second attempt) and the revoke are settled",
        || attempts() == expected,
    );

    // Two people whose userName local parts are the same: neither is granted (§3.2
    // `ambiguous`); each is listed as unmapped and recorded once.
    let mut twins = Vec::new();
    for domain in ["a.example", "b.example"] {
        let twin = scim_user(&s, &admin, &format!("{user}twin@{domain}"), "Twin");
        admin_add(&s, &admin, "Active", &sub, &contributor, &twin, "P1D");
        twins.push(twin);
    }
    wait_until(10, "both twins are listed as unmapped", || {
        let rows = s.get(
            "/rolegate/v1/connectors/vault/grants?state=unmapped",
            &admin,
        );
        let mut found: Vec<(String, String)> = rows.json["value"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|r| {
                        (
                            r["subjectId"].as_str().unwrap_or_default().to_string(),
                            r["unmappedReason"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        let mut wanted: Vec<(String, String)> = twins
            .iter()
            .map(|t| (t.clone(), "ambiguous".to_string()))
            .collect();
        wanted.sort();
        found == wanted
    });
    // The grants endpoint computes the state live; the records come with the planner's
    // next pass.
    let unmapped_records = |twin: &str| {
        provisioning_records(&s, &admin)
            .iter()
            .filter(|r| {
                r["activityDisplayName"] == "Subject not mapped"
                    && r["result"] == "failure"
                    && r["additionalDetails"].as_array().is_some_and(|d| {
                        d.iter()
                            .any(|d| d["key"] == "subjectId" && d["value"] == twin)
                    })
            })
            .count()
    };
    wait_until(10, "each twin is recorded as not mapped", || {
        twins.iter().all(|t| unmapped_records(t) > 0)
    });
    for twin in &twins {
        assert_eq!(unmapped_records(twin), 1, "{twin} recorded more than once");
    }
    // Every record about a connector's grants names a cause (§7.5).
    for r in provisioning_records(&s, &admin)
        .into_iter()
        .filter(|r| r["activityDisplayName"] != "Reload connector configuration")
    {
        let has_cause = r["additionalDetails"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["key"] == "cause" && d["value"].is_string())
        });
        assert!(has_cause, "no cause: {r:#}");
    }
    let records = provisioning_records(&s, &admin);
    assert!(std::fs::read_to_string(&state).is_ok_and(|t| t.trim() == "[]"));

    // A twin sees why on their own assignment, through the API and on "My roles".
    let twin_name = format!("{user}twin@a.example");
    let twin_rows = connector_grants(
        &s,
        &harness::token(&twins[0], true),
        &assignment_of(&s, &admin, &sub, &twins[0]),
    );
    assert_eq!(twin_rows.len(), 1, "{twin_rows:#?}");
    assert_eq!(twin_rows[0]["state"], "unmapped");
    assert_eq!(twin_rows[0]["unmappedReason"], "ambiguous");
    assert_eq!(twin_rows[0]["principal"], Value::Null);
    let mut twin_visit = crate::portal::Visitor::new(&s);
    assert_eq!(twin_visit.sign_in(&twin_name, true).status, 303);
    let page = twin_visit.get("/ui/");
    for text in [
        "Connected systems",
        "database/roles/payments-rw in vault: <strong>Not granted</strong>",
        "another account maps to the same name there",
    ] {
        assert!(page.text.contains(text), "no {text:?} in {}", page.text);
    }
    // Someone granted for a day sees "Granted" once the retried attempt is applied.
    let steady_name = format!("{user}steady@example.test");
    let steady = scim_user(&s, &admin, &steady_name, "Steady");
    let steady_request = admin_add(&s, &admin, "Active", &sub, &contributor, &steady, "P1D");
    let steady_assignment = assignment_of(&s, &admin, &sub, &steady);
    let steady_token = harness::token(&steady, true);
    wait_until(15, "steady's grant shows as applied", || {
        grant_states(&connector_grants(&s, &steady_token, &steady_assignment))
            == vec![(format!("{user}steady"), "applied".to_string())]
    });
    let mut steady_visit = crate::portal::Visitor::new(&s);
    assert_eq!(steady_visit.sign_in(&steady_name, true).status, 303);
    let granted_text = "database/roles/payments-rw in vault: <strong>Granted</strong>";
    let page = steady_visit.get("/ui/");
    assert!(page.text.contains(granted_text), "{}", page.text);
    // The request's page says so too: it is where an activation lands.
    let request_id = steady_request["id"].as_str().unwrap_or_default();
    let page = steady_visit.get(&format!("/ui/requests/{request_id}"));
    assert!(
        page.text.contains("<dt>Connected systems</dt>") && page.text.contains(granted_text),
        "{}",
        page.text
    );

    // The portal names the connectors' application, and finds its records by that name.
    let mut v = crate::portal::Visitor::new(&s);
    assert_eq!(v.sign_in(ADMIN, true).status, 303);
    let page = v.get("/ui/audit?initiated_by=Rolegate%20connectors");
    assert!(
        page.text.contains("Grant connector access"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("Add user"), "{}", page.text);
    let grant = records
        .iter()
        .find(|r| r["activityDisplayName"] == "Grant connector access")
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default();
    let record = v.get(&format!("/ui/audit/{grant}"));
    assert!(
        record
            .text
            .contains("Rolegate connectors (rolegate-connectors)"),
        "{}",
        record.text
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A server with the exec connector of docs/connectors.md "Any system" (the example
/// program installed 0755 in a fresh folder) giving `deploy:production` to Contributors of
/// a resource group, with `principal` as its sources (TOML array items) and `extra` keys;
/// the group registered after the start (which warns of it, §3.1).
struct AllowlistTenant {
    s: Server,
    admin: String,
    /// The resource group's id.
    rg: String,
    /// Contributor on it.
    contributor: String,
    /// The allowlist the program keeps.
    allowed: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl AllowlistTenant {
    /// Starts it; `None` (said) without python3.
    fn start(test: &str, principal: &str, extra: &str) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        if !std::path::Path::new("/usr/bin/python3").exists() {
            harness::skip(test, "no /usr/bin/python3");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("rolegate-it-allow-{}", harness::uuid_like()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let program = dir.join("allowlist-connector");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../docs/examples/allowlist_connector.py"
            ),
            &program,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let allowed = dir.join("allowed");
        let rg_arm = format!("/subscriptions/{}/resourceGroups/production", guid());
        let file = dir.join("connectors.toml");
        std::fs::write(
            &file,
            format!(
                "[connectors.deployers]\nkind = \"exec\"\ncommand = [\"{}\"]\n\
                 env = {{ ALLOWLIST = \"{}\" }}\ntimeout = \"10s\"\nreconcile_interval = \"1s\"\n\
                 principal = [{principal}]\n{extra}\n\
                 [[connectors.deployers.rules]]\nrole = \"Contributor\"\nscope = \"{rg_arm}\"\n\
                 target = \"deploy:production\"\n",
                program.display(),
                allowed.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = Server::start_with(&["--connectors", &file.to_string_lossy()]);
        wait_until(5, "the start warns of the unregistered scope", || {
            s.log()
                .contains("a connector rule's scope is not registered")
        });
        let admin = harness::token(ADMIN, true);
        register(&s, &admin, &rg_arm);
        let rg = resource_id(&s, &admin, &rg_arm);
        let contributor = role_id(&s, &admin, &rg, CONTRIBUTOR);
        Some(Self {
            s,
            admin,
            rg,
            contributor,
            allowed,
            dir,
        })
    }

    /// The allowlist's lines, sorted.
    fn lines(&self) -> Vec<String> {
        allowlist(&self.allowed)
    }

    /// An Active assignment of Contributor on the group to `subject` lasting `duration`.
    fn activate(&self, subject: &str, duration: &str) -> Value {
        admin_add(
            &self.s,
            &self.admin,
            "Active",
            &self.rg,
            &self.contributor,
            subject,
            duration,
        )
    }
}

impl Drop for AllowlistTenant {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `cause` of the newest record of `activity` about `principal`.
pub(crate) fn cause_of(records: &[Value], activity: &str, principal: &str) -> Option<String> {
    records
        .iter()
        .find(|r| is_record(r, activity, principal))
        .and_then(|r| {
            r["additionalDetails"]
                .as_array()?
                .iter()
                .find(|d| d["key"] == "cause")?["value"]
                .as_str()
                .map(str::to_string)
        })
}

/// The lines of an allowlist file, sorted.
fn allowlist(path: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn the_docs_exec_example_keeps_an_allowlist_through_serve() {
    let Some(t) = AllowlistTenant::start(
        "the_docs_exec_example_keeps_an_allowlist_through_serve",
        "\"userNameLocalPart\"",
        "",
    ) else {
        return;
    };
    let (s, admin) = (&t.s, &t.admin);
    let user = format!("d{}", harness::uuid_like().replace('-', ""));
    let id = scim_user(s, admin, &format!("{user}@example.test"), "Deployer");
    // A line for another target, written by hand, is not the connector's business.
    std::fs::write(&t.allowed, "deploy:staging\tbob\n").unwrap_or_else(|e| panic!("{e}"));
    t.activate(&id, "PT6S");
    let mine = format!("deploy:production\t{user}");
    wait_until(10, "the activation adds its line", || {
        t.lines().contains(&mine)
    });
    // A line added by hand on the managed target is removed by reconciliation.
    let mut text = std::fs::read_to_string(&t.allowed).unwrap_or_default();
    text.push_str("deploy:production\tmallory\n");
    std::fs::write(&t.allowed, text).unwrap_or_else(|e| panic!("{e}"));
    wait_until(15, "reconciliation removes the line added by hand", || {
        !t.lines()
            .contains(&"deploy:production\tmallory".to_string())
    });
    wait_until(20, "the end of the activation removes its line", || {
        !t.lines().contains(&mine)
    });
    assert_eq!(t.lines(), vec!["deploy:staging\tbob".to_string()]);
    // The program has written the file before its run is settled and recorded.
    wait_until(10, "the three operations are recorded", || {
        let records = provisioning_records(s, admin);
        has_record(&records, "Grant connector access", &user)
            && has_record(&records, "Revoke connector access", &user)
            && has_record(&records, "Revoke grant made outside Rolegate", "mallory")
    });
}

#[test]
fn an_extension_attribute_names_the_principal_and_its_change_moves_the_grant() {
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let Some(t) = AllowlistTenant::start(
        "an_extension_attribute_names_the_principal_and_its_change_moves_the_grant",
        &format!("\"{ent}:employeeNumber\", \"userNameLocalPart\""),
        "",
    ) else {
        return;
    };
    let (s, admin) = (&t.s, &t.admin);
    // One person with an employee number, one without (the second source decides).
    let r = s.call(
        "POST",
        "/scim/v2/Users",
        Some(admin),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ent],
            "userName": "erin@example.test",
            ent: {"employeeNumber": "E1234"},
        })),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let erin = r.json["id"].as_str().unwrap_or_default().to_string();
    let frank = scim_user(s, admin, "frank@example.test", "Frank");
    for who in [&erin, &frank] {
        t.activate(who, "P1D");
    }
    let want = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    wait_until(10, "both are granted under their principals", || {
        t.lines() == want(&["deploy:production\tE1234", "deploy:production\tfrank"])
    });
    // The employee number changes through SCIM: the old principal loses the grant, the new
    // one gets it, both for a directory change.
    let r = s.call(
        "PATCH",
        &format!("/scim/v2/Users/{erin}"),
        Some(admin),
        Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": format!("{ent}:employeeNumber"), "value": "E5678"}]})),
    );
    assert!(r.status < 300, "{}", r.text);
    wait_until(10, "the grant moves to the new employee number", || {
        t.lines() == want(&["deploy:production\tE5678", "deploy:production\tfrank"])
    });
    let causes = || {
        let records = provisioning_records(s, admin);
        (
            cause_of(&records, "Revoke connector access", "E1234"),
            cause_of(&records, "Grant connector access", "E5678"),
        )
    };
    wait_until(10, "both operations are recorded", || {
        let (revoke, grant) = causes();
        revoke.is_some() && grant.is_some()
    });
    let directory = Some("directory".to_string());
    assert_eq!(causes(), (directory.clone(), directory));
}

#[test]
fn a_grant_that_outlives_its_first_assignment_is_revoked_for_the_right_reason() {
    let Some(t) = AllowlistTenant::start(
        "a_grant_that_outlives_its_first_assignment_is_revoked_for_the_right_reason",
        "\"userNameLocalPart\"",
        "",
    ) else {
        return;
    };
    let (s, admin) = (&t.s, &t.admin);
    let gail = scim_user(s, admin, "gail@example.test", "Gail");
    let line = "deploy:production\tgail".to_string();
    // Granted for a few seconds directly, then also through a group for a day.
    t.activate(&gail, "PT3S");
    wait_until(10, "gail is granted", || t.lines() == [line.clone()]);
    let group = create_group(s, admin, "deployers", &[&gail]);
    t.activate(&group, "P1D");
    // The direct assignment ends: the grant stands on the group's.
    sleep_past(from_now(4));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        t.lines(),
        std::slice::from_ref(&line),
        "revoked though the group holds it"
    );
    // Gail leaves the group: revoked now, because of the membership, not of the old end.
    let left = now();
    let r = s.call(
        "PATCH",
        &format!("/scim/v2/Groups/{group}"),
        Some(admin),
        Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "remove", "path": format!("members[value eq \"{gail}\"]")}]})),
    );
    assert!(r.status < 300, "{}", r.text);
    wait_until(10, "gail is revoked", || t.lines().is_empty());
    let revoke = || {
        let items = s.get(
            "/rolegate/v1/connectors/deployers/items?state=succeeded",
            admin,
        );
        items.json["value"]
            .as_array()
            .and_then(|v| v.iter().find(|i| i["operation"] == "revoke").cloned())
    };
    wait_until(10, "the revoke is settled", || revoke().is_some());
    let item = revoke().unwrap_or_default();
    assert_eq!(item["cause"], "membership", "{item:#}");
    assert!(
        ts(&item["dueDateTime"]) >= left,
        "due before gail left: {item:#}"
    );
}

#[test]
fn ignored_members_are_never_granted_revoked_nor_reported() {
    let Some(t) = AllowlistTenant::start(
        "ignored_members_are_never_granted_revoked_nor_reported",
        "\"userNameLocalPart\"",
        "ignore_members = [\"oncall\"]",
    ) else {
        return;
    };
    let (s, admin) = (&t.s, &t.admin);
    // The on-call account's line was written by hand and must stay.
    std::fs::write(&t.allowed, "deploy:production\toncall\n").unwrap_or_else(|e| panic!("{e}"));
    // A person who maps to the ignored principal activates and deactivates: nothing
    // happens to its line; another person's grant shows planning runs.
    let oncall = scim_user(s, admin, "oncall@example.test", "On call");
    let hana = scim_user(s, admin, "hana@example.test", "Hana");
    t.activate(&oncall, "PT2S");
    t.activate(&hana, "P1D");
    let both = vec![
        "deploy:production\thana".to_string(),
        "deploy:production\toncall".to_string(),
    ];
    wait_until(10, "hana is granted", || t.lines() == both);
    sleep_past(from_now(3));
    // Reconciliation runs every second: the ignored line is neither revoked nor reported.
    let pass = s.post(
        "/rolegate/v1/connectors/deployers/reconcile",
        admin,
        &json!({}),
    );
    assert_eq!(pass.status, 200, "{}", pass.text);
    assert_eq!(pass.json["outside"], 0, "{}", pass.text);
    assert_eq!(t.lines(), both);
    let items = s.get("/rolegate/v1/connectors/deployers/items", admin);
    let touched: Vec<&Value> = items.json["value"]
        .as_array()
        .map(|v| v.iter().filter(|i| i["principal"] == "oncall").collect())
        .unwrap_or_default();
    assert!(touched.is_empty(), "{touched:#?}");
}

#[test]
fn two_nodes_apply_each_change_once_and_a_killed_node_loses_nothing() {
    let test = "two_nodes_apply_each_change_once_and_a_killed_node_loses_nothing";
    if harness::backend() != harness::Backend::Postgres {
        harness::skip(test, "several nodes need a shared PostgreSQL database");
        return;
    }
    let people = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let Some(mut roles) = Roles::create(test, &people) else {
        return;
    };
    let (host, _) = pg_address();
    let sub_arm = format!("/subscriptions/{}", guid());
    let file = connectors_file(&roles, &host, &sub_arm, "");
    let file = file.to_string_lossy().to_string();
    let mut a = Server::start_with(&["--connectors", &file]);
    let b = a.sibling(&["--connectors", &file], None);
    let admin = harness::token(ADMIN, true);
    register(&a, &admin, &sub_arm);
    let sub = resource_id(&a, &admin, &sub_arm);
    let contributor = role_id(&a, &admin, &sub, CONTRIBUTOR);
    for (n, p) in people.iter().enumerate() {
        let node = if n % 2 == 0 { &a } else { &b };
        let (id, _) = person(node, &admin, &roles, p);
        admin_add(node, &admin, "Active", &sub, &contributor, &id, "P1D");
    }
    // Node A dies at once, whatever it was doing: B plans and applies the rest (taking
    // over A's leases when they run out).
    a.kill();
    wait_until(90, "every grant is applied by the surviving node", || {
        people.iter().all(|p| roles.has("app_admin", p))
    });
    // Each grant settles once, with one audit record (a grant A applied but never settled
    // is applied again by B, harmlessly, and recorded once).
    wait_until(90, "every grant item has settled", || {
        let rows = b.sql(
            "SELECT count(*) FROM connector_items WHERE operation = 'grant' AND state = 'succeeded'",
            &[],
        );
        rows.first().and_then(|r| r.first()) == Some(&json!(people.len()))
    });
    let rows = b.sql(
        "SELECT principal, count(*) FROM connector_items \
         WHERE operation = 'grant' AND state <> 'superseded' GROUP BY principal",
        &[],
    );
    assert_eq!(rows.len(), people.len(), "{rows:?}");
    assert!(
        rows.iter().all(|r| r[1] == json!(1)),
        "an item twice: {rows:?}"
    );
    let records = provisioning_records(&b, &admin);
    for p in people {
        let principal = roles.name(p);
        let grants = records
            .iter()
            .filter(|r| {
                has_record(
                    std::slice::from_ref(*r),
                    "Grant connector access",
                    &principal,
                )
            })
            .count();
        assert_eq!(grants, 1, "{principal} recorded {grants} times");
    }
}
