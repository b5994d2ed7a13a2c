//! The AuthZEN decision side by side (authzen.md §12): Rolegate's access index, the
//! `cedar-policy` crate with the policies sliced per principal, and the `casbin` crate, on
//! the same tenant (crates/bench/benches/tenant: 1,000,000 assignments) and the same
//! questions, every answer cross-checked equal. Each engine is timed per question, with only
//! the decision inside the timer (Cedar's slice and request, casbin's arguments, are built
//! before it), and reports the median and the 99th percentile.
//!
//! Run: `cargo bench --manifest-path crates/cedar-oracle/Cargo.toml --bench side_by_side`
//!
//! - Cedar: one policy per granted pattern group of each active assignment in effect
//!   (`rolegate_cedar_oracle::policies`, the encoding the oracle test proves equal), users'
//!   parents their groups, scopes' parents their parent scopes. "Sliced" as Cedar's authors
//!   advise and engineering.md measured: a question gets only the policies of the user and
//!   of its groups.
//! - casbin: one rule per permission entry and plane of each active assignment in effect,
//!   `p = holder, scope path prefix, allowed-operations regex, excluded-operations regex,
//!   plane`, groups as `g`; the matcher tests the cheap members first.

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use cedar_policy::{
    Authorizer, Decision, Entities, Entity, EntityUid, Policy, PolicyId, PolicySet,
};
use rolegate_cedar_oracle::{policies, request, uid};
use rolegate_core::access_decision::Action;
use rolegate_core::assignment::{AssignmentState, RoleAssignment};
use rolegate_core::permissions::{Plane, built_in};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tenant::{ROLES, Tenant, now};

#[path = "../../bench/benches/tenant/mod.rs"]
mod tenant;

/// Questions asked of Rolegate and Cedar.
const QUESTIONS: usize = 1_000;
/// How many times Rolegate's index answers each (its calls are short).
const INDEX_ROUNDS: usize = 50;
/// Questions asked of casbin, which reads every rule per question.
const CASBIN_QUESTIONS: usize = 40;

const CASBIN_MODEL: &str = "
[request_definition]
r = sub, obj, act, plane

[policy_definition]
p = sub, obj, act, notact, plane

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.plane == p.plane && keyMatch(r.obj, p.obj) && g(r.sub, p.sub) && regexMatch(r.act, p.act) && !regexMatch(r.act, p.notact)
";

type Question = (String, String, &'static str, Plane);

fn in_effect(a: &RoleAssignment) -> bool {
    a.state == AssignmentState::Active
        && a.schedule.start <= now()
        && a.schedule.end.is_none_or(|e| now() < e)
}

fn plane_name(plane: Plane) -> &'static str {
    match plane {
        Plane::Control => "control",
        Plane::Data => "data",
    }
}

/// One engine's timings and answers.
struct Run {
    engine: &'static str,
    setup: Duration,
    times: Vec<Duration>,
    answers: Vec<bool>,
}

impl Run {
    fn quantile(&self, q: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        let i = ((t.len() as f64 - 1.0) * q).round() as usize;
        t.get(i).copied().unwrap_or_default()
    }
}

fn rolegate(tenant: &Tenant, questions: &[Question]) -> Run {
    let started = Instant::now();
    let ix = tenant.index();
    let setup = started.elapsed();
    let actions: Vec<Action> = questions
        .iter()
        .map(|(_, _, name, plane)| Action::Operation {
            name: name.to_string(),
            plane: *plane,
        })
        .collect();
    let mut times = Vec::with_capacity(questions.len() * INDEX_ROUNDS);
    let mut answers = Vec::new();
    for round in 0..INDEX_ROUNDS {
        for ((user, resource, _, _), action) in questions.iter().zip(&actions) {
            let t = Instant::now();
            let permitted = black_box(ix.permits(user, resource, action, now()));
            times.push(t.elapsed());
            if round == 0 {
                answers.push(permitted);
            }
        }
    }
    Run {
        engine: "Rolegate access index",
        setup,
        times,
        answers,
    }
}

fn cedar_sliced(tenant: &Tenant, questions: &[Question]) -> Run {
    let started = Instant::now();
    let mut groups_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (g, u) in &tenant.memberships {
        groups_of.entry(u.as_str()).or_default().push(g.as_str());
    }
    // The slices asked about: each questioned user and its groups.
    let mut wanted: HashSet<&str> = HashSet::new();
    for (user, ..) in questions {
        wanted.insert(user);
        wanted.extend(groups_of.get(user.as_str()).into_iter().flatten().copied());
    }
    let mut by_holder: HashMap<&str, Vec<Policy>> = HashMap::new();
    let mut parsed = 0usize;
    for (a, role) in &tenant.assignments {
        if !in_effect(a) || !wanted.contains(a.subject_id.as_str()) {
            continue;
        }
        let kind = if a.subject_id.starts_with("group") {
            "Group"
        } else {
            "User"
        };
        for text in policies(kind, &a.subject_id, &a.resource_id, ROLES[*role]) {
            let id = PolicyId::new(format!("p{parsed}"));
            parsed += 1;
            let p = Policy::parse(Some(id), text).unwrap_or_else(|e| panic!("policy: {e}"));
            by_holder.entry(a.subject_id.as_str()).or_default().push(p);
        }
    }
    let mut list = Vec::new();
    for (r, parent) in &tenant.resources {
        let parents: HashSet<EntityUid> = parent.iter().map(|p| uid("Scope", p)).collect();
        list.push(Entity::new_no_attrs(uid("Scope", r), parents));
    }
    let groups: HashSet<&str> = tenant.memberships.iter().map(|(g, _)| g.as_str()).collect();
    for g in groups {
        list.push(Entity::new_no_attrs(uid("Group", g), HashSet::new()));
    }
    for u in &tenant.users {
        let parents: HashSet<EntityUid> = groups_of
            .get(u.as_str())
            .into_iter()
            .flatten()
            .map(|g| uid("Group", g))
            .collect();
        list.push(Entity::new_no_attrs(uid("User", u), parents));
    }
    list.push(Entity::new_no_attrs(
        uid("Action", "invoke"),
        HashSet::new(),
    ));
    let entities = Entities::from_entities(list, None).unwrap_or_else(|e| panic!("entities: {e}"));
    let setup = started.elapsed();
    eprintln!("cedar: {parsed} policies parsed for the sliced principals");
    let authorizer = Authorizer::new();
    let mut times = Vec::new();
    let mut answers = Vec::new();
    let mut slice_sizes = 0usize;
    for (user, resource, op, plane) in questions {
        // A user may be listed twice in one group; each holder's policies count once.
        let mut holders: Vec<&str> = std::iter::once(user.as_str())
            .chain(groups_of.get(user.as_str()).into_iter().flatten().copied())
            .collect();
        holders.sort_unstable();
        holders.dedup();
        let slice: Vec<Policy> = holders
            .iter()
            .flat_map(|h| by_holder.get(h).into_iter().flatten().cloned())
            .collect();
        slice_sizes += slice.len();
        let set = PolicySet::from_policies(slice).unwrap_or_else(|e| panic!("policy set: {e}"));
        let req = request(user, resource, op, *plane);
        let t = Instant::now();
        let response = black_box(authorizer.is_authorized(&req, &set, &entities));
        times.push(t.elapsed());
        answers.push(response.decision() == Decision::Allow);
    }
    eprintln!(
        "cedar: {} policies per slice on average",
        slice_sizes / questions.len().max(1)
    );
    Run {
        engine: "cedar-policy, sliced per principal",
        setup,
        times,
        answers,
    }
}

/// An anchored regular expression matching any of `patterns` (lower case, `*` any run),
/// or nothing when there are none.
fn any_of(patterns: &[String]) -> String {
    if patterns.is_empty() {
        return "^$".to_string();
    }
    let alternatives: Vec<String> = patterns
        .iter()
        .map(|p| {
            p.to_ascii_lowercase()
                .split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*")
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

fn casbin(tenant: &Tenant, questions: &[Question]) -> Run {
    let started = Instant::now();
    let mut path: HashMap<&str, String> = HashMap::new();
    for (r, parent) in &tenant.resources {
        let above = parent
            .as_deref()
            .and_then(|p| path.get(p))
            .cloned()
            .unwrap_or_default();
        path.insert(r.as_str(), format!("{above}/{r}"));
    }
    let mut rules = String::new();
    let mut count = 0usize;
    for (a, role) in &tenant.assignments {
        if !in_effect(a) {
            continue;
        }
        let Some(role) = built_in(ROLES[*role]) else {
            continue;
        };
        let scope = path
            .get(a.resource_id.as_str())
            .cloned()
            .unwrap_or_default();
        for e in &role.permissions {
            for (plane, allow, deny) in [
                (Plane::Control, &e.actions, &e.not_actions),
                (Plane::Data, &e.data_actions, &e.not_data_actions),
            ] {
                if allow.is_empty() {
                    continue;
                }
                rules.push_str(&format!(
                    "p, {}, {scope}/*, {}, {}, {}\n",
                    a.subject_id,
                    any_of(allow),
                    any_of(deny),
                    plane_name(plane)
                ));
                count += 1;
            }
        }
    }
    for (g, u) in &tenant.memberships {
        rules.push_str(&format!("g, {u}, {g}\n"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let enforcer = runtime.block_on(async {
        let model = DefaultModel::from_str(CASBIN_MODEL)
            .await
            .unwrap_or_else(|e| panic!("casbin model: {e}"));
        Enforcer::new(model, StringAdapter::new(rules))
            .await
            .unwrap_or_else(|e| panic!("casbin rules: {e}"))
    });
    let setup = started.elapsed();
    eprintln!("casbin: {count} rules");
    let mut times = Vec::new();
    let mut answers = Vec::new();
    for (user, resource, op, plane) in questions {
        let obj = format!(
            "{}/",
            path.get(resource.as_str()).cloned().unwrap_or_default()
        );
        let args = (
            user.clone(),
            obj,
            op.to_ascii_lowercase(),
            plane_name(*plane).to_string(),
        );
        let t = Instant::now();
        let permitted = enforcer
            .enforce(black_box(args))
            .unwrap_or_else(|e| panic!("casbin enforce: {e}"));
        times.push(t.elapsed());
        answers.push(permitted);
    }
    Run {
        engine: "casbin",
        setup,
        times,
        answers,
    }
}

fn main() {
    let started = Instant::now();
    let tenant = Tenant::generate();
    let questions = tenant.questions(QUESTIONS, 7);
    eprintln!(
        "tenant: {} assignments, generated in {:.1?}",
        tenant.assignments.len(),
        started.elapsed()
    );
    let ours = rolegate(&tenant, &questions);
    let cedar = cedar_sliced(&tenant, &questions);
    let casbin = casbin(&tenant, &questions[..CASBIN_QUESTIONS]);
    for other in [&cedar, &casbin] {
        for (i, (a, b)) in ours.answers.iter().zip(&other.answers).enumerate() {
            assert_eq!(
                a, b,
                "{} decides question {i} {:?} otherwise",
                other.engine, questions[i]
            );
        }
    }
    let permitted = ours.answers.iter().filter(|p| **p).count();
    println!(
        "{} assignments; {permitted} of {} questions permitted; answers equal across engines",
        tenant.assignments.len(),
        questions.len()
    );
    println!();
    println!("| engine | questions timed | setup | median | p99 | median ÷ Rolegate's |");
    println!("|---|---|---|---|---|---|");
    let base = ours.quantile(0.5).as_secs_f64();
    for run in [&ours, &cedar, &casbin] {
        println!(
            "| {} | {} | {:.1?} | {:.2?} | {:.2?} | {:.0}× |",
            run.engine,
            run.times.len(),
            run.setup,
            run.quantile(0.5),
            run.quantile(0.99),
            run.quantile(0.5).as_secs_f64() / base
        );
    }
}
