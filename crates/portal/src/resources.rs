//! "Resources" and a resource's page (portal.md §5.5, §5.6): the registered resources the
//! caller may see as a tree, registration, and one resource's assignments (add, remove,
//! extend, update, CSV), its roles' settings and its audit records. Every read is the API's
//! (R1), every change the API's request or registration with the signed-in caller.

use crate::S;
use crate::my_roles::{ResourceView, When, submit_request, type_label};
use crate::page::{Chrome, ErrorPage, Section, is_form_error, now, render};
use crate::session::Visit;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rolegate_api::state::Operation;
use rolegate_core::assignment::{AssignmentState, MemberType};
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::error::DomainError;
use rolegate_core::odata;
use rolegate_core::operation;
use rolegate_core::overview::{self, AssignmentFilter, AssignmentRow, TablePages};
use rolegate_core::query::ListQuery;
use rolegate_core::request::{NewRequest, RequestType};
use rolegate_core::resource::Resource;
use rolegate_core::schedule::ScheduleInput;
use rolegate_core::visibility::{self, Collection, Item};
use serde::Deserialize;
use std::collections::HashMap;

/// Resources the tree shows at most.
const TREE_LIMIT: u32 = 1000;
/// Rows each assignment table shows a page.
const TABLE_PAGE: u32 = 50;

/// A subject as pickers and tables name it: "{displayName} ({userName, or Group, or
/// Service principal})".
pub fn member_label(s: &Subject) -> String {
    let kind = match s.kind {
        SubjectKind::User => s.principal_name.clone().unwrap_or_else(|| "User".into()),
        SubjectKind::Group => "Group".into(),
        SubjectKind::ServicePrincipal => "Service principal".into(),
    };
    format!("{} ({kind})", s.display_name)
}

/// One node of the resource tree.
struct Node {
    id: String,
    name: String,
    kind: String,
    children: Vec<Node>,
}

/// A tree node in document order: its list opens a nested list when it has children, and
/// closes `close` nested lists after it (templates cannot recurse).
struct TreeItem {
    id: String,
    name: String,
    kind: String,
    has_children: bool,
    close: usize,
}

fn flatten(nodes: Vec<Node>, out: &mut Vec<TreeItem>) {
    for n in nodes {
        let has_children = !n.children.is_empty();
        out.push(TreeItem {
            id: n.id,
            name: n.name,
            kind: n.kind,
            has_children,
            close: 0,
        });
        if has_children {
            flatten(n.children, out);
            if let Some(last) = out.last_mut() {
                last.close += 1;
            }
        }
    }
}

#[derive(Template)]
#[template(path = "resources.html")]
struct ResourcesPage {
    chrome: Chrome,
    query: String,
    tree: Vec<TreeItem>,
    truncated: bool,
    may_register: bool,
}

/// The `q` of `/ui/resources`.
#[derive(Debug, Deserialize, Default)]
pub struct Search {
    q: Option<String>,
    done: Option<String>,
}

fn nest(resources: Vec<Resource>) -> Vec<Node> {
    let ids: Vec<String> = resources.iter().map(|r| r.id.clone()).collect();
    let mut children: HashMap<String, Vec<Resource>> = HashMap::new();
    let mut roots = Vec::new();
    for r in resources {
        match r.parent_id.clone().filter(|p| ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(r),
            None => roots.push(r),
        }
    }
    fn build(r: Resource, children: &mut HashMap<String, Vec<Resource>>) -> Node {
        let mut kids: Vec<Node> = children
            .remove(&r.id)
            .unwrap_or_default()
            .into_iter()
            .map(|c| build(c, children))
            .collect();
        kids.sort_by_key(|a| a.name.to_lowercase());
        Node {
            kind: type_label(&r.resource_type),
            id: r.id,
            name: r.display_name,
            children: kids,
        }
    }
    let mut out: Vec<Node> = roots.into_iter().map(|r| build(r, &mut children)).collect();
    out.sort_by_key(|a| a.name.to_lowercase());
    out
}

/// `GET /ui/resources`: the resources the caller may see, searched by name or ARM id.
pub async fn list(State(portal): State<S>, visit: Visit, Query(q): Query<Search>) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let text = q.q.clone().unwrap_or_default().trim().to_string();
    let loaded = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let filter = (!text.is_empty())
                .then(|| {
                    let t = text.replace('\'', "''");
                    odata::parse_filter(&format!(
                        "contains(displayName,'{t}') or contains(externalId,'{t}')"
                    ))
                })
                .transpose()?;
            let scope =
                visibility::read_scope(Collection::Resources, None, filter, &caller, &access, at)?;
            let query = ListQuery {
                filter: scope.filter.clone(),
                restrictions: scope.restrictions.clone(),
                top: TREE_LIMIT,
                ..Default::default()
            };
            let page = visibility::list(tx, Collection::Resources, &query, &scope)?;
            let resources: Vec<Resource> = page
                .items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Resource(r) => Some(r),
                    _ => None,
                })
                .collect();
            Ok((resources, page.more))
        })
        .await;
    let (resources, more) = match loaded {
        Ok(v) => v,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::new(&portal, &visit, Section::Resources, "Resources").await {
        Ok(c) => c.with_status(
            (q.done.as_deref() == Some("registered")).then(|| "Resource registered.".to_string()),
        ),
        Err(r) => return r,
    };
    let page = ResourcesPage {
        chrome,
        query: q.q.unwrap_or_default(),
        tree: {
            let mut flat = Vec::new();
            flatten(nest(resources), &mut flat);
            flat
        },
        truncated: more,
        may_register: visit.caller.is_tenant_admin,
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    chrome: Chrome,
    arm_id: String,
    display_name: String,
    parent: String,
    error: Option<String>,
}

/// The registration form's fields.
#[derive(Debug, Deserialize, Default)]
pub struct RegisterForm {
    csrf: Option<String>,
    arm_id: Option<String>,
    display_name: Option<String>,
    parent: Option<String>,
}

async fn register_page(
    portal: &S,
    visit: &Visit,
    f: RegisterForm,
    error: Option<String>,
) -> Response {
    let chrome = match Chrome::new(portal, visit, Section::Resources, "Register resource").await {
        Ok(c) => c.with_alert(error.clone()),
        Err(r) => return r,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = RegisterPage {
        chrome,
        arm_id: f.arm_id.unwrap_or_default(),
        display_name: f.display_name.unwrap_or_default(),
        parent: f.parent.unwrap_or_default(),
        error,
    };
    render(status, &page, &visit.request_id)
}

/// `GET /ui/resources/register`: tenant administrators only (the button's audience).
pub async fn register_form(State(portal): State<S>, visit: Visit) -> Response {
    if !visit.caller.is_tenant_admin {
        return ErrorPage::denied(&visit.request_id).into_response();
    }
    register_page(&portal, &visit, RegisterForm::default(), None).await
}

/// `POST /ui/resources/register`: `POST …/resources/register`, as the API makes it.
pub async fn register(
    State(portal): State<S>,
    visit: Visit,
    Form(f): Form<RegisterForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    // Who may register is the core's rule (it audits a refusal as the API does).
    let text = |v: &Option<String>| {
        v.clone()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(arm) = text(&f.arm_id) else {
        return register_page(
            &portal,
            &visit,
            f,
            Some("Give the resource's ARM id.".into()),
        )
        .await;
    };
    let (name, parent) = (text(&f.display_name), text(&f.parent));
    let done = portal
        .app
        .write(
            visit.caller.clone(),
            visit.request_id.clone(),
            Operation::register_resource(),
            move |tx, ctx| {
                let (_, changes) =
                    operation::resource::register(tx, ctx, &arm, name.clone(), parent.as_deref())?;
                Ok(((), changes))
            },
        )
        .await;
    match done {
        Ok(()) => Redirect::to("/ui/resources?done=registered").into_response(),
        Err(e) if is_form_error(&e.error) => {
            let m = e.error.message;
            register_page(&portal, &visit, f, Some(m)).await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}

/// One row of an assignment table.
struct RowView {
    id: String,
    member: String,
    member_kind: &'static str,
    role: String,
    membership: String,
    starts: When,
    ends: Option<When>,
    manageable: bool,
}

fn row_view(
    r: &AssignmentRow,
    names: &HashMap<String, String>,
    administers: &dyn Fn(&str) -> bool,
    now: jiff::Timestamp,
) -> RowView {
    let (member, member_kind) = match &r.member {
        Some(s) => (
            s.display_name.clone(),
            match s.kind {
                SubjectKind::User => "User",
                SubjectKind::Group => "Group",
                SubjectKind::ServicePrincipal => "Service principal",
            },
        ),
        None => (r.assignment.subject_id.clone(), "Deleted"),
    };
    let a = &r.assignment;
    RowView {
        id: a.id.clone(),
        member,
        member_kind,
        role: r.role.display_name.clone(),
        membership: match r.member_type {
            MemberType::Inherited => format!(
                "Inherited from {}",
                names.get(&a.resource_id).cloned().unwrap_or_default()
            ),
            MemberType::Group => "Group".into(),
            MemberType::Direct if a.is_activation() => "Activated".into(),
            MemberType::Direct => "Direct".into(),
        },
        starts: When::at(a.schedule.start),
        ends: a.schedule.end.map(|e| When::end(e, now)),
        manageable: r.member_type == MemberType::Direct
            && !a.is_activation()
            && !a.schedule.has_ended(now)
            && administers(&a.resource_id),
    }
}

struct RoleLink {
    id: String,
    name: String,
}

struct AuditLine {
    id: String,
    at: When,
    activity: String,
    by: String,
    result: String,
}

#[derive(Template)]
#[template(path = "resource.html")]
struct ResourcePage {
    chrome: Chrome,
    id: String,
    resource: ResourceView,
    arm_id: String,
    roles: Vec<RoleLink>,
    role_filter: String,
    member_filter: String,
    eligible: Vec<RowView>,
    active: Vec<RowView>,
    expired: Vec<RowView>,
    pagers: Vec<Pager>,
    administer: bool,
    audit: Option<Vec<AuditLine>>,
    export_query: String,
}

/// The filters of a resource's page, and the page of each table.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct ResourceQuery {
    role: Option<String>,
    member: Option<String>,
    done: Option<String>,
    /// Rows skipped in "Eligible assignments".
    eskip: Option<u32>,
    /// Rows skipped in "Active assignments".
    askip: Option<u32>,
    /// Rows skipped in "Expired assignments".
    xskip: Option<u32>,
}

impl ResourceQuery {
    fn skip(&self) -> [u32; 3] {
        [
            self.eskip.unwrap_or(0),
            self.askip.unwrap_or(0),
            self.xskip.unwrap_or(0),
        ]
    }

    /// The page's URL with table `table`'s rows skipped `to` (the filters and the other
    /// tables' pages kept).
    fn page_link(&self, rid: &str, table: usize, to: u32) -> String {
        let mut skip = self.skip();
        skip[table] = to;
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!(
            "/ui/resources/{rid}?role={}&member={}&eskip={}&askip={}&xskip={}#{}",
            enc(self.role.as_deref().unwrap_or_default()),
            enc(self.member.as_deref().unwrap_or_default()),
            skip[0],
            skip[1],
            skip[2],
            ["eligible", "active", "expired"][table]
        )
    }
}

/// "Previous page" and "Next page" of one table.
struct Pager {
    previous: Option<String>,
    next: Option<String>,
}

fn done_text(done: Option<&str>) -> Option<String> {
    Some(
        match done? {
            "assigned" => "Assignment added.",
            "removed" => "Assignment removed.",
            "extended" => "Assignment extended.",
            "updated" => "Assignment updated.",
            "saved" => "Settings saved",
            _ => return None,
        }
        .to_string(),
    )
}

/// The role definitions of resource `rid`, by name.
fn roles_on(
    tx: &mut dyn rolegate_core::store::ReadTx,
    rid: &str,
) -> rolegate_core::error::Result<Vec<rolegate_core::role::RoleDefinition>> {
    let mut roles = tx
        .list_role_definitions(&ListQuery {
            filter: Some(odata::parse_filter(&format!(
                "resourceId eq '{}'",
                rid.replace('\'', "''")
            ))?),
            top: 500,
            ..Default::default()
        })?
        .items;
    roles.sort_by_key(|d| d.display_name.to_lowercase());
    Ok(roles)
}

/// Resource `rid` with its lineage, if the caller may read it (`403`/`404` otherwise).
fn readable_resource(
    tx: &mut dyn rolegate_core::store::ReadTx,
    caller: &rolegate_core::access::Caller,
    access: &dyn rolegate_core::access::AccessView,
    at: jiff::Timestamp,
    rid: &str,
) -> rolegate_core::error::Result<Vec<Resource>> {
    let Item::Resource(here) =
        visibility::load_item(tx, Collection::Resources, rid, None, caller, access, at)?
    else {
        return Err(Collection::Resources.not_found(rid));
    };
    let lineage = overview::lineage(tx, &here.id)?;
    if lineage.is_empty() {
        return Err(Collection::Resources.not_found(rid));
    }
    Ok(lineage)
}

/// `GET /ui/resources/{id}`: the resource, its assignments, roles and audit records.
pub async fn show(
    State(portal): State<S>,
    visit: Visit,
    Path(rid): Path<String>,
    Query(q): Query<ResourceQuery>,
) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let filters = q.clone();
    let loaded = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let lineage = readable_resource(tx, &caller, &access, at, &rid)?;
            let role_filter = filters.role.clone().filter(|r| !r.is_empty());
            let member_text = filters.member.clone().unwrap_or_default();
            let subjects = if member_text.trim().is_empty() {
                None
            } else {
                Some(
                    rolegate_core::scim::find_subjects(tx, &member_text, 200)?
                        .into_iter()
                        .map(|s| s.id)
                        .collect(),
                )
            };
            let filter = AssignmentFilter {
                role_definition_id: role_filter,
                subjects,
            };
            let rows = overview::resource_assignments(
                tx,
                &caller,
                &access,
                at,
                &rid,
                &filter,
                TablePages {
                    top: TABLE_PAGE,
                    skip: filters.skip(),
                },
            )?;
            let roles = roles_on(tx, &rid)?;
            let names: HashMap<String, String> = lineage
                .iter()
                .map(|r| (r.id.clone(), r.display_name.clone()))
                .collect();
            let administers = |r: &str| caller.may_administer(&access, r, at);
            let view = |v: &[AssignmentRow]| -> Vec<RowView> {
                v.iter()
                    .map(|r| row_view(r, &names, &administers, at))
                    .collect()
            };
            let (eligible, active, expired) = (
                view(&rows.eligible),
                view(&rows.active),
                view(&rows.expired),
            );
            let administer = administers(&rid);
            let audit = if visibility::may_read_audit_entry(&caller, &access, Some(&rid), at) {
                let q = ListQuery {
                    restrictions: vec![rolegate_core::query::Restriction::ResourceUnder(vec![
                        rid.clone(),
                    ])],
                    top: 50,
                    ..Default::default()
                };
                let entries = tx.list_audit(&q)?.items;
                Some(
                    entries
                        .iter()
                        .filter_map(|e| crate::audit::line(&e.document))
                        .map(|l| AuditLine {
                            id: l.id,
                            at: l.at,
                            activity: l.activity,
                            by: l.by,
                            result: l.result,
                        })
                        .collect(),
                )
            } else {
                None
            };
            Ok((
                lineage, roles, eligible, active, expired, rows.more, administer, audit,
            ))
        })
        .await;
    let (lineage, roles, eligible, active, expired, more, administer, audit) = match loaded {
        Ok(v) => v,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let here = &lineage[0];
    let chrome = match Chrome::new(
        &portal,
        &visit,
        Section::Resources,
        here.display_name.clone(),
    )
    .await
    {
        Ok(c) => c.with_status(done_text(q.done.as_deref())),
        Err(r) => return r,
    };
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let page = ResourcePage {
        chrome,
        id: here.id.clone(),
        resource: ResourceView::of(&lineage),
        arm_id: here.external_id.clone(),
        roles: roles
            .into_iter()
            .map(|d| RoleLink {
                id: d.id,
                name: d.display_name,
            })
            .collect(),
        role_filter: q.role.clone().unwrap_or_default(),
        member_filter: q.member.clone().unwrap_or_default(),
        eligible,
        active,
        expired,
        pagers: (0..3)
            .map(|t| {
                let skip = q.skip()[t];
                Pager {
                    previous: (skip > 0)
                        .then(|| q.page_link(&here.id, t, skip.saturating_sub(TABLE_PAGE))),
                    next: more[t].then(|| q.page_link(&here.id, t, skip + TABLE_PAGE)),
                }
            })
            .collect(),
        administer,
        audit,
        export_query: format!(
            "role={}&member={}",
            enc(&q.role.unwrap_or_default()),
            enc(&q.member.unwrap_or_default())
        ),
    };
    render(StatusCode::OK, &page, &visit.request_id)
}

/// `GET /ui/resources/{id}/export.csv`: the API's export of the resource's assignments,
/// the same bytes, filtered as the page was (role and member).
pub async fn export(
    State(portal): State<S>,
    visit: Visit,
    Path(rid): Path<String>,
    Query(q): Query<ResourceQuery>,
) -> Response {
    let caller = visit.caller.clone();
    let at = now(&portal);
    let csv = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            readable_resource(tx, &caller, &access, at, &rid)?;
            // The page's filters, as `$filter` of the API's export.
            let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
            let mut clauses = Vec::new();
            if let Some(role) = q.role.filter(|r| !r.is_empty()) {
                clauses.push(format!("roleDefinitionId eq {}", quote(&role)));
            }
            if let Some(member) = q.member.filter(|m| !m.trim().is_empty()) {
                let ids: Vec<String> = rolegate_core::scim::find_subjects(tx, &member, 200)?
                    .iter()
                    .map(|s| quote(&s.id))
                    .collect();
                if ids.is_empty() {
                    clauses.push("subjectId eq ''".to_string());
                } else {
                    clauses.push(format!("subjectId in ({})", ids.join(",")));
                }
            }
            let mut opts = odata::QueryOptions::default();
            if !clauses.is_empty() {
                opts.filter = Some(odata::parse_filter(&clauses.join(" and "))?);
            }
            let lines =
                rolegate_api::graph::export_lines(tx, &caller, &access, at, Some(&rid), &opts)?;
            Ok(rolegate_api::graph::csv_document(&lines))
        })
        .await;
    match csv {
        Ok(body) => crate::page::download(body, "text/csv; charset=utf-8", "roleAssignments.csv"),
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}

struct Candidate {
    id: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "assign.html")]
struct AssignPage {
    chrome: Chrome,
    id: String,
    resource: String,
    roles: Vec<(RoleLink, bool)>,
    search: String,
    candidates: Vec<Candidate>,
    searched: bool,
    eligible: bool,
    permanent: bool,
    start: String,
    end: String,
    days: String,
    reason: String,
    error: Option<String>,
    zone: String,
}

/// The "Add assignment" form's fields.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct AssignForm {
    csrf: Option<String>,
    role: Option<String>,
    search: Option<String>,
    member: Option<String>,
    find: Option<String>,
    state: Option<String>,
    permanent: Option<String>,
    start: Option<String>,
    end: Option<String>,
    days: Option<String>,
    reason: Option<String>,
}

async fn assign_page(
    portal: &S,
    visit: &Visit,
    rid: &str,
    f: &AssignForm,
    error: Option<String>,
) -> Response {
    let caller = visit.caller.clone();
    let at = now(portal);
    let rid_owned = rid.to_string();
    let search = f.search.clone().unwrap_or_default();
    let loaded = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            let lineage = readable_resource(tx, &caller, &access, at, &rid_owned)?;
            if !caller.may_administer(&access, &rid_owned, at) {
                return Err(DomainError::denied("adding assignments here needs R3"));
            }
            let roles = roles_on(tx, &rid_owned)?;
            let found = rolegate_core::scim::find_subjects(tx, &search, 25)?;
            Ok((lineage[0].display_name.clone(), roles, found))
        })
        .await;
    let (resource, roles, found) = match loaded {
        Ok(v) => v,
        Err(e) => return ErrorPage::from_api(&visit.request_id, e).into_response(),
    };
    let chrome = match Chrome::new(
        portal,
        visit,
        Section::Resources,
        format!("Add assignment on {resource}"),
    )
    .await
    {
        Ok(c) => c.with_alert(error.clone()),
        Err(r) => return r,
    };
    let chosen_role = f.role.clone().unwrap_or_default();
    let chosen_member = f.member.clone().unwrap_or_default();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = AssignPage {
        chrome,
        id: rid.to_string(),
        resource,
        roles: roles
            .into_iter()
            .map(|d| {
                let selected = d.id == chosen_role;
                (
                    RoleLink {
                        id: d.id,
                        name: d.display_name,
                    },
                    selected,
                )
            })
            .collect(),
        search: f.search.clone().unwrap_or_default(),
        searched: !f.search.clone().unwrap_or_default().trim().is_empty(),
        candidates: found
            .iter()
            .map(|s| Candidate {
                id: s.id.clone(),
                label: member_label(s),
                checked: s.id == chosen_member,
            })
            .collect(),
        eligible: f.state.as_deref() != Some("Active"),
        permanent: f.permanent.is_some(),
        start: f.start.clone().unwrap_or_default(),
        end: f.end.clone().unwrap_or_default(),
        days: f.days.clone().unwrap_or_default(),
        reason: f.reason.clone().unwrap_or_default(),
        error,
        zone: crate::text::zone_name(&visit.time_zone()),
    };
    render(status, &page, &visit.request_id)
}

/// `GET /ui/resources/{id}/assign`; `?search=` lists matching members.
pub async fn assign_form(
    State(portal): State<S>,
    visit: Visit,
    Path(rid): Path<String>,
    Query(f): Query<AssignForm>,
) -> Response {
    assign_page(&portal, &visit, &rid, &f, None).await
}

/// A `datetime-local` field (in the viewer's zone `tz`) as an instant, if given.
fn instant(
    field: &Option<String>,
    name: &str,
    tz: &jiff::tz::TimeZone,
) -> Result<Option<String>, String> {
    let raw = field.clone().unwrap_or_default();
    if raw.trim().is_empty() {
        return Ok(None);
    }
    crate::text::local_input(&raw, tz)
        .map(Some)
        .ok_or_else(|| format!("{name} must be a date and time."))
}

/// `POST /ui/resources/{id}/assign`: "Find member" lists matches; "Assign" makes the
/// `AdminAdd` request the API makes.
pub async fn assign(
    State(portal): State<S>,
    visit: Visit,
    Path(rid): Path<String>,
    Form(f): Form<AssignForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    if f.find.is_some() {
        return assign_page(&portal, &visit, &rid, &f, None).await;
    }
    let tz = visit.time_zone();
    let fail = |m: String| (f.clone(), Some(m));
    let built = (|| {
        let role = f
            .role
            .clone()
            .filter(|r| !r.is_empty())
            .ok_or("Choose a role.".to_string())?;
        let member = f
            .member
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or("Find and choose a member.".to_string())?;
        let state = match f.state.as_deref() {
            Some("Active") => AssignmentState::Active,
            _ => AssignmentState::Eligible,
        };
        let start = instant(&f.start, "Start time", &tz)?;
        let schedule = if f.permanent.is_some() {
            ScheduleInput {
                kind: Some("Once".into()),
                start,
                ..ScheduleInput::default()
            }
        } else {
            let end = instant(&f.end, "End time", &tz)?;
            let days = f.days.clone().unwrap_or_default().trim().to_string();
            let duration = if days.is_empty() {
                None
            } else {
                let n: u32 = days
                    .parse()
                    .map_err(|_| "Duration must be a whole number of days".to_string())?;
                Some(format!("P{n}D"))
            };
            if end.is_none() && duration.is_none() {
                return Err("Give an end time or a duration, or make it permanent.".to_string());
            }
            ScheduleInput {
                kind: Some("Once".into()),
                start,
                end,
                duration,
            }
        };
        Ok(NewRequest {
            resource_id: rid.clone(),
            role_definition_id: role,
            subject_id: member,
            kind: Some(RequestType::AdminAdd),
            state: Some(state),
            schedule: Some(schedule),
            reason: f.reason.clone().filter(|r| !r.trim().is_empty()),
            ..NewRequest::default()
        })
    })();
    let new = match built {
        Ok(n) => n,
        Err(m) => {
            let (f, e) = fail(m);
            return assign_page(&portal, &visit, &rid, &f, e).await;
        }
    };
    match submit_request(&portal, &visit, new).await {
        Ok(_) => Redirect::to(&format!("/ui/resources/{rid}?done=assigned")).into_response(),
        Err(e) if is_form_error(&e.error) => {
            let (f, e) = fail(e.error.message);
            assign_page(&portal, &visit, &rid, &f, e).await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}

/// What an administrator does to one assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Remove,
    Extend,
    Update,
}

impl Change {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "remove" => Some(Self::Remove),
            "extend" => Some(Self::Extend),
            "update" => Some(Self::Update),
            _ => None,
        }
    }
    fn kind(self) -> RequestType {
        match self {
            Self::Remove => RequestType::AdminRemove,
            Self::Extend => RequestType::AdminExtend,
            Self::Update => RequestType::AdminUpdate,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Extend => "extend",
            Self::Update => "update",
        }
    }
    fn done(self) -> &'static str {
        match self {
            Self::Remove => "removed",
            Self::Extend => "extended",
            Self::Update => "updated",
        }
    }
}

#[derive(Template)]
#[template(path = "assignment_change.html")]
struct ChangePage {
    chrome: Chrome,
    rid: String,
    aid: String,
    action: &'static str,
    member: String,
    role: String,
    state: &'static str,
    starts: When,
    ends: Option<When>,
    start: String,
    end: String,
    reason: String,
    error: Option<String>,
    zone: String,
}

/// The assignment `aid` as listed on resource `rid`, if the caller manages it there.
async fn manageable(
    portal: &S,
    visit: &Visit,
    rid: &str,
    aid: &str,
) -> Result<AssignmentRow, Response> {
    let caller = visit.caller.clone();
    let at = now(portal);
    let (rid, aid) = (rid.to_string(), aid.to_string());
    let found = portal
        .app
        .read(move |tx, st| {
            let access = st.access_view();
            readable_resource(tx, &caller, &access, at, &rid)?;
            // Made here (not inherited), live, and not an activation: what the page offers
            // to change.
            let row = match tx.assignment(&aid)? {
                Some(a)
                    if a.resource_id == rid && !a.is_activation() && !a.schedule.has_ended(at) =>
                {
                    match tx.role_definition(&a.role_definition_id)? {
                        Some(role) => {
                            let member = tx.subject(&a.subject_id)?;
                            Some(AssignmentRow {
                                assignment: a,
                                role,
                                member,
                                member_type: MemberType::Direct,
                            })
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            match row {
                Some(r) if caller.may_administer(&access, &r.assignment.resource_id, at) => {
                    Ok(Some(r))
                }
                Some(_) => Err(DomainError::denied(
                    "changing this assignment needs R3 on its resource",
                )),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| ErrorPage::from_api(&visit.request_id, e).into_response())?;
    found.ok_or_else(|| ErrorPage::not_found(&visit.request_id).into_response())
}

/// The change form's fields.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct ChangeForm {
    csrf: Option<String>,
    start: Option<String>,
    end: Option<String>,
    reason: Option<String>,
}

async fn change_page(
    portal: &S,
    visit: &Visit,
    rid: &str,
    row: &AssignmentRow,
    change: Change,
    f: &ChangeForm,
    error: Option<String>,
) -> Response {
    let member = row.member.as_ref().map_or_else(
        || row.assignment.subject_id.clone(),
        |s| s.display_name.clone(),
    );
    let title = match change {
        Change::Remove => format!("Remove {} from {member}", row.role.display_name),
        Change::Extend => format!("Extend {} for {member}", row.role.display_name),
        Change::Update => format!("Update {} for {member}", row.role.display_name),
    };
    let chrome = match Chrome::new(portal, visit, Section::Resources, title).await {
        Ok(c) => c.with_alert(error.clone()),
        Err(r) => return r,
    };
    let at = now(portal);
    let a = &row.assignment;
    let tz = visit.time_zone();
    let fmt = |t: jiff::Timestamp| crate::text::local_value(t, &tz);
    let page = ChangePage {
        chrome,
        rid: rid.to_string(),
        aid: a.id.clone(),
        action: change.word(),
        member,
        role: row.role.display_name.clone(),
        state: a.state.as_str(),
        starts: When::at(a.schedule.start),
        ends: a.schedule.end.map(|e| When::end(e, at)),
        start: f.start.clone().unwrap_or_else(|| fmt(a.schedule.start)),
        end: f
            .end
            .clone()
            .unwrap_or_else(|| a.schedule.end.map(fmt).unwrap_or_default()),
        reason: f.reason.clone().unwrap_or_default(),
        error: error.clone(),
        zone: crate::text::zone_name(&tz),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(status, &page, &visit.request_id)
}

/// `GET /ui/resources/{id}/assignments/{aid}/{remove|extend|update}`.
pub async fn change_form(
    State(portal): State<S>,
    visit: Visit,
    Path((rid, aid, action)): Path<(String, String, String)>,
) -> Response {
    let Some(change) = Change::parse(&action) else {
        return ErrorPage::not_found(&visit.request_id).into_response();
    };
    match manageable(&portal, &visit, &rid, &aid).await {
        Ok(row) => {
            change_page(
                &portal,
                &visit,
                &rid,
                &row,
                change,
                &ChangeForm::default(),
                None,
            )
            .await
        }
        Err(r) => r,
    }
}

/// `POST /ui/resources/{id}/assignments/{aid}/{remove|extend|update}`: the `AdminRemove`,
/// `AdminExtend` or `AdminUpdate` request the API makes.
pub async fn change(
    State(portal): State<S>,
    visit: Visit,
    Path((rid, aid, action)): Path<(String, String, String)>,
    Form(f): Form<ChangeForm>,
) -> Response {
    if let Err(r) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return r.into_response();
    }
    let Some(change) = Change::parse(&action) else {
        return ErrorPage::not_found(&visit.request_id).into_response();
    };
    let row = match manageable(&portal, &visit, &rid, &aid).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let tz = visit.time_zone();
    let schedule = match change {
        Change::Remove => Ok(None),
        Change::Extend | Change::Update => (|| {
            let start = if change == Change::Update {
                instant(&f.start, "Start time", &tz)?
            } else {
                None
            };
            let end = instant(&f.end, "End time", &tz)?;
            if end.is_none() {
                return Err("Give the new end time.".to_string());
            }
            Ok(Some(ScheduleInput {
                kind: Some("Once".into()),
                start,
                end,
                duration: None,
            }))
        })(),
    };
    let schedule = match schedule {
        Ok(s) => s,
        Err(m) => return change_page(&portal, &visit, &rid, &row, change, &f, Some(m)).await,
    };
    let a = &row.assignment;
    let new = NewRequest {
        resource_id: a.resource_id.clone(),
        role_definition_id: a.role_definition_id.clone(),
        subject_id: a.subject_id.clone(),
        kind: Some(change.kind()),
        state: Some(a.state),
        schedule,
        reason: f.reason.clone().filter(|r| !r.trim().is_empty()),
        ..NewRequest::default()
    };
    match submit_request(&portal, &visit, new).await {
        Ok(_) => {
            Redirect::to(&format!("/ui/resources/{rid}?done={}", change.done())).into_response()
        }
        Err(e) if is_form_error(&e.error) => {
            let m = e.error.message;
            change_page(&portal, &visit, &rid, &row, change, &f, Some(m)).await
        }
        Err(e) => ErrorPage::from_api(&visit.request_id, e).into_response(),
    }
}
