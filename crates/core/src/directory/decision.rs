//! Directory changes as pure decisions (decisions.md §3): who may change the directory, what
//! creating, updating or deleting a subject writes, and a group's new direct members with
//! the direct groups each member who joined or left has afterwards.

use super::{Subject, SubjectKind};
use crate::access::OpContext;
use crate::audit::{AuditRecord, Target};
use crate::change::Change;
use crate::error::{DomainError, ErrorCode, Result};

/// Only tenant administrators (and the provisioning client, which signs in as one) change
/// the directory.
pub fn may_change(ctx: &OpContext) -> Result<()> {
    if ctx.caller.is_tenant_admin {
        Ok(())
    } else {
        Err(DomainError::denied(
            "only tenant administrators may change the directory",
        ))
    }
}

/// The audit record of `activity` on subject `s`.
pub fn record(ctx: &OpContext, s: &Subject, activity: &str, operation: &str) -> AuditRecord {
    AuditRecord {
        target_resources: vec![Target::new(s.kind.as_str(), &s.id, &s.display_name)],
        ..AuditRecord::by(
            ctx,
            if s.kind == SubjectKind::Group {
                "GroupManagement"
            } else {
                "UserManagement"
            },
            activity,
            operation,
        )
    }
}

/// `Add user`, `Update group`, …: the activity of `verb` on `s`.
pub fn activity(verb: &str, s: &Subject) -> String {
    format!("{verb} {}", s.kind.as_str().to_lowercase())
}

/// What replacing a group's members needs.
#[derive(Debug, Clone, Default)]
pub struct MemberFacts {
    /// The group's direct members now.
    pub before: Vec<String>,
    /// The members asked for, each with the subject id it names (by id or external id),
    /// `None` when it names nobody.
    pub requested: Vec<(String, Option<String>)>,
    /// The direct groups, now, of every subject in `before` or `requested`.
    pub direct_groups: Vec<(String, Vec<String>)>,
}

/// A group's new membership.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// The change to write (none when nothing was asked of a non-group).
    pub changes: Vec<Change>,
    /// The members who left (their activations backed by the group may end).
    pub removed: Vec<String>,
}

/// Replaces `group`'s direct members with the requested ones (unknown members refused, each
/// member once). Only groups have members.
pub fn members(group: &Subject, facts: &MemberFacts) -> Result<Membership> {
    if facts.requested.is_empty() && group.kind != SubjectKind::Group {
        return Ok(Membership::default());
    }
    if group.kind != SubjectKind::Group {
        return Err(DomainError::bad_request("only groups have members"));
    }
    let mut resolved: Vec<String> = Vec::new();
    for (asked, found) in &facts.requested {
        // Current members are known to exist; only new ones are looked up.
        let id = if facts.before.contains(asked) {
            asked.clone()
        } else {
            found.clone().ok_or_else(|| {
                DomainError::bad_request(format!("member `{asked}` does not exist"))
            })?
        };
        if !resolved.contains(&id) {
            resolved.push(id);
        }
    }
    let removed: Vec<String> = facts
        .before
        .iter()
        .filter(|m| !resolved.contains(m))
        .cloned()
        .collect();
    let groups_now = |m: &str| {
        facts
            .direct_groups
            .iter()
            .find(|(id, _)| id == m)
            .map(|(_, g)| g.clone())
            .unwrap_or_default()
    };
    // Only members who joined or left have new direct groups.
    let mut groups = Vec::new();
    for m in resolved.iter().filter(|m| !facts.before.contains(m)) {
        let mut g = groups_now(m);
        if !g.contains(&group.id) {
            g.push(group.id.clone());
        }
        groups.push((m.clone(), g));
    }
    for m in &removed {
        let g: Vec<String> = groups_now(m)
            .into_iter()
            .filter(|g| *g != group.id)
            .collect();
        groups.push((m.clone(), g));
    }
    Ok(Membership {
        changes: vec![Change::SetGroupMembers {
            group_id: group.id.clone(),
            members: resolved,
            groups,
        }],
        removed,
    })
}

/// Creating subject `s` with `members` (a group's): refused without a display name or with
/// an external id another subject has (`external_id_taken`).
pub fn create(
    ctx: &OpContext,
    s: &Subject,
    external_id_taken: bool,
    members: &MemberFacts,
) -> Result<Vec<Change>> {
    may_change(ctx)?;
    if s.display_name.trim().is_empty() {
        return Err(DomainError::bad_request("`displayName` is required"));
    }
    if external_id_taken && let Some(ext) = &s.external_id {
        return Err(DomainError::new(
            ErrorCode::Conflict,
            format!("externalId `{ext}` is already in use"),
        ));
    }
    let mut changes = vec![Change::InsertSubject(s.clone())];
    changes.extend(self::members(s, members)?.changes);
    changes.push(Change::Audit(record(ctx, s, &activity("Add", s), "Add")));
    Ok(changes)
}

/// Deleting subject `s`, whose direct members (a group's) have `member_groups` as their
/// direct groups now: it leaves theirs.
pub fn delete(s: &Subject, member_groups: &[(String, Vec<String>)]) -> Change {
    Change::DeleteSubject {
        subject: s.clone(),
        member_groups: member_groups
            .iter()
            .map(|(m, groups)| {
                let left: Vec<String> = groups.iter().filter(|g| **g != s.id).cloned().collect();
                (m.clone(), left)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessIndex, Caller};
    use std::cell::Cell;

    fn subject(id: &str, kind: SubjectKind) -> Subject {
        Subject {
            id: id.into(),
            external_id: Some(format!("ext-{id}")),
            kind,
            display_name: id.into(),
            principal_name: None,
            email: None,
            active: true,
        }
    }

    fn with_ctx<T>(admin: bool, f: impl FnOnce(&OpContext) -> T) -> T {
        let who = Caller {
            subject_id: "root".into(),
            display_name: "root".into(),
            principal_name: None,
            is_tenant_admin: admin,
            mfa: false,
        };
        let ix = AccessIndex::new();
        let n = Cell::new(0);
        let new_id = || {
            n.set(n.get() + 1);
            format!("id-{}", n.get())
        };
        f(&OpContext {
            caller: &who,
            access: &ix,
            now: jiff::Timestamp::UNIX_EPOCH,
            correlation_id: "t",
            new_id: &new_id,
            mail: None,
        })
    }

    #[test]
    fn members_join_and_leave_with_their_direct_groups() {
        let g = subject("g", SubjectKind::Group);
        let facts = MemberFacts {
            before: vec!["a".into(), "b".into()],
            requested: vec![
                ("b".into(), None),
                ("ext-c".into(), Some("c".into())),
                ("c".into(), Some("c".into())),
            ],
            direct_groups: vec![
                ("a".into(), vec!["g".into(), "h".into()]),
                ("b".into(), vec!["g".into()]),
                ("c".into(), vec!["h".into()]),
            ],
        };
        let m = members(&g, &facts).unwrap();
        assert_eq!(m.removed, ["a"]);
        match m.changes.as_slice() {
            [
                Change::SetGroupMembers {
                    group_id,
                    members,
                    groups,
                },
            ] => {
                assert_eq!(group_id, "g");
                assert_eq!(members, &["b", "c"]);
                assert_eq!(
                    groups,
                    &[
                        ("c".to_string(), vec!["h".to_string(), "g".to_string()]),
                        ("a".to_string(), vec!["h".to_string()]),
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let unknown = MemberFacts {
            requested: vec![("nobody".into(), None)],
            ..MemberFacts::default()
        };
        assert_eq!(
            members(&g, &unknown).unwrap_err().code,
            ErrorCode::BadRequest
        );
        let user = subject("u", SubjectKind::User);
        assert!(
            members(&user, &MemberFacts::default())
                .unwrap()
                .changes
                .is_empty()
        );
        assert!(members(&user, &unknown).is_err());
    }

    #[test]
    fn creating_needs_an_administrator_a_name_and_a_free_external_id() {
        let u = subject("u", SubjectKind::User);
        let none = MemberFacts::default();
        let ok = with_ctx(true, |ctx| create(ctx, &u, false, &none)).unwrap();
        assert!(matches!(ok.first(), Some(Change::InsertSubject(s)) if s.id == "u"));
        assert!(
            matches!(ok.last(), Some(Change::Audit(r)) if r.activity_display_name == "Add user")
        );
        let code = |r: Result<Vec<Change>>| r.unwrap_err().code;
        assert_eq!(
            code(with_ctx(false, |ctx| create(ctx, &u, false, &none))),
            ErrorCode::AuthorizationRequestDenied
        );
        assert_eq!(
            code(with_ctx(true, |ctx| create(ctx, &u, true, &none))),
            ErrorCode::Conflict
        );
        let nameless = Subject {
            display_name: " ".into(),
            ..u
        };
        assert_eq!(
            code(with_ctx(true, |ctx| create(ctx, &nameless, false, &none))),
            ErrorCode::BadRequest
        );
    }
}
