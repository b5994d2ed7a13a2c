//! "My roles" (portal.md §5.1): the caller's eligible, active and recently expired roles,
//! with the self-service requests the core would accept for each: activate, extend,
//! renew, deactivate.

use crate::S;
use crate::page::{Chrome, ErrorPage, Section, is_form_error, now, render};
use crate::session::Visit;
use crate::text;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_api::state::Operation;
use rolegate_core::error::{DomainError, ErrorCode};
use rolegate_core::operation;
use rolegate_core::overview::{self, Membership, RoleRow};
use rolegate_core::request::{NewRequest, RequestType};
use rolegate_core::resource::Resource;
use rolegate_core::schedule::ScheduleInput;
use serde::Deserialize;

/// A resource as a row shows it: name, type, and the path of its ancestors.
pub struct ResourceView {
    /// Display name.
    pub name: String,
    /// "Subscription", "Resource group", …
    pub kind: String,
    /// Ancestors' names, root first, joined by " › " (empty for a root).
    pub path: String,
}

impl ResourceView {
    /// The view of `lineage` (the resource, then its ancestors nearest first).
    pub fn of(lineage: &[Resource]) -> Self {
        let Some(here) = lineage.first() else {
            return Self {
                name: "(unknown resource)".into(),
                kind: String::new(),
                path: String::new(),
            };
        };
        let path: Vec<&str> = lineage[1..]
            .iter()
            .rev()
            .map(|r| r.display_name.as_str())
            .collect();
        Self {
            name: here.display_name.clone(),
            kind: type_label(&here.resource_type),
            path: path.join(" › "),
        }
    }
}

/// A resource type in words.
pub fn type_label(t: &str) -> String {
    match t.to_ascii_lowercase().as_str() {
        "managementgroup" => "Management group".into(),
        "subscription" => "Subscription".into(),
        "resourcegroup" => "Resource group".into(),
        _ => "Resource".into(),
    }
}

/// A time cell: the instant for `<time datetime>`, and how it reads.
pub struct When {
    /// The instant.
    pub at: jiff::Timestamp,
    /// UTC instant, for `datetime`.
    pub iso: String,
    /// "ends in 1 h 59 min", for ends.
    pub relative: String,
}

impl When {
    /// A start.
    pub fn at(t: jiff::Timestamp) -> Self {
        Self {
            at: t,
            iso: text::iso(t),
            relative: String::new(),
        }
    }

    /// How it reads in the viewer's time zone.
    pub fn text(&self, tz: &jiff::tz::TimeZone) -> String {
        text::when_in(self.at, tz)
    }

    /// An end, with its relative text.
    pub fn end(t: jiff::Timestamp, now: jiff::Timestamp) -> Self {
        Self {
            relative: text::relative_end(now, t),
            ..Self::at(t)
        }
    }
}

/// What one connector did with an active role, in words (docs/connectors.md "The grant's
/// state for the person who activated").
pub(crate) struct GrantView {
    /// "app_admin in pg_main".
    pub(crate) what: String,
    /// "Granted", "Granting", "Retrying", "Failed", "Not granted".
    pub(crate) state: &'static str,
    /// Why, when it is not simply granted.
    pub(crate) detail: String,
}

impl GrantView {
    /// The view of one row of `…/connectorGrants`.
    fn of(row: &serde_json::Value) -> Self {
        let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
        let attempts = row["attempts"].as_u64().unwrap_or(0);
        let (state, detail) = match row["state"].as_str().unwrap_or_default() {
            "applied" => ("Granted", String::new()),
            "pending" => ("Granting", String::new()),
            "retrying" => (
                "Retrying",
                format!(
                    "{attempts} attempt{} failed; Rolegate keeps trying",
                    if attempts == 1 { "" } else { "s" }
                ),
            ),
            "failed" => (
                "Failed",
                "Rolegate gave up; your administrator can see why and retry".to_string(),
            ),
            _ => (
                "Not granted",
                match row["unmappedReason"].as_str() {
                    Some("ambiguous") => "another account maps to the same name there",
                    Some("invalidValue") => "your account's name there is not valid for it",
                    _ => "your account has no name there",
                }
                .to_string(),
            ),
        };
        let target = text("target");
        let connector = text("connector");
        Self {
            what: format!("{target} in {connector}"),
            state,
            detail,
        }
    }
}

/// What the connectors did with the caller's assignments `ids`: the caller's own grant
/// rows (whatever else it administers), `None` when no connectors run.
pub(crate) async fn connected_systems(
    portal: &S,
    visit: &Visit,
    ids: Vec<String>,
) -> Result<Option<Vec<serde_json::Value>>, Response> {
    let Some(operator) = portal.app.connectors.get().cloned() else {
        return Ok(None);
    };
    operator
        .assignment_grants(ids, Some(visit.caller.subject_id.clone()))
        .await
        .map(Some)
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e.into()).into_response())
}

/// The views of the rows of `grants` that assignment `id` justifies.
pub(crate) fn of_assignment(grants: &[serde_json::Value], id: &str) -> Vec<GrantView> {
    grants
        .iter()
        .filter(|g| {
            g["assignmentIds"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == id))
        })
        .map(GrantView::of)
        .collect()
}

/// One row of a "My roles" table.
pub struct RowView {
    id: String,
    role: String,
    resource: ResourceView,
    membership: String,
    starts: When,
    ends: Option<When>,
    may_activate: bool,
    may_extend: bool,
    may_deactivate: bool,
    may_renew: bool,
    /// What the connectors did with it (active rows, when connectors run).
    grants: Vec<GrantView>,
}

impl RowView {
    fn of(r: &RoleRow, now: jiff::Timestamp) -> Self {
        Self {
            id: r.assignment.id.clone(),
            role: r.role.display_name.clone(),
            resource: ResourceView::of(&r.lineage),
            membership: match &r.membership {
                Membership::Direct => "Direct".into(),
                Membership::Group { name, .. } => format!("Group: {name}"),
            },
            starts: When::at(r.assignment.schedule.start),
            ends: r.assignment.schedule.end.map(|e| When::end(e, now)),
            may_activate: r.may_activate,
            may_extend: r.may_extend,
            may_deactivate: r.may_deactivate,
            may_renew: r.may_renew,
            grants: Vec::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "my_roles.html")]
struct MyRolesPage {
    chrome: Chrome,
    /// Whom to ask when nothing is eligible.
    ask: Vec<String>,
    eligible: Vec<RowView>,
    active: Vec<RowView>,
    expired: Vec<RowView>,
    /// Whether connectors run: the active table then shows "Connected systems".
    connected: bool,
}

/// The `done` query a redirect after an action carries: which success to announce.
#[derive(Debug, Deserialize, Default)]
pub struct Done {
    pub(crate) done: Option<String>,
}

/// The message of a `done` code (a fixed set: nothing from the URL is shown as is).
pub fn done_message(done: Option<&str>) -> Option<String> {
    Some(
        match done? {
            "deactivated" => "Deactivated.",
            "extend" => "Extension requested: an administrator decides it.",
            "renew" => "Renewal requested: an administrator decides it.",
            "cancelled" => "Request cancelled.",
            "submitted" => "Request submitted.",
            "approved" => "Approved.",
            "denied" => "Denied.",
            _ => return None,
        }
        .to_string(),
    )
}

/// `GET /ui/`: "My roles".
pub async fn page(State(portal): State<S>, visit: Visit, Query(q): Query<Done>) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let roles = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let roles = overview::my_roles(tx, &caller, &access, at)?;
            let ask = if roles.eligible.is_empty() {
                overview::administrators_to_ask(tx, &caller, &access, at, 5)?
            } else {
                Vec::new()
            };
            Ok((roles, ask))
        })
        .await;
    let (roles, ask) = match roles {
        Ok(r) => r,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::new(&portal, &visit, Section::MyRoles, "My roles").await {
        Ok(c) => c.with_status(done_message(q.done.as_deref())),
        Err(r) => return r,
    };
    let rows = |v: &[RoleRow]| v.iter().map(|r| RowView::of(r, at)).collect::<Vec<_>>();
    let mut active = rows(&roles.active);
    let ids = active.iter().map(|r| r.id.clone()).collect();
    let grants = match connected_systems(&portal, &visit, ids).await {
        Ok(g) => g,
        Err(resp) => return resp,
    };
    if let Some(grants) = &grants {
        for row in &mut active {
            row.grants = of_assignment(grants, &row.id);
        }
    }
    let page = MyRolesPage {
        chrome,
        ask,
        eligible: rows(&roles.eligible),
        active,
        expired: rows(&roles.expired),
        connected: grants.is_some(),
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

/// The CSRF token of a form with nothing else.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

#[derive(Template)]
#[template(path = "deactivate.html")]
struct DeactivatePage {
    chrome: Chrome,
    row: RowView,
}

/// The caller's active row `id` that they may deactivate.
async fn own_activation(portal: &S, visit: &Visit, id: &str) -> Result<RoleRow, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    let roles = portal
        .app
        .read(move |tx, st| overview::my_roles(tx, &caller, &st.access_view(), at))
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())?;
    roles
        .active
        .into_iter()
        .find(|r| r.assignment.id == id && r.may_deactivate)
        .ok_or_else(|| ErrorPage::not_found(&visit.request_id).into_response())
}

/// `GET /ui/deactivate/{id}`: "Deactivate {role} on {resource}?" with the button "Deactivate".
pub async fn deactivate_form(
    State(portal): State<S>,
    visit: Visit,
    Path(id): Path<String>,
) -> Response {
    let row = match own_activation(&portal, &visit, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let title = format!("Deactivate {}", row.role.display_name);
    let chrome = match Chrome::new(&portal, &visit, Section::MyRoles, title).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let page = DeactivatePage {
        chrome,
        row: RowView::of(&row, now(&portal)),
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

/// Submits `new` as the caller, as `POST …/roleAssignmentRequests` does.
pub async fn submit_request(
    portal: &S,
    visit: &Visit,
    new: NewRequest,
) -> Result<rolegate_core::request::RoleAssignmentRequest, rolegate_api::error::ApiError> {
    let op = Operation::create_request(&new);
    portal
        .app
        .write(
            visit.caller.clone(),
            visit.request_id.clone(),
            op,
            move |tx, ctx| {
                let out = operation::request::submit(tx, ctx, new.clone())?;
                Ok((out.request, out.changes))
            },
        )
        .await
}

/// `POST /ui/deactivate/{id}`: a `UserRemove` of the caller's activation.
pub async fn deactivate(
    State(portal): State<S>,
    visit: Visit,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let row = match own_activation(&portal, &visit, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let a = &row.assignment;
    let new = NewRequest {
        resource_id: a.resource_id.clone(),
        role_definition_id: a.role_definition_id.clone(),
        subject_id: visit.caller.subject_id.clone(),
        kind: Some(RequestType::UserRemove),
        state: Some(a.state),
        ..NewRequest::default()
    };
    match submit_request(&portal, &visit, new).await {
        Ok(_) => Redirect::to("/ui/?done=deactivated").into_response(),
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "change.html")]
struct ChangePage {
    chrome: Chrome,
    row: RowView,
    action: &'static str,
    button: &'static str,
    end: String,
    reason: String,
    error: Option<String>,
}

/// The fields of the extend and renew forms.
#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    csrf: Option<String>,
    end: Option<String>,
    reason: Option<String>,
}

/// Which self-service change a form asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Extend,
    Renew,
}

impl Change {
    fn kind(self) -> RequestType {
        match self {
            Self::Extend => RequestType::UserExtend,
            Self::Renew => RequestType::UserRenew,
        }
    }
}

/// The caller's row `id` that `change` applies to.
async fn changeable(
    portal: &S,
    visit: &Visit,
    id: &str,
    change: Change,
) -> Result<RoleRow, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    let roles = portal
        .app
        .read(move |tx, st| overview::my_roles(tx, &caller, &st.access_view(), at))
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())?;
    let rows = match change {
        Change::Extend => roles.eligible,
        Change::Renew => roles.expired,
    };
    rows.into_iter()
        .find(|r| {
            r.assignment.id == id
                && match change {
                    Change::Extend => r.may_extend,
                    Change::Renew => r.may_renew,
                }
        })
        .ok_or_else(|| ErrorPage::not_found(&visit.request_id).into_response())
}

async fn change_page(
    portal: &S,
    visit: &Visit,
    row: &RoleRow,
    change: Change,
    form: (String, String, Option<String>),
) -> Response {
    let (verb, action, button) = match change {
        Change::Extend => ("Extend", "/ui/extend/", "Request extension"),
        Change::Renew => ("Renew", "/ui/renew/", "Request renewal"),
    };
    let title = format!("{verb} {}", row.role.display_name);
    let chrome = match Chrome::new(portal, visit, Section::MyRoles, title).await {
        Ok(c) => c.with_alert(form.2.clone()),
        Err(r) => return r,
    };
    let status = if form.2.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = ChangePage {
        chrome,
        row: RowView::of(row, now(portal)),
        action,
        button,
        end: form.0,
        reason: form.1,
        error: form.2,
    };
    render(status, &page, &visit.request_id)
}

async fn change_form(portal: S, visit: Visit, id: String, change: Change) -> Response {
    match changeable(&portal, &visit, &id, change).await {
        Ok(row) => change_page(&portal, &visit, &row, change, Default::default()).await,
        Err(r) => r,
    }
}

async fn change_submit(
    portal: S,
    visit: Visit,
    id: String,
    change: Change,
    f: ChangeForm,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let row = match changeable(&portal, &visit, &id, change).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let end = f.end.unwrap_or_default().trim().to_string();
    let reason = f.reason.unwrap_or_default();
    let schedule = match end_of_day(&end) {
        Ok(end) => ScheduleInput {
            kind: Some("Once".into()),
            end: Some(end),
            ..ScheduleInput::default()
        },
        Err(e) => {
            return change_page(
                &portal,
                &visit,
                &row,
                change,
                (end, reason, Some(e.message)),
            )
            .await;
        }
    };
    let a = &row.assignment;
    let new = NewRequest {
        resource_id: a.resource_id.clone(),
        role_definition_id: a.role_definition_id.clone(),
        subject_id: visit.caller.subject_id.clone(),
        kind: Some(change.kind()),
        state: Some(a.state),
        schedule: Some(schedule),
        reason: Some(reason.clone()).filter(|r| !r.trim().is_empty()),
        ..NewRequest::default()
    };
    match submit_request(&portal, &visit, new).await {
        Ok(r) => Redirect::to(&format!("/ui/requests/{}?done=submitted", r.id)).into_response(),
        Err(e) if is_form_error(&e.error) => {
            change_page(
                &portal,
                &visit,
                &row,
                change,
                (end, reason, Some(e.error.message)),
            )
            .await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}

/// A date field (`YYYY-MM-DD`) as the last second of that day, UTC.
fn end_of_day(date: &str) -> Result<String, DomainError> {
    let d: jiff::civil::Date = date.parse().map_err(|_| {
        DomainError::new(
            ErrorCode::BadRequest,
            "give the new end as a date (YYYY-MM-DD)",
        )
    })?;
    Ok(format!("{d}T23:59:59Z"))
}

/// `GET /ui/extend/{id}`: the extension form of an eligibility ending within 14 days.
pub async fn extend_form(State(p): State<S>, v: Visit, Path(id): Path<String>) -> Response {
    change_form(p, v, id, Change::Extend).await
}

/// `POST /ui/extend/{id}`: a `UserExtend` request.
pub async fn extend(
    State(p): State<S>,
    v: Visit,
    Path(id): Path<String>,
    Form(f): Form<ChangeForm>,
) -> Response {
    change_submit(p, v, id, Change::Extend, f).await
}

/// `GET /ui/renew/{id}`: the renewal form of an eligibility expired in the last 30 days.
pub async fn renew_form(State(p): State<S>, v: Visit, Path(id): Path<String>) -> Response {
    change_form(p, v, id, Change::Renew).await
}

/// `POST /ui/renew/{id}`: a `UserRenew` request.
pub async fn renew(
    State(p): State<S>,
    v: Visit,
    Path(id): Path<String>,
    Form(f): Form<ChangeForm>,
) -> Response {
    change_submit(p, v, id, Change::Renew, f).await
}
