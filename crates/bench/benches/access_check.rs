//! The R1/R3 authorization check every call makes, against an in-memory index the size of
//! a large tenant (benches/tenant: 10,000 resources, 100,000 users in 1,000 groups,
//! 1,000,000 assignments over five built-in roles); and the AuthZEN decision (authzen.md §4:
//! holders, scope chain, active in effect, the role's permissions) on the same index.
//! Run: `cargo bench -p rolegate-bench --bench access_check`.

use criterion::{Criterion, criterion_group, criterion_main};
use rolegate_core::access_decision::Action;
use std::hint::black_box;
use tenant::{Rng, Tenant, now};

mod tenant;

fn access_check(c: &mut Criterion) {
    let tenant = Tenant::generate();
    let ix = tenant.index();
    let (users, resources) = (&tenant.users, &tenant.resources);
    let now = now();
    let mut rng = Rng(42);
    let queries: Vec<(String, String)> = (0..4096)
        .map(|_| {
            (
                users[rng.below(users.len())].clone(),
                resources[rng.below(resources.len())].0.clone(),
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
    let tenant = Tenant::generate();
    let ix = tenant.index();
    let now = now();
    let queries: Vec<(String, String, Action)> = tenant
        .questions(4096, 7)
        .into_iter()
        .map(|(u, r, name, plane)| {
            (
                u,
                r,
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
