//! "Audit log" (portal.md §5.8): the records the caller may read (decisions.md §11: tenant
//! administrators everything, R3 holders their resources'), filtered, each record with its
//! hashes, the chain check, and CSV and JSON Lines exports of exactly the filtered view.

use crate::S;
use crate::my_roles::When;
use crate::page::{Chrome, ErrorPage, Section, now, render};
use crate::session::Visit;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_api::graph::csv_field;
use rolegate_core::access::{AccessView, Caller};
use rolegate_core::audit::{AuditEntry, ChainReport};
use rolegate_core::error::{DomainError, Result};
use rolegate_core::odata;
use rolegate_core::query::{ListQuery, Restriction};
use rolegate_core::store::ReadTx;
use rolegate_core::visibility::{self, Collection, Item};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Records a page lists.
const PAGE_SIZE: u32 = 50;
/// Records an export holds at most.
const EXPORT_LIMIT: usize = 100_000;

/// One record as a table row shows it.
pub struct Line {
    /// Its id.
    pub id: String,
    /// When.
    pub at: When,
    /// `activityDisplayName`.
    pub activity: String,
    /// The initiator's display name.
    pub by: String,
    /// `success` or `failure`.
    pub result: String,
    /// The targets' display names.
    pub targets: String,
}

/// The rows of audit records, targets named: a target the record names only by its id (a
/// subject) shows the directory's display name when there is one.
fn lines(tx: &mut dyn ReadTx, entries: &[AuditEntry]) -> Result<Vec<Line>> {
    let mut names: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let mut doc = e.document.clone();
        if let Some(targets) = doc.get_mut("targetResources").and_then(Value::as_array_mut) {
            for t in targets {
                let (Some(id), Some(name)) = (t["id"].as_str(), t["displayName"].as_str()) else {
                    continue;
                };
                if id != name || t["type"] != "Subject" {
                    continue;
                }
                let id = id.to_string();
                if !names.contains_key(&id) {
                    let found = tx.subject(&id)?.map(|s| s.display_name);
                    names.insert(id.clone(), found);
                }
                if let Some(Some(n)) = names.get(&id) {
                    t["displayName"] = Value::String(n.clone());
                }
            }
        }
        out.extend(line(&doc));
    }
    Ok(out)
}

/// The row of an audit document, if it has a date.
pub fn line(doc: &Map<String, Value>) -> Option<Line> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let at: jiff::Timestamp = doc.get("activityDateTime")?.as_str()?.parse().ok()?;
    let targets = doc
        .get("targetResources")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| text(&t["displayName"]))
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Some(Line {
        id: text(&doc["id"]),
        at: When::at(at),
        activity: text(&doc["activityDisplayName"]),
        by: rolegate_core::audit::initiator_name(&doc["initiatedBy"]).to_string(),
        result: text(&doc["result"]),
        targets,
    })
}

/// The filters of the audit log (also of its exports).
#[derive(Debug, Deserialize, Default, Clone)]
pub struct Filters {
    from: Option<String>,
    to: Option<String>,
    activity: Option<String>,
    initiated_by: Option<String>,
    target: Option<String>,
    result: Option<String>,
    resource: Option<String>,
    skip: Option<u32>,
    /// The records "Verify integrity" checked (shown once, after its redirect).
    verified: Option<u64>,
}

impl Filters {
    fn text(v: &Option<String>) -> Option<String> {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The filters as a query string (for paging and export links).
    fn query(&self) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        [
            ("from", &self.from),
            ("to", &self.to),
            ("activity", &self.activity),
            ("initiated_by", &self.initiated_by),
            ("target", &self.target),
            ("result", &self.result),
            ("resource", &self.resource),
        ]
        .iter()
        .filter_map(|(k, v)| Self::text(v).map(|v| format!("{k}={}", enc(&v))))
        .collect::<Vec<_>>()
        .join("&")
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The ids a person-or-thing filter names: the text itself (an id) and the directory
/// subjects and resources whose name, `userName` or e-mail contains it.
fn ids_named(tx: &mut dyn ReadTx, text: &str) -> Result<Vec<String>> {
    let mut ids = vec![text.to_string()];
    // Rolegate's own initiators are not in the directory: found by the names records show.
    let scheduler = rolegate_core::scheduler::caller();
    let wanted = text.to_lowercase();
    for (id, name) in [
        (
            scheduler.subject_id.as_str(),
            scheduler.display_name.as_str(),
        ),
        (
            rolegate_core::provisioning::records::CONNECTORS_APP_ID,
            rolegate_core::provisioning::records::CONNECTORS_APP_NAME,
        ),
    ] {
        if name.to_lowercase().contains(&wanted) {
            ids.push(id.to_string());
        }
    }
    for s in rolegate_core::scim::find_subjects(tx, text, 20)? {
        ids.push(s.id);
    }
    let q = ListQuery {
        filter: Some(odata::parse_filter(&format!(
            "contains(displayName,{})",
            quote(text)
        ))?),
        top: 20,
        ..Default::default()
    };
    for r in tx.list_resources(&q)?.items {
        ids.push(r.id);
    }
    ids.dedup();
    Ok(ids)
}

/// A date field as the instant its day starts (UTC), `days` later.
fn day_start(field: &str, value: &str, days: i64) -> Result<String> {
    let d: jiff::civil::Date = value
        .parse()
        .map_err(|_| DomainError::bad_request(format!("`{field}` must be a date (YYYY-MM-DD)")))?;
    let d = d
        .checked_add(jiff::Span::new().days(days))
        .map_err(|_| DomainError::bad_request(format!("`{field}` is out of range")))?;
    Ok(format!("{d}T00:00:00Z"))
}

/// The list query of `f` for `caller`: the API's audit read scope (403 for callers who may
/// not read the log), narrowed by the filters.
fn audit_query(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    at: jiff::Timestamp,
    f: &Filters,
) -> Result<ListQuery> {
    let mut clauses = Vec::new();
    if let Some(from) = Filters::text(&f.from) {
        clauses.push(format!(
            "activityDateTime ge {}",
            day_start("From", &from, 0)?
        ));
    }
    if let Some(to) = Filters::text(&f.to) {
        clauses.push(format!("activityDateTime lt {}", day_start("To", &to, 1)?));
    }
    if let Some(a) = Filters::text(&f.activity) {
        clauses.push(format!("contains(activityDisplayName,{})", quote(&a)));
    }
    if let Some(r) = Filters::text(&f.result) {
        clauses.push(format!("result eq {}", quote(&r)));
    }
    if let Some(who) = Filters::text(&f.initiated_by) {
        let ids: Vec<String> = ids_named(tx, &who)?.iter().map(|i| quote(i)).collect();
        clauses.push(format!("initiatedBy/user/id in ({})", ids.join(",")));
    }
    if let Some(what) = Filters::text(&f.target) {
        let any: Vec<String> = ids_named(tx, &what)?
            .iter()
            .map(|i| format!("targetResources/any(t: t/id eq {})", quote(i)))
            .collect();
        clauses.push(format!("({})", any.join(" or ")));
    }
    let filter = (!clauses.is_empty())
        .then(|| odata::parse_filter(&clauses.join(" and ")))
        .transpose()?;
    let scope = visibility::read_scope(
        Collection::DirectoryAudits,
        None,
        filter,
        caller,
        access,
        at,
    )?;
    let mut restrictions = scope.restrictions.clone();
    if let Some(rid) = Filters::text(&f.resource) {
        if !visibility::may_read_audit_entry(caller, access, Some(&rid), at) {
            return Err(DomainError::denied(
                "reading this resource's audit records needs R3 on it",
            ));
        }
        restrictions.push(Restriction::ResourceUnder(vec![rid]));
    }
    Ok(ListQuery {
        filter: scope.filter,
        restrictions,
        ..Default::default()
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    f: Filters,
    rows: Vec<Line>,
    previous: Option<String>,
    next: Option<String>,
    query: String,
    may_verify: bool,
}

/// `GET /ui/audit` (`verified=N` after "Verify integrity").
pub async fn list(State(portal): State<S>, visit: Visit, Query(f): Query<Filters>) -> Response {
    let status = f.verified.map(|n| format!("Chain verified: {n} records"));
    list_page(&portal, &visit, f, status, None).await
}

/// The audit log page for filters `f`, with a success or failure message.
async fn list_page(
    portal: &S,
    visit: &Visit,
    f: Filters,
    status: Option<String>,
    alert: Option<String>,
) -> Response {
    let caller = visit.caller.clone();
    let at = now(portal);
    let filters = f.clone();
    let skip = f.skip.unwrap_or(0);
    let loaded = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let mut q = audit_query(tx, &caller, &access, at, &filters)?;
            q.top = PAGE_SIZE;
            q.skip = skip;
            let page = tx.list_audit(&q)?;
            let rows = lines(tx, &page.items)?;
            Ok((rows, page.more))
        })
        .await;
    let (rows, more, code, alert) = match loaded {
        Ok((rows, more)) => (rows, more, StatusCode::OK, alert),
        // A filter the page cannot use: said in place, the filters kept.
        Err(e) if e.error.code.status() == 400 => (
            Vec::new(),
            false,
            StatusCode::BAD_REQUEST,
            Some(e.error.message),
        ),
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::new(portal, visit, Section::Audit, "Audit log").await {
        Ok(c) => c.with_status(status).with_alert(alert),
        Err(r) => return r,
    };
    let query = f.query();
    let page_link = |s: u32| {
        if query.is_empty() {
            format!("/ui/audit?skip={s}")
        } else {
            format!("/ui/audit?{query}&skip={s}")
        }
    };
    let page = AuditPage {
        chrome,
        previous: (skip > 0).then(|| page_link(skip.saturating_sub(PAGE_SIZE))),
        next: more.then(|| page_link(skip + PAGE_SIZE)),
        query: query.clone(),
        f,
        rows,
        may_verify: visibility::may_verify_audit_chain(&visit.caller),
    };
    render(code, &page, &visit.request_id)
}

#[derive(Template)]
#[template(path = "audit_record.html")]
struct RecordPage {
    chrome: Chrome,
    at: Option<When>,
    fields: Vec<(String, String)>,
    targets: Vec<(String, String, String)>,
    details: Vec<(String, String)>,
    hash: String,
    prev_hash: String,
}

/// `GET /ui/audit/{id}`: "Audit record", every field, its hash and its predecessor's.
pub async fn show(State(portal): State<S>, visit: Visit, Path(id): Path<String>) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let loaded = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let Item::AuditEntry(e) = visibility::load_item(
                tx,
                Collection::DirectoryAudits,
                &id,
                None,
                &caller,
                &access,
                at,
            )?
            else {
                return Err(Collection::DirectoryAudits.not_found(&id));
            };
            let link = tx.audit_link(&id)?;
            Ok((e, link))
        })
        .await;
    let (entry, link) = match loaded {
        Ok(v) => v,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::new(&portal, &visit, Section::Audit, "Audit record").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let d = &entry.document;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let at = d
        .get("activityDateTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(When::at);
    let fields = [
        ("Id", "id"),
        ("Activity", "activityDisplayName"),
        ("Category", "category"),
        ("Operation", "operationType"),
        ("Result", "result"),
        ("Result reason", "resultReason"),
        ("Correlation id", "correlationId"),
        ("Logged by", "loggedByService"),
    ]
    .iter()
    .map(|(label, key)| (label.to_string(), text(&d[*key])))
    .chain([(
        "Initiated by".to_string(),
        format!(
            "{} ({})",
            rolegate_core::audit::initiator_name(&d["initiatedBy"]),
            rolegate_core::audit::initiator_id(&d["initiatedBy"]).unwrap_or_default()
        ),
    )])
    .collect();
    let targets = d["targetResources"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| (text(&t["type"]), text(&t["displayName"]), text(&t["id"])))
                .collect()
        })
        .unwrap_or_default();
    let details = d["additionalDetails"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|x| (text(&x["key"]), text(&x["value"])))
                .collect()
        })
        .unwrap_or_default();
    let (hash, prev_hash) = link
        .map(|l| (l.hash.unwrap_or_default(), l.prev_hash.unwrap_or_default()))
        .unwrap_or_default();
    let page = RecordPage {
        chrome,
        at,
        fields,
        targets,
        details,
        hash,
        prev_hash,
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

/// The form of "Verify integrity".
#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    csrf: Option<String>,
}

/// `POST /ui/audit/verify`: the chain check, "Chain verified: {N} records" or the first
/// record that fails.
pub async fn verify(State(portal): State<S>, visit: Visit, Form(f): Form<VerifyForm>) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    if !visibility::may_verify_audit_chain(&visit.caller) {
        return ErrorPage::denied(&visit.request_id).into_response();
    }
    let app = std::sync::Arc::clone(&portal.app);
    let report = tokio::task::spawn_blocking(move || {
        rolegate_core::operation::audit::verify_log(app.store.as_ref())
    })
    .await;
    match report {
        // POST, then redirect, then GET: a reload does not run the check again.
        Ok(Ok(ChainReport::Intact { checked, .. })) => {
            Redirect::to(&format!("/ui/audit?verified={checked}")).into_response()
        }
        Ok(Ok(ChainReport::Broken { link, checked })) => {
            let alert = format!(
                "The chain breaks at record {} (position {}): {}. {checked} records before it hold.",
                link.id, link.seq, link.reason
            );
            list_page(&portal, &visit, Filters::default(), None, Some(alert)).await
        }
        Ok(Err(e)) => ErrorPage::from_domain(&visit.request_id, &e).into_response(),
        Err(_) => ErrorPage::internal(&visit.request_id).into_response(),
    }
}

/// Every record of the filtered view, newest first (at most [`EXPORT_LIMIT`]).
async fn all_records(
    portal: &S,
    visit: &Visit,
    f: Filters,
) -> std::result::Result<Vec<AuditEntry>, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let mut q = audit_query(tx, &caller, &access, at, &f)?;
            q.top = 1000;
            let mut out = Vec::new();
            loop {
                let page = tx.list_audit(&q)?;
                out.extend(page.items);
                if !page.more || out.len() >= EXPORT_LIMIT {
                    break;
                }
                q.skip += 1000;
            }
            out.truncate(EXPORT_LIMIT);
            Ok(out)
        })
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())
}

/// `GET /ui/audit/export.csv`: the filtered view as CSV
/// (`id,activityDateTime,category,activityDisplayName,result,initiatedBy,targetResources`).
pub async fn export_csv(
    State(portal): State<S>,
    visit: Visit,
    Query(f): Query<Filters>,
) -> Response {
    let records = match all_records(&portal, &visit, f).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut csv = String::from(
        "id,activityDateTime,category,activityDisplayName,result,initiatedBy,targetResources\r\n",
    );
    for e in &records {
        let d = &e.document;
        let by = format!(
            "{} ({})",
            rolegate_core::audit::initiator_name(&d["initiatedBy"]),
            rolegate_core::audit::initiator_id(&d["initiatedBy"]).unwrap_or_default()
        );
        let targets = d["targetResources"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| format!("{} ({})", text(&t["displayName"]), text(&t["id"])))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let row = [
            text(&d["id"]),
            text(&d["activityDateTime"]),
            text(&d["category"]),
            text(&d["activityDisplayName"]),
            text(&d["result"]),
            by,
            targets,
        ];
        csv.push_str(
            &row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push_str("\r\n");
    }
    crate::page::download(csv, "text/csv; charset=utf-8", "audit.csv")
}

/// `GET /ui/audit/export.jsonl`: the filtered view, one `directoryAudit` per line as
/// `GET /beta/auditLogs/directoryAudits` returns it.
pub async fn export_jsonl(
    State(portal): State<S>,
    visit: Visit,
    Query(f): Query<Filters>,
) -> Response {
    let records = match all_records(&portal, &visit, f).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut out = String::new();
    for e in &records {
        out.push_str(&Value::Object(e.document.clone()).to_string());
        out.push('\n');
    }
    crate::page::download(out, "application/jsonl; charset=utf-8", "audit.jsonl")
}
