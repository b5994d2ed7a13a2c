//! Cedar as the oracle (engineering.md §2, authzen.md §12): for random worlds, the access
//! index's AuthZEN decision (`AccessIndex::permits`) equals the decision of the `cedar-policy`
//! crate over the same data expressed as Cedar entities and policies: users and nested groups
//! as principals, the resource tree as `Scope` parents, one `permit` per active assignment in
//! effect, its role's permissions as `like` conditions on the (lower-cased) operation.

use cedar_policy::{Authorizer, Decision, Entities, Entity, EntityUid, PolicySet};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rolegate_cedar_oracle as cedar_encoding;
use rolegate_cedar_oracle::uid;
use rolegate_core::access::AccessIndex;
use rolegate_core::access_decision::Action;
use rolegate_core::assignment::{AssignmentState, RoleAssignment};
use rolegate_core::permissions::Plane;
use rolegate_core::schedule::Schedule;
use std::collections::HashSet;

const ROLES: [&str; 6] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", // Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c", // Contributor
    "acdd72a7-3385-48ef-bd42-f606fba81ae7", // Reader
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c", // Virtual Machine Contributor
    "00482a5a-887f-4fb3-b363-3b7fe8e74483", // Key Vault Administrator
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe", // Storage Blob Data Contributor
];

const OPERATIONS: [(&str, Plane); 8] = [
    (
        "Microsoft.Compute/virtualMachines/start/action",
        Plane::Control,
    ),
    ("Microsoft.Compute/virtualMachines/read", Plane::Control),
    (
        "Microsoft.Authorization/roleAssignments/write",
        Plane::Control,
    ),
    (
        "Microsoft.Authorization/roleAssignments/delete",
        Plane::Control,
    ),
    ("Microsoft.KeyVault/vaults/write", Plane::Control),
    (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        Plane::Data,
    ),
    (
        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        Plane::Data,
    ),
    (
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        Plane::Control,
    ),
];

/// mg → sub0, sub1 → two resource groups each → one resource each.
const RESOURCES: [(&str, Option<&str>); 11] = [
    ("mg", None),
    ("sub0", Some("mg")),
    ("sub1", Some("mg")),
    ("rg00", Some("sub0")),
    ("rg01", Some("sub0")),
    ("rg10", Some("sub1")),
    ("rg11", Some("sub1")),
    ("vm00", Some("rg00")),
    ("vm01", Some("rg01")),
    ("vm10", Some("rg10")),
    ("vm11", Some("rg11")),
];

const USERS: usize = 4;
const GROUPS: usize = 3;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One assignment of the world: holder (users first, then groups), role, resource, active,
/// its start relative to now and its length (`None`: permanent), in hours.
type Planned = (usize, usize, usize, bool, i64, Option<i64>);

/// The schedule of a planned assignment.
fn schedule(from: i64, hours: Option<i64>) -> (Timestamp, Option<Timestamp>) {
    let start = now() + SignedDuration::from_hours(from);
    (start, hours.map(|h| start + SignedDuration::from_hours(h)))
}

#[derive(Debug, Clone)]
struct World {
    /// (group, member): members are users, or groups with a higher number (no cycles).
    memberships: Vec<(usize, usize)>,
    assignments: Vec<Planned>,
}

fn world() -> impl Strategy<Value = World> {
    (
        proptest::collection::vec((0..GROUPS, 0..USERS + GROUPS), 0..8),
        proptest::collection::vec(
            (
                0..USERS + GROUPS,
                0..ROLES.len(),
                0..RESOURCES.len(),
                any::<bool>(),
                -5i64..3,
                proptest::option::of(1i64..8),
            ),
            0..14,
        ),
    )
        .prop_map(|(memberships, assignments)| World {
            memberships: memberships
                .into_iter()
                .filter(|(g, m)| *m < USERS || *m - USERS > *g)
                .collect(),
            assignments,
        })
}

fn subject(i: usize) -> String {
    if i < USERS {
        format!("user{i}")
    } else {
        format!("group{}", i - USERS)
    }
}

fn index(w: &World) -> AccessIndex {
    let mut ix = AccessIndex::new();
    for (r, parent) in RESOURCES {
        ix.add_resource(r, parent);
        for (k, t) in ROLES.iter().enumerate() {
            ix.add_role(&format!("{r}/role{k}"), t);
        }
    }
    for (g, m) in &w.memberships {
        ix.add_membership(&subject(USERS + g), &subject(*m));
    }
    for (i, (holder, role, resource, active, from, to)) in w.assignments.iter().enumerate() {
        let r = RESOURCES[*resource].0;
        let (start, end) = schedule(*from, *to);
        let a = RoleAssignment {
            id: format!("{:032x}", i + 1),
            resource_id: r.to_string(),
            role_definition_id: format!("{r}/role{role}"),
            subject_id: subject(*holder),
            state: if *active {
                AssignmentState::Active
            } else {
                AssignmentState::Eligible
            },
            linked_eligible_id: None,
            schedule: Schedule { start, end },
            request_id: "r".into(),
        };
        ix.upsert(&a, *role == 0);
    }
    ix
}

fn entities(w: &World) -> Entities {
    let mut list = Vec::new();
    for (r, parent) in RESOURCES {
        let parents: HashSet<EntityUid> = parent.map(|p| uid("Scope", p)).into_iter().collect();
        list.push(Entity::new_no_attrs(uid("Scope", r), parents));
    }
    for i in 0..USERS + GROUPS {
        let kind = if i < USERS { "User" } else { "Group" };
        let parents: HashSet<EntityUid> = w
            .memberships
            .iter()
            .filter(|(_, m)| *m == i)
            .map(|(g, _)| uid("Group", &format!("group{g}")))
            .collect();
        list.push(Entity::new_no_attrs(uid(kind, &subject(i)), parents));
    }
    list.push(Entity::new_no_attrs(
        uid("Action", "invoke"),
        HashSet::new(),
    ));
    Entities::from_entities(list, None).unwrap_or_else(|e| panic!("entities: {e}"))
}

/// The policies of the active assignments in effect now held by `holders`: the world
/// sliced per principal, as Cedar's authors advise.
fn policies(w: &World, holders: &HashSet<usize>) -> PolicySet {
    let mut text = String::new();
    for (holder, role, resource, active, from, to) in &w.assignments {
        let (start, end) = schedule(*from, *to);
        let in_effect = start <= now() && end.is_none_or(|e| now() < e);
        if !*active || !in_effect || !holders.contains(holder) {
            continue;
        }
        let kind = if *holder < USERS { "User" } else { "Group" };
        text.push_str(
            &cedar_encoding::policies(
                kind,
                &subject(*holder),
                RESOURCES[*resource].0,
                ROLES[*role],
            )
            .concat(),
        );
    }
    text.parse()
        .unwrap_or_else(|e| panic!("policies: {e}\n{text}"))
}

/// The user and every group it belongs to, through nesting.
fn holders(w: &World, user: usize) -> HashSet<usize> {
    let mut out: HashSet<usize> = [user].into();
    loop {
        let more: Vec<usize> = w
            .memberships
            .iter()
            .filter(|(_, m)| out.contains(m))
            .map(|(g, _)| USERS + g)
            .filter(|g| !out.contains(g))
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

fn cedar_allows(
    w: &World,
    entities: &Entities,
    user: usize,
    resource: &str,
    op: &str,
    plane: Plane,
) -> bool {
    let request = cedar_encoding::request(&subject(user), resource, op, plane);
    let set = policies(w, &holders(w, user));
    Authorizer::new()
        .is_authorized(&request, &set, entities)
        .decision()
        == Decision::Allow
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_index_decides_as_cedar_does(w in world()) {
        let ix = index(&w);
        let es = entities(&w);
        for user in 0..USERS {
            for (resource, _) in RESOURCES {
                for (op, plane) in OPERATIONS {
                    let action = Action::Operation { name: op.to_string(), plane };
                    let ours = ix.permits(&subject(user), resource, &action, now());
                    let cedar = cedar_allows(&w, &es, user, resource, op, plane);
                    prop_assert_eq!(ours, cedar, "user{} {} {} {:?}", user, resource, op, w);
                }
            }
        }
    }
}

#[test]
fn a_known_world_is_decided_alike_and_not_trivially() {
    // user0 is active Contributor on sub0 (through group0); user1 is only eligible Owner.
    let w = World {
        memberships: vec![(0, 0)],
        assignments: vec![(USERS, 1, 1, true, -1, Some(4)), (1, 0, 0, false, -1, None)],
    };
    let ix = index(&w);
    let es = entities(&w);
    let ask = |user: usize, resource: &str, op: &str, plane: Plane| {
        let action = Action::Operation {
            name: op.to_string(),
            plane,
        };
        let ours = ix.permits(&subject(user), resource, &action, now());
        assert_eq!(
            ours,
            cedar_allows(&w, &es, user, resource, op, plane),
            "{user} {resource} {op}"
        );
        ours
    };
    assert!(ask(
        0,
        "vm00",
        "Microsoft.Compute/virtualMachines/start/action",
        Plane::Control
    ));
    assert!(!ask(
        0,
        "vm10",
        "Microsoft.Compute/virtualMachines/start/action",
        Plane::Control
    ));
    assert!(!ask(
        0,
        "rg00",
        "Microsoft.Authorization/roleAssignments/write",
        Plane::Control
    ));
    assert!(!ask(
        0,
        "vm00",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        Plane::Data
    ));
    assert!(!ask(
        1,
        "sub0",
        "Microsoft.Compute/virtualMachines/read",
        Plane::Control
    ));
}
