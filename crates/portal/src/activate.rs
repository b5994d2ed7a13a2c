//! "Activate" (portal.md §5.2): the form of one eligibility, bounded and annotated by the
//! role's activation rules as the core reads them, submitting a `UserAdd` exactly as the
//! API does. A refusal comes back next to the field it concerns, with every input kept.

use crate::S;
use crate::my_roles::{ResourceView, submit_request, type_label};
use crate::page::{Chrome, ErrorPage, Section, is_form_error, now, render};
use crate::session::Visit;
use crate::text;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_core::assignment::AssignmentState;
use rolegate_core::overview::{self, ActivationOffer};
use rolegate_core::policy::TicketInfo;
use rolegate_core::request::{NewRequest, RequestType};
use rolegate_core::schedule::ScheduleInput;
use serde::Deserialize;

/// What the person typed, kept when the form comes back.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct ActivateForm {
    csrf: Option<String>,
    scope: Option<String>,
    start: Option<String>,
    start_time: Option<String>,
    hours: Option<String>,
    minutes: Option<String>,
    reason: Option<String>,
    ticket_system: Option<String>,
    ticket_number: Option<String>,
    emergency: Option<String>,
}

/// One option of the "Scope" select.
struct ScopeOption {
    id: String,
    label: String,
    selected: bool,
}

/// Which field a refusal concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Duration,
    Reason,
    Ticket,
    Start,
    Form,
}

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage {
    chrome: Chrome,
    id: String,
    role: String,
    resource: ResourceView,
    scopes: Vec<ScopeOption>,
    later: bool,
    start_time: String,
    hours: String,
    minutes: String,
    max: Option<String>,
    max_hours: Option<i64>,
    reason: String,
    reason_required: bool,
    ticket_required: bool,
    ticket_system: String,
    ticket_number: String,
    approval: Option<(Vec<String>, u32)>,
    mfa_required: bool,
    mfa_missing: bool,
    step_up: bool,
    zone: String,
    emergency_allowed: bool,
    emergency_minutes: i64,
    emergency: bool,
    error: Option<(Field, String)>,
}

impl ActivatePage {
    fn error_on(&self, field: &str) -> Option<&str> {
        let want = match field {
            "duration" => Field::Duration,
            "reason" => Field::Reason,
            "ticket" => Field::Ticket,
            "start" => Field::Start,
            _ => Field::Form,
        };
        match &self.error {
            Some((f, m)) if *f == want => Some(m.as_str()),
            _ => None,
        }
    }
}

async fn offer(portal: &S, visit: &Visit, id: &str) -> Result<ActivationOffer, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    let id = id.to_string();
    portal
        .app
        .read(move |tx, st| overview::activation_offer(tx, &caller, &st.access_view(), at, &id))
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())
}

async fn show(
    portal: &S,
    visit: &Visit,
    offer: &ActivationOffer,
    form: &ActivateForm,
    error: Option<(Field, String)>,
) -> Response {
    let role = offer.row.role.display_name.clone();
    let chrome =
        match Chrome::new(portal, visit, Section::MyRoles, format!("Activate {role}")).await {
            Ok(c) => c.with_alert(error.as_ref().map(|(_, m)| m.clone())),
            Err(r) => return r,
        };
    let policy = &offer.policy;
    let max = policy.max_duration();
    let chosen = form.scope.clone();
    let scopes = offer
        .scopes
        .iter()
        .enumerate()
        .map(|(i, s)| ScopeOption {
            id: s.resource.id.clone(),
            label: format!(
                "{} ({})",
                s.resource.display_name,
                type_label(&s.resource.resource_type)
            ),
            selected: chosen.as_deref().map_or(i == 0, |c| c == s.resource.id),
        })
        .collect();
    let default_hours = max.map_or(1, |m| (m.as_hours()).clamp(0, 1));
    let approval = policy
        .approval_required()
        .map(|a| (offer.approvers.clone(), a.required_approvals));
    let emergency = policy
        .approval_required()
        .filter(|a| a.allow_emergency_bypass);
    let mfa_required = policy.mfa.as_ref().is_some_and(|m| m.mfa_required);
    let page = ActivatePage {
        chrome,
        id: offer.row.assignment.id.clone(),
        role,
        resource: ResourceView::of(&offer.row.lineage),
        scopes,
        later: form.start.as_deref() == Some("later"),
        start_time: form.start_time.clone().unwrap_or_default(),
        hours: form
            .hours
            .clone()
            .unwrap_or_else(|| default_hours.to_string()),
        minutes: form.minutes.clone().unwrap_or_else(|| "0".into()),
        max: max.map(text::duration_words),
        max_hours: max.map(|m| m.as_hours()),
        reason: form.reason.clone().unwrap_or_default(),
        reason_required: policy.justification.as_ref().is_some_and(|j| j.required),
        ticket_required: policy
            .ticketing
            .as_ref()
            .is_some_and(|t| t.ticketing_required),
        ticket_system: form.ticket_system.clone().unwrap_or_default(),
        ticket_number: form.ticket_number.clone().unwrap_or_default(),
        approval,
        mfa_required,
        mfa_missing: mfa_required && !visit.caller.mfa,
        step_up: portal.config.oidc.is_some(),
        zone: crate::text::zone_name(&visit.time_zone()),
        emergency_allowed: emergency.is_some(),
        emergency_minutes: emergency.map_or(0, |a| a.emergency_maximum_minutes),
        emergency: form.emergency.is_some(),
        error: error.clone(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(status, &page, &visit.request_id)
}

/// `GET /ui/activate/{eligibleAssignmentId}`; inputs in the query (kept across an MFA
/// step-up) fill the form.
pub async fn form(
    State(portal): State<S>,
    visit: Visit,
    Path(id): Path<String>,
    Query(kept): Query<ActivateForm>,
) -> Response {
    match offer(&portal, &visit, &id).await {
        Ok(o) => show(&portal, &visit, &o, &kept, None).await,
        Err(r) => r,
    }
}

/// A number field: empty is 0; anything else must be a whole number from 0.
fn whole(value: Option<&str>, name: &str) -> Result<i64, String> {
    let v = value.unwrap_or_default().trim();
    if v.is_empty() {
        return Ok(0);
    }
    v.parse::<i64>()
        .ok()
        .filter(|n| (0..=876_000).contains(n))
        .ok_or_else(|| format!("{name} must be a whole number from 0."))
}

/// The schedule the form asks for (a later start in the viewer's zone `tz`), or which
/// field is wrong.
fn schedule(f: &ActivateForm, tz: &jiff::tz::TimeZone) -> Result<ScheduleInput, (Field, String)> {
    let hours = whole(f.hours.as_deref(), "Hours").map_err(|m| (Field::Duration, m))?;
    let minutes = whole(f.minutes.as_deref(), "Minutes").map_err(|m| (Field::Duration, m))?;
    if hours == 0 && minutes == 0 {
        return Err((
            Field::Duration,
            "Give a duration of at least one minute.".into(),
        ));
    }
    let start = match f.start.as_deref() {
        Some("later") => Some(
            crate::text::local_input(f.start_time.as_deref().unwrap_or_default(), tz).ok_or_else(
                || {
                    (
                        Field::Start,
                        "Give the start time as a date and time.".to_string(),
                    )
                },
            )?,
        ),
        _ => None,
    };
    Ok(ScheduleInput {
        kind: Some("Once".into()),
        start,
        duration: Some(format!("PT{hours}H{minutes}M")),
        end: None,
    })
}

/// Which field the core's refusal is about, from the rule it names.
fn field_of(message: &str) -> Field {
    if message.starts_with("ExpirationRule") || message.contains("duration") {
        Field::Duration
    } else if message.starts_with("JustificationRule") {
        Field::Reason
    } else if message.starts_with("TicketingRule") {
        Field::Ticket
    } else if message.contains("start") {
        Field::Start
    } else {
        Field::Form
    }
}

/// `POST /ui/activate/{eligibleAssignmentId}`: a `UserAdd`, then the request's page.
pub async fn submit(
    State(portal): State<S>,
    visit: Visit,
    Path(id): Path<String>,
    Form(f): Form<ActivateForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let offer = match offer(&portal, &visit, &id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let scope = match f.scope.as_deref() {
        None | Some("") => offer.scopes.first(),
        Some(chosen) => offer.scopes.iter().find(|s| s.resource.id == chosen),
    };
    let Some(scope) = scope else {
        let e = (Field::Form, "Choose a scope from the list.".to_string());
        return show(&portal, &visit, &offer, &f, Some(e)).await;
    };
    let schedule = match schedule(&f, &visit.time_zone()) {
        Ok(s) => s,
        Err(e) => return show(&portal, &visit, &offer, &f, Some(e)).await,
    };
    let text = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let ticket =
        (text(&f.ticket_number).is_some() || text(&f.ticket_system).is_some()).then(|| {
            TicketInfo {
                ticket_number: text(&f.ticket_number),
                ticket_system: text(&f.ticket_system),
            }
        });
    let new = NewRequest {
        resource_id: scope.resource.id.clone(),
        role_definition_id: scope.role_definition_id.clone(),
        subject_id: visit.caller.subject_id.clone(),
        kind: Some(RequestType::UserAdd),
        state: Some(AssignmentState::Active),
        schedule: Some(schedule),
        reason: text(&f.reason),
        linked_eligible_id: Some(offer.row.assignment.id.clone()),
        ticket,
        emergency: f.emergency.is_some(),
    };
    match submit_request(&portal, &visit, new).await {
        Ok(r) => Redirect::to(&format!("/ui/requests/{}?done=submitted", r.id)).into_response(),
        Err(e) if is_form_error(&e.error) => {
            let m = e.error.message;
            show(&portal, &visit, &offer, &f, Some((field_of(&m), m))).await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}
