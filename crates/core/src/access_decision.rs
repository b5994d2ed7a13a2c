//! "May S do A on R at instant t?" (authzen.md §4): the decision rule over the
//! assignments that apply ([`Holding`]: held by S or its groups, on R or an
//! ancestor). Only **active** assignments in effect at t grant; roles add up; an eligible
//! assignment never grants but is reported when it would. Pure: the index or the store
//! supplies the holdings, the caller supplies the instant.

use crate::assignment::AssignmentState;
use crate::permissions::{PermissionEntry, Plane, role_grants};
use jiff::Timestamp;
use std::borrow::Cow;

/// One live assignment that applies at a resource, as a decision reads it
/// (authzen.md §4): held by the subject or one of its groups, on the resource or an
/// ancestor. Its texts borrow from where it was read (the access index, a history entry)
/// while a decision is made; [`Holding::into_owned`] keeps one beyond that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding<'a> {
    /// The assignment's id.
    pub assignment_id: Cow<'a, str>,
    /// Who holds it: the subject itself or one of its groups.
    pub holder_id: Cow<'a, str>,
    /// The resource it is on.
    pub resource_id: Cow<'a, str>,
    /// How far that resource is from the one asked about (0: the resource itself).
    pub distance: usize,
    /// Its role definition.
    pub role_definition_id: Cow<'a, str>,
    /// The role's template id (lower case), when known.
    pub template_id: Option<Cow<'a, str>>,
    /// The role's permissions, when Rolegate knows them.
    pub permissions: Option<&'static [PermissionEntry]>,
    /// Eligible or active.
    pub state: AssignmentState,
    /// When it starts.
    pub start: Timestamp,
    /// When it ends (`None`: permanent).
    pub end: Option<Timestamp>,
    /// The eligible assignment it activates, if it is an activation.
    pub linked_eligible_id: Option<Cow<'a, str>>,
}

impl Holding<'_> {
    /// The same holding, owning its texts.
    pub fn into_owned(self) -> Holding<'static> {
        Holding {
            assignment_id: Cow::Owned(self.assignment_id.into_owned()),
            holder_id: Cow::Owned(self.holder_id.into_owned()),
            resource_id: Cow::Owned(self.resource_id.into_owned()),
            distance: self.distance,
            role_definition_id: Cow::Owned(self.role_definition_id.into_owned()),
            template_id: self.template_id.map(|t| Cow::Owned(t.into_owned())),
            permissions: self.permissions,
            state: self.state,
            start: self.start,
            end: self.end,
            linked_eligible_id: self.linked_eligible_id.map(|l| Cow::Owned(l.into_owned())),
        }
    }
}

/// What is asked about (authzen.md §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An Azure operation on a plane (`isDataAction`).
    Operation {
        /// E.g. `Microsoft.Compute/virtualMachines/start/action`.
        name: String,
        /// Control or data plane.
        plane: Plane,
    },
    /// Membership of a role, by template id (lower case).
    Role {
        /// The role's template id.
        template_id: String,
    },
}

/// Whether a role (its template id and the permissions Rolegate knows for it) allows
/// `action`: its permissions grant the operation, or it is the role asked about.
pub fn role_allows(
    template_id: Option<&str>,
    permissions: Option<&[PermissionEntry]>,
    action: &Action,
) -> bool {
    match action {
        Action::Operation { name, plane } => {
            permissions.is_some_and(|p| role_grants(p, name, *plane))
        }
        Action::Role {
            template_id: wanted,
        } => template_id.is_some_and(|t| t.eq_ignore_ascii_case(wanted)),
    }
}

/// Whether an assignment scheduled from `start` to `end` is in effect at `at`.
pub fn in_effect(start: Timestamp, end: Option<Timestamp>, at: Timestamp) -> bool {
    start <= at && end.is_none_or(|e| at < e)
}

/// The decision and what explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation<'a> {
    /// The active assignments in effect that allow the action, nearest scope first, each
    /// once.
    pub granted: Vec<&'a Holding<'a>>,
    /// The eligible assignments in effect whose role would allow it, nearest scope first.
    pub eligible: Vec<&'a Holding<'a>>,
    /// The earliest instant after `at` at which the stored schedules give the other
    /// decision, if any.
    pub next_change_at: Option<Timestamp>,
}

impl Evaluation<'_> {
    /// The decision.
    pub fn permitted(&self) -> bool {
        !self.granted.is_empty()
    }
}

/// Decides `action` at `at` from the assignments that apply (authzen.md §4.1–§4.3, §5.3).
pub fn evaluate<'a>(holdings: &'a [Holding<'a>], action: &Action, at: Timestamp) -> Evaluation<'a> {
    let allows = |h: &Holding| role_allows(h.template_id.as_deref(), h.permissions, action);
    let nearest = |list: &mut Vec<&'a Holding<'a>>| {
        list.sort_by(|a, b| (a.distance, &a.assignment_id).cmp(&(b.distance, &b.assignment_id)));
        list.dedup_by(|a, b| a.assignment_id == b.assignment_id);
    };
    let active: Vec<&Holding> = holdings
        .iter()
        .filter(|h| h.state == AssignmentState::Active && allows(h))
        .collect();
    let mut granted: Vec<&Holding> = active
        .iter()
        .copied()
        .filter(|h| in_effect(h.start, h.end, at))
        .collect();
    nearest(&mut granted);
    let mut eligible: Vec<&Holding> = holdings
        .iter()
        .filter(|h| h.state == AssignmentState::Eligible && in_effect(h.start, h.end, at))
        .filter(|h| allows(h))
        .collect();
    nearest(&mut eligible);
    let next_change_at = if granted.is_empty() {
        active.iter().map(|h| h.start).filter(|s| *s > at).min()
    } else {
        permit_ends(&active, at)
    };
    Evaluation {
        granted,
        eligible,
        next_change_at,
    }
}

/// The first instant after `at` that no allowing active assignment covers (`None` when a
/// permanent one covers everything from `at` on).
fn permit_ends(active: &[&Holding<'_>], at: Timestamp) -> Option<Timestamp> {
    let mut until = at;
    loop {
        let mut extended = false;
        for h in active {
            if h.start <= until && h.end.is_none_or(|e| e > until) {
                match h.end {
                    None => return None,
                    Some(e) => {
                        until = e;
                        extended = true;
                    }
                }
            }
        }
        if !extended {
            return (until > at).then_some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::built_in;
    use proptest::prelude::*;

    const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn holding(
        id: &str,
        template: &str,
        state: AssignmentState,
        from: i64,
        to: Option<i64>,
        distance: usize,
    ) -> Holding<'static> {
        Holding {
            assignment_id: id.to_string().into(),
            holder_id: "alice".into(),
            resource_id: format!("r{distance}").into(),
            distance,
            role_definition_id: format!("def-{template}").into(),
            template_id: Some(template.to_string().into()),
            permissions: built_in(template).map(|p| &p.permissions[..]),
            state,
            start: t(from),
            end: to.map(t),
            linked_eligible_id: None,
        }
    }

    fn write_vm() -> Action {
        Action::Operation {
            name: "Microsoft.Compute/virtualMachines/write".into(),
            plane: Plane::Control,
        }
    }

    #[test]
    fn only_active_assignments_in_effect_grant() {
        use AssignmentState::{Active, Eligible};
        let h = [
            holding("e", CONTRIBUTOR, Eligible, 0, Some(1000), 1),
            holding("a", CONTRIBUTOR, Active, 100, Some(200), 0),
            holding("r", READER, Active, 0, None, 0),
        ];
        let before = evaluate(&h, &write_vm(), t(50));
        assert!(!before.permitted());
        assert_eq!(
            before.eligible.len(),
            1,
            "the eligible Contributor would grant it"
        );
        assert_eq!(
            before.next_change_at,
            Some(t(100)),
            "the activation's start"
        );
        let during = evaluate(&h, &write_vm(), t(150));
        assert!(during.permitted());
        assert_eq!(during.granted[0].assignment_id, "a");
        assert_eq!(during.next_change_at, Some(t(200)));
        let after = evaluate(&h, &write_vm(), t(200));
        assert!(!after.permitted(), "an assignment ends at its end instant");
        assert_eq!(after.next_change_at, None);
        // Reader grants reads, permanently.
        let read = Action::Operation {
            name: "Microsoft.Compute/virtualMachines/read".into(),
            plane: Plane::Control,
        };
        let r = evaluate(&h, &read, t(500));
        assert!(r.permitted());
        assert_eq!(r.next_change_at, None);
        // Role membership is not permissions: Reader is not Contributor.
        let role = Action::Role {
            template_id: CONTRIBUTOR.into(),
        };
        assert!(!evaluate(&h, &role, t(500)).permitted());
        assert!(evaluate(&h, &role, t(150)).permitted());
    }

    #[test]
    fn back_to_back_grants_end_together() {
        let h = [
            holding("a", CONTRIBUTOR, AssignmentState::Active, 0, Some(100), 0),
            holding("b", CONTRIBUTOR, AssignmentState::Active, 100, Some(300), 1),
            holding("c", CONTRIBUTOR, AssignmentState::Active, 400, Some(500), 0),
        ];
        let e = evaluate(&h, &write_vm(), t(50));
        assert_eq!(e.next_change_at, Some(t(300)));
        assert_eq!(
            evaluate(&h, &write_vm(), t(350)).next_change_at,
            Some(t(400))
        );
    }

    proptest! {
        /// The decision equals "some active allowing holding is in effect", and at
        /// next_change_at the decision is indeed the other one (and not before).
        #[test]
        fn next_change_at_flips_the_decision(
            spans in proptest::collection::vec((0i64..50, 1i64..30, any::<bool>(), any::<bool>()), 0..6),
            at in 0i64..80,
        ) {
            let h: Vec<Holding> = spans.iter().enumerate().map(|(i, (from, len, active, permanent))| holding(
                &format!("h{i}"),
                CONTRIBUTOR,
                if *active { AssignmentState::Active } else { AssignmentState::Eligible },
                *from,
                (!permanent).then_some(from + len),
                i,
            )).collect();
            let e = evaluate(&h, &write_vm(), t(at));
            let expected = h.iter().any(|x| x.state == AssignmentState::Active && in_effect(x.start, x.end, t(at)));
            prop_assert_eq!(e.permitted(), expected);
            if let Some(next) = e.next_change_at {
                prop_assert!(next > t(at));
                prop_assert_ne!(evaluate(&h, &write_vm(), next).permitted(), e.permitted());
                for s in at + 1..next.as_second() {
                    prop_assert_eq!(evaluate(&h, &write_vm(), t(s)).permitted(), e.permitted());
                }
            } else {
                for s in at..at + 100 {
                    prop_assert_eq!(evaluate(&h, &write_vm(), t(s)).permitted(), e.permitted());
                }
            }
        }
    }
}
