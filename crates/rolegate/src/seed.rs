//! `rolegate seed`: builds a large synthetic tenant for benchmarks — a realistic resource
//! tree (management groups › subscriptions › resource groups › resources), users, groups
//! with members, and eligible/active assignments — written straight through the store in
//! large transactions (no requests or audit records: this is test data, not history). It
//! also writes a manifest of ids the load generator uses.

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use rolegate_core::assignment::{AssignmentState, RoleAssignment};
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::policy::RoleRules;
use rolegate_core::query::ListQuery;
use rolegate_core::resource::{Resource, ResourceStatus};
use rolegate_core::role::{BUILT_IN_ROLES, RoleDefinition, RoleSetting};
use rolegate_core::schedule::Schedule;
use rolegate_core::store::{self, Store};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;

/// Sizes of the synthetic tenant.
#[derive(Debug, Clone, Copy)]
pub struct SeedSize {
    /// Resources in all (management groups, subscriptions, resource groups, resources).
    pub resources: usize,
    /// Users.
    pub users: usize,
    /// Groups (each user is in two).
    pub groups: usize,
    /// Assignments.
    pub assignments: usize,
}

/// splitmix64: a small deterministic generator, so two seeds of the same size match.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let v = (u128::from(a) << 64) | u128::from(b);
        let v = (v & !(0xF000u128 << 64)) | (0x4000u128 << 64);
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

struct Level {
    ids: Vec<String>,
    arms: Vec<String>,
    /// Ancestor ids of each resource, nearest first.
    ancestors: Vec<Vec<String>>,
}

/// Seeds `store` (which must be empty) and writes the manifest to `manifest`.
pub fn seed(
    store: &dyn Store,
    size: SeedSize,
    now: Timestamp,
    manifest: &Path,
) -> anyhow::Result<()> {
    let empty = store::read(store, |tx| {
        Ok(tx
            .list_resources(&ListQuery {
                top: 1,
                ..ListQuery::default()
            })?
            .items
            .is_empty())
    })?;
    anyhow::ensure!(
        empty,
        "the database already holds resources; seed an empty one"
    );
    let mut rng = Rng(0x5EED);
    let n_mg = (size.resources / 1000).max(1);
    let n_sub = (size.resources / 100).max(1);
    let n_rg = (size.resources / 10).max(1);
    let n_leaf = size.resources.saturating_sub(n_mg + n_sub + n_rg).max(1);
    let mut levels: Vec<Level> = Vec::new();
    let mut all: Vec<(String, Vec<String>)> = Vec::new();
    let mut roles: Vec<Vec<String>> = Vec::new();
    for (depth, count) in [n_mg, n_sub, n_rg, n_leaf].into_iter().enumerate() {
        let mut level = Level {
            ids: Vec::new(),
            arms: Vec::new(),
            ancestors: Vec::new(),
        };
        store::write(store, |tx| {
            for i in 0..count {
                let (arm, parent) = match depth {
                    0 => (
                        format!("/providers/Microsoft.Management/managementGroups/mg-{i:04}"),
                        None,
                    ),
                    1 => (format!("/subscriptions/{}", rng.uuid()), Some(i % n_mg)),
                    2 => {
                        let p = i % n_sub;
                        (
                            format!("{}/resourceGroups/rg-{i:05}", levels[1].arms[p]),
                            Some(p),
                        )
                    }
                    _ => {
                        let p = i % n_rg;
                        (
                            format!(
                                "{}/providers/Microsoft.Compute/virtualMachines/vm-{i:06}",
                                levels[2].arms[p]
                            ),
                            Some(p),
                        )
                    }
                };
                let above = parent.and_then(|p| {
                    levels
                        .get(depth - 1)
                        .map(|l| (l.ids[p].clone(), l.ancestors[p].clone()))
                });
                let id = rng.uuid();
                let resource_type = [
                    "managementgroup",
                    "subscription",
                    "resourcegroup",
                    "Microsoft.Compute/virtualMachines",
                ][depth];
                let mut ancestors = Vec::new();
                if let Some((pid, pa)) = &above {
                    ancestors.push(pid.clone());
                    ancestors.extend(pa.iter().cloned());
                }
                let r = Resource {
                    id: id.clone(),
                    external_id: arm.clone(),
                    resource_type: resource_type.into(),
                    display_name: arm.rsplit('/').next().unwrap_or_default().to_string(),
                    status: ResourceStatus::Active,
                    registered_at: now,
                    registered_root: levels
                        .first()
                        .and_then(|l| {
                            ancestors.last().and_then(|root| {
                                l.ids
                                    .iter()
                                    .position(|x| x == root)
                                    .map(|p| l.arms[p].clone())
                            })
                        })
                        .unwrap_or_else(|| arm.clone()),
                    parent_id: above.as_ref().map(|(p, _)| p.clone()),
                };
                tx.insert_resource(&r, &ancestors)?;
                let mut role_ids = Vec::new();
                for role in BUILT_IN_ROLES {
                    let d = RoleDefinition::built_in(rng.uuid(), &id, &arm, role);
                    let s = RoleSetting {
                        id: rng.uuid(),
                        resource_id: id.clone(),
                        role_definition_id: d.id.clone(),
                        is_default: true,
                        last_updated_at: None,
                        last_updated_by: None,
                        rules: RoleRules::defaults(),
                    };
                    tx.insert_role_definition(&d, &s)?;
                    role_ids.push(d.id);
                }
                roles.push(role_ids);
                all.push((id.clone(), ancestors.clone()));
                level.ids.push(id);
                level.arms.push(arm);
                level.ancestors.push(ancestors);
            }
            Ok(())
        })
        .with_context(|| format!("seeding resources at depth {depth}"))?;
        levels.push(level);
    }
    eprintln!("seeded {} resources", all.len());

    let mut users = Vec::with_capacity(size.users);
    for chunk in (0..size.users).collect::<Vec<_>>().chunks(20_000) {
        store::write(store, |tx| {
            for &i in chunk {
                let s = Subject {
                    id: rng.uuid(),
                    external_id: Some(format!("user{i:06}")),
                    kind: SubjectKind::User,
                    display_name: format!("User {i:06}"),
                    principal_name: Some(format!("user{i:06}@bench.example")),
                    email: Some(format!("user{i:06}@bench.example")),
                    active: true,
                };
                tx.insert_subject(&s, now)?;
                users.push(s.id);
            }
            Ok(())
        })?;
    }
    let mut groups = Vec::with_capacity(size.groups);
    store::write(store, |tx| {
        for g in 0..size.groups {
            let s = Subject {
                id: rng.uuid(),
                external_id: Some(format!("group{g:04}")),
                kind: SubjectKind::Group,
                display_name: format!("Group {g:04}"),
                principal_name: None,
                email: None,
                active: true,
            };
            tx.insert_subject(&s, now)?;
            groups.push(s.id);
        }
        for (g, gid) in groups.iter().enumerate() {
            let members: Vec<String> = users
                .iter()
                .enumerate()
                .filter(|(i, _)| i % size.groups.max(1) == g || (i * 7) % size.groups.max(1) == g)
                .map(|(_, u)| u.clone())
                .collect();
            tx.set_group_members(gid, &members)?;
        }
        Ok(())
    })?;
    eprintln!("seeded {} users and {} groups", users.len(), groups.len());

    let mut seen: HashSet<(usize, usize, usize, bool)> = HashSet::new();
    let mut samples = Vec::new();
    let mut written = 0usize;
    let day = SignedDuration::from_hours(24);
    while written < size.assignments {
        let batch = (size.assignments - written).min(50_000);
        store::write(store, |tx| {
            let mut n = 0;
            while n < batch {
                let is_group = rng.below(5) == 0 && !groups.is_empty();
                let subject = if is_group {
                    rng.below(groups.len())
                } else {
                    rng.below(users.len())
                };
                let level = match rng.below(100) {
                    0 => 0,
                    1..=5 => 1,
                    6..=30 => 2,
                    _ => 3,
                };
                let resource = rng.below(levels[level].ids.len());
                let role = rng.below(BUILT_IN_ROLES.len());
                let eligible = rng.below(10) < 6;
                let key = (
                    level * 10_000_000 + resource,
                    role,
                    subject + if is_group { 1 << 40 } else { 0 },
                    eligible,
                );
                if !seen.insert(key) {
                    continue;
                }
                let idx = levels[..level].iter().map(|l| l.ids.len()).sum::<usize>() + resource;
                let start = now - day * (rng.below(30) as i32);
                let end = if rng.below(20) == 0 {
                    None
                } else {
                    Some(start + day * (90 + rng.below(275)) as i32)
                };
                let a = RoleAssignment {
                    id: rng.uuid(),
                    resource_id: levels[level].ids[resource].clone(),
                    role_definition_id: roles[idx][role].clone(),
                    subject_id: if is_group {
                        groups[subject].clone()
                    } else {
                        users[subject].clone()
                    },
                    state: if eligible {
                        AssignmentState::Eligible
                    } else {
                        AssignmentState::Active
                    },
                    linked_eligible_id: None,
                    schedule: Schedule { start, end },
                    request_id: "seed".into(),
                };
                tx.insert_assignment(&a)?;
                if eligible
                    && !is_group
                    && end.is_some()
                    && samples.len() < 20_000
                    && !seen.contains(&(level * 10_000_000 + resource, role, subject, false))
                {
                    samples.push(json!({"subjectId": a.subject_id, "resourceId": a.resource_id, "roleDefinitionId": a.role_definition_id, "eligibleId": a.id}));
                }
                n += 1;
            }
            Ok(())
        })?;
        written += batch;
        eprintln!("seeded {written} assignments");
    }
    let portal = seed_portal_personas(store, &levels[2], &roles, n_mg + n_sub, &users, now)?;
    let body = json!({
        "portal": portal,
        "users": users.iter().step_by((users.len() / 2000).max(1)).collect::<Vec<_>>(),
        "resources": levels[2].ids.iter().chain(levels[3].ids.iter()).step_by(((n_rg + n_leaf) / 2000).max(1)).collect::<Vec<_>>(),
        "activations": samples,
    });
    std::fs::write(manifest, serde_json::to_vec_pretty(&body)?)
        .with_context(|| format!("writing {}", manifest.display()))?;
    Ok(())
}

/// The people the portal benchmark signs in as (docs/benchmarks.md): a requester with 50
/// eligible assignments, 10 of them activated ("My roles"), and an approver named in the
/// activation rules of 50 roles, each with a pending activation ("Approvals"). Returns
/// their user names for the manifest.
fn seed_portal_personas(
    store: &dyn Store,
    groups: &Level,
    roles: &[Vec<String>],
    first_group: usize,
    users: &[String],
    now: Timestamp,
) -> anyhow::Result<serde_json::Value> {
    use rolegate_core::policy::{RoleRulesPatch, RuleSetting};
    use rolegate_core::request::{RequestType, RoleAssignmentRequest, SubStatus};
    let mut rng = Rng(0x9017A1);
    let mut person = |name: &str| Subject {
        id: rng.uuid(),
        external_id: Some(name.to_string()),
        kind: SubjectKind::User,
        display_name: name.to_string(),
        principal_name: Some(format!("{name}@bench.example")),
        email: Some(format!("{name}@bench.example")),
        active: true,
    };
    let (requester, approver) = (person("portal-requester"), person("portal-approver"));
    let contributor = BUILT_IN_ROLES
        .iter()
        .position(|r| r.display_name == "Contributor")
        .unwrap_or(0);
    let hour = SignedDuration::from_hours(1);
    store::write(store, |tx| {
        tx.insert_subject(&requester, now)?;
        tx.insert_subject(&approver, now)?;
        for i in 0..50 {
            let rg = i * (groups.ids.len() / 50).max(1) % groups.ids.len();
            let role = roles[first_group + rg][contributor].clone();
            let resource = groups.ids[rg].clone();
            let eligible = RoleAssignment {
                id: rng.uuid(),
                resource_id: resource.clone(),
                role_definition_id: role.clone(),
                subject_id: requester.id.clone(),
                state: AssignmentState::Eligible,
                linked_eligible_id: None,
                schedule: Schedule {
                    start: now - hour,
                    end: Some(now + SignedDuration::from_hours(24 * 180)),
                },
                request_id: "seed".into(),
            };
            tx.insert_assignment(&eligible)?;
            if i < 10 {
                tx.insert_assignment(&RoleAssignment {
                    id: rng.uuid(),
                    state: AssignmentState::Active,
                    linked_eligible_id: Some(eligible.id.clone()),
                    schedule: Schedule {
                        start: now - hour,
                        end: Some(now + hour * 8),
                    },
                    ..eligible.clone()
                })?;
            }
            // The approver decides activations of this role; someone waits for it.
            let mut setting = tx.role_setting_of(&role)?.ok_or_else(|| {
                rolegate_core::error::DomainError::internal("a seeded role setting is missing")
            })?;
            setting.rules.apply_patch(RoleRulesPatch {
                user_member: Some(vec![RuleSetting::new(
                    "ApprovalRule",
                    json!({"Enabled": true, "Approvers": [{"Id": approver.id, "Type": "User"}]})
                        .to_string(),
                )]),
                ..RoleRulesPatch::default()
            })?;
            tx.update_role_setting(&setting)?;
            let requester_id = users[rng.below(users.len())].clone();
            let waiting = RoleAssignment {
                id: rng.uuid(),
                subject_id: requester_id.clone(),
                ..eligible.clone()
            };
            tx.insert_assignment(&waiting)?;
            let request = RoleAssignmentRequest {
                id: rng.uuid(),
                resource_id: resource,
                role_definition_id: role,
                subject_id: requester_id.clone(),
                kind: RequestType::UserAdd,
                state: AssignmentState::Active,
                requested_at: now - SignedDuration::from_mins(i as i64),
                schedule: Some(Schedule {
                    start: now,
                    end: Some(now + hour * 2),
                }),
                reason: Some(format!("Benchmark request {i}")),
                sub_status: SubStatus::PendingApproval,
                status_details: Vec::new(),
                linked_eligible_id: Some(waiting.id.clone()),
                ticket: None,
                requested_by: requester_id,
                assignment_id: None,
                emergency: false,
                approval_deadline: Some(now + SignedDuration::from_hours(24 * 30)),
                version: 1,
            };
            tx.insert_request(&request)?;
            tx.set_request_approvers(&request.id, std::slice::from_ref(&approver.id))?;
        }
        Ok(())
    })?;
    eprintln!("seeded the portal benchmark's requester and approver");
    Ok(json!({
        "requester": requester.principal_name,
        "approver": approver.principal_name,
    }))
}
