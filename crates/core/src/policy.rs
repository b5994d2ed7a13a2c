//! Role settings (`governanceRoleSetting`): this is where every role-setting rule of the
//! contract lives — the known rules and the shape of their `setting` JSON, the defaults
//! (decisions.md §5), the PATCH merge (decisions.md §5) and the evaluation of a request
//! against the rules of one collection.
//!
//! A setting is stored as the string the client sent; [`RoleRules::policy`] gives the typed
//! view. Unknown rules (`NotificationRule`, `AttributeConditionRule`, …) are stored and
//! returned verbatim and never judged.

use jiff::SignedDuration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ErrorCode, Result};
use crate::schedule::format_duration;

/// One `governanceRuleSetting`: a rule name and its setting, a JSON document in a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSetting {
    /// The rule name, e.g. `ExpirationRule` (canonical spelling for known rules).
    pub rule_identifier: String,
    /// The rule's JSON setting, serialised into a string.
    pub setting: String,
}

impl RuleSetting {
    /// A rule setting from its name and its setting string.
    pub fn new(rule_identifier: impl Into<String>, setting: impl Into<String>) -> Self {
        Self {
            rule_identifier: rule_identifier.into(),
            setting: setting.into(),
        }
    }
}

/// The four rule collections of a role setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCollection {
    /// `adminEligibleSettings`: an admin creates or changes an eligible assignment.
    AdminEligible,
    /// `adminMemberSettings`: an admin creates or changes an active assignment.
    AdminMember,
    /// `userEligibleSettings`: unused by the contract, `[]` by default.
    UserEligible,
    /// `userMemberSettings`: a user activates an eligible assignment.
    UserMember,
}

impl RuleCollection {
    /// All four collections, in contract order.
    pub const ALL: [RuleCollection; 4] = [
        Self::AdminEligible,
        Self::AdminMember,
        Self::UserEligible,
        Self::UserMember,
    ];

    /// The collection's property name in the Graph payload.
    pub fn name(self) -> &'static str {
        match self {
            Self::AdminEligible => "adminEligibleSettings",
            Self::AdminMember => "adminMemberSettings",
            Self::UserEligible => "userEligibleSettings",
            Self::UserMember => "userMemberSettings",
        }
    }
}

/// The rules of one role setting, as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleRules {
    /// `adminEligibleSettings`.
    pub admin_eligible: Vec<RuleSetting>,
    /// `adminMemberSettings`.
    pub admin_member: Vec<RuleSetting>,
    /// `userEligibleSettings`.
    pub user_eligible: Vec<RuleSetting>,
    /// `userMemberSettings`.
    pub user_member: Vec<RuleSetting>,
}

/// A PATCH body: `None` leaves a collection alone, `Some` merges into it by rule name.
#[derive(Debug, Clone, Default)]
pub struct RoleRulesPatch {
    /// `adminEligibleSettings`, if named.
    pub admin_eligible: Option<Vec<RuleSetting>>,
    /// `adminMemberSettings`, if named.
    pub admin_member: Option<Vec<RuleSetting>>,
    /// `userEligibleSettings`, if named.
    pub user_eligible: Option<Vec<RuleSetting>>,
    /// `userMemberSettings`, if named.
    pub user_member: Option<Vec<RuleSetting>>,
}

impl RoleRulesPatch {
    fn collection(&self, c: RuleCollection) -> Option<&[RuleSetting]> {
        match c {
            RuleCollection::AdminEligible => self.admin_eligible.as_deref(),
            RuleCollection::AdminMember => self.admin_member.as_deref(),
            RuleCollection::UserEligible => self.user_eligible.as_deref(),
            RuleCollection::UserMember => self.user_member.as_deref(),
        }
    }
}

impl RoleRules {
    /// The default rules of a role (decisions.md §5).
    pub fn defaults() -> Self {
        let r = RuleSetting::new;
        Self {
            admin_eligible: vec![r(
                EXPIRATION,
                r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":525600}"#,
            )],
            admin_member: vec![
                r(
                    EXPIRATION,
                    r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":259200}"#,
                ),
                r(MFA, r#"{"mfaRequired":false}"#),
                r(JUSTIFICATION, r#"{"required":true}"#),
            ],
            user_eligible: Vec::new(),
            user_member: vec![
                r(
                    EXPIRATION,
                    r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":480}"#,
                ),
                r(MFA, r#"{"mfaRequired":true}"#),
                r(JUSTIFICATION, r#"{"required":true}"#),
                r(TICKETING, r#"{"ticketingRequired":false}"#),
                r(APPROVAL, r#"{"Enabled":false,"Approvers":[]}"#),
            ],
        }
    }

    /// The rules of one collection, in stored order.
    pub fn collection(&self, c: RuleCollection) -> &[RuleSetting] {
        match c {
            RuleCollection::AdminEligible => &self.admin_eligible,
            RuleCollection::AdminMember => &self.admin_member,
            RuleCollection::UserEligible => &self.user_eligible,
            RuleCollection::UserMember => &self.user_member,
        }
    }

    fn collection_mut(&mut self, c: RuleCollection) -> &mut Vec<RuleSetting> {
        match c {
            RuleCollection::AdminEligible => &mut self.admin_eligible,
            RuleCollection::AdminMember => &mut self.admin_member,
            RuleCollection::UserEligible => &mut self.user_eligible,
            RuleCollection::UserMember => &mut self.user_member,
        }
    }

    /// Merges a PATCH, all or nothing: every rule of every named collection is validated
    /// first; then each rule replaces the rule of the same name (known rules match
    /// case-insensitively and are stored under their canonical name) or is appended.
    /// Within one list a later entry of the same name wins.
    pub fn apply_patch(&mut self, patch: RoleRulesPatch) -> Result<()> {
        let mut merges = Vec::new();
        for c in RuleCollection::ALL {
            let Some(rules) = patch.collection(c) else {
                continue;
            };
            let mut checked = Vec::with_capacity(rules.len());
            for rule in rules {
                checked.push(validate_rule(c, rule)?);
            }
            merges.push((c, checked));
        }
        for (c, rules) in merges {
            let target = self.collection_mut(c);
            for rule in rules {
                match target
                    .iter_mut()
                    .find(|old| same_rule(&old.rule_identifier, &rule.rule_identifier))
                {
                    Some(old) => *old = rule,
                    None => target.push(rule),
                }
            }
        }
        Ok(())
    }

    /// The typed view of one collection. A stored known rule that no longer parses is a
    /// broken invariant (`500`).
    pub fn policy(&self, c: RuleCollection) -> Result<Policy> {
        let mut policy = Policy::default();
        for rule in self.collection(c) {
            let Some(kind) = Known::from_identifier(&rule.rule_identifier) else {
                continue;
            };
            let parsed = parse_known(kind, &rule.setting).map_err(|e| {
                DomainError::internal(format!(
                    "stored {} {} no longer parses: {e}",
                    c.name(),
                    kind.name()
                ))
            })?;
            match parsed {
                Parsed::Expiration(r) => policy.expiration = Some(r),
                Parsed::Mfa(r) => policy.mfa = Some(r),
                Parsed::Justification(r) => policy.justification = Some(r),
                Parsed::Ticketing(r) => policy.ticketing = Some(r),
                Parsed::Approval(r) => policy.approval = Some(r),
            }
        }
        Ok(policy)
    }
}

const EXPIRATION: &str = "ExpirationRule";
const MFA: &str = "MfaRule";
const JUSTIFICATION: &str = "JustificationRule";
const TICKETING: &str = "TicketingRule";
const APPROVAL: &str = "ApprovalRule";

/// The rules this module understands.
#[derive(Debug, Clone, Copy)]
enum Known {
    Expiration,
    Mfa,
    Justification,
    Ticketing,
    Approval,
}

impl Known {
    const ALL: [Known; 5] = [
        Self::Expiration,
        Self::Mfa,
        Self::Justification,
        Self::Ticketing,
        Self::Approval,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Expiration => EXPIRATION,
            Self::Mfa => MFA,
            Self::Justification => JUSTIFICATION,
            Self::Ticketing => TICKETING,
            Self::Approval => APPROVAL,
        }
    }

    fn from_identifier(id: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(id))
    }
}

/// Known rules match case-insensitively; unknown rules match exactly.
fn same_rule(a: &str, b: &str) -> bool {
    match (Known::from_identifier(a), Known::from_identifier(b)) {
        (Some(x), Some(y)) => x.name() == y.name(),
        (None, None) => a == b,
        _ => false,
    }
}

/// Checks one PATCH entry and returns it as it will be stored.
fn validate_rule(c: RuleCollection, rule: &RuleSetting) -> Result<RuleSetting> {
    let invalid = |msg: String| DomainError::new(ErrorCode::InvalidRoleSetting, msg);
    if rule.rule_identifier.trim().is_empty() {
        return Err(invalid(format!(
            "{}: a rule has an empty ruleIdentifier",
            c.name()
        )));
    }
    let Some(kind) = Known::from_identifier(&rule.rule_identifier) else {
        return Ok(rule.clone());
    };
    parse_known(kind, &rule.setting).map_err(|e| {
        invalid(format!(
            "{} {}: invalid setting `{}`: {e}",
            c.name(),
            kind.name(),
            rule.setting
        ))
    })?;
    Ok(RuleSetting::new(kind.name(), rule.setting.clone()))
}

enum Parsed {
    Expiration(ExpirationRule),
    Mfa(MfaRule),
    Justification(JustificationRule),
    Ticketing(TicketingRule),
    Approval(ApprovalRule),
}

/// Parses and validates the setting of a known rule; the error says what is wrong.
fn parse_known(kind: Known, setting: &str) -> std::result::Result<Parsed, String> {
    Ok(match kind {
        Known::Expiration => {
            let r: ExpirationRule = parse_object(setting)?;
            positive(
                "maximumGrantPeriodInMinutes",
                r.maximum_grant_period_in_minutes,
            )?;
            Parsed::Expiration(r)
        }
        Known::Mfa => Parsed::Mfa(parse_object(setting)?),
        Known::Justification => Parsed::Justification(parse_object(setting)?),
        Known::Ticketing => Parsed::Ticketing(parse_object(setting)?),
        Known::Approval => {
            let r: ApprovalRule = parse_object(setting)?;
            r.check()?;
            Parsed::Approval(r)
        }
    })
}

/// Deserialises a setting that must be a JSON object (serde would also take an array).
fn parse_object<T: DeserializeOwned>(setting: &str) -> std::result::Result<T, String> {
    let value: serde_json::Value = serde_json::from_str(setting).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("the setting must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The largest number of minutes any rule may name: 100 years.
pub const MAX_MINUTES: i64 = 100 * 366 * 24 * 60;

fn positive(key: &str, n: i64) -> std::result::Result<(), String> {
    if (1..=MAX_MINUTES).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "{key} must be between 1 and {MAX_MINUTES}, got {n}"
        ))
    }
}

/// `ExpirationRule`: how long a grant may last.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationRule {
    /// Whether a grant without an end is allowed (and then no maximum applies).
    pub permanent_assignment: bool,
    /// The longest grant, in minutes (positive).
    pub maximum_grant_period_in_minutes: i64,
}

/// `MfaRule`: whether the requester must have done multi-factor authentication.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MfaRule {
    /// Whether MFA is required.
    pub mfa_required: bool,
}

/// `JustificationRule`: whether a request must give a reason.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JustificationRule {
    /// Whether a non-blank reason is required.
    pub required: bool,
}

/// `TicketingRule`: whether a request must carry ticket information.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketingRule {
    /// Whether `ticketInfo` with a non-blank number and system is required.
    pub ticketing_required: bool,
}

/// The kind of an approver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ApproverKind {
    /// A single user.
    User,
    /// A group; any member may decide.
    Group,
}

/// One approver of an `ApprovalRule`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Approver {
    /// The subject id (non-blank).
    pub id: String,
    /// `User` or `Group`.
    #[serde(rename = "Type")]
    pub kind: ApproverKind,
    /// An optional display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// An optional e-mail address.
    #[serde(default)]
    pub email: Option<String>,
}

/// `ApprovalRule` (PascalCase keys): whether and how an activation is approved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApprovalRule {
    /// Whether approval is needed (the only required key).
    pub enabled: bool,
    /// Who may approve; `[]` by default.
    #[serde(default)]
    pub approvers: Vec<Approver>,
    /// How long a request waits for a decision, in minutes (positive, default 1440).
    #[serde(rename = "ApprovalTimeoutInMinutes", default = "default_timeout")]
    pub approval_timeout_minutes: i64,
    /// How many approvals are needed (≥ 1, default 1).
    #[serde(default = "default_required")]
    pub required_approvals: u32,
    /// Whether an emergency activation may bypass approval (default false).
    #[serde(default)]
    pub allow_emergency_bypass: bool,
    /// The longest emergency activation, in minutes (positive, default 60).
    #[serde(default = "default_emergency")]
    pub emergency_maximum_minutes: i64,
    /// An optional business-flow id.
    #[serde(default)]
    pub business_flow_id: Option<String>,
}

fn default_timeout() -> i64 {
    1440
}
fn default_required() -> u32 {
    1
}
fn default_emergency() -> i64 {
    60
}

impl ApprovalRule {
    fn check(&self) -> std::result::Result<(), String> {
        positive("ApprovalTimeoutInMinutes", self.approval_timeout_minutes)?;
        positive("EmergencyMaximumMinutes", self.emergency_maximum_minutes)?;
        if self.required_approvals < 1 {
            return Err("RequiredApprovals must be at least 1".into());
        }
        if self.approvers.iter().any(|a| a.id.trim().is_empty()) {
            return Err("every approver needs a non-empty Id".into());
        }
        let users_only = self.approvers.iter().all(|a| a.kind == ApproverKind::User);
        let n = self.approvers.len();
        if users_only && n > 0 && self.required_approvals as usize > n {
            return Err(format!(
                "RequiredApprovals ({}) exceeds the number of user approvers ({n})",
                self.required_approvals
            ));
        }
        Ok(())
    }
}

/// The typed rules of one collection (absent rule = no constraint from it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `ExpirationRule`, if present.
    pub expiration: Option<ExpirationRule>,
    /// `MfaRule`, if present.
    pub mfa: Option<MfaRule>,
    /// `JustificationRule`, if present.
    pub justification: Option<JustificationRule>,
    /// `TicketingRule`, if present.
    pub ticketing: Option<TicketingRule>,
    /// `ApprovalRule`, if present.
    pub approval: Option<ApprovalRule>,
}

/// The `ticketInfo` of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketInfo {
    /// The ticket number.
    pub ticket_number: Option<String>,
    /// The ticketing system.
    pub ticket_system: Option<String>,
}

/// What the request brings that rules judge.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The requested length of the grant; `None` = permanent (no end).
    pub duration: Option<SignedDuration>,
    /// Whether the requester has done multi-factor authentication.
    pub mfa: bool,
    /// The request's reason, if any.
    pub reason: Option<&'a str>,
    /// The request's ticket information, if any.
    pub ticket: Option<&'a TicketInfo>,
}

/// The verdict of one rule on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult {
    /// The rule name, e.g. `ExpirationRule`.
    pub rule: String,
    /// The verdict: always `Grant` (a refusal is an error).
    pub result: String,
}

fn blank(s: Option<&str>) -> bool {
    s.is_none_or(|s| s.trim().is_empty())
}

impl Policy {
    /// Evaluates ExpirationRule, MfaRule, JustificationRule, TicketingRule (those present,
    /// in that order); Ok = one `Grant` result per rule present; the first failure →
    /// Err(DomainError::policy(...)) naming the rule.
    pub fn evaluate(&self, facts: &RequestFacts) -> Result<Vec<RuleResult>> {
        let mut results = Vec::new();
        let mut grant = |rule: &str| {
            results.push(RuleResult {
                rule: rule.into(),
                result: "Grant".into(),
            });
        };
        if self.expiration.is_some() {
            self.check_expiration(facts.duration)?;
            grant(EXPIRATION);
        }
        if let Some(rule) = &self.mfa {
            if rule.mfa_required && !facts.mfa {
                return Err(DomainError::policy(
                    "MfaRule: multi-factor authentication is required",
                ));
            }
            grant(MFA);
        }
        if let Some(rule) = &self.justification {
            if rule.required && blank(facts.reason) {
                return Err(DomainError::policy(
                    "JustificationRule: a reason is required",
                ));
            }
            grant(JUSTIFICATION);
        }
        if let Some(rule) = &self.ticketing {
            let ok = facts.ticket.is_some_and(|t| {
                !blank(t.ticket_number.as_deref()) && !blank(t.ticket_system.as_deref())
            });
            if rule.ticketing_required && !ok {
                return Err(DomainError::policy(
                    "TicketingRule: ticketInfo with ticketNumber and ticketSystem is required",
                ));
            }
            grant(TICKETING);
        }
        Ok(results)
    }

    /// The longest grant allowed (None when permanent assignments are allowed or there is
    /// no ExpirationRule). A maximum beyond what a duration can hold saturates.
    pub fn max_duration(&self) -> Option<SignedDuration> {
        let rule = self
            .expiration
            .as_ref()
            .filter(|r| !r.permanent_assignment)?;
        Some(
            SignedDuration::try_from_mins(rule.maximum_grant_period_in_minutes)
                .unwrap_or(SignedDuration::MAX),
        )
    }

    /// The ExpirationRule (the one place it is judged): a grant of `duration` (`None` =
    /// permanent) must end when permanent grants are not allowed, and last at most the
    /// maximum grant period.
    pub fn check_expiration(&self, duration: Option<SignedDuration>) -> Result<()> {
        let Some(rule) = &self.expiration else {
            return Ok(());
        };
        match (duration, self.max_duration()) {
            (None, _) if !rule.permanent_assignment => Err(DomainError::policy(
                "ExpirationRule: a permanent assignment is not allowed; give an end",
            )),
            (Some(d), Some(max)) if d > max => Err(DomainError::policy(format!(
                "ExpirationRule: the requested duration `{}` exceeds the maximum of {} minutes",
                format_duration(d),
                rule.maximum_grant_period_in_minutes
            ))),
            _ => Ok(()),
        }
    }

    /// The ApprovalRule when it is on (present and `Enabled`): activations then wait for
    /// approval, unless an allowed emergency bypasses it.
    pub fn approval_required(&self) -> Option<&ApprovalRule> {
        self.approval.as_ref().filter(|a| a.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(list: &[(&str, &str)]) -> Vec<RuleSetting> {
        list.iter()
            .map(|(id, s)| RuleSetting::new(*id, *s))
            .collect()
    }

    fn patch_user_member(list: &[(&str, &str)]) -> RoleRulesPatch {
        RoleRulesPatch {
            user_member: Some(rules(list)),
            ..Default::default()
        }
    }

    fn facts(duration: Option<SignedDuration>) -> RequestFacts<'static> {
        RequestFacts {
            duration,
            mfa: true,
            reason: Some("work"),
            ticket: None,
        }
    }

    fn policy_of(list: &[(&str, &str)]) -> Policy {
        let mut r = RoleRules::default();
        r.apply_patch(patch_user_member(list)).unwrap();
        r.policy(RuleCollection::UserMember).unwrap()
    }

    #[test]
    fn defaults_shape_and_json_text() {
        let d = RoleRules::defaults();
        let json = serde_json::to_string(&d.user_member).unwrap();
        assert_eq!(
            json,
            r#"[{"ruleIdentifier":"ExpirationRule","setting":"{\"permanentAssignment\":false,\"maximumGrantPeriodInMinutes\":480}"},{"ruleIdentifier":"MfaRule","setting":"{\"mfaRequired\":true}"},{"ruleIdentifier":"JustificationRule","setting":"{\"required\":true}"},{"ruleIdentifier":"TicketingRule","setting":"{\"ticketingRequired\":false}"},{"ruleIdentifier":"ApprovalRule","setting":"{\"Enabled\":false,\"Approvers\":[]}"}]"#
        );
        assert_eq!(
            d.collection(RuleCollection::AdminEligible),
            rules(&[(
                "ExpirationRule",
                r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":525600}"#
            )])
        );
        let ids: Vec<_> = d
            .admin_member
            .iter()
            .map(|r| r.rule_identifier.as_str())
            .collect();
        assert_eq!(ids, ["ExpirationRule", "MfaRule", "JustificationRule"]);
        assert!(d.user_eligible.is_empty());
        for c in RuleCollection::ALL {
            d.policy(c).unwrap();
        }
        let am = d.policy(RuleCollection::AdminMember).unwrap();
        assert_eq!(am.max_duration(), Some(SignedDuration::from_mins(259200)));
        assert_eq!(
            am.mfa,
            Some(MfaRule {
                mfa_required: false
            })
        );
        let um = d.policy(RuleCollection::UserMember).unwrap();
        assert_eq!(um.max_duration(), Some(SignedDuration::from_hours(8)));
        assert!(um.approval_required().is_none());
        assert_eq!(um.approval.unwrap().approvers, vec![]);
    }

    #[test]
    fn each_known_rule_valid_and_invalid() {
        let valid = [
            (
                "ExpirationRule",
                r#"{"permanentAssignment":true,"maximumGrantPeriodInMinutes":1}"#,
            ),
            ("MfaRule", r#"{"mfaRequired":false}"#),
            ("JustificationRule", r#"{"required":false}"#),
            ("TicketingRule", r#"{"ticketingRequired":true}"#),
            ("ApprovalRule", r#"{"Enabled":true}"#),
        ];
        for (id, s) in valid {
            RoleRules::default()
                .apply_patch(patch_user_member(&[(id, s)]))
                .unwrap();
        }
        let invalid = [
            ("ExpirationRule", r#"{"permanentAssignment":false}"#),
            (
                "ExpirationRule",
                r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":0}"#,
            ),
            (
                "ExpirationRule",
                r#"{"permanentAssignment":"no","maximumGrantPeriodInMinutes":5}"#,
            ),
            (
                "ExpirationRule",
                r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":1.5}"#,
            ),
            ("ExpirationRule", r#"[false,480]"#),
            ("MfaRule", r#"{}"#),
            ("MfaRule", "not json"),
            ("JustificationRule", r#"{"required":1}"#),
            ("TicketingRule", r#"{"ticketingRequired":null}"#),
            ("ApprovalRule", r#"{"enabled":true}"#),
            (
                "ApprovalRule",
                r#"{"Enabled":true,"ApprovalTimeoutInMinutes":0}"#,
            ),
            (
                "ApprovalRule",
                r#"{"Enabled":true,"EmergencyMaximumMinutes":-1}"#,
            ),
            ("ApprovalRule", r#"{"Enabled":true,"RequiredApprovals":0}"#),
            (
                "ApprovalRule",
                r#"{"Enabled":true,"Approvers":[{"Id":"a","Type":"Robot"}]}"#,
            ),
            (
                "ApprovalRule",
                r#"{"Enabled":true,"Approvers":[{"Id":" ","Type":"User"}]}"#,
            ),
            (
                "ApprovalRule",
                r#"{"Enabled":true,"RequiredApprovals":2,"Approvers":[{"Id":"a","Type":"User"}]}"#,
            ),
        ];
        for (id, s) in invalid {
            let err = RoleRules::default()
                .apply_patch(patch_user_member(&[(id, s)]))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRoleSetting, "{s}");
            assert!(
                err.message.contains("userMemberSettings"),
                "{}",
                err.message
            );
            assert!(err.message.contains(id), "{}", err.message);
        }
        let err = RoleRules::default()
            .apply_patch(patch_user_member(&[(" ", "{}")]))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRoleSetting);
    }

    #[test]
    fn approval_parsing_with_defaults() {
        let p = policy_of(&[("ApprovalRule", r#"{"Enabled":true}"#)]);
        assert!(p.approval_required().is_some());
        assert_eq!(
            p.approval,
            Some(ApprovalRule {
                enabled: true,
                approvers: vec![],
                approval_timeout_minutes: 1440,
                required_approvals: 1,
                allow_emergency_bypass: false,
                emergency_maximum_minutes: 60,
                business_flow_id: None,
            })
        );
        let full = r#"{"Enabled":true,"Approvers":[{"Id":"u1","Type":"User","DisplayName":"Ann","Email":"a@x"},{"Id":"g1","Type":"Group"}],"BusinessFlowId":"bf","ApprovalTimeoutInMinutes":30,"RequiredApprovals":3,"AllowEmergencyBypass":true,"EmergencyMaximumMinutes":15}"#;
        let a = policy_of(&[("approvalrule", full)]).approval.unwrap();
        assert_eq!(a.approvers.len(), 2);
        assert_eq!(a.approvers[0].kind, ApproverKind::User);
        assert_eq!(a.approvers[0].display_name.as_deref(), Some("Ann"));
        assert_eq!(a.approvers[1].kind, ApproverKind::Group);
        assert_eq!(a.approvers[1].email, None);
        assert_eq!(a.business_flow_id.as_deref(), Some("bf"));
        assert_eq!((a.approval_timeout_minutes, a.required_approvals), (30, 3));
        assert!(a.allow_emergency_bypass);
        assert_eq!(a.emergency_maximum_minutes, 15);
    }

    #[test]
    fn patch_merges_by_rule_identifier() {
        let mut r = RoleRules::defaults();
        let custom = r#"{"mfaRequired":false, "note":"kept"}"#;
        r.apply_patch(patch_user_member(&[
            ("mfarule", custom),
            ("NotificationRule", r#"{"anything":[1,2]}"#),
        ]))
        .unwrap();
        assert_eq!(r.user_member.len(), 6);
        assert_eq!(r.user_member[1], RuleSetting::new("MfaRule", custom));
        assert_eq!(
            r.user_member[5],
            RuleSetting::new("NotificationRule", r#"{"anything":[1,2]}"#)
        );
        assert_eq!(r.admin_member, RoleRules::defaults().admin_member);
        // Unknown rules are matched exactly and never validated.
        r.apply_patch(patch_user_member(&[("NotificationRule", "not json")]))
            .unwrap();
        assert_eq!(r.user_member[5].setting, "not json");
        r.apply_patch(patch_user_member(&[("notificationrule", "x")]))
            .unwrap();
        assert_eq!(r.user_member.len(), 7);
        // An empty list names a collection without changing it.
        let before = r.clone();
        r.apply_patch(patch_user_member(&[])).unwrap();
        assert_eq!(r, before);
    }

    #[test]
    fn failed_patch_changes_nothing() {
        let mut r = RoleRules::defaults();
        let patch = RoleRulesPatch {
            admin_eligible: Some(rules(&[("MfaRule", r#"{"mfaRequired":true}"#)])),
            user_member: Some(rules(&[
                ("JustificationRule", r#"{"required":false}"#),
                (
                    "ExpirationRule",
                    r#"{"permanentAssignment":false,"maximumGrantPeriodInMinutes":-5}"#,
                ),
            ])),
            ..Default::default()
        };
        let err = r.apply_patch(patch).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRoleSetting);
        assert!(
            err.message.contains("userMemberSettings ExpirationRule"),
            "{}",
            err.message
        );
        assert_eq!(r, RoleRules::defaults());
    }

    #[test]
    fn expiration_boundaries() {
        let p = RoleRules::defaults()
            .policy(RuleCollection::UserMember)
            .unwrap();
        let max = SignedDuration::from_mins(480);
        let ok = p.evaluate(&facts(Some(max))).unwrap();
        let names: Vec<_> = ok.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(
            names,
            [
                "ExpirationRule",
                "MfaRule",
                "JustificationRule",
                "TicketingRule"
            ]
        );
        assert!(ok.iter().all(|r| r.result == "Grant"));
        let err = p
            .evaluate(&facts(Some(max + SignedDuration::from_secs(1))))
            .unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::RoleAssignmentRequestPolicyValidationFailed
        );
        assert!(
            err.message
                .starts_with("ExpirationRule: the requested duration"),
            "{}",
            err.message
        );
        let err = p
            .evaluate(&facts(Some(SignedDuration::from_hours(9))))
            .unwrap_err();
        assert_eq!(
            err.message,
            "ExpirationRule: the requested duration `PT9H` exceeds the maximum of 480 minutes"
        );
        let err = p.evaluate(&facts(None)).unwrap_err();
        assert_eq!(
            err.message,
            "ExpirationRule: a permanent assignment is not allowed; give an end"
        );

        let permanent = policy_of(&[(
            "ExpirationRule",
            r#"{"permanentAssignment":true,"maximumGrantPeriodInMinutes":10}"#,
        )]);
        assert_eq!(permanent.max_duration(), None);
        permanent.evaluate(&facts(None)).unwrap();
        permanent
            .evaluate(&facts(Some(SignedDuration::from_hours(100))))
            .unwrap();
        let huge = format!(
            r#"{{"permanentAssignment":false,"maximumGrantPeriodInMinutes":{}}}"#,
            i64::MAX
        );
        let err = RoleRules::default()
            .apply_patch(patch_user_member(&[("ExpirationRule", &huge)]))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRoleSetting);
        let longest = format!(
            r#"{{"permanentAssignment":false,"maximumGrantPeriodInMinutes":{MAX_MINUTES}}}"#
        );
        let p = policy_of(&[("ExpirationRule", &longest)]);
        assert_eq!(
            p.max_duration(),
            Some(SignedDuration::from_mins(MAX_MINUTES))
        );
        assert_eq!(Policy::default().evaluate(&facts(None)).unwrap(), vec![]);
    }

    #[test]
    fn mfa_justification_ticketing() {
        let p = policy_of(&[
            ("MfaRule", r#"{"mfaRequired":true}"#),
            ("JustificationRule", r#"{"required":true}"#),
            ("TicketingRule", r#"{"ticketingRequired":true}"#),
        ]);
        let ticket = TicketInfo {
            ticket_number: Some("42".into()),
            ticket_system: Some("SN".into()),
        };
        let good = RequestFacts {
            duration: None,
            mfa: true,
            reason: Some("why"),
            ticket: Some(&ticket),
        };
        assert_eq!(p.evaluate(&good).unwrap().len(), 3);

        let msg = |f: RequestFacts| p.evaluate(&f).unwrap_err().message;
        assert_eq!(
            msg(RequestFacts { mfa: false, ..good }),
            "MfaRule: multi-factor authentication is required"
        );
        assert_eq!(
            msg(RequestFacts {
                reason: None,
                ..good
            }),
            "JustificationRule: a reason is required"
        );
        assert_eq!(
            msg(RequestFacts {
                reason: Some(" \t"),
                ..good
            }),
            "JustificationRule: a reason is required"
        );
        let ticketing = "TicketingRule: ticketInfo with ticketNumber and ticketSystem is required";
        assert_eq!(
            msg(RequestFacts {
                ticket: None,
                ..good
            }),
            ticketing
        );
        let half = TicketInfo {
            ticket_number: Some("42".into()),
            ticket_system: Some(" ".into()),
        };
        assert_eq!(
            msg(RequestFacts {
                ticket: Some(&half),
                ..good
            }),
            ticketing
        );

        let lax = policy_of(&[
            ("MfaRule", r#"{"mfaRequired":false}"#),
            ("JustificationRule", r#"{"required":false}"#),
            ("TicketingRule", r#"{"ticketingRequired":false}"#),
        ]);
        let bare = RequestFacts {
            duration: None,
            mfa: false,
            reason: None,
            ticket: None,
        };
        assert_eq!(lax.evaluate(&bare).unwrap().len(), 3);
    }

    fn arb_rule() -> impl Strategy<Value = RuleSetting> {
        let id = prop::sample::select(vec![
            "ExpirationRule",
            "expirationrule",
            "MfaRule",
            "MFARULE",
            "JustificationRule",
            "TicketingRule",
            "ApprovalRule",
            "NotificationRule",
            "AttributeConditionRule",
            "",
        ]);
        let setting = prop_oneof![
            (any::<bool>(), -2i64..600).prop_map(|(p, m)| format!(
                r#"{{"permanentAssignment":{p},"maximumGrantPeriodInMinutes":{m}}}"#
            )),
            any::<bool>().prop_map(|b| format!(
                r#"{{"mfaRequired":{b},"required":{b},"ticketingRequired":{b}}}"#
            )),
            (any::<bool>(), 0u32..3, 0usize..3).prop_map(|(e, n, k)| {
                let approvers: Vec<_> = (0..k)
                    .map(|i| format!(r#"{{"Id":"u{i}","Type":"User"}}"#))
                    .collect();
                format!(
                    r#"{{"Enabled":{e},"RequiredApprovals":{n},"Approvers":[{}]}}"#,
                    approvers.join(",")
                )
            }),
            ".{0,12}",
        ];
        (id, setting).prop_map(|(id, s)| RuleSetting::new(id, s))
    }

    proptest! {
        #[test]
        fn patch_is_all_or_nothing(
            a in prop::option::of(prop::collection::vec(arb_rule(), 0..4)),
            b in prop::option::of(prop::collection::vec(arb_rule(), 0..4)),
            c in prop::option::of(prop::collection::vec(arb_rule(), 0..4)),
            d in prop::option::of(prop::collection::vec(arb_rule(), 0..4)),
        ) {
            let mut r = RoleRules::defaults();
            let patch = RoleRulesPatch { admin_eligible: a, admin_member: b, user_eligible: c, user_member: d };
            match r.apply_patch(patch) {
                Err(e) => {
                    prop_assert_eq!(e.code, ErrorCode::InvalidRoleSetting);
                    prop_assert_eq!(r, RoleRules::defaults());
                }
                Ok(()) => for c in RuleCollection::ALL {
                    prop_assert!(r.policy(c).is_ok());
                },
            }
        }
    }
}
