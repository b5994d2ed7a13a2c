//! The R1/R3 authorization check every call makes, against an in-memory index the size of
//! a large tenant: 10,000 resources in a four-level tree, 100,000 users in 1,000 groups,
//! 1,000,000 assignments over five built-in roles; and the AuthZEN decision (authzen.md §4:
//! holders, scope chain, active in effect, the role's permissions) on the same index.
//! Run: `cargo bench -p rolegate-bench --bench access_check`.

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use rolegate_core::access::AccessIndex;
use rolegate_core::access_decision::Action;
use rolegate_core::assignment::{AssignmentState, RoleAssignment};
use rolegate_core::permissions::Plane;
use rolegate_core::schedule::Schedule;
use std::hint::black_box;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Owner, Contributor, Reader, Virtual Machine Contributor, Storage Blob Data Contributor.
const ROLES: [&str; 5] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
];

fn world() -> (AccessIndex, Vec<String>, Vec<String>) {
    let mut ix = AccessIndex::new();
    let mut resources = Vec::new();
    for i in 0..10 {
        ix.add_resource(&format!("mg{i}"), None);
        resources.push(format!("mg{i}"));
    }
    for (level, count, parents) in [("sub", 100, 10), ("rg", 1_000, 100), ("vm", 8_890, 1_000)] {
        let parent_prefix = match level {
            "sub" => "mg",
            "rg" => "sub",
            _ => "rg",
        };
        for i in 0..count {
            let id = format!("{level}{i}");
            ix.add_resource(&id, Some(&format!("{parent_prefix}{}", i % parents)));
            resources.push(id);
        }
    }
    for r in &resources {
        for (k, template) in ROLES.iter().enumerate() {
            ix.add_role(&format!("{r}-role{k}"), template);
        }
    }
    let users: Vec<String> = (0..100_000).map(|i| format!("user{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        ix.add_membership(&format!("group{}", i % 1_000), u);
        ix.add_membership(&format!("group{}", (i * 7) % 1_000), u);
    }
    let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for i in 0..1_000_000 {
        let subject = if i % 5 == 0 {
            format!("group{}", rng.below(1_000))
        } else {
            users[rng.below(users.len())].clone()
        };
        let resource = resources[rng.below(resources.len())].clone();
        let role = rng.below(ROLES.len());
        let a = RoleAssignment {
            id: format!("{i:032x}"),
            role_definition_id: format!("{resource}-role{role}"),
            resource_id: resource,
            subject_id: subject,
            state: if rng.below(10) < 6 {
                AssignmentState::Eligible
            } else {
                AssignmentState::Active
            },
            linked_eligible_id: None,
            schedule: Schedule {
                start: now - SignedDuration::from_hours(24),
                end: Some(now + SignedDuration::from_hours(24 * 90)),
            },
            request_id: "seed".into(),
        };
        ix.upsert(&a, role == 0);
    }
    (ix, users, resources)
}

fn access_check(c: &mut Criterion) {
    let (ix, users, resources) = world();
    let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut rng = Rng(42);
    let queries: Vec<(String, String)> = (0..4096)
        .map(|_| {
            (
                users[rng.below(users.len())].clone(),
                resources[rng.below(resources.len())].clone(),
            )
        })
        .collect();
    let mut i = 0;
    c.bench_function("R1 holds_any (1M assignments)", |b| {
        b.iter(|| {
            let (u, r) = &queries[i % queries.len()];
            i += 1;
            black_box(ix.holds_any(u, r, now))
        })
    });
    c.bench_function("R3 administers (1M assignments)", |b| {
        b.iter(|| {
            let (u, r) = &queries[i % queries.len()];
            i += 1;
            black_box(ix.administers(u, r, now))
        })
    });
}

fn authzen_check(c: &mut Criterion) {
    let (ix, users, resources) = world();
    let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let operations = [
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
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            Plane::Data,
        ),
    ];
    let mut rng = Rng(7);
    let queries: Vec<(String, String, Action)> = (0..4096)
        .map(|_| {
            let (name, plane) = operations[rng.below(operations.len())];
            (
                users[rng.below(users.len())].clone(),
                resources[rng.below(resources.len())].clone(),
                Action::Operation {
                    name: name.to_string(),
                    plane,
                },
            )
        })
        .collect();
    let permitted = queries
        .iter()
        .filter(|(u, r, a)| ix.permits(u, r, a, now))
        .count();
    println!(
        "AuthZEN query mix: {permitted} of {} permitted",
        queries.len()
    );
    let mut i = 0;
    c.bench_function("AuthZEN permits (1M assignments)", |b| {
        b.iter(|| {
            let (u, r, a) = &queries[i % queries.len()];
            i += 1;
            black_box(ix.permits(u, r, a, now))
        })
    });
}

criterion_group!(benches, access_check, authzen_check);
criterion_main!(benches);
