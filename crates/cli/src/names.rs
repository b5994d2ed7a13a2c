//! The names people type (cli.md §2), resolved with `$filter` queries, never by listing
//! everything: roles, scopes (resources) and members (subjects). An ambiguous name is bad
//! usage (exit 2) that lists the candidates.

use crate::error::{Exit, Failure, Outcome};
use crate::http::{encode, literal, with_query};
use crate::session::Api;
use serde_json::Value;

/// The Graph PIM provider's base path.
pub const BASE: &str = "/beta/privilegedAccess/azureResources";

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn ambiguous(
    what: &str,
    name: &str,
    candidates: &[Value],
    line: impl Fn(&Value) -> String,
) -> Failure {
    let mut message = format!("{what} `{name}` is ambiguous; it could be:");
    for c in candidates {
        message.push_str("\n  ");
        message.push_str(&line(c));
    }
    Failure::usage(message)
}

/// A resource (scope) by ARM id, resource id or unique display name.
pub fn resource(api: &Api, name: &str) -> Outcome<Value> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Failure::usage("--scope is empty"));
    }
    let filter = if name.starts_with('/') {
        format!(
            "tolower(externalId) eq {}",
            literal(&name.trim_end_matches('/').to_lowercase())
        )
    } else {
        format!(
            "id eq {} or tolower(displayName) eq {}",
            literal(name),
            literal(&name.to_lowercase())
        )
    };
    let found = api.list(&with_query(
        &format!("{BASE}/resources"),
        &[("$filter", &filter), ("$top", "20")],
    ))?;
    match found.len() {
        0 => Err(Failure::usage(format!(
            "no registered resource you may see is `{name}` (give its ARM id, id or display name; `rolegate resources --search` looks)"
        ))),
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        _ => Err(ambiguous("the scope", name, &found, |r| {
            format!(
                "{}  {}  ({})",
                text(r, "displayName"),
                text(r, "externalId"),
                text(r, "type")
            )
        })),
    }
}

/// The one of `resources` (already at hand) that `name` names, by ARM id, id or display
/// name; `None` when none does; ambiguous names are bad usage.
pub fn resource_among(resources: &[Value], name: &str) -> Outcome<Option<Value>> {
    let name = name.trim();
    let wanted = name.trim_end_matches('/');
    let mut found: Vec<&Value> = Vec::new();
    for r in resources {
        let hit = text(r, "externalId").eq_ignore_ascii_case(wanted)
            || text(r, "id").eq_ignore_ascii_case(name)
            || text(r, "displayName").eq_ignore_ascii_case(name);
        if hit && !found.iter().any(|f| f["id"] == r["id"]) {
            found.push(r);
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => {
            let many: Vec<Value> = many.iter().map(|v| (*v).clone()).collect();
            Err(ambiguous("the scope", name, &many, |r| {
                format!(
                    "{}  {}  ({})",
                    text(r, "displayName"),
                    text(r, "externalId"),
                    text(r, "type")
                )
            }))
        }
    }
}

/// Whether a role definition is the one `name` says (display name case-insensitively,
/// template id or id).
pub fn role_matches(definition: &Value, name: &str) -> bool {
    let name = name.trim();
    text(definition, "displayName").eq_ignore_ascii_case(name)
        || text(definition, "templateId").eq_ignore_ascii_case(name)
        || text(definition, "id").eq_ignore_ascii_case(name)
}

/// A role definition of resource `resource_id`, by display name, template id or id; its
/// role setting expanded.
pub fn role_at(api: &Api, resource_id: &str, name: &str) -> Outcome<Value> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Failure::usage("the role is empty"));
    }
    let filter = format!(
        "id eq {} or templateId eq {} or tolower(displayName) eq {}",
        literal(name),
        literal(name),
        literal(&name.to_lowercase())
    );
    let found = api.list(&with_query(
        &format!("{BASE}/resources/{}/roleDefinitions", encode(resource_id)),
        &[("$filter", &filter), ("$expand", "roleSetting")],
    ))?;
    match found.len() {
        0 => Err(Failure::usage(format!(
            "there is no role `{name}` on this scope (a display name such as Contributor, a template id, or an id)"
        ))),
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        _ => Err(ambiguous("the role", name, &found, |d| {
            format!("{}  {}", text(d, "displayName"), text(d, "id"))
        })),
    }
}

/// A SCIM string literal: `"x"` with `\` and `"` escaped.
fn scim_literal(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whether `name` has the shape of a GUID (a directory id).
pub fn looks_like_id(name: &str) -> bool {
    name.len() == 36 && name.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A member (subject) by userName, e-mail, externalId, unique display name or id: users,
/// groups and service principals. Names are looked up in the directory (SCIM, tenant
/// administrators only); others name members by id.
pub fn member(api: &Api, name: &str) -> Outcome<Value> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Failure::usage("the member is empty"));
    }
    let v = scim_literal(name);
    let users = with_query(
        "/scim/v2/Users",
        &[
            (
                "filter",
                &format!(
                    "userName eq {v} or emails.value eq {v} or externalId eq {v} or displayName eq {v} or id eq {v}"
                ),
            ),
            ("count", "20"),
        ],
    );
    let groups = with_query(
        "/scim/v2/Groups",
        &[
            (
                "filter",
                &format!("displayName eq {v} or externalId eq {v} or id eq {v}"),
            ),
            ("count", "20"),
        ],
    );
    let mut found = Vec::new();
    for (path, kind) in [(users, "User"), (groups, "Group")] {
        match api.get(&path) {
            Ok(page) => {
                for r in page["Resources"].as_array().into_iter().flatten() {
                    let kind = if kind == "User"
                        && r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeType"]
                            == "ServicePrincipal"
                    {
                        "ServicePrincipal"
                    } else {
                        kind
                    };
                    found.push(serde_json::json!({
                        "id": r["id"],
                        "type": kind,
                        "displayName": r["displayName"],
                        "principalName": r["userName"],
                    }));
                }
            }
            Err(f) if f.exit == Exit::Forbidden && looks_like_id(name) => {
                return Ok(serde_json::json!({"id": name, "displayName": name}));
            }
            Err(f) if f.exit == Exit::Forbidden => {
                return Err(Failure {
                    message: format!(
                        "only tenant administrators may look members up by name; give `{name}`'s subject id instead"
                    ),
                    ..f
                });
            }
            Err(f) => return Err(f),
        }
    }
    match found.len() {
        0 => Err(Failure::usage(format!(
            "no user, group or service principal is `{name}`"
        ))),
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        _ => Err(ambiguous("the member", name, &found, |s| {
            format!(
                "{} {}  {}  {}",
                text(s, "type"),
                text(s, "displayName"),
                text(s, "principalName"),
                text(s, "id")
            )
        })),
    }
}

/// Where an assignment's resource stands from the resource asked for: the resource itself
/// (`Some(0)`), an ancestor by its ARM id (`Some(k)`, smaller is nearer), a management group
/// (`Some(FAR)`: an ancestor when the server listed it as applying, at a depth the caller
/// may not see), or neither (`None`).
pub fn distance(assignment: &Value, target: &Value, listed_as_applying: bool) -> Option<usize> {
    if assignment["resourceId"] == target["id"] {
        return Some(0);
    }
    let target_arm = text(target, "externalId").to_lowercase();
    let arm = text(&assignment["resource"], "externalId").to_lowercase();
    if !arm.is_empty() && target_arm.starts_with(&format!("{arm}/")) {
        return Some(target_arm.len() - arm.len());
    }
    let management_group = arm.starts_with("/providers/microsoft.management/managementgroups/");
    (listed_as_applying && management_group).then_some(FAR)
}

/// The distance of an ancestor management group (see [`distance`]).
pub const FAR: usize = usize::MAX / 4;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_resource_and_its_ancestors_are_near() {
        let target = json!({"id": "t", "externalId": "/subscriptions/S/resourceGroups/rg-web"});
        let on = |id: &str, arm: &str| json!({"resourceId": id, "resource": {"externalId": arm}});
        assert_eq!(
            distance(
                &on("t", "/subscriptions/S/resourceGroups/rg-web"),
                &target,
                false
            ),
            Some(0)
        );
        let sub = distance(&on("s", "/subscriptions/S"), &target, false);
        assert!(sub.is_some_and(|d| d > 0));
        // A sibling whose name is a prefix is no ancestor.
        assert_eq!(
            distance(
                &on("x", "/subscriptions/S/resourceGroups/rg"),
                &target,
                false
            ),
            None
        );
        assert_eq!(distance(&on("y", "/subscriptions/T"), &target, true), None);
        // A management group is an ancestor only when the server listed it as applying.
        let mg = on("m", "/providers/Microsoft.Management/managementGroups/corp");
        assert_eq!(distance(&mg, &target, false), None);
        assert_eq!(distance(&mg, &target, true), Some(FAR));
        assert!(sub < Some(FAR));
    }
}
