//! The R1/R3 authorization check every call makes, against an in-memory index the size of
//! a large tenant: 10,000 resources in a four-level tree, 100,000 users in 1,000 groups,
//! 1,000,000 assignments. Run: `cargo bench -p rolegate-bench --bench access_check`.

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use rolegate_core::access::AccessIndex;
use rolegate_core::assignment::{AssignmentState, RoleAssignment};
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
        let a = RoleAssignment {
            id: format!("{i:032x}"),
            resource_id: resources[rng.below(resources.len())].clone(),
            role_definition_id: "role".into(),
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
        ix.upsert(&a, rng.below(4) == 0);
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

criterion_group!(benches, access_check);
criterion_main!(benches);
