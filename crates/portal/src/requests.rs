//! "My requests" and a request's page (portal.md §5.3): the caller's requests in words,
//! cancellation, and a request's history from the audit log.

use crate::S;
use crate::my_roles::{Done, ResourceView, When, done_message};
use crate::page::{Chrome, ErrorPage, Section, now, render};
use crate::session::Visit;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use rolegate_api::state::Operation;
use rolegate_core::assignment::AssignmentState;
use rolegate_core::odata;
use rolegate_core::operation;
use rolegate_core::overview::{self, RequestRecord};
use rolegate_core::query::ListQuery;
use rolegate_core::request::{RequestType, RoleAssignmentRequest, SubStatus};
use rolegate_core::visibility::{self, Collection, Item};
use serde::Deserialize;
use std::collections::HashMap;

/// Requests a page lists.
const PAGE_SIZE: u32 = 50;

/// A request type in words.
fn type_words(k: RequestType) -> &'static str {
    match k {
        RequestType::UserAdd => "Activation",
        RequestType::UserRemove => "Deactivation",
        RequestType::UserExtend => "Extension",
        RequestType::UserRenew => "Renewal",
        RequestType::AdminAdd => "Assignment",
        RequestType::AdminUpdate => "Assignment update",
        RequestType::AdminRemove => "Removal",
        RequestType::AdminExtend => "Extension by an administrator",
        RequestType::AdminRenew => "Renewal by an administrator",
    }
}

/// Whether what a provisioned request granted has ended since (deactivated, removed,
/// expired): its assignment is gone from the live set or past its end.
fn grant_ended(
    tx: &mut dyn rolegate_core::store::ReadTx,
    r: &RoleAssignmentRequest,
    now: Timestamp,
) -> rolegate_core::error::Result<bool> {
    Ok(match &r.assignment_id {
        Some(id) => tx.assignment(id)?.is_none_or(|a| a.schedule.has_ended(now)),
        None => false,
    })
}

/// A request's status in words: "Active until …", "Pending approval (1 of 2)", "Denied", …
/// (`ended`: what it granted has ended since).
pub fn status_words(
    r: &RoleAssignmentRequest,
    now: Timestamp,
    approved: usize,
    needed: Option<u32>,
    ended: bool,
    tz: &jiff::tz::TimeZone,
) -> String {
    let removal = matches!(r.kind, RequestType::UserRemove | RequestType::AdminRemove);
    match r.status_at(now) {
        SubStatus::PendingApproval => match needed {
            Some(n) => format!("Pending approval ({approved} of {n})"),
            None => "Pending approval".into(),
        },
        SubStatus::PendingAdminDecision => "Pending an administrator's decision".into(),
        SubStatus::Granted => match r.schedule {
            Some(s) => format!("Scheduled from {}", crate::text::when_in(s.start, tz)),
            None => "Scheduled".into(),
        },
        SubStatus::Provisioned | SubStatus::Revoked if removal => "Done".into(),
        SubStatus::Provisioned => match r.schedule.and_then(|s| s.end) {
            _ if ended => "Ended".into(),
            Some(end) if end <= now => "Ended".into(),
            Some(end) => format!(
                "{} until {}",
                r.state.as_str(),
                crate::text::when_in(end, tz)
            ),
            None => format!("{}, permanent", r.state.as_str()),
        },
        SubStatus::Revoked => "Ended".into(),
        SubStatus::Canceled => "Cancelled".into(),
        SubStatus::AdminDenied => "Denied".into(),
        SubStatus::TimedOut => "Timed out".into(),
        SubStatus::Failed => "Failed".into(),
    }
}

/// Whether a request is still open, so its requester may cancel it (decisions.md §13).
fn open(r: &RoleAssignmentRequest, now: Timestamp) -> bool {
    matches!(
        r.status_at(now),
        SubStatus::PendingApproval | SubStatus::PendingAdminDecision | SubStatus::Granted
    )
}

struct RequestRow {
    id: String,
    requested: When,
    kind: &'static str,
    role: String,
    resource: String,
    status: String,
    cancellable: bool,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    rows: Vec<RequestRow>,
    previous: Option<u32>,
    next: Option<u32>,
}

/// The `skip` and `done` of `/ui/requests`.
#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    skip: Option<u32>,
    done: Option<String>,
}

/// `GET /ui/requests`: "My requests", newest first, 50 a page.
pub async fn list(State(portal): State<S>, visit: Visit, Query(q): Query<ListParams>) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let skip = q.skip.unwrap_or(0);
    let tz = visit.time_zone();
    let loaded = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let me = caller.subject_id.replace('\'', "''");
            let filter = odata::parse_filter(&format!("subjectId eq '{me}'"))?;
            let scope = visibility::read_scope(
                Collection::RoleAssignmentRequests,
                None,
                Some(filter),
                &caller,
                &access,
                at,
            )?;
            let query = ListQuery {
                filter: scope.filter.clone(),
                restrictions: scope.restrictions.clone(),
                orderby: vec![odata::OrderBy {
                    path: vec!["requestedDateTime".into()],
                    descending: true,
                }],
                top: PAGE_SIZE,
                skip,
                count: false,
            };
            let page = visibility::list(tx, Collection::RoleAssignmentRequests, &query, &scope)?;
            let mut rows = Vec::new();
            let mut roles: HashMap<String, String> = HashMap::new();
            let mut resources: HashMap<String, String> = HashMap::new();
            for item in page.items {
                let Item::Request(r) = item else { continue };
                if !roles.contains_key(&r.role_definition_id) {
                    let name = tx
                        .role_definition(&r.role_definition_id)?
                        .map_or_else(|| r.role_definition_id.clone(), |d| d.display_name);
                    roles.insert(r.role_definition_id.clone(), name);
                }
                if !resources.contains_key(&r.resource_id) {
                    let name = tx
                        .resource(&r.resource_id)?
                        .map_or_else(|| r.resource_id.clone(), |d| d.display_name);
                    resources.insert(r.resource_id.clone(), name);
                }
                let approved = if r.status_at(at) == SubStatus::PendingApproval {
                    tx.approvals(&r.id)?.iter().filter(|a| a.approved).count()
                } else {
                    0
                };
                let needed = overview::required_approvals(tx, &r, at)?;
                let ended = grant_ended(tx, &r, at)?;
                rows.push(RequestRow {
                    id: r.id.clone(),
                    requested: When::at(r.requested_at),
                    kind: type_words(r.kind),
                    role: roles
                        .get(&r.role_definition_id)
                        .cloned()
                        .unwrap_or_default(),
                    resource: resources.get(&r.resource_id).cloned().unwrap_or_default(),
                    status: status_words(&r, at, approved, needed, ended, &tz),
                    cancellable: open(&r, at),
                });
            }
            Ok((rows, page.more))
        })
        .await;
    let (rows, more) = match loaded {
        Ok(v) => v,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::new(&portal, &visit, Section::MyRequests, "My requests").await {
        Ok(c) => c.with_status(done_message(q.done.as_deref())),
        Err(r) => return r,
    };
    let page = RequestsPage {
        chrome,
        rows,
        previous: (skip > 0).then(|| skip.saturating_sub(PAGE_SIZE)),
        next: more.then_some(skip + PAGE_SIZE),
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

struct HistoryEntry {
    at: When,
    activity: String,
    by: String,
    result: String,
    detail: Option<String>,
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    chrome: Chrome,
    id: String,
    kind: &'static str,
    role: String,
    resource: ResourceView,
    status: String,
    requested: When,
    starts: Option<When>,
    ends: Option<When>,
    reason: String,
    ticket: String,
    emergency: bool,
    cancellable: bool,
    history: Vec<HistoryEntry>,
    /// What the connectors did with the assignment it created (the caller's own rows).
    grants: Vec<crate::my_roles::GrantView>,
}

fn history_entry(
    doc: &serde_json::Map<String, serde_json::Value>,
    first: bool,
) -> Option<HistoryEntry> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let at: Timestamp = doc.get("activityDateTime")?.as_str()?.parse().ok()?;
    let details = doc
        .get("additionalDetails")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    let value = |key: &str| {
        details
            .iter()
            .find(|d| d["key"] == key)
            .map(|d| text(&d["value"]))
            .filter(|s| !s.is_empty())
    };
    // A decision shows the approver's justification; the submission its reason (every
    // record of a request repeats the reason, so later ones leave it out).
    let detail =
        value("approverJustification").or_else(|| first.then(|| value("reason")).flatten());
    Some(HistoryEntry {
        at: When::at(at),
        activity: text(&doc["activityDisplayName"]),
        by: rolegate_core::audit::initiator_name(&doc["initiatedBy"]).to_string(),
        result: text(&doc["result"]),
        detail,
    })
}

/// `GET /ui/requests/{id}`: "Request for {role}", its fields and its "History".
pub async fn show(
    State(portal): State<S>,
    visit: Visit,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let record = portal
        .app
        .read(move |tx, st| {
            let rec = overview::request_record(tx, &caller, &st.access_view(), at, &id)?;
            let ended = grant_ended(tx, &rec.request, at)?;
            Ok((rec, ended))
        })
        .await;
    let (rec, ended): (RequestRecord, bool) = match record {
        Ok(r) => r,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let r = &rec.request;
    let role = rec
        .role
        .as_ref()
        .map_or_else(|| r.role_definition_id.clone(), |d| d.display_name.clone());
    let chrome = match Chrome::new(
        &portal,
        &visit,
        Section::MyRequests,
        format!("Request for {role}"),
    )
    .await
    {
        Ok(c) => c.with_status(done_message(q.done.as_deref())),
        Err(resp) => return resp,
    };
    let approved = rec.approvals.iter().filter(|a| a.approved).count();
    let own = r.subject_id == visit.caller.subject_id || r.requested_by == visit.caller.subject_id;
    let grants = match &r.assignment_id {
        // Only a request of the caller's own can show rows of the caller's own.
        Some(a) if own && r.state == AssignmentState::Active => {
            match crate::my_roles::connected_systems(&portal, &visit, vec![a.clone()]).await {
                Ok(g) => crate::my_roles::of_assignment(&g.unwrap_or_default(), a),
                Err(resp) => return resp,
            }
        }
        _ => Vec::new(),
    };
    let page = RequestPage {
        chrome,
        id: r.id.clone(),
        kind: type_words(r.kind),
        role,
        resource: ResourceView::of(&rec.lineage),
        status: status_words(
            r,
            at,
            approved,
            rec.required_approvals,
            ended,
            &visit.time_zone(),
        ),
        requested: When::at(r.requested_at),
        starts: r.schedule.map(|s| When::at(s.start)),
        ends: r.schedule.and_then(|s| s.end).map(|e| When::end(e, at)),
        reason: r.reason.clone().unwrap_or_default(),
        ticket: r
            .ticket
            .as_ref()
            .map(|t| {
                [t.ticket_system.as_deref(), t.ticket_number.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        emergency: r.emergency,
        cancellable: own && open(r, at),
        history: rec
            .history
            .iter()
            .enumerate()
            .filter_map(|(i, e)| history_entry(&e.document, i == 0))
            .collect(),
        grants,
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

/// The form of a "Cancel request" button.
#[derive(Debug, Deserialize)]
pub struct CancelForm {
    csrf: Option<String>,
}

/// `POST /ui/requests/{id}/cancel`: cancels the request as `POST …/cancel` does.
pub async fn cancel(
    State(portal): State<S>,
    visit: Visit,
    Path(id): Path<String>,
    Form(f): Form<CancelForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let target = id.clone();
    let op = Operation::cancel_request(&id);
    let done = portal
        .app
        .write(
            visit.caller.clone(),
            visit.request_id.clone(),
            op,
            move |tx, ctx| operation::request::cancel(tx, ctx, &target).map(|o| ((), o.changes)),
        )
        .await;
    match done {
        Ok(()) => Redirect::to("/ui/requests?done=cancelled").into_response(),
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}
