//! The Cedar encoding of the AuthZEN decision (engineering.md §2, authzen.md §12), shared
//! by the oracle test and the side-by-side benchmark: principals `User` in `Group`, the
//! resource tree as `Scope` parents, one `permit` per active assignment in effect, its role's
//! permissions as `like` conditions on the lower-cased operation in `context.op`, the plane
//! in `context.data`.

use cedar_policy::{Context, EntityUid, Request, RestrictedExpression};
use rolegate_core::permissions::{Plane, built_in};

/// The entity `Kind::"id"`.
pub fn uid(kind: &str, id: &str) -> EntityUid {
    format!("{kind}::\"{id}\"")
        .parse()
        .unwrap_or_else(|e| panic!("entity uid {kind} {id}: {e}"))
}

/// A Cedar string literal body of a lower-cased pattern, `*` kept as the wildcard.
fn pattern(p: &str) -> String {
    p.to_ascii_lowercase()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// How many patterns one condition ORs together: Cedar's evaluator reaches its recursion
/// limit on a long `||` chain (45 patterns did), so longer lists are split.
const PATTERNS_PER_CONDITION: usize = 8;

/// The `when` conditions of a role, each granting up to [`PATTERNS_PER_CONDITION`] of its
/// patterns on one plane minus that entry's exclusions; Cedar ORs the policies itself.
pub fn conditions(template: &str) -> Vec<String> {
    let Some(role) = built_in(template) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in &role.permissions {
        for (data, allow, deny) in [
            (false, &e.actions, &e.not_actions),
            (true, &e.data_actions, &e.not_data_actions),
        ] {
            for chunk in allow.chunks(PATTERNS_PER_CONDITION) {
                let any: Vec<String> = chunk
                    .iter()
                    .map(|p| format!("context.op like \"{}\"", pattern(p)))
                    .collect();
                let mut c = format!("context.data == {data} && ({})", any.join(" || "));
                for d in deny {
                    c.push_str(&format!(" && !(context.op like \"{}\")", pattern(d)));
                }
                out.push(c);
            }
        }
    }
    out
}

/// The policies of one active assignment in effect, one text each: `holder` (`User` or
/// `Group` kind and id) holds `template` on `scope`.
pub fn policies(kind: &str, holder: &str, scope: &str, template: &str) -> Vec<String> {
    conditions(template)
        .iter()
        .map(|c| {
            format!(
                "permit(principal in {kind}::\"{holder}\", action == Action::\"invoke\", resource in Scope::\"{scope}\") when {{ {c} }};\n"
            )
        })
        .collect()
}

/// The request "may `user` invoke `op` on `scope`".
pub fn request(user: &str, scope: &str, op: &str, plane: Plane) -> Request {
    let context = Context::from_pairs(vec![
        (
            "op".to_string(),
            RestrictedExpression::new_string(op.to_ascii_lowercase()),
        ),
        (
            "data".to_string(),
            RestrictedExpression::new_bool(plane == Plane::Data),
        ),
    ])
    .unwrap_or_else(|e| panic!("context: {e}"));
    Request::new(
        uid("User", user),
        uid("Action", "invoke"),
        uid("Scope", scope),
        context,
        None,
    )
    .unwrap_or_else(|e| panic!("request: {e}"))
}
