//! The read caches (issue 14): every subject, the resources and role definitions reads
//! have found, and the assignments recently listed subjects hold, kept in memory. After any
//! sequence of writes (SCIM users, groups and memberships, registrations, requests to add,
//! activate and remove, role settings), every read the caches answer equals the rows the
//! database holds, read with SQL beside the API: the token's subject (`/me`, and a disabled
//! or deleted user refused), a resource by id, `$expand` of subjects, role definitions and
//! their resources, and each user's own assignments (`subjectId eq '<me>'`, with its groups',
//! in list order). On PostgreSQL the writes go through two nodes at
//! random and both nodes are checked after each write; on SQLite there is one node.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::fixture::{
    CONTRIBUTOR, READER, Tenant, enc, lasting, register, request_body, resource_id,
};
use crate::harness::{ADMIN, Backend, Server, backend, say, token, uuid_like};
use proptest::prelude::*;
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// One write, and the node it goes through.
#[derive(Debug, Clone)]
enum Write {
    CreateUser { external: bool },
    Rename(usize),
    SetActive(usize, bool),
    NewExternalId(usize),
    Delete(usize),
    Group(Vec<usize>),
    Join(usize, usize),
    Register,
    Assign(usize, usize, bool),
    AssignGroup(usize, usize),
    Activate(usize, usize, bool),
    Remove(usize, usize, bool),
    Setting(usize, bool),
}

fn writes() -> impl Strategy<Value = Vec<(Write, usize)>> {
    let write = prop_oneof![
        3 => any::<bool>().prop_map(|external| Write::CreateUser { external }),
        2 => (0..8usize).prop_map(Write::Rename),
        2 => (0..8usize, any::<bool>()).prop_map(|(u, a)| Write::SetActive(u, a)),
        1 => (0..8usize).prop_map(Write::NewExternalId),
        1 => (0..8usize).prop_map(Write::Delete),
        1 => proptest::collection::vec(0..8usize, 0..3).prop_map(Write::Group),
        1 => (0..8usize, 0..4usize).prop_map(|(u, g)| Write::Join(u, g)),
        1 => Just(Write::Register),
        2 => (0..8usize, 0..4usize, any::<bool>()).prop_map(|(u, r, c)| Write::Assign(u, r, c)),
        1 => (0..4usize, 0..4usize).prop_map(|(g, r)| Write::AssignGroup(g, r)),
        2 => (0..8usize, 0..4usize, any::<bool>()).prop_map(|(u, r, c)| Write::Activate(u, r, c)),
        1 => (0..8usize, 0..4usize, any::<bool>()).prop_map(|(u, r, c)| Write::Remove(u, r, c)),
        1 => (0..4usize, any::<bool>()).prop_map(|(r, m)| Write::Setting(r, m)),
    ];
    proptest::collection::vec((write, 0..2usize), 1..10)
}

/// What the test made: users (deleted ones stay listed), groups, every key a token may name
/// (user ids and the external ids given out) with its token (minted once: each is a
/// process), resources.
struct Made {
    users: Vec<String>,
    groups: Vec<String>,
    keys: Vec<(String, String)>,
    resources: Vec<String>,
}

impl Made {
    fn key(&mut self, key: &str) {
        self.keys.push((key.to_string(), token(key, true)));
    }
    fn user(&self, i: usize) -> Option<String> {
        (!self.users.is_empty()).then(|| self.users[i % self.users.len()].clone())
    }
    fn group(&self, i: usize) -> Option<String> {
        (!self.groups.is_empty()).then(|| self.groups[i % self.groups.len()].clone())
    }
    fn resource(&self, i: usize) -> &String {
        &self.resources[i % self.resources.len()]
    }
    fn token_of(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t.as_str())
    }
}

/// Applies one write through `node`; any answer but a 5xx is fine (a write may be refused:
/// a deleted user, a duplicate assignment).
fn apply(t: &Tenant, node: &Server, made: &mut Made, write: &Write) -> Result<(), TestCaseError> {
    let admin = &t.admin;
    let patch = |id: &str, ops: Value| {
        node.call(
            "PATCH",
            &format!("/scim/v2/Users/{id}"),
            Some(admin),
            Some(&json!({"schemas": [PATCH_OP], "Operations": ops})),
        )
    };
    // A role request about `subject` on resource `r` (Contributor or Reader), as `token`.
    let role_request = |made: &Made,
                        token: &str,
                        kind: &str,
                        state: &str,
                        subject: &str,
                        r: usize,
                        contributor: bool| {
        let resource = made.resource(r);
        let template = if contributor { CONTRIBUTOR } else { READER };
        let role = crate::fixture::role_id(node, admin, resource, template);
        let mut body = request_body(kind, state, resource, &role, subject);
        if kind != "AdminRemove" {
            body["schedule"] = lasting(if kind == "UserAdd" { "PT1H" } else { "P30D" });
        }
        node.post(&node.pim("/roleAssignmentRequests"), token, &body)
    };
    let r = match write {
        Write::CreateUser { external } => {
            let name = format!("cache-{}", uuid_like());
            let mut body = json!({"schemas": [USER], "userName": format!("{name}@example.test"), "displayName": name});
            if *external {
                let ext = format!("ext-{}", uuid_like());
                body["externalId"] = json!(ext);
                made.key(&ext);
            }
            let r = node.call("POST", "/scim/v2/Users", Some(admin), Some(&body));
            if let Some(id) = r.json["id"].as_str() {
                made.users.push(id.to_string());
                made.key(id);
            }
            r
        }
        Write::Rename(u) => match made.user(*u) {
            Some(id) => patch(
                &id,
                json!([{"op": "Replace", "path": "displayName", "value": format!("renamed-{}", uuid_like())}]),
            ),
            None => return Ok(()),
        },
        Write::SetActive(u, active) => match made.user(*u) {
            Some(id) => patch(
                &id,
                json!([{"op": "Replace", "path": "active", "value": active}]),
            ),
            None => return Ok(()),
        },
        Write::NewExternalId(u) => match made.user(*u) {
            Some(id) => {
                let ext = format!("ext-{}", uuid_like());
                made.key(&ext);
                patch(
                    &id,
                    json!([{"op": "Replace", "path": "externalId", "value": ext}]),
                )
            }
            None => return Ok(()),
        },
        Write::Delete(u) => match made.user(*u) {
            Some(id) => node.call("DELETE", &format!("/scim/v2/Users/{id}"), Some(admin), None),
            None => return Ok(()),
        },
        Write::Group(members) => {
            let members: Vec<Value> = members
                .iter()
                .filter_map(|m| made.user(*m))
                .map(|m| json!({"value": m}))
                .collect();
            let r = node.call(
                "POST",
                "/scim/v2/Groups",
                Some(admin),
                Some(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": format!("cache-group-{}", uuid_like()),
                    "members": members,
                })),
            );
            if let Some(id) = r.json["id"].as_str() {
                made.groups.push(id.to_string());
            }
            r
        }
        Write::Join(u, g) => match (made.user(*u), made.group(*g)) {
            (Some(user), Some(group)) => node.call(
                "PATCH",
                &format!("/scim/v2/Groups/{group}"),
                Some(admin),
                Some(&json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": user}]}
                ]})),
            ),
            _ => return Ok(()),
        },
        Write::Register => {
            let arm = format!("{}/resourceGroups/rg-{}", t.sub_arm, uuid_like());
            register(node, admin, &arm);
            made.resources.push(resource_id(node, admin, &arm));
            return Ok(());
        }
        Write::Assign(u, r, contributor) => match made.user(*u) {
            Some(user) => {
                role_request(made, admin, "AdminAdd", "Eligible", &user, *r, *contributor)
            }
            None => return Ok(()),
        },
        Write::AssignGroup(g, r) => match made.group(*g) {
            Some(group) => role_request(made, admin, "AdminAdd", "Eligible", &group, *r, false),
            None => return Ok(()),
        },
        Write::Activate(u, r, contributor) => {
            match made
                .user(*u)
                .and_then(|user| Some((made.token_of(&user)?, user)))
            {
                Some((token, user)) => {
                    role_request(made, token, "UserAdd", "Active", &user, *r, *contributor)
                }
                None => return Ok(()),
            }
        }
        Write::Remove(u, r, contributor) => match made.user(*u) {
            Some(user) => role_request(
                made,
                admin,
                "AdminRemove",
                "Eligible",
                &user,
                *r,
                *contributor,
            ),
            None => return Ok(()),
        },
        Write::Setting(r, mfa) => {
            let role = crate::fixture::role_id(node, admin, made.resource(*r), READER);
            crate::fixture::patch_rule(
                node,
                admin,
                &role,
                "userMemberSettings",
                "MfaRule",
                &json!({"mfaRequired": mfa}),
            );
            return Ok(());
        }
    };
    prop_assert!(
        r.status < 500,
        "{write:?} answered {}: {}",
        r.status,
        r.text
    );
    Ok(())
}

/// The subject row with id `key`, else the one with external id `key`.
fn subject_row<'a>(rows: &'a [Vec<Value>], key: &str) -> Option<&'a Vec<Value>> {
    rows.iter()
        .find(|r| r[0] == key)
        .or_else(|| rows.iter().find(|r| r[1] == key))
}

/// The `(id, memberType)` of each assignment `GET {path}` (under the PIM base) lists.
fn rows_listed(
    node: &Server,
    path: &str,
    token: &str,
) -> Result<Vec<(Value, String)>, TestCaseError> {
    let listed = node.get(&node.pim(path), token);
    prop_assert_eq!(listed.status, 200, "{}", listed.text);
    Ok(listed.json["value"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["id"].clone(),
                a["memberType"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Every cached read through `node` equals the database's rows.
fn check(t: &Tenant, node: &Server, made: &Made) -> Result<(), TestCaseError> {
    // id, external id, display name, active, kind
    let subjects = t.s.sql(
        "SELECT id, external_id, display_name, active, kind FROM subjects",
        &[],
    );
    for (key, token) in &made.keys {
        let me = node.get("/beta/me", token);
        match subject_row(&subjects, key) {
            Some(row) if row[3] == 1 => {
                prop_assert_eq!(me.status, 200, "{}: {}", key, me.text);
                prop_assert_eq!(&me.json["id"], &row[0]);
                prop_assert_eq!(&me.json["displayName"], &row[2]);
            }
            Some(_) => prop_assert_eq!(me.status, 403, "{} is disabled: {}", key, me.text),
            None => prop_assert_eq!(
                me.status,
                403,
                "{} is not in the directory: {}",
                key,
                me.text
            ),
        }
    }
    let resources =
        t.s.sql("SELECT id, external_id, display_name FROM resources", &[]);
    for row in &resources {
        let id = row[0].as_str().unwrap_or_default();
        // Twice: the first read may fill the cache, the second is answered from it.
        for _ in 0..2 {
            let r = node.get(&node.pim(&format!("/resources/{id}")), &t.admin);
            prop_assert_eq!(r.status, 200, "{}", r.text);
            prop_assert_eq!(&r.json["id"], &row[0]);
            prop_assert_eq!(&r.json["externalId"], &row[1]);
            prop_assert_eq!(&r.json["displayName"], &row[2]);
        }
    }
    for user in &made.users {
        let (Some(row), Some(token)) = (subject_row(&subjects, user), made.token_of(user)) else {
            continue;
        };
        if row[3] != 1 {
            continue;
        }
        // Its own rows and its groups' (none are nested here), in list order.
        let expected = t.s.sql(
            "SELECT a.id, a.subject_id, a.state FROM assignments a WHERE a.subject_id = ? \
             OR a.subject_id IN (SELECT group_id FROM group_members WHERE member_id = ?) ORDER BY a.seq",
            &[user, user],
        );
        let mine = enc(&format!("subjectId eq '{user}'"));
        let eligible = enc(&format!(
            "subjectId eq '{user}' and assignmentState eq 'eligible'"
        ));
        // The user's own list and an administrator's view of its eligible ones, each twice:
        // the first read may fill the cache, the second is answered from it.
        for (filter, token, state) in [
            (&mine, token, None),
            (&eligible, t.admin.as_str(), Some("Eligible")),
        ] {
            let want: Vec<(Value, String)> = expected
                .iter()
                .filter(|r| state.is_none_or(|s| r[2] == s))
                .map(|r| {
                    let member = if r[1] == user.as_str() {
                        "Direct"
                    } else {
                        "Group"
                    };
                    (r[0].clone(), member.to_string())
                })
                .collect();
            for _ in 0..2 {
                let got = rows_listed(node, &format!("/roleAssignments?$filter={filter}"), token)?;
                prop_assert_eq!(&got, &want, "{}'s assignments ({:?})", user, state);
            }
        }
    }
    let roles = t.s.sql(
        "SELECT id, display_name, resource_id FROM role_definitions",
        &[],
    );
    let expand = enc("subject,roleDefinition($expand=resource),resource");
    for resource in &made.resources {
        // Its rows and its ancestors', in list order, each twice (from the database, then
        // from the held list).
        let expected = t.s.sql(
            "WITH RECURSIVE up(id) AS (SELECT CAST(? AS TEXT) UNION \
             SELECT r.parent_id FROM resources r JOIN up ON r.id = up.id WHERE r.parent_id IS NOT NULL) \
             SELECT a.id, a.resource_id FROM assignments a WHERE a.resource_id IN (SELECT id FROM up) ORDER BY a.seq",
            &[resource],
        );
        let want: Vec<(Value, String)> = expected
            .iter()
            .map(|r| {
                let member = if r[1] == resource.as_str() {
                    "Direct"
                } else {
                    "Inherited"
                };
                (r[0].clone(), member.to_string())
            })
            .collect();
        for _ in 0..2 {
            let got = rows_listed(
                node,
                &format!("/resources/{resource}/roleAssignments"),
                &t.admin,
            )?;
            prop_assert_eq!(&got, &want, "the assignments of {}", resource);
        }
        let listed = node.get(
            &node.pim(&format!(
                "/resources/{resource}/roleAssignments?$expand={expand}&$top=999"
            )),
            &t.admin,
        );
        prop_assert_eq!(listed.status, 200, "{}", listed.text);
        for a in listed.json["value"].as_array().into_iter().flatten() {
            let subject_id = a["subjectId"].as_str().unwrap_or_default();
            match subject_row(&subjects, subject_id) {
                Some(row) => {
                    prop_assert_eq!(&a["subject"]["displayName"], &row[2]);
                    prop_assert_eq!(
                        a["subject"]["type"].as_str().map(str::to_ascii_lowercase),
                        row[4].as_str().map(str::to_ascii_lowercase)
                    );
                }
                None => prop_assert_eq!(&a["subject"], &Value::Null),
            }
            let role = roles.iter().find(|r| r[0] == a["roleDefinitionId"]);
            prop_assert!(role.is_some(), "{} has no role row", a);
            let role = role.unwrap();
            prop_assert_eq!(&a["roleDefinition"]["displayName"], &role[1]);
            prop_assert_eq!(&a["roleDefinition"]["resource"]["id"], &role[2]);
            let own = resources.iter().find(|r| r[0] == a["resourceId"]);
            prop_assert!(own.is_some(), "{} has no resource row", a);
            prop_assert_eq!(&a["resource"]["displayName"], &own.unwrap()[2]);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn after_any_writes_every_cached_read_equals_the_database(plan in writes()) {
        let t = Tenant::start();
        let sibling = (backend() == Backend::Postgres).then(|| t.s.sibling(&[], None));
        let nodes: Vec<&Server> = std::iter::once(&t.s).chain(sibling.as_ref()).collect();
        if nodes.len() == 1 {
            say("caches: one node on SQLite (two nodes share a database on PostgreSQL only)");
        }
        let mut made = Made { users: Vec::new(), groups: Vec::new(), keys: Vec::new(), resources: vec![t.sub.clone(), t.rg.clone()] };
        // The administrator's token names nobody in the directory: it is read from the token.
        prop_assert_eq!(t.s.get("/beta/me", &token(ADMIN, true)).status, 200);
        for (write, via) in &plan {
            apply(&t, nodes[via % nodes.len()], &mut made, write)?;
            for node in &nodes {
                check(&t, node, &made)?;
            }
        }
    }
}

/// R1 (decisions.md §7) when the resource is answered from memory: once a read has cached
/// it, a caller with no assignment there or above is still refused (`403`), and one who
/// holds an eligibility on an ancestor reads it.
#[test]
fn a_cached_resource_is_read_only_by_those_r1_lets_through() {
    let t = Tenant::start();
    let path = t.s.pim(&format!("/resources/{}", t.rg));
    // The administrator's read puts the resource in the cache; the second is from memory.
    for _ in 0..2 {
        assert_eq!(t.s.get(&path, &t.admin).status, 200);
    }
    let (_, stranger) = t.user("stranger");
    let r = t.s.get(&path, &stranger);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "Authorization_RequestDenied");
    // Eligible on the subscription, the resource group's parent: R1 holds below it.
    let (_, holder, _, _) = crate::fixture::eligible_user(&t, "holder", "P30D");
    let r = t.s.get(&path, &holder);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["id"], json!(t.rg));
}
