//! "Role settings" (portal.md §5.7): the rules of decisions.md §5 a person edits, written
//! as exactly a PATCH of the role setting — the rules the form shows replace their
//! namesakes, every other rule is kept verbatim, and unknown keys of a shown rule survive.
//! The core validates; its `InvalidRoleSetting` message comes back next to the field.

use crate::S;
use crate::page::{Chrome, ErrorPage, Section, now, render};
use crate::session::Visit;
use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_api::state::Operation;
use rolegate_core::directory::SubjectKind;
use rolegate_core::error::{DomainError, ErrorCode, Result};
use rolegate_core::operation;
use rolegate_core::policy::{ApproverKind, RoleRules, RoleRulesPatch, RuleCollection, RuleSetting};
use rolegate_core::role::{RoleDefinition, RoleSetting};
use rolegate_core::store::ReadTx;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// What the form shows, as text (so a refused input comes back as typed).
#[derive(Debug, Deserialize, Default, Clone)]
pub struct SettingsForm {
    csrf: Option<String>,
    max_hours: Option<String>,
    mfa: Option<String>,
    justification: Option<String>,
    ticketing: Option<String>,
    approval: Option<String>,
    approvers: Option<String>,
    required_approvals: Option<String>,
    approval_timeout: Option<String>,
    emergency: Option<String>,
    emergency_minutes: Option<String>,
    eligible_permanent: Option<String>,
    eligible_days: Option<String>,
    active_permanent: Option<String>,
    active_days: Option<String>,
    active_mfa: Option<String>,
    active_justification: Option<String>,
}

fn on(v: &Option<String>) -> bool {
    v.is_some()
}

fn flag(b: bool) -> Option<String> {
    b.then(|| "on".to_string())
}

/// A number without needless decimals: `8`, `1.5`.
fn number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The form as the stored rules fill it.
fn form_of(tx: &mut dyn ReadTx, rules: &RoleRules) -> Result<SettingsForm> {
    let user = rules.policy(RuleCollection::UserMember)?;
    let eligible = rules.policy(RuleCollection::AdminEligible)?;
    let active = rules.policy(RuleCollection::AdminMember)?;
    let approval = user.approval.clone();
    let mut approvers = Vec::new();
    for a in approval.iter().flat_map(|a| a.approvers.iter()) {
        let name = match tx.subject(&a.id)? {
            Some(s) if s.kind == SubjectKind::User => s.principal_name.unwrap_or(s.id),
            Some(s) => s.display_name,
            None => a.id.clone(),
        };
        approvers.push(name);
    }
    Ok(SettingsForm {
        csrf: None,
        max_hours: user
            .expiration
            .as_ref()
            .map(|e| number(e.maximum_grant_period_in_minutes as f64 / 60.0)),
        mfa: flag(user.mfa.as_ref().is_some_and(|m| m.mfa_required)),
        justification: flag(user.justification.as_ref().is_some_and(|j| j.required)),
        ticketing: flag(
            user.ticketing
                .as_ref()
                .is_some_and(|t| t.ticketing_required),
        ),
        approval: flag(approval.as_ref().is_some_and(|a| a.enabled)),
        approvers: Some(approvers.join("\n")),
        required_approvals: Some(
            approval
                .as_ref()
                .map_or(1, |a| a.required_approvals)
                .to_string(),
        ),
        approval_timeout: Some(
            approval
                .as_ref()
                .map_or(1440, |a| a.approval_timeout_minutes)
                .to_string(),
        ),
        emergency: flag(approval.as_ref().is_some_and(|a| a.allow_emergency_bypass)),
        emergency_minutes: Some(
            approval
                .as_ref()
                .map_or(60, |a| a.emergency_maximum_minutes)
                .to_string(),
        ),
        eligible_permanent: flag(
            eligible
                .expiration
                .as_ref()
                .is_none_or(|e| e.permanent_assignment),
        ),
        eligible_days: eligible
            .expiration
            .as_ref()
            .map(|e| number(e.maximum_grant_period_in_minutes as f64 / 1440.0)),
        active_permanent: flag(
            active
                .expiration
                .as_ref()
                .is_none_or(|e| e.permanent_assignment),
        ),
        active_days: active
            .expiration
            .as_ref()
            .map(|e| number(e.maximum_grant_period_in_minutes as f64 / 1440.0)),
        active_mfa: flag(active.mfa.as_ref().is_some_and(|m| m.mfa_required)),
        active_justification: flag(active.justification.as_ref().is_some_and(|j| j.required)),
    })
}

/// Which field a refusal concerns (an element id of the page).
fn field_of(message: &str, fallback: &'static str) -> &'static str {
    let m = message;
    let coll = |c: RuleCollection| m.contains(c.name());
    if coll(RuleCollection::UserMember) || m.contains("userMemberSettings") {
        if m.contains("ExpirationRule") {
            "max_hours"
        } else if m.contains("Approv") {
            "approvers"
        } else {
            fallback
        }
    } else if coll(RuleCollection::AdminEligible) {
        "eligible_days"
    } else if coll(RuleCollection::AdminMember) {
        "active_days"
    } else {
        fallback
    }
}

/// The JSON of stored rule `name` in `list`, to keep keys the form does not show.
fn stored(list: &[RuleSetting], name: &str) -> Map<String, Value> {
    list.iter()
        .find(|r| r.rule_identifier.eq_ignore_ascii_case(name))
        .and_then(|r| serde_json::from_str::<Value>(&r.setting).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

fn rule(name: &str, mut base: Map<String, Value>, set: Value) -> RuleSetting {
    if let Value::Object(fields) = set {
        base.extend(fields);
    }
    RuleSetting::new(name, Value::Object(base).to_string())
}

/// A number field, or the field's id and why not.
fn parse_number(
    v: &Option<String>,
    field: &'static str,
    label: &str,
) -> std::result::Result<Option<f64>, (&'static str, String)> {
    let raw = v.as_deref().map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(Some)
        .ok_or_else(|| (field, format!("{label} must be a number")))
}

/// The approvers the field names (one per line or comma: a user's `userName`, a group's
/// name, or an id), as `ApprovalRule` entries.
fn approvers_of(tx: &mut dyn ReadTx, text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for name in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let found = match tx.subject(name)? {
            Some(s) => Some(s),
            None => {
                let mut users = rolegate_core::scim::users_named(tx, name, 2)?;
                if users.len() == 1 {
                    users.pop()
                } else {
                    rolegate_core::scim::find_subjects(tx, name, 50)?
                        .into_iter()
                        .find(|s| {
                            s.kind == SubjectKind::Group
                                && s.display_name.eq_ignore_ascii_case(name)
                        })
                }
            }
        };
        let s = found.ok_or_else(|| {
            DomainError::new(
                ErrorCode::InvalidRoleSetting,
                format!("Approvers: nobody in the directory is named `{name}` (give a user name, a group's name or an id)"),
            )
        })?;
        let kind = match s.kind {
            SubjectKind::Group => ApproverKind::Group,
            _ => ApproverKind::User,
        };
        out.push(json!({
            "Id": s.id,
            "Type": if kind == ApproverKind::Group { "Group" } else { "User" },
            "DisplayName": s.display_name,
        }));
    }
    Ok(out)
}

/// The PATCH the form asks for, over the stored `rules`.
fn patch_of(
    tx: &mut dyn ReadTx,
    rules: &RoleRules,
    f: &SettingsForm,
) -> std::result::Result<RoleRulesPatch, (&'static str, String)> {
    let user = &rules.user_member;
    let mut user_rules = Vec::new();
    if let Some(h) = parse_number(
        &f.max_hours,
        "max_hours",
        "Maximum activation duration (hours)",
    )? {
        user_rules.push(rule(
            "ExpirationRule",
            stored(user, "ExpirationRule"),
            json!({"maximumGrantPeriodInMinutes": (h * 60.0).round() as i64}),
        ));
    }
    user_rules.push(rule(
        "MfaRule",
        stored(user, "MfaRule"),
        json!({"mfaRequired": on(&f.mfa)}),
    ));
    user_rules.push(rule(
        "JustificationRule",
        stored(user, "JustificationRule"),
        json!({"required": on(&f.justification)}),
    ));
    user_rules.push(rule(
        "TicketingRule",
        stored(user, "TicketingRule"),
        json!({"ticketingRequired": on(&f.ticketing)}),
    ));
    let approvers = approvers_of(tx, f.approvers.as_deref().unwrap_or_default())
        .map_err(|e| ("approvers", e.message))?;
    let mut approval = json!({
        "Enabled": on(&f.approval),
        "Approvers": approvers,
        "AllowEmergencyBypass": on(&f.emergency),
    });
    let whole = |v: Option<f64>| v.map(|x| x.round() as i64);
    if let Some(n) = whole(parse_number(
        &f.required_approvals,
        "required_approvals",
        "Required approvals",
    )?) {
        approval["RequiredApprovals"] = json!(n);
    }
    if let Some(n) = whole(parse_number(
        &f.approval_timeout,
        "approval_timeout",
        "Approval timeout (minutes)",
    )?) {
        approval["ApprovalTimeoutInMinutes"] = json!(n);
    }
    if let Some(n) = whole(parse_number(
        &f.emergency_minutes,
        "emergency_minutes",
        "Emergency access maximum (minutes)",
    )?) {
        approval["EmergencyMaximumMinutes"] = json!(n);
    }
    user_rules.push(rule("ApprovalRule", stored(user, "ApprovalRule"), approval));
    let expiration = |list: &[RuleSetting], permanent: bool, days: Option<f64>| {
        let mut set = json!({"permanentAssignment": permanent});
        if let Some(d) = days {
            set["maximumGrantPeriodInMinutes"] = json!((d * 1440.0).round() as i64);
        }
        rule("ExpirationRule", stored(list, "ExpirationRule"), set)
    };
    let eligible_days = parse_number(
        &f.eligible_days,
        "eligible_days",
        "Eligible assignments expire after (days)",
    )?;
    let active_days = parse_number(
        &f.active_days,
        "active_days",
        "Active assignments expire after (days)",
    )?;
    let admin_member = &rules.admin_member;
    Ok(RoleRulesPatch {
        user_member: Some(user_rules),
        admin_eligible: Some(vec![expiration(
            &rules.admin_eligible,
            on(&f.eligible_permanent),
            eligible_days,
        )]),
        admin_member: Some(vec![
            expiration(admin_member, on(&f.active_permanent), active_days),
            rule(
                "MfaRule",
                stored(admin_member, "MfaRule"),
                json!({"mfaRequired": on(&f.active_mfa)}),
            ),
            rule(
                "JustificationRule",
                stored(admin_member, "JustificationRule"),
                json!({"required": on(&f.active_justification)}),
            ),
        ]),
        user_eligible: None,
    })
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    rid: String,
    role_id: String,
    role: String,
    resource: String,
    f: SettingsForm,
    error: Option<(&'static str, String)>,
}

impl SettingsPage {
    fn error_on(&self, field: &str) -> Option<&str> {
        match &self.error {
            Some((f, m)) if *f == field => Some(m.as_str()),
            _ => None,
        }
    }
    fn value<'a>(&self, v: &'a Option<String>) -> &'a str {
        v.as_deref().unwrap_or_default()
    }
}

/// The role definition `role_id` of resource `rid` with its setting, if the caller may
/// change it (R3; `403` otherwise).
/// What a settings page or save needs: the role, its setting, the resource's name, the
/// form as stored, and whether the caller may change it (R3).
type Loaded = (RoleDefinition, RoleSetting, String, SettingsForm, bool);

/// The role definition `role_id` of resource `rid` with its setting.
async fn load(
    portal: &S,
    visit: &Visit,
    rid: &str,
    role_id: &str,
) -> std::result::Result<Loaded, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    let (rid, role_id) = (rid.to_string(), role_id.to_string());
    portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let not_found = || {
                DomainError::new(
                    ErrorCode::RoleDefinitionNotFound,
                    format!("role `{role_id}` is not defined on resource `{rid}`"),
                )
            };
            let d = tx
                .role_definition(&role_id)?
                .filter(|d| d.resource_id == rid)
                .ok_or_else(not_found)?;
            let resource = tx.resource(&rid)?.ok_or_else(not_found)?;
            let administers = caller.may_administer(&access, &rid, at);
            let s = tx.role_setting_of(&d.id)?.ok_or_else(not_found)?;
            let form = form_of(tx, &s.rules)?;
            Ok((d, s, resource.display_name, form, administers))
        })
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())
}

/// The role whose settings a page edits, and where.
struct Editing {
    rid: String,
    role: RoleDefinition,
    resource: String,
}

async fn page(
    portal: &S,
    visit: &Visit,
    e: &Editing,
    f: SettingsForm,
    error: Option<(&'static str, String)>,
    saved: bool,
) -> Response {
    let (rid, d, resource) = (&e.rid, &e.role, e.resource.clone());
    let chrome = match Chrome::new(
        portal,
        visit,
        Section::Resources,
        format!("Role settings: {}", d.display_name),
    )
    .await
    {
        Ok(c) => c
            .with_alert(error.as_ref().map(|(_, m)| m.clone()))
            .with_status(saved.then(|| "Settings saved".to_string())),
        Err(r) => return r,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = SettingsPage {
        chrome,
        rid: rid.to_string(),
        role_id: d.id.clone(),
        role: d.display_name.clone(),
        resource,
        f,
        error,
    };
    render(status, &page, &visit.request_id)
}

/// `GET /ui/resources/{id}/settings/{roleDefinitionId}`.
pub async fn form(
    State(portal): State<S>,
    visit: Visit,
    Path((rid, role_id)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<crate::my_roles::Done>,
) -> Response {
    match load(&portal, &visit, &rid, &role_id).await {
        Ok((_, _, _, _, false)) => ErrorPage::denied(&visit.request_id).into_response(),
        Ok((role, _, resource, f, true)) => {
            let editing = Editing {
                rid,
                role,
                resource,
            };
            page(
                &portal,
                &visit,
                &editing,
                f,
                None,
                q.done.as_deref() == Some("saved"),
            )
            .await
        }
        Err(r) => r,
    }
}

/// `POST /ui/resources/{id}/settings/{roleDefinitionId}`: the PATCH, as the API applies it.
pub async fn save(
    State(portal): State<S>,
    visit: Visit,
    Path((rid, role_id)): Path<(String, String)>,
    Form(f): Form<SettingsForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let (role, setting, resource, _, administers) =
        match load(&portal, &visit, &rid, &role_id).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let editing = Editing {
        rid: rid.clone(),
        role,
        resource,
    };
    // The form's values become a PATCH over the rules as stored now (as an API client
    // builds its PATCH from what it read); the core validates and merges it.
    // Someone who may not change it gets the core's refusal, audited as the API's is,
    // without the form being looked at.
    let rules = setting.rules.clone();
    let form = f.clone();
    let patch = portal
        .app
        .read(move |tx, _| {
            Ok(if administers {
                patch_of(tx, &rules, &form)
            } else {
                Ok(RoleRulesPatch::default())
            })
        })
        .await;
    let patch = match patch {
        Ok(Ok(p)) => p,
        Ok(Err((field, m))) => {
            return page(&portal, &visit, &editing, f, Some((field, m)), false).await;
        }
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let id = setting.id.clone();
    let done = portal
        .app
        .write(
            visit.caller.clone(),
            visit.request_id.clone(),
            Operation::update_role_setting(&id),
            move |tx, ctx| {
                operation::role::update_role_setting(tx, ctx, &id, patch.clone())
                    .map(|_| ((), Vec::new()))
            },
        )
        .await;
    match done {
        Ok(()) => Redirect::to(&format!(
            "/ui/resources/{rid}/settings/{role_id}?done=saved"
        ))
        .into_response(),
        Err(e) if e.error.code == ErrorCode::InvalidRoleSetting => {
            let m = e.error.message;
            page(
                &portal,
                &visit,
                &editing,
                f,
                Some((field_of(&m, "form"), m)),
                false,
            )
            .await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}
