//! The directory: users, groups and service principals (`governanceSubject`), provisioned
//! over SCIM, and group membership with its one expansion ([`closure`]). What creating,
//! changing and deleting a subject writes is decided in [`decision`]; the operations that
//! load and apply are [`crate::operation::directory`].

pub mod decision;

/// What kind of principal a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SubjectKind {
    /// A person.
    User,
    /// A group; its members hold what it holds.
    Group,
    /// A workload identity.
    ServicePrincipal,
}

impl SubjectKind {
    /// The wire name (`User`, `Group`, `ServicePrincipal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServicePrincipal => "ServicePrincipal",
        }
    }

    /// Parses a wire name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Group, Self::ServicePrincipal]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// A principal of the directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subject {
    /// Server-assigned GUID (the SCIM `id`).
    pub id: String,
    /// The identity provider's id (SCIM `externalId`); a token's `oid`/`sub` may name it.
    pub external_id: Option<String>,
    /// User, group or service principal.
    pub kind: SubjectKind,
    /// Display name.
    pub display_name: String,
    /// User principal name (SCIM `userName`); users only.
    pub principal_name: Option<String>,
    /// Primary email; users only.
    pub email: Option<String>,
    /// False when the identity provider disabled the user.
    pub active: bool,
}

/// Everything reachable from `start` by `next`, breadth first: `start`, then each node
/// once in the order it is first reached (cycles are tolerated). The one expansion of
/// group membership, in both directions ([`group_closure`], [`member_expansion`], and the
/// access index's checks); it is never capped, since a capped expansion would leave an
/// activation unrevoked or an approver unasked: the set of nodes seen bounds it by the
/// directory's size. Small closures (the common case: a person in a few groups) are
/// checked for repeats in place, larger ones through a hash set.
pub fn closure<T, I, E>(
    start: T,
    mut next: impl FnMut(&T) -> std::result::Result<I, E>,
) -> std::result::Result<Vec<T>, E>
where
    T: Clone + Eq + std::hash::Hash,
    I: IntoIterator<Item = T>,
{
    const SMALL: usize = 16;
    let mut seen: Option<std::collections::HashSet<T>> = None;
    let mut out = vec![start];
    let mut i = 0;
    while let Some(node) = out.get(i).cloned() {
        for n in next(&node)? {
            let known = match &seen {
                Some(set) => set.contains(&n),
                None => out.contains(&n),
            };
            if known {
                continue;
            }
            if let Some(set) = &mut seen {
                set.insert(n.clone());
            }
            out.push(n);
            if seen.is_none() && out.len() > SMALL {
                seen = Some(out.iter().cloned().collect());
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The groups `subject` belongs to, directly or through nested groups (not itself), given
/// a lookup of direct memberships.
pub fn group_closure<E>(
    subject: &str,
    mut direct_groups: impl FnMut(&str) -> std::result::Result<Vec<String>, E>,
) -> std::result::Result<Vec<String>, E> {
    let mut all = closure(subject.to_string(), |s| direct_groups(s))?;
    all.remove(0);
    Ok(all)
}

/// `group` first, then everyone in it, directly or through nested groups (groups included),
/// given a lookup of direct members.
pub fn member_expansion<E>(
    group: &str,
    mut direct_members: impl FnMut(&str) -> std::result::Result<Vec<String>, E>,
) -> std::result::Result<Vec<String>, E> {
    closure(group.to_string(), |g| direct_members(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn closure_follows_nesting_and_survives_cycles() {
        let m: HashMap<&str, Vec<&str>> = HashMap::from([
            ("u", vec!["g1"]),
            ("g1", vec!["g2"]),
            ("g2", vec!["g1", "g3"]),
            ("g3", vec!["u"]),
        ]);
        let lookup = |s: &str| {
            m.get(s)
                .map(|v| v.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default()
        };
        let mut got = group_closure("u", |s| Ok::<_, ()>(lookup(s))).unwrap();
        got.sort();
        assert_eq!(got, vec!["g1", "g2", "g3"]);
    }

    #[test]
    fn large_expansions_keep_each_node_once_in_breadth_first_order() {
        // g0 → g1 … g39 → g0 (a cycle), and every group also holds u{n}.
        let next = |g: &String| -> Result<Vec<String>, ()> {
            let n: usize = g[1..].parse().unwrap_or(0);
            if g.starts_with('u') {
                return Ok(Vec::new());
            }
            Ok(vec![format!("g{}", (n + 1) % 40), format!("u{n}")])
        };
        let all = closure("g0".to_string(), next).unwrap();
        assert_eq!(all.len(), 80);
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 80);
        assert_eq!(&all[..4], ["g0", "g1", "u0", "g2"]);
    }
}
