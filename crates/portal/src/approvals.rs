//! "Approvals" (portal.md §5.4): the requests the caller may decide now (the API's
//! `asApprover()` read), each approved or denied with a justification through the same
//! decision operation as `updateRequest`.

use crate::S;
use crate::my_roles::{ResourceView, When};
use crate::page::{Chrome, ErrorPage, Section, is_form_error, now, render};
use crate::session::Visit;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_api::state::Operation;
use rolegate_core::operation;
use rolegate_core::overview;
use rolegate_core::request::{DecisionInput, RoleAssignmentRequest};
use rolegate_core::store::ReadTx;
use rolegate_core::visibility;
use serde::Deserialize;

/// One pending request as the approver sees it.
struct PendingRow {
    id: String,
    requester: String,
    role: String,
    resource: ResourceView,
    duration: String,
    reason: String,
    ticket: String,
    requested: When,
    approvals: String,
}

fn pending_row(
    tx: &mut dyn ReadTx,
    r: &RoleAssignmentRequest,
    now: jiff::Timestamp,
) -> rolegate_core::error::Result<PendingRow> {
    let requester = tx
        .subject(&r.subject_id)?
        .map_or_else(|| r.subject_id.clone(), |s| s.display_name);
    let role = tx
        .role_definition(&r.role_definition_id)?
        .map_or_else(|| r.role_definition_id.clone(), |d| d.display_name);
    let lineage = overview::lineage(tx, &r.resource_id)?;
    let approved = tx.approvals(&r.id)?.iter().filter(|a| a.approved).count();
    let needed = overview::required_approvals(tx, r, now)?;
    Ok(PendingRow {
        id: r.id.clone(),
        requester,
        role,
        resource: ResourceView::of(&lineage),
        duration: r
            .schedule
            .and_then(|s| s.duration())
            .map_or_else(|| "Permanent".into(), crate::text::duration_words),
        reason: r.reason.clone().unwrap_or_default(),
        ticket: r
            .ticket
            .as_ref()
            .and_then(|t| t.ticket_number.clone())
            .unwrap_or_default(),
        requested: When::at(r.requested_at),
        approvals: match needed {
            Some(n) => format!("{approved} of {n}"),
            None => "Administrator decision".into(),
        },
    })
}

/// One of the caller's past decisions.
struct DecidedRow {
    id: String,
    requester: String,
    role: String,
    resource: String,
    decision: &'static str,
    justification: String,
    at: When,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    chrome: Chrome,
    rows: Vec<PendingRow>,
    decided: Vec<DecidedRow>,
    previous: Option<String>,
    next: Option<String>,
}

/// The caller's latest decisions, with their requests' names.
fn decided_by(
    tx: &mut dyn ReadTx,
    approver: &str,
) -> rolegate_core::error::Result<Vec<DecidedRow>> {
    let mut out = Vec::new();
    for a in tx.approvals_by(approver, 50)? {
        let Some(r) = tx.request(&a.request_id)? else {
            continue;
        };
        let name = |s: Option<String>, id: &str| s.unwrap_or_else(|| id.to_string());
        out.push(DecidedRow {
            id: r.id.clone(),
            requester: name(
                tx.subject(&r.subject_id)?.map(|s| s.display_name),
                &r.subject_id,
            ),
            role: name(
                tx.role_definition(&r.role_definition_id)?
                    .map(|d| d.display_name),
                &r.role_definition_id,
            ),
            resource: name(
                tx.resource(&r.resource_id)?.map(|x| x.display_name),
                &r.resource_id,
            ),
            decision: if a.approved { "Approved" } else { "Denied" },
            justification: a.justification.unwrap_or_default(),
            at: When::at(a.at),
        });
    }
    Ok(out)
}

/// `GET /ui/approvals`: "Pending approvals".
pub async fn list(State(portal): State<S>, visit: Visit, Query(q): Query<ListParams>) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let skip = q.skip.unwrap_or(0) as usize;
    let rows = portal
        .app
        .read(move |tx, st| {
            let pending = visibility::awaiting_decision(tx, &caller, &st.access_view(), at, None)?;
            let total = pending.len();
            let rows = pending
                .iter()
                .skip(skip)
                .take(PAGE_SIZE)
                .map(|r| pending_row(tx, r, at))
                .collect::<rolegate_core::error::Result<Vec<_>>>()?;
            Ok((rows, total, decided_by(tx, &caller.subject_id)?))
        })
        .await;
    let (rows, total, decided) = match rows {
        Ok(r) => r,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::counted(
        &portal,
        &visit,
        Section::Approvals,
        "Approvals",
        Some(total),
    )
    .await
    {
        Ok(c) => c.with_status(crate::my_roles::done_message(q.done.as_deref())),
        Err(r) => return r,
    };
    let link = |s: usize| format!("/ui/approvals?skip={s}");
    render(
        StatusCode::OK,
        &ApprovalsPage {
            chrome,
            rows,
            decided,
            previous: (skip > 0).then(|| link(skip.saturating_sub(PAGE_SIZE))),
            next: (skip + PAGE_SIZE < total).then(|| link(skip + PAGE_SIZE)),
        },
        &visit.request_id,
    )
}

/// Requests a page of "Pending approvals" lists.
const PAGE_SIZE: usize = 50;

/// The query of `/ui/approvals`.
#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    skip: Option<u32>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "decide.html")]
struct DecidePage {
    chrome: Chrome,
    row: PendingRow,
    decision: &'static str,
    button: &'static str,
    justification: String,
    error: Option<String>,
}

/// `approve` or `deny`.
fn decision(word: &str) -> Option<(&'static str, &'static str)> {
    match word {
        "approve" => Some(("AdminApproved", "Approve")),
        "deny" => Some(("AdminDenied", "Deny")),
        _ => None,
    }
}

/// The pending request `id` if the caller may decide it now.
async fn decidable(portal: &S, visit: &Visit, id: &str) -> Result<PendingRow, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    let id = id.to_string();
    let row = portal
        .app
        .read(move |tx, st| {
            let pending = visibility::awaiting_decision(tx, &caller, &st.access_view(), at, None)?;
            match pending.iter().find(|r| r.id == id) {
                Some(r) => pending_row(tx, r, at).map(Some),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())?;
    row.ok_or_else(|| ErrorPage::not_found(&visit.request_id).into_response())
}

async fn decide_page(
    portal: &S,
    visit: &Visit,
    row: PendingRow,
    word: &str,
    justification: String,
    error: Option<String>,
) -> Response {
    let Some((_, button)) = decision(word) else {
        return ErrorPage::not_found(&visit.request_id).into_response();
    };
    let title = format!("{button} request from {}", row.requester);
    let chrome = match Chrome::new(portal, visit, Section::Approvals, title).await {
        Ok(c) => c.with_alert(error.clone()),
        Err(r) => return r,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let decision = if word == "approve" { "approve" } else { "deny" };
    let page = DecidePage {
        chrome,
        row,
        decision,
        button,
        justification,
        error,
    };
    render(status, &page, &visit.request_id)
}

/// `GET /ui/approvals/{id}/{approve|deny}`: the decision form.
pub async fn form(
    State(portal): State<S>,
    visit: Visit,
    Path((id, word)): Path<(String, String)>,
) -> Response {
    if decision(&word).is_none() {
        return ErrorPage::not_found(&visit.request_id).into_response();
    }
    match decidable(&portal, &visit, &id).await {
        Ok(row) => decide_page(&portal, &visit, row, &word, String::new(), None).await,
        Err(r) => r,
    }
}

/// The decision form's fields.
#[derive(Debug, Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    justification: Option<String>,
}

/// `POST /ui/approvals/{id}/{approve|deny}`: the decision, as `updateRequest` makes it.
pub async fn decide(
    State(portal): State<S>,
    visit: Visit,
    Path((id, word)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let Some((code, _)) = decision(&word) else {
        return ErrorPage::not_found(&visit.request_id).into_response();
    };
    let row = match decidable(&portal, &visit, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let justification = f.justification.unwrap_or_default();
    if justification.trim().is_empty() {
        let e = Some("Give a justification for your decision.".to_string());
        return decide_page(&portal, &visit, row, &word, justification, e).await;
    }
    let input = DecisionInput {
        decision: code.to_string(),
        reason: Some(justification.clone()),
        schedule: None,
    };
    let target = id.clone();
    let op = Operation::decide_request(&id);
    let done = portal
        .app
        .write(
            visit.caller.clone(),
            visit.request_id.clone(),
            op,
            move |tx, ctx| {
                let out = operation::request::decide(tx, ctx, &target, &input)?;
                Ok(((), out.changes))
            },
        )
        .await;
    let next = if word == "approve" {
        "approved"
    } else {
        "denied"
    };
    match done {
        Ok(()) => Redirect::to(&format!("/ui/approvals?done={next}")).into_response(),
        Err(e) if is_form_error(&e.error) => {
            decide_page(
                &portal,
                &visit,
                row,
                &word,
                justification,
                Some(e.error.message),
            )
            .await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}
