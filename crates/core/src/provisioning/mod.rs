//! Provisioning connectors' rules (connectors.md §3): which role on which scope grants which
//! target, and how a directory subject becomes a principal in the external system. Pure: the
//! configuration loader (crate `rolegate-connectors`) builds these, the desired state is
//! computed from them.

pub mod delivery;
pub mod records;

use crate::access::{AccessIndex, IndexStamp, RoleGrant, RoleHolders};
use crate::directory::{Subject, SubjectKind};
use crate::role::{BUILT_IN_ROLES, BuiltInRole};
use crate::scope::ArmId;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// "Whoever holds this role on this scope gets this target" (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its position in the connector's `rules` array (0-based).
    pub index: usize,
    /// The 1-based line of its `[[…rules]]` table in the file (for `connectors check`).
    pub line: usize,
    /// The role, resolved to a built-in role.
    pub role: &'static BuiltInRole,
    /// The scope it covers (assignments on it or an ancestor count).
    pub scope: ArmId,
    /// The target granted.
    pub target: String,
}

/// Resolves a rule's `role`: a templateId (any case) or a displayName (case-insensitive).
pub fn resolve_role(text: &str) -> Option<&'static BuiltInRole> {
    let t = text.trim();
    BUILT_IN_ROLES
        .iter()
        .find(|r| r.template_id.eq_ignore_ascii_case(t) || r.display_name.eq_ignore_ascii_case(t))
}

/// One source of a principal's value (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSource {
    /// The SCIM `userName`.
    UserName,
    /// `userName` up to its last `@`.
    UserNameLocalPart,
    /// The SCIM `externalId`.
    ExternalId,
    /// An attribute of a SCIM schema extension: the schema URN and the attribute path
    /// (`employeeNumber`, `manager.value`).
    Extension {
        /// The schema URN.
        schema: String,
        /// The attribute, with an optional sub-attribute after a dot.
        attribute: String,
    },
}

impl PrincipalSource {
    /// Reads a source as the configuration writes it; `None` when it is none of §3.2's.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "userName" => Some(Self::UserName),
            "userNameLocalPart" => Some(Self::UserNameLocalPart),
            "externalId" => Some(Self::ExternalId),
            _ => {
                if !text.get(..4)?.eq_ignore_ascii_case("urn:") {
                    return None;
                }
                let (schema, attribute) = text.rsplit_once(':')?;
                let valid = |s: &str| {
                    let mut chars = s.chars();
                    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                };
                let ok = match attribute.split_once('.') {
                    Some((a, sub)) => valid(a) && valid(sub),
                    None => valid(attribute),
                };
                (ok && schema.len() > 4).then(|| Self::Extension {
                    schema: schema.to_string(),
                    attribute: attribute.to_string(),
                })
            }
        }
    }

    /// The source as the configuration writes it.
    pub fn as_text(&self) -> String {
        match self {
            Self::UserName => "userName".into(),
            Self::UserNameLocalPart => "userNameLocalPart".into(),
            Self::ExternalId => "externalId".into(),
            Self::Extension { schema, attribute } => format!("{schema}:{attribute}"),
        }
    }
}

/// What is done to the mapped value before the kind formats it (§2.2 `principal_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalCase {
    /// As the directory has it.
    Preserve,
    /// Lower-cased.
    Lower,
}

/// What reconciliation does with a grant made outside Rolegate (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrift {
    /// Revoke it.
    Revoke,
    /// Report it and leave it.
    Report,
}

/// Why a subject a rule would grant something has no principal (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnmappedReason {
    /// No source yields a non-empty value.
    NoValue,
    /// The deciding value is not valid for the kind.
    InvalidValue,
    /// Two or more subjects map to the same principal in this connector.
    Ambiguous,
}

impl UnmappedReason {
    /// The wire name (`noValue`, `invalidValue`, `ambiguous`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoValue => "noValue",
            Self::InvalidValue => "invalidValue",
            Self::Ambiguous => "ambiguous",
        }
    }
}

/// How one connector turns a subject into a principal (§3.2).
pub struct PrincipalMapping<'a> {
    /// The sources, in order; the first with a non-empty value decides.
    pub sources: &'a [PrincipalSource],
    /// Applied to the value before the kind formats it.
    pub case: PrincipalCase,
    /// The kind's finishing step (a role name as is, a DN from a template, …).
    pub finish: &'a dyn Fn(&str) -> Result<String, UnmappedReason>,
    /// The value of an extension attribute (schema URN, attribute) of a subject, from its
    /// SCIM document ([`extension_value`]).
    pub extension: &'a dyn Fn(&Subject, &str, &str) -> Option<String>,
}

/// The value of extension attribute `attribute` (`employeeNumber`, or `manager.value` for a
/// sub-attribute) of schema `schema` in a SCIM document, names compared without case as
/// SCIM does (RFC 7643 §2.1): a string as it is, a number or boolean as text, nothing for
/// anything else.
pub fn extension_value(
    document: &serde_json::Map<String, serde_json::Value>,
    schema: &str,
    attribute: &str,
) -> Option<String> {
    fn get<'v>(
        o: &'v serde_json::Map<String, serde_json::Value>,
        name: &str,
    ) -> Option<&'v serde_json::Value> {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    let mut value = get(document, schema)?;
    for part in attribute.split('.') {
        value = get(value.as_object()?, part)?;
    }
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl PrincipalMapping<'_> {
    /// The principal of `subject`, or why there is none (ambiguity aside: that needs the
    /// whole directory, see [`desired`]).
    pub fn principal(&self, subject: &Subject) -> Result<String, UnmappedReason> {
        let value = self
            .sources
            .iter()
            .find_map(|source| {
                let v = match source {
                    PrincipalSource::UserName => subject.principal_name.clone(),
                    PrincipalSource::UserNameLocalPart => subject
                        .principal_name
                        .as_deref()
                        .map(|n| n.rsplit_once('@').map_or(n, |(local, _)| local).to_string()),
                    PrincipalSource::ExternalId => subject.external_id.clone(),
                    PrincipalSource::Extension { schema, attribute } => {
                        (self.extension)(subject, schema, attribute)
                    }
                };
                v.filter(|v| !v.is_empty())
            })
            .ok_or(UnmappedReason::NoValue)?;
        let value = match self.case {
            PrincipalCase::Preserve => value,
            PrincipalCase::Lower => value.to_lowercase(),
        };
        (self.finish)(&value)
    }
}

/// A principal desired on a target, and why (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGrant {
    /// The subject it stands for.
    pub subject_id: String,
    /// The assignments that justify it.
    pub assignment_ids: BTreeSet<String>,
    /// The latest end among them; `None` when one is permanent.
    pub not_after: Option<Timestamp>,
}

/// A subject a rule would grant something that has no usable principal (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmappedSubject {
    /// Why it has no principal.
    pub reason: UnmappedReason,
    /// The targets it would get → the assignments that would justify each.
    pub targets: BTreeMap<String, BTreeSet<String>>,
}

/// One connector's desired state at an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// (target, principal) → why.
    pub grants: BTreeMap<(String, String), DesiredGrant>,
    /// Subject id → what it would get without a usable principal.
    pub unmapped: BTreeMap<String, UnmappedSubject>,
}

/// The desired state of one connector at `at` (§4): for each rule, the users and service
/// principals, active in the directory, holding its role (an Active assignment in effect, by
/// templateId) on its scope or an ancestor, directly or through nested groups, mapped to
/// principals. `anchors[i]` is the registered resource covering `rules[i]`'s scope (the
/// scope itself, or its nearest registered ARM ancestor), `None` when none is registered.
/// `directory` holds every subject, so that a principal two subjects map to is found.
pub fn desired(
    rules: &[Rule],
    anchors: &[Option<String>],
    index: &AccessIndex,
    directory: &[Subject],
    mapping: &PrincipalMapping<'_>,
    at: Timestamp,
) -> Desired {
    let holders = rule_holders(rules, anchors, index, at);
    let by_id: HashMap<&str, &Subject> = directory.iter().map(|s| (s.id.as_str(), s)).collect();
    let principals = PrincipalTable::of(directory, mapping);
    desired_from(
        rules,
        &holders,
        index,
        &|id| by_id.get(id).copied(),
        &principals,
    )
}

/// Every subject's principal in one connector, or why it has none (§3.2), a principal two
/// subjects share being `ambiguous` for both: a function of the directory and the mapping
/// alone, so a planner keeps it while neither changes.
#[derive(Debug, Clone, Default)]
pub struct PrincipalTable {
    of: HashMap<String, Result<String, UnmappedReason>>,
}

impl PrincipalTable {
    /// The table of `directory` (users and service principals) under `mapping`.
    pub fn of(directory: &[Subject], mapping: &PrincipalMapping<'_>) -> Self {
        let mut of: HashMap<String, Result<String, UnmappedReason>> = HashMap::new();
        let mut owners: HashMap<String, usize> = HashMap::new();
        for s in directory.iter().filter(|s| s.kind != SubjectKind::Group) {
            let p = mapping.principal(s);
            if let Ok(p) = &p {
                *owners.entry(p.clone()).or_default() += 1;
            }
            of.insert(s.id.clone(), p);
        }
        for p in of.values_mut() {
            if let Ok(name) = p
                && owners.get(name.as_str()).is_some_and(|n| *n > 1)
            {
                *p = Err(UnmappedReason::Ambiguous);
            }
        }
        Self { of }
    }

    /// Subject `id`'s principal, or why it has none (`noValue` for a subject it does not
    /// know).
    pub fn principal(&self, id: &str) -> Result<String, UnmappedReason> {
        self.of
            .get(id)
            .cloned()
            .unwrap_or(Err(UnmappedReason::NoValue))
    }
}

/// [`AccessIndex::role_holders`] for each rule on its anchor (see [`desired`]), in one
/// pass over the holders; an empty answer for a rule without an anchor.
pub fn rule_holders(
    rules: &[Rule],
    anchors: &[Option<String>],
    index: &AccessIndex,
    at: Timestamp,
) -> Vec<RoleHolders> {
    rule_holders_since(rules, anchors, index, at, &mut KeptHolders::default()).0
}

/// Each rule's holders as an earlier call of [`rule_holders_since`] found them, with where
/// the index stood and when: what the next call reuses.
#[derive(Debug, Clone, Default)]
pub struct KeptHolders {
    rules: Vec<Option<KeptRule>>,
}

/// One rule's kept answer.
#[derive(Debug, Clone)]
struct KeptRule {
    anchor: String,
    template: &'static str,
    stamp: IndexStamp,
    at: Timestamp,
    holders: RoleHolders,
}

impl KeptRule {
    /// Whether this answer is still the answer at `at` for `anchor` and `template` given
    /// the index's `stamp`: nothing its role's holders, the tree or the catalogue changed,
    /// and no assignment started or ended since it was computed.
    fn holds(&self, anchor: &str, template: &str, stamp: IndexStamp, at: Timestamp) -> bool {
        self.anchor == anchor
            && self.template == template
            && self.stamp == stamp
            && self.at <= at
            && self.holders.next_instant.is_none_or(|next| at < next)
    }
}

/// [`rule_holders`], recomputing only the rules a change of the index or the passing of
/// one of their start or end instants can have altered since `kept` (§6.1: the desired
/// state is recomputed incrementally); the others are answered from `kept`, which is
/// brought up to date. Returns the answers and how many rules were recomputed.
pub fn rule_holders_since(
    rules: &[Rule],
    anchors: &[Option<String>],
    index: &AccessIndex,
    at: Timestamp,
    kept: &mut KeptHolders,
) -> (Vec<RoleHolders>, usize) {
    kept.rules.resize(rules.len(), None);
    let stamps: Vec<IndexStamp> = rules
        .iter()
        .map(|r| index.holders_stamp(r.role.template_id))
        .collect();
    let stale: Vec<usize> = (0..rules.len())
        .filter(|&i| match (&anchors[i], &kept.rules[i]) {
            (None, _) => false,
            (Some(anchor), Some(k)) => !k.holds(anchor, rules[i].role.template_id, stamps[i], at),
            (Some(_), None) => true,
        })
        .collect();
    let queries: Vec<(&str, &str)> = stale
        .iter()
        .filter_map(|&i| Some((anchors[i].as_deref()?, rules[i].role.template_id)))
        .collect();
    for (&i, holders) in stale.iter().zip(index.role_holders(&queries, at)) {
        kept.rules[i] = anchors[i].as_ref().map(|anchor| KeptRule {
            anchor: anchor.clone(),
            template: rules[i].role.template_id,
            stamp: stamps[i],
            at,
            holders,
        });
    }
    let answers = anchors
        .iter()
        .zip(&kept.rules)
        .map(|(anchor, k)| match (anchor, k) {
            (Some(_), Some(k)) => k.holders.clone(),
            _ => RoleHolders::default(),
        })
        .collect();
    (answers, stale.len())
}

/// [`desired`] from each rule's holders (`holders[i]` answers `rules[i]`), the directory
/// as a lookup by id, and its principals.
pub fn desired_from<'d>(
    rules: &[Rule],
    holders: &[RoleHolders],
    index: &AccessIndex,
    subject: &dyn Fn(&str) -> Option<&'d Subject>,
    principals: &PrincipalTable,
) -> Desired {
    let held: Vec<(&Rule, &[RoleGrant])> = rules
        .iter()
        .zip(holders)
        .map(|(rule, h)| (rule, h.current.as_slice()))
        .collect();
    // Who stands behind each group holder: its members through nesting, found for every
    // group in one pass over the directory.
    let groups: Vec<String> = held
        .iter()
        .flat_map(|(_, grants)| grants.iter().map(|g| &g.holder_id))
        .filter(|h| subject(h.as_str()).is_some_and(|s| s.kind == SubjectKind::Group))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let members = index.members_of_each(&groups);
    // (subject, target) → why; the principal is found afterwards.
    let mut wanted: BTreeMap<(String, String), DesiredGrant> = BTreeMap::new();
    for (rule, grants) in &held {
        for g in grants.iter() {
            let own = [g.holder_id.clone()];
            let people: &[String] = if groups.binary_search(&g.holder_id).is_ok() {
                members.get(&g.holder_id).map_or(&[], Vec::as_slice)
            } else {
                &own
            };
            for person in people.iter() {
                let counts = subject(person.as_str())
                    .is_some_and(|s| s.kind != SubjectKind::Group && s.active);
                if !counts {
                    continue;
                }
                match wanted.entry((person.clone(), rule.target.clone())) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(DesiredGrant {
                            subject_id: person.clone(),
                            assignment_ids: BTreeSet::from([g.assignment_id.clone()]),
                            not_after: g.end,
                        });
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        let d = o.get_mut();
                        d.assignment_ids.insert(g.assignment_id.clone());
                        d.not_after = d.not_after.zip(g.end).map(|(a, b)| a.max(b));
                    }
                }
            }
        }
    }
    let mut out = Desired::default();
    for ((subject, target), why) in wanted {
        match principals.principal(&subject) {
            Ok(principal) => {
                out.grants.insert((target, principal), why);
            }
            Err(reason) => {
                out.unmapped
                    .entry(subject)
                    .or_insert(UnmappedSubject {
                        reason,
                        targets: BTreeMap::new(),
                    })
                    .targets
                    .insert(target, why.assignment_ids);
            }
        }
    }
    out
}

/// What one reconciliation pass found and will do (§7.2, §7.3). Keys are
/// (target, principal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Desired and absent: a `grant` item each.
    pub missing: Vec<(String, String)>,
    /// Present, not desired, made by Rolegate: a `revoke` item each, always.
    pub stale: Vec<(String, String)>,
    /// Present, not desired, not made by Rolegate: revoked or reported per `on_drift`.
    pub outside: Vec<(String, String)>,
    /// Present and desired but not in the ledger: adopted silently.
    pub adopt: Vec<(String, String)>,
    /// Set when the pass would revoke more than allowed: it then revokes none (missing
    /// grants are still restored) and fails with this message.
    pub refused: Option<String>,
}

impl ReconcilePlan {
    /// The grants the pass revokes.
    pub fn revocations(&self, on_drift: OnDrift) -> usize {
        if self.refused.is_some() {
            return 0;
        }
        self.stale.len()
            + match on_drift {
                OnDrift::Revoke => self.outside.len(),
                OnDrift::Report => 0,
            }
    }
}

/// Compares a connector's desired state with what its targets hold (§7.2): `actual` as
/// `list` read it (the connector's own account and `ignore_members` already left out),
/// `ledger` the grants Rolegate made, `settling` the keys whose latest item is unfinished
/// or recently dead (left out on both sides). Over `max_revocations` revocations, none is
/// made (§7.3).
pub fn reconcile(
    desired: &BTreeSet<(String, String)>,
    actual: &BTreeSet<(String, String)>,
    ledger: &BTreeSet<(String, String)>,
    settling: &BTreeSet<(String, String)>,
    on_drift: OnDrift,
    max_revocations: usize,
) -> ReconcilePlan {
    let mut plan = ReconcilePlan::default();
    for key in desired.difference(actual) {
        if !settling.contains(key) {
            plan.missing.push(key.clone());
        }
    }
    for key in actual.iter().filter(|k| !settling.contains(*k)) {
        match (desired.contains(key), ledger.contains(key)) {
            (true, false) => plan.adopt.push(key.clone()),
            (true, true) => {}
            (false, true) => plan.stale.push(key.clone()),
            (false, false) => plan.outside.push(key.clone()),
        }
    }
    let revocations = plan.revocations(on_drift);
    if revocations > max_revocations {
        plan.refused = Some(format!(
            "the pass would revoke {revocations} grants, more than max_revocations_per_pass = {max_revocations}: none revoked; raise the limit or fix the rules"
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_resolve_by_template_id_or_display_name_in_any_case() {
        let reader = resolve_role("Reader").map(|r| r.template_id);
        assert_eq!(reader, Some("acdd72a7-3385-48ef-bd42-f606fba81ae7"));
        assert_eq!(resolve_role("reader").map(|r| r.template_id), reader);
        assert_eq!(
            resolve_role("ACDD72A7-3385-48EF-BD42-F606FBA81AE7").map(|r| r.template_id),
            reader
        );
        assert!(resolve_role("Redaer").is_none());
    }

    #[test]
    fn extension_values_are_found_without_case_and_as_text() {
        let doc = serde_json::json!({
            "userName": "alice@corp",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "E-0042", "costCenter": 7, "manager": {"value": "m-1"},
                "division": null, "organization": ["x"]
            }
        });
        let doc = doc.as_object().cloned().unwrap_or_default();
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let value = |schema: &str, attribute: &str| extension_value(&doc, schema, attribute);
        assert_eq!(value(ent, "employeeNumber").as_deref(), Some("E-0042"));
        assert_eq!(
            value(&ent.to_uppercase(), "EMPLOYEENUMBER").as_deref(),
            Some("E-0042")
        );
        assert_eq!(value(ent, "costCenter").as_deref(), Some("7"));
        assert_eq!(value(ent, "manager.value").as_deref(), Some("m-1"));
        for (schema, attribute) in [
            (ent, "division"),
            (ent, "organization"),
            (ent, "manager"),
            (ent, "missing"),
            ("urn:other", "employeeNumber"),
        ] {
            assert_eq!(value(schema, attribute), None, "{attribute}");
        }
        // The mapping asks for it in its order.
        let finish = |v: &str| Ok(v.to_string());
        let lookup = |_: &Subject, schema: &str, attribute: &str| value(schema, attribute);
        let sources = [
            PrincipalSource::parse(&format!("{ent}:employeeNumber"))
                .unwrap_or(PrincipalSource::UserName),
            PrincipalSource::UserNameLocalPart,
        ];
        let mapping = PrincipalMapping {
            sources: &sources,
            case: PrincipalCase::Lower,
            finish: &finish,
            extension: &lookup,
        };
        let subject = Subject {
            id: "u".into(),
            external_id: None,
            kind: SubjectKind::User,
            display_name: "Alice".into(),
            principal_name: Some("alice@corp".into()),
            email: None,
            active: true,
        };
        assert_eq!(mapping.principal(&subject).as_deref(), Ok("e-0042"));
        let none = |_: &Subject, _: &str, _: &str| None;
        let fallback = PrincipalMapping {
            extension: &none,
            ..mapping
        };
        assert_eq!(fallback.principal(&subject).as_deref(), Ok("alice"));
    }

    #[test]
    fn principal_sources_are_the_three_names_or_an_extension_attribute() {
        assert_eq!(
            PrincipalSource::parse("userNameLocalPart"),
            Some(PrincipalSource::UserNameLocalPart)
        );
        let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";
        let parsed = PrincipalSource::parse(urn);
        assert_eq!(
            parsed,
            Some(PrincipalSource::Extension {
                schema: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
                attribute: "employeeNumber".into()
            })
        );
        assert_eq!(parsed.map(|p| p.as_text()).as_deref(), Some(urn));
        for bad in [
            "username",
            "mail",
            "urn:",
            "urn:x:",
            "urn:x:1abc",
            "urn:x:a.b.c",
            "",
        ] {
            assert_eq!(PrincipalSource::parse(bad), None, "{bad}");
        }
    }

    mod desired_state {
        use super::super::*;
        use crate::assignment::for_tests::assignment;
        use jiff::SignedDuration;
        use proptest::prelude::*;

        /// mg → sub → rg0, rg1 → vm0 (under rg0).
        const TREE: [(&str, Option<&str>); 5] = [
            ("mg", None),
            ("sub", Some("mg")),
            ("rg0", Some("sub")),
            ("rg1", Some("sub")),
            ("vm0", Some("rg0")),
        ];
        /// Reader, Contributor, Owner.
        const TEMPLATES: [&str; 3] = [
            "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "b24988ac-6180-42a0-ab88-20f7382dd24c",
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        ];
        const USERS: usize = 5;
        const GROUPS: usize = 3;
        /// userNames: two share a local part, one has none.
        const NAMES: [Option<&str>; USERS] = [
            Some("alice@corp.example"),
            Some("alice@partner.example"),
            Some("bob@corp.example"),
            Some("carol"),
            None,
        ];

        fn now() -> Timestamp {
            Timestamp::from_second(1_800_000_000).unwrap()
        }

        fn subject_id(i: usize) -> String {
            if i < USERS {
                format!("u{i}")
            } else {
                format!("g{}", i - USERS)
            }
        }

        #[derive(Debug, Clone)]
        struct World {
            /// (group, member): members are users or groups of a higher number.
            memberships: Vec<(usize, usize)>,
            /// (holder, template, resource, active, start offset h, length h).
            assignments: Vec<(usize, usize, usize, bool, i64, Option<i64>)>,
            inactive: Vec<bool>,
            /// (template, scope, target).
            rules: Vec<(usize, usize, usize)>,
            local_part: bool,
        }

        fn world() -> impl Strategy<Value = World> {
            (
                proptest::collection::vec((0..GROUPS, 0..USERS + GROUPS), 0..8),
                proptest::collection::vec(
                    (
                        0..USERS + GROUPS,
                        0..TEMPLATES.len(),
                        0..TREE.len(),
                        any::<bool>(),
                        -3i64..2,
                        proptest::option::of(1i64..5),
                    ),
                    0..14,
                ),
                proptest::collection::vec(any::<bool>(), USERS),
                proptest::collection::vec((0..TEMPLATES.len(), 0..TREE.len(), 0..2usize), 1..4),
                any::<bool>(),
            )
                .prop_map(|(memberships, assignments, inactive, rules, local_part)| {
                    World {
                        memberships: memberships
                            .into_iter()
                            .filter(|(g, m)| *m < USERS || *m - USERS > *g)
                            .collect(),
                        assignments,
                        inactive,
                        rules,
                        local_part,
                    }
                })
        }

        fn directory(w: &World) -> Vec<Subject> {
            (0..USERS + GROUPS)
                .map(|i| Subject {
                    id: subject_id(i),
                    external_id: None,
                    kind: if i < USERS {
                        SubjectKind::User
                    } else {
                        SubjectKind::Group
                    },
                    display_name: subject_id(i),
                    principal_name: if i < USERS {
                        NAMES[i].map(str::to_string)
                    } else {
                        None
                    },
                    email: None,
                    active: i >= USERS || !w.inactive[i],
                })
                .collect()
        }

        fn ancestors_or_self(r: usize) -> Vec<usize> {
            let mut out = vec![r];
            while let Some(parent) = TREE[*out.last().unwrap()].1 {
                out.push(TREE.iter().position(|(id, _)| *id == parent).unwrap());
            }
            out
        }

        /// §4 read literally: every user, every rule, every assignment.
        fn brute_force(w: &World, mapping: &PrincipalMapping<'_>) -> Desired {
            let contains = |group: usize, user: usize| {
                let mut reach = vec![user];
                loop {
                    let more: Vec<usize> = w
                        .memberships
                        .iter()
                        .filter(|(_, m)| reach.contains(m))
                        .map(|(g, _)| USERS + g)
                        .filter(|g| !reach.contains(g))
                        .collect();
                    if more.is_empty() {
                        return reach.contains(&group);
                    }
                    reach.extend(more);
                }
            };
            let dir = directory(w);
            let principal = |u: usize| -> Result<String, UnmappedReason> {
                let p = mapping.principal(&dir[u])?;
                let owners = (0..USERS)
                    .filter(|o| mapping.principal(&dir[*o]).as_ref() == Ok(&p))
                    .count();
                if owners > 1 {
                    Err(UnmappedReason::Ambiguous)
                } else {
                    Ok(p)
                }
            };
            let mut out = Desired::default();
            for u in (0..USERS).filter(|u| !w.inactive[*u]) {
                for (template, scope, target) in &w.rules {
                    let target = format!("t{target}");
                    for (i, (holder, t, resource, active, from, len)) in
                        w.assignments.iter().enumerate()
                    {
                        let start = now() + SignedDuration::from_hours(*from);
                        let end = len.map(|l| start + SignedDuration::from_hours(l));
                        let counts = *active
                            && start <= now()
                            && end.is_none_or(|e| now() < e)
                            && t == template
                            && ancestors_or_self(*scope).contains(resource)
                            && (*holder == u || (*holder >= USERS && contains(*holder, u)));
                        if !counts {
                            continue;
                        }
                        match principal(u) {
                            Ok(p) => {
                                let d =
                                    out.grants
                                        .entry((target.clone(), p))
                                        .or_insert(DesiredGrant {
                                            subject_id: subject_id(u),
                                            assignment_ids: BTreeSet::new(),
                                            not_after: end,
                                        });
                                d.assignment_ids
                                    .insert(format!("00000000-0000-0000-0000-{:012x}", i + 1));
                                d.not_after = d.not_after.zip(end).map(|(a, b)| a.max(b));
                            }
                            Err(reason) => {
                                out.unmapped
                                    .entry(subject_id(u))
                                    .or_insert(UnmappedSubject {
                                        reason,
                                        targets: BTreeMap::new(),
                                    })
                                    .targets
                                    .entry(target.clone())
                                    .or_default()
                                    .insert(format!("00000000-0000-0000-0000-{:012x}", i + 1));
                            }
                        }
                    }
                }
            }
            out
        }

        /// The world's rules (their scopes are given as anchors by each test).
        fn rules_of(w: &World) -> Vec<Rule> {
            w.rules
                .iter()
                .enumerate()
                .map(|(index, (t, _, target))| Rule {
                    index,
                    line: 0,
                    role: resolve_role(TEMPLATES[*t]).unwrap(),
                    scope: ArmId::parse("/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301")
                        .unwrap(),
                    target: format!("t{target}"),
                })
                .collect()
        }

        fn index(w: &World) -> AccessIndex {
            let mut ix = AccessIndex::new();
            for (r, parent) in TREE {
                ix.add_resource(r, parent);
                for (k, t) in TEMPLATES.iter().enumerate() {
                    ix.add_role(&format!("{r}/role{k}"), t);
                }
            }
            for (g, m) in &w.memberships {
                ix.add_membership(&subject_id(USERS + g), &subject_id(*m));
            }
            for (i, (holder, t, resource, active, from, len)) in w.assignments.iter().enumerate() {
                let scope = TREE[*resource].0;
                ix.upsert(
                    &assignment(
                        i + 1,
                        (scope, &format!("{scope}/role{t}")),
                        &subject_id(*holder),
                        *active,
                        now() + SignedDuration::from_hours(*from),
                        *len,
                    ),
                    *t == 2,
                );
            }
            ix
        }

        /// One change between two planning passes.
        #[derive(Debug, Clone)]
        enum Step {
            /// Assignment `n` (re)written: (holder, template, resource, active, start
            /// offset h, length h).
            Upsert(usize, (usize, usize, usize, bool, i64, Option<i64>)),
            /// Assignment `n` removed.
            Remove(usize),
            /// (group, member) joined.
            Join(usize, usize),
            /// A subject deleted.
            Delete(usize),
            /// A resource added below `sub`.
            Resource(usize),
            /// The clock moves on this many minutes.
            Wait(i64),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (
                    0..6usize,
                    (
                        0..USERS + GROUPS,
                        0..TEMPLATES.len(),
                        0..TREE.len(),
                        any::<bool>(),
                        -3i64..3,
                        proptest::option::of(1i64..4)
                    )
                )
                    .prop_map(|(n, a)| Step::Upsert(n, a)),
                (0..6usize).prop_map(Step::Remove),
                (0..GROUPS, 0..USERS).prop_map(|(g, m)| Step::Join(g, m)),
                (0..USERS + GROUPS).prop_map(Step::Delete),
                (0..3usize).prop_map(Step::Resource),
                prop_oneof![Just(0i64), 1i64..200].prop_map(Step::Wait),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            /// Whatever changes and however time moves, the answers kept and brought up
            /// to date between passes equal the answers computed afresh.
            #[test]
            fn kept_rule_holders_equal_fresh_ones(
                w in world(),
                steps in proptest::collection::vec(step(), 1..24),
            ) {
                let mut ix = index(&w);
                let rules = rules_of(&w);
                // Rule 0 may anchor on a resource a step adds later.
                let anchors: Vec<Option<String>> = w.rules.iter().enumerate().map(|(i, (_, scope, _))| {
                    Some(if i == 0 && *scope == 0 { "new0".to_string() } else { TREE[*scope].0.to_string() })
                }).collect();
                let mut kept = KeptHolders::default();
                let mut at = now();
                for step in steps {
                    match step {
                        Step::Upsert(n, (holder, t, resource, active, from, len)) => {
                            let scope = TREE[resource].0;
                            ix.upsert(&assignment(
                                n + 100,
                                (scope, &format!("{scope}/role{t}")),
                                &subject_id(holder),
                                active,
                                now() + SignedDuration::from_hours(from),
                                len,
                            ), false);
                        }
                        Step::Remove(n) => {
                            for holder in 0..USERS + GROUPS {
                                ix.remove(&subject_id(holder), &format!("00000000-0000-0000-0000-{:012x}", n + 100));
                            }
                        }
                        Step::Join(g, m) => ix.add_membership(&subject_id(USERS + g), &subject_id(m)),
                        Step::Delete(s) => ix.remove_subject(&subject_id(s)),
                        Step::Resource(k) => ix.add_resource(&format!("new{k}"), Some("sub")),
                        Step::Wait(minutes) => at += SignedDuration::from_mins(minutes),
                    }
                    let (got, _) = rule_holders_since(&rules, &anchors, &ix, at, &mut kept);
                    prop_assert_eq!(got, rule_holders(&rules, &anchors, &ix, at));
                }
            }
        }

        #[test]
        fn a_pass_after_no_change_recomputes_no_rule() {
            let w = World {
                memberships: vec![],
                assignments: vec![(0, 1, 1, true, 0, Some(2))],
                inactive: vec![false; USERS],
                rules: vec![(1, 2, 0), (0, 2, 1)],
                local_part: false,
            };
            let mut ix = index(&w);
            let rules = rules_of(&w);
            let anchors = vec![Some("rg0".to_string()); 2];
            let mut kept = KeptHolders::default();
            let first = rule_holders_since(&rules, &anchors, &ix, now(), &mut kept);
            assert_eq!(first.1, 2);
            assert_eq!(first.0[0].current.len(), 1);
            // Nothing changed: nothing recomputed.
            let soon = now() + SignedDuration::from_mins(5);
            assert_eq!(
                rule_holders_since(&rules, &anchors, &ix, soon, &mut kept).1,
                0
            );
            // A change of the other rule's role recomputes that rule only.
            ix.add_membership("g0", "u1");
            ix.upsert(
                &assignment(0xaa, ("sub", "sub/role0"), "u1", true, now(), None),
                false,
            );
            let after = rule_holders_since(&rules, &anchors, &ix, soon, &mut kept);
            assert_eq!(after.1, 1);
            assert_eq!(after.0[1].current.len(), 1);
            // The first rule's assignment ends: that rule again, at its end.
            let end = now() + SignedDuration::from_hours(2);
            let ended = rule_holders_since(&rules, &anchors, &ix, end, &mut kept);
            assert_eq!(ended.1, 1);
            assert!(ended.0[0].current.is_empty());
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            #[test]
            fn desired_state_is_section_4_read_literally(w in world()) {
                let sources = [if w.local_part { PrincipalSource::UserNameLocalPart } else { PrincipalSource::UserName }];
                let finish = |v: &str| if v.len() > 16 { Err(UnmappedReason::InvalidValue) } else { Ok(v.to_string()) };
                let mapping = PrincipalMapping { sources: &sources, case: PrincipalCase::Lower, finish: &finish, extension: &|_, _, _| None };
                let rules = rules_of(&w);
                let anchors: Vec<Option<String>> = w.rules.iter().map(|(_, scope, _)| Some(TREE[*scope].0.to_string())).collect();
                let got = desired(&rules, &anchors, &index(&w), &directory(&w), &mapping, now());
                prop_assert_eq!(got, brute_force(&w, &mapping));
            }
        }

        #[test]
        fn a_known_world_grants_through_groups_and_ancestors_only() {
            // u0 in g0; g0 active Reader on sub; u2 active Reader on vm0 (a descendant of rg0);
            // u3 eligible Reader on rg0.
            let w = World {
                memberships: vec![(0, 0)],
                assignments: vec![
                    (USERS, 0, 1, true, -1, Some(3)),
                    (2, 0, 4, true, -1, None),
                    (3, 0, 2, false, -1, None),
                ],
                inactive: vec![false; USERS],
                rules: vec![(0, 2, 0)],
                local_part: false,
            };
            let sources = [PrincipalSource::UserNameLocalPart];
            let finish = |v: &str| Ok(v.to_string());
            let mapping = PrincipalMapping {
                sources: &sources,
                case: PrincipalCase::Preserve,
                finish: &finish,
                extension: &|_, _, _| None,
            };
            let rules = vec![Rule {
                index: 0,
                line: 0,
                role: resolve_role("Reader").unwrap(),
                scope: ArmId::parse("/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap(),
                target: "t0".into(),
            }];
            let d = desired(
                &rules,
                &[Some("rg0".into())],
                &index(&w),
                &directory(&w),
                &mapping,
                now(),
            );
            // alice@corp and alice@partner share "alice": u0 is unmapped, not granted.
            assert!(d.grants.is_empty(), "{d:?}");
            assert_eq!(
                d.unmapped.get("u0").map(|u| u.reason),
                Some(UnmappedReason::Ambiguous)
            );
            let by_name = PrincipalMapping {
                sources: &[PrincipalSource::UserName],
                case: PrincipalCase::Preserve,
                finish: &finish,
                extension: &|_, _, _| None,
            };
            let d = desired(
                &rules,
                &[Some("rg0".into())],
                &index(&w),
                &directory(&w),
                &by_name,
                now(),
            );
            let keys: Vec<_> = d.grants.keys().cloned().collect();
            assert_eq!(keys, [("t0".to_string(), "alice@corp.example".to_string())]);
            assert_eq!(
                d.grants[&keys[0]].not_after,
                Some(now() + SignedDuration::from_hours(2))
            );
        }
    }

    mod reconciliation {
        use super::super::*;

        fn keys(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
            list.iter()
                .map(|(t, p)| (t.to_string(), p.to_string()))
                .collect()
        }

        #[test]
        fn findings_follow_section_7_2() {
            let desired = keys(&[("t", "alice"), ("t", "bob"), ("t", "carol"), ("t", "dave")]);
            let actual = keys(&[
                ("t", "bob"),
                ("t", "carol"),
                ("t", "erin"),
                ("t", "frank"),
                ("t", "gina"),
            ]);
            // carol was made by hand for someone who holds the role; erin is stale; frank
            // and gina were granted outside; dave and gina have an item still running.
            let ledger = keys(&[("t", "bob"), ("t", "erin")]);
            let settling = keys(&[("t", "dave"), ("t", "gina")]);
            let plan = reconcile(&desired, &actual, &ledger, &settling, OnDrift::Revoke, 100);
            assert_eq!(plan.missing, vec![("t".into(), "alice".into())]);
            assert_eq!(plan.adopt, vec![("t".into(), "carol".into())]);
            assert_eq!(plan.stale, vec![("t".into(), "erin".into())]);
            assert_eq!(plan.outside, vec![("t".into(), "frank".into())]);
            assert_eq!(plan.refused, None);
            assert_eq!(plan.revocations(OnDrift::Revoke), 2);
            assert_eq!(
                plan.revocations(OnDrift::Report),
                1,
                "reported, not revoked"
            );
        }

        #[test]
        fn too_many_revocations_revoke_none_but_still_restore() {
            let desired = keys(&[("t", "alice")]);
            let actual = keys(&[("t", "x1"), ("t", "x2"), ("t", "x3")]);
            let none = BTreeSet::new();
            let plan = reconcile(&desired, &actual, &none, &none, OnDrift::Revoke, 2);
            assert!(
                plan.refused
                    .as_deref()
                    .is_some_and(|m| m.contains("would revoke 3 grants"))
            );
            assert_eq!(plan.revocations(OnDrift::Revoke), 0);
            assert_eq!(plan.missing.len(), 1);
            // In report mode the same outside grants revoke nothing, so nothing is refused.
            let plan = reconcile(&desired, &actual, &none, &none, OnDrift::Report, 2);
            assert_eq!(plan.refused, None);
        }
    }
}
