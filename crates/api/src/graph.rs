//! The Graph PIM routes (graph-pim-v2.md §6): resources, role definitions, role settings,
//! role assignments and role assignment requests, at provider level and nested under
//! `resources/{id}/…`. Handlers translate between HTTP and the domain; who may do what is
//! decided by `rolegate_core` (for reads, by `rolegate_core::visibility`: decisions.md §7).

use crate::error::ApiResult;
use crate::extract::{Auth, Fields, JsonObject, OData, RequestId};
use crate::render::{Entity, Lookup, Plain, Viewer, entity_set, navigate, shape, shape_item};
use crate::state::{AppState, Operation};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rolegate_core::access::{AccessView, Caller};
use rolegate_core::assignment::AssignmentState;
use rolegate_core::error::{DomainError, ErrorCode, Result};
use rolegate_core::held_assignments::{CacheTicket, HeldListQuery};
use rolegate_core::odata::{self, QueryOptions};
use rolegate_core::operation;
use rolegate_core::policy::{RoleRulesPatch, RuleSetting, TicketInfo};
use rolegate_core::query::{ListQuery, Page};
use rolegate_core::request::{self, DecisionInput, NewRequest, RequestType};
use rolegate_core::schedule::ScheduleInput;
use rolegate_core::store::{ReadTx, Tx};
use rolegate_core::visibility;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Params = Path<HashMap<String, String>>;

pub use rolegate_core::visibility::Collection;

/// The Graph entity set a collection's items belong to (`@odata.context`).
fn entity_set_of(coll: Collection) -> &'static str {
    match coll {
        Collection::Resources => "governanceResources",
        Collection::RoleDefinitions => "governanceRoleDefinitions",
        Collection::RoleSettings => "governanceRoleSettings",
        Collection::RoleAssignments => "governanceRoleAssignments",
        Collection::RoleAssignmentRequests => "governanceRoleAssignmentRequests",
        Collection::DirectoryAudits => "auditLogs/directoryAudits",
    }
}

/// Checks the provider key: only `azureResources` exists (decisions.md §1).
fn provider(p: &HashMap<String, String>) -> Result<()> {
    match p.get("provider").map(String::as_str) {
        Some("azureResources") | None => Ok(()),
        Some(other) => Err(DomainError::new(
            ErrorCode::NotFound,
            format!("provider `{other}` does not exist; use `azureResources`"),
        )),
    }
}

/// `http://host/beta`, for `@odata.context` and `@odata.nextLink`.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}/beta")
}

fn context(base: &str, set: &str, entity: bool) -> Value {
    Value::String(format!(
        "{base}/$metadata#{set}{}",
        if entity { "/$entity" } else { "" }
    ))
}

/// The `@odata.nextLink` of a page: this request's URL with `$skip` set to `skip`.
pub(crate) fn next_link(headers: &HeaderMap, uri: &Uri, skip: u64) -> String {
    let host = base_url(headers);
    let origin = host.trim_end_matches("/beta");
    let mut query: Vec<String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8_lossy()
                .to_ascii_lowercase();
            name != "$skip" && name != "skip"
        })
        .map(str::to_string)
        .collect();
    query.push(format!("$skip={skip}"));
    format!("{origin}{}?{}", uri.path(), query.join("&"))
}

fn validate_options(coll: Collection, opts: &QueryOptions) -> Result<()> {
    if opts.as_approver && coll != Collection::RoleAssignmentRequests {
        return Err(DomainError::bad_request(
            "`asApprover()` filters roleAssignmentRequests only",
        ));
    }
    if opts.as_approver && !opts.orderby.is_empty() {
        return Err(DomainError::bad_request(
            "`asApprover()` lists the oldest request first and takes no `$orderby`",
        ));
    }
    if let Some(f) = &opts.filter {
        odata::validate(f, coll.fields())?;
    }
    odata::validate_orderby(&opts.orderby, coll.fields())
}

fn ensure_resource(tx: &mut dyn ReadTx, lookup: Lookup, rid: Option<&str>) -> Result<()> {
    match rid {
        Some(r) if lookup.resource(tx, r)?.is_none() => Err(Collection::Resources.not_found(r)),
        _ => Ok(()),
    }
}

/// What a list call brings besides the collection.
struct ListCall {
    caller: Caller,
    opts: QueryOptions,
    params: HashMap<String, String>,
    uri: Uri,
    headers: HeaderMap,
}

/// A page of a collection, as Graph writes it.
#[derive(serde::Serialize)]
struct PageBody<T> {
    #[serde(rename = "@odata.context")]
    context: Value,
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
    value: T,
}

impl PageBody<()> {
    /// The page with these items.
    fn with<T>(self, value: Vec<T>) -> PageBody<Vec<T>> {
        PageBody {
            context: self.context,
            count: self.count,
            next_link: self.next_link,
            value,
        }
    }
}

/// Lists a collection (or counts it, for `/$count`).
async fn list(
    state: Arc<AppState>,
    call: ListCall,
    coll: Collection,
    count_only: bool,
) -> ApiResult<Response> {
    let ListCall {
        caller,
        opts,
        params,
        uri,
        headers,
    } = call;
    provider(&params)?;
    let rid = params.get("rid").cloned();
    // Taken before the transaction begins: lists it loads are kept only if nothing
    // changed them since (rolegate_core::held_assignments).
    let ticket = state.held_ticket()?;
    // Without a resource in the path the query needs no transaction: decided once, here.
    // On a shared store authenticating the caller caught the index and the caches up with
    // the access log at the start of this request.
    let planned = if rid.is_none() && !opts.as_approver {
        validate_options(coll, &opts)?;
        let now = state.clock.now();
        let plan = list_plan(
            coll,
            None,
            &opts,
            &caller,
            &state.access_view(),
            now,
            count_only,
        )?;
        if opts.expand.is_empty()
            && opts.select.is_none()
            && let Some(h) = &plan.held
            && let Some(lists) = state.held_lists_in_memory(&h.keys)?
        {
            let page = h
                .page(&lists, &plan.scope, plan.q.skip, plan.q.top, plan.q.count)
                .map(Entity::from);
            return Ok(page_response(
                page, &opts, coll, count_only, &headers, &uri, now,
            )?);
        }
        Some((now, plan))
    } else {
        None
    };
    state
        .read(move |tx, st| {
            let access = st.access_view();
            let (now, page) = match planned {
                Some((now, plan)) => (now, held_or_listed(st, ticket, tx, coll, plan)?),
                None => {
                    let now = st.clock.now();
                    validate_options(coll, &opts)?;
                    ensure_resource(tx, st.lookup(), rid.as_deref())?;
                    let page = if opts.as_approver {
                        let all = visibility::awaiting_decision(
                            tx,
                            &caller,
                            &access,
                            now,
                            rid.as_deref(),
                        )?;
                        let (skip, top) = window(&opts, count_only);
                        Page::window(all, skip, top, opts.count || count_only).map(Entity::Request)
                    } else {
                        let plan = list_plan(
                            coll,
                            rid.as_deref(),
                            &opts,
                            &caller,
                            &access,
                            now,
                            count_only,
                        )?;
                        held_or_listed(st, ticket, tx, coll, plan)?
                    };
                    (now, page)
                }
            };
            if count_only || (opts.expand.is_empty() && opts.select.is_none()) {
                return page_response(page, &opts, coll, count_only, &headers, &uri, now);
            }
            let viewer = Viewer::new(&caller, &access, now).looking_up(st.lookup());
            viewer.prefetch(tx, &page.items, &opts.expand)?;
            let mut value = Vec::with_capacity(page.items.len());
            for e in &page.items {
                value.push(shape_item(tx, e, &opts, &viewer)?);
            }
            let body = page_body(&page, &opts, coll, &headers, &uri);
            json_page(&body.with(value), page.items.len() * EXPANDED_ITEM_BYTES)
        })
        .await
}

/// The page `plan` asks for: from the held lists when they answer it (loading those not
/// held in `tx`), else from the store.
fn held_or_listed(
    st: &AppState,
    ticket: CacheTicket,
    tx: &mut dyn ReadTx,
    coll: Collection,
    plan: ListPlan,
) -> Result<Page<Entity>> {
    let ListPlan { scope, q, held } = plan;
    let page = match held {
        Some(h) => {
            let lists = st.held_lists(ticket, tx, &h.keys)?;
            h.page(&lists, &scope, q.skip, q.top, q.count)
        }
        None => visibility::list(tx, coll, &q, &scope)?,
    };
    Ok(page.map(Entity::from))
}

/// `$skip` and the page size of a list call (none for `/$count`).
fn window(opts: &QueryOptions, count_only: bool) -> (u32, u32) {
    let top = if count_only {
        0
    } else {
        opts.top.unwrap_or(100)
    };
    (opts.skip.unwrap_or(0), top)
}

/// How a list call (not `asApprover()`) is answered: what the caller may read, the store's
/// query, and its held-list form when it has one.
struct ListPlan {
    scope: visibility::ReadScope,
    q: ListQuery,
    held: Option<HeldListQuery>,
}

/// The [`ListPlan`] of a list call.
fn list_plan(
    coll: Collection,
    rid: Option<&str>,
    opts: &QueryOptions,
    caller: &Caller,
    access: &dyn AccessView,
    now: jiff::Timestamp,
    count_only: bool,
) -> Result<ListPlan> {
    let scope = visibility::read_scope(coll, rid, opts.filter.clone(), caller, access, now)?;
    let (skip, top) = window(opts, count_only);
    let q = ListQuery {
        filter: scope.filter.clone(),
        restrictions: scope.restrictions.clone(),
        orderby: opts.orderby.clone(),
        top,
        skip,
        count: opts.count || count_only,
    };
    let held = HeldListQuery::of(coll, &q);
    Ok(ListPlan { scope, q, held })
}

/// The envelope of `page`: context, count and the link to the next page.
fn page_body(
    page: &Page<Entity>,
    opts: &QueryOptions,
    coll: Collection,
    headers: &HeaderMap,
    uri: &Uri,
) -> PageBody<()> {
    let skip = opts.skip.unwrap_or(0);
    PageBody {
        context: context(&base_url(headers), entity_set_of(coll), false),
        count: page.total,
        next_link: page
            .more
            .then(|| next_link(headers, uri, u64::from(skip) + page.items.len() as u64)),
        value: (),
    }
}

/// `page` written out without `$select` or `$expand` (or its count alone, for `/$count`).
fn page_response(
    page: Page<Entity>,
    opts: &QueryOptions,
    coll: Collection,
    count_only: bool,
    headers: &HeaderMap,
    uri: &Uri,
    now: jiff::Timestamp,
) -> Result<Response> {
    if count_only {
        let n = page.total.unwrap_or(0).to_string();
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], n).into_response());
    }
    let body = page_body(&page, opts, coll, headers, uri);
    let plain: Vec<Plain> = page
        .items
        .iter()
        .map(|entity| Plain { entity, now })
        .collect();
    json_page(&body.with(plain), page.items.len() * PLAIN_ITEM_BYTES)
}

/// About how many bytes an item of a page takes, plain or with `$expand` (an assignment
/// with its subject, role definition and resource): a page's buffer is sized up front,
/// rather than grown by doubling (which copied a 130 KB page twice over).
const PLAIN_ITEM_BYTES: usize = 512;
const EXPANDED_ITEM_BYTES: usize = 1536;

/// `body` as a JSON response, written into a buffer of `capacity` bytes to start with.
fn json_page(body: &impl serde::Serialize, capacity: usize) -> Result<Response> {
    let mut buf = Vec::with_capacity(capacity.max(256));
    serde_json::to_writer(&mut buf, body)
        .map_err(|e| DomainError::internal(format!("page not written: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], buf).into_response())
}

/// Gets one item, or follows up to two single-valued navigations from it.
async fn get_item(
    state: Arc<AppState>,
    caller: Caller,
    opts: QueryOptions,
    params: HashMap<String, String>,
    headers: HeaderMap,
    coll: Collection,
) -> ApiResult<Response> {
    provider(&params)?;
    let rid = params.get("rid").cloned();
    let id = params
        .get("id")
        .or(params.get("rid"))
        .cloned()
        .unwrap_or_default();
    let navs: Vec<String> = ["nav", "nav2"]
        .iter()
        .filter_map(|k| params.get(*k).cloned())
        .collect();
    let nested = coll != Collection::Resources;
    if coll == Collection::Resources
        && navs.is_empty()
        && let Some(body) = resource_from_memory(&state, &caller, &opts, &id, &headers)?
    {
        return Ok(body);
    }
    state
        .read(move |tx, st| {
            let now = st.clock.now();
            let access = st.access_view();
            if let Some(f) = &opts.filter {
                odata::validate(f, coll.fields())?;
            }
            let scope_rid = if nested { rid.as_deref() } else { None };
            ensure_resource(tx, st.lookup(), scope_rid)?;
            if !nested {
                // A resource read here is kept, so the next read of it needs no transaction
                // (resource_from_memory).
                st.lookup().resource(tx, &id)?;
            }
            let mut entity = Entity::from(visibility::load_item(
                tx, coll, &id, scope_rid, &caller, &access, now,
            )?);
            for nav in &navs {
                entity = navigate(tx, st.lookup(), &entity, nav)?.ok_or_else(|| {
                    DomainError::new(ErrorCode::NotFound, format!("`{nav}` of `{id}` is empty"))
                })?;
                if let Entity::Resource(r) = &entity {
                    visibility::may_navigate_to_resource(&caller, &access, nav, &r.id, now)?;
                }
            }
            let viewer = Viewer::new(&caller, &access, now).looking_up(st.lookup());
            let mut body = Map::new();
            body.insert(
                "@odata.context".into(),
                context(&base_url(&headers), entity_set(&entity), true),
            );
            body.extend(shape(tx, &entity, &opts, &viewer)?);
            Ok(axum::Json(Value::Object(body)).into_response())
        })
        .await
}

/// `GET …/resources/{id}` answered from memory, without a transaction, when it can be: a
/// resource cached already and no query option that needs the database. `None`: ask the
/// database. The index and the cache reflect every commit: on a store of its own every
/// write went through them; on a shared store authenticating the caller caught them up
/// with the access log at the start of this request ([`AppState::token_subject`]).
fn resource_from_memory(
    state: &AppState,
    caller: &Caller,
    opts: &QueryOptions,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<Response>> {
    let plain = opts.filter.is_none() && opts.expand.is_empty() && opts.select.is_none();
    if !plain {
        return Ok(None);
    }
    let Some(cached) = state.entities()?.resource(id).cloned() else {
        return Ok(None);
    };
    let now = state.clock.now();
    let access = state.access_view();
    let r = visibility::readable_resource(Some(cached), id, caller, &access, now)?;
    let entity = Entity::Resource(r);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        context(&base_url(headers), entity_set(&entity), true),
    );
    body.extend(crate::render::properties(&entity, now));
    Ok(Some(axum::Json(Value::Object(body)).into_response()))
}

/// `GET …/{collection}`.
pub async fn list_route(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    OData(o): OData,
    Path(p): Params,
    uri: Uri,
    h: HeaderMap,
    coll: Collection,
) -> ApiResult<Response> {
    list(
        s,
        ListCall {
            caller: c,
            opts: o,
            params: p,
            uri,
            headers: h,
        },
        coll,
        false,
    )
    .await
}

/// `GET …/{collection}/$count`.
pub async fn count_route(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    OData(o): OData,
    Path(p): Params,
    uri: Uri,
    h: HeaderMap,
    coll: Collection,
) -> ApiResult<Response> {
    list(
        s,
        ListCall {
            caller: c,
            opts: o,
            params: p,
            uri,
            headers: h,
        },
        coll,
        true,
    )
    .await
}

/// `GET …/{collection}/{id}[/{nav}[/{nav2}]]`.
pub async fn item_route(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    OData(o): OData,
    Path(p): Params,
    h: HeaderMap,
    coll: Collection,
) -> ApiResult<Response> {
    get_item(s, c, o, p, h, coll).await
}

/// `GET …/roleAssignments/{id}/connectorGrants` (Rolegate): what the connectors did with an
/// assignment the caller may read, one row per connector, target and principal it justifies
/// (docs/connectors.md "The grant's state for the person who activated"); only the caller's
/// own rows unless it administers the resource. `{"value": []}` without connectors.
pub async fn assignment_connector_grants(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(p): Params,
) -> ApiResult<Response> {
    provider(&p)?;
    let rid = p.get("rid").cloned();
    let id = p.get("id").cloned().unwrap_or_default();
    let only = s
        .read(move |tx, st| {
            let now = st.clock.now();
            let access = st.access_view();
            ensure_resource(tx, st.lookup(), rid.as_deref())?;
            match visibility::load_item(
                tx,
                Collection::RoleAssignments,
                &id,
                rid.as_deref(),
                &c,
                &access,
                now,
            )? {
                visibility::Item::Assignment(a, _) => Ok((
                    a.id,
                    visibility::connector_grants_viewed_by(&c, &access, &a.resource_id, now),
                )),
                _ => Err(Collection::RoleAssignments.not_found(&id)),
            }
        })
        .await?;
    let value = match s.connectors.get() {
        Some(o) => o.assignment_grants(vec![only.0], only.1).await?,
        None => Vec::new(),
    };
    Ok(axum::Json(serde_json::json!({ "value": value })).into_response())
}

/// `GET /beta/me` (Rolegate): the caller as a `governanceSubject`, with
/// `isTenantAdministrator` and `mfa` as the server sees them (`rolegate whoami`). A tenant
/// administrator outside the directory is described from the token.
pub async fn me(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    h: HeaderMap,
) -> ApiResult<Response> {
    // Authenticating the caller caught this node up already.
    let subject = s.subject(&c.subject_id)?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        context(&base_url(&h), "governanceSubjects", true),
    );
    match subject {
        Some(subject) => body.extend(crate::render::properties(
            &Entity::Subject(subject),
            s.clock.now(),
        )),
        None => {
            body.insert("id".into(), Value::String(c.subject_id.clone()));
            body.insert("type".into(), Value::String("User".into()));
            body.insert("displayName".into(), Value::String(c.display_name.clone()));
            body.insert("email".into(), Value::String(String::new()));
            body.insert(
                "principalName".into(),
                Value::String(c.principal_name.clone().unwrap_or_default()),
            );
        }
    }
    body.insert(
        "isTenantAdministrator".into(),
        Value::Bool(c.is_tenant_admin),
    );
    body.insert("mfa".into(), Value::Bool(c.mfa));
    Ok(axum::Json(Value::Object(body)).into_response())
}

/// `GET /beta/me/expiredRoleAssignments` (Rolegate): the caller's own eligible
/// assignments that ended in the renewal window, as `overview::my_roles` finds them (what
/// `UserRenew` may renew); `$expand` and `$select` apply.
pub async fn my_expired_assignments(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    OData(opts): OData,
    h: HeaderMap,
) -> ApiResult<Response> {
    s.read(move |tx, st| {
        if opts.filter.is_some() || opts.as_approver || !opts.orderby.is_empty() {
            return Err(DomainError::bad_request(
                "expiredRoleAssignments takes only $expand and $select",
            ));
        }
        let now = st.clock.now();
        let access = st.access_view();
        let mine = rolegate_core::overview::my_roles(tx, &c, &access, now)?;
        let viewer = Viewer::new(&c, &access, now).looking_up(st.lookup());
        let mut value = Vec::with_capacity(mine.expired.len());
        for row in mine.expired {
            let e = Entity::Assignment(
                row.assignment,
                rolegate_core::assignment::MemberType::Direct,
            );
            value.push(Value::Object(shape(tx, &e, &opts, &viewer)?));
        }
        Ok(axum::Json(json!({
            "@odata.context": context(&base_url(&h), "governanceRoleAssignments", false),
            "value": value,
        }))
        .into_response())
    })
    .await
}

/// `GET …/resources/{rid}/roleAssignments/expired()` (Rolegate): the resource's own
/// assignments that ended by expiry in the last 30 days, latest end first, for callers who
/// may read its assignments; `$expand` and `$select` apply.
pub async fn expired_assignments(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    OData(opts): OData,
    Path(p): Params,
    h: HeaderMap,
) -> ApiResult<Response> {
    provider(&p)?;
    let rid = p.get("rid").cloned().unwrap_or_default();
    s.read(move |tx, st| {
        if opts.filter.is_some() || opts.as_approver || !opts.orderby.is_empty() {
            return Err(DomainError::bad_request(
                "expired() takes only $expand and $select",
            ));
        }
        ensure_resource(tx, st.lookup(), Some(&rid))?;
        let now = st.clock.now();
        let access = st.access_view();
        let expired = rolegate_core::overview::expired_on(tx, &c, &access, now, &rid)?;
        let viewer = Viewer::new(&c, &access, now).looking_up(st.lookup());
        let mut value = Vec::with_capacity(expired.len());
        for a in expired {
            let e = Entity::Assignment(a, rolegate_core::assignment::MemberType::Direct);
            value.push(Value::Object(shape(tx, &e, &opts, &viewer)?));
        }
        Ok(axum::Json(json!({
            "@odata.context": context(&base_url(&h), "governanceRoleAssignments", false),
            "value": value,
        }))
        .into_response())
    })
    .await
}

/// `GET /beta/privilegedAccess[/{provider}]`.
pub async fn providers(Auth(_): Auth, Path(p): Params, h: HeaderMap) -> ApiResult<Response> {
    provider(&p)?;
    let base = base_url(&h);
    let item = json!({"id": "azureResources", "displayName": "Azure resources"});
    let body = if p.contains_key("provider") {
        let mut m = Map::new();
        m.insert(
            "@odata.context".into(),
            Value::String(format!("{base}/$metadata#privilegedAccess/$entity")),
        );
        m.extend(item.as_object().cloned().unwrap_or_default());
        Value::Object(m)
    } else {
        json!({"@odata.context": format!("{base}/$metadata#privilegedAccess"), "value": [item]})
    };
    Ok(axum::Json(body).into_response())
}

/// `POST …/resources/register`: `200` with no body, every time (decisions.md §13).
pub async fn register(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(p): Params,
    RequestId(rid): RequestId,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    provider(&p)?;
    let external_id = body
        .opt_str("externalId")?
        .ok_or_else(|| DomainError::bad_request("`externalId` is required"))?;
    let display_name = body.opt_str("displayName")?;
    let parent = body.opt_str("parentExternalId")?;
    s.write(c, rid, Operation::register_resource(), move |tx, ctx| {
        let (_, changes) = operation::resource::register(
            tx,
            ctx,
            &external_id,
            display_name.clone(),
            parent.as_deref(),
        )?;
        Ok(((), changes))
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

fn rule_list(body: &Map<String, Value>, name: &str) -> Result<Option<Vec<RuleSetting>>> {
    let invalid =
        |why: &str| DomainError::new(ErrorCode::InvalidRoleSetting, format!("`{name}`: {why}"));
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let obj = item
                    .as_object()
                    .ok_or_else(|| invalid("each rule must be an object"))?;
                let rule = obj
                    .opt_str("ruleIdentifier")
                    .map_err(|e| invalid(&e.message))?
                    .ok_or_else(|| invalid("`ruleIdentifier` is required"))?;
                let setting = match obj.get("setting") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(invalid(
                            "`setting` must be a JSON document serialised as a string",
                        ));
                    }
                };
                Ok(RuleSetting {
                    rule_identifier: rule,
                    setting,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(invalid("must be an array of rules")),
    }
}

/// Decodes the body of a role-setting `PATCH` (the rule lists it names; the rules
/// themselves are validated when the patch is applied).
pub fn role_rules_patch(body: &Map<String, Value>) -> Result<RoleRulesPatch> {
    Ok(RoleRulesPatch {
        admin_eligible: rule_list(body, "adminEligibleSettings")?,
        admin_member: rule_list(body, "adminMemberSettings")?,
        user_eligible: rule_list(body, "userEligibleSettings")?,
        user_member: rule_list(body, "userMemberSettings")?,
    })
}

/// `PATCH …/roleSettings/{id}`: merge by rule, `204`.
pub async fn patch_role_setting(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(p): Params,
    RequestId(rid): RequestId,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    provider(&p)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let patch = role_rules_patch(&body)?;
    let nested = p.get("rid").cloned();
    s.write(
        c,
        rid,
        Operation::update_role_setting(&id),
        move |tx, ctx| {
            if let Some(r) = &nested
                && tx.role_setting(&id)?.is_some_and(|x| &x.resource_id != r)
            {
                return Err(DomainError::new(
                    ErrorCode::RoleSettingNotFoundForUpdate,
                    format!("role setting `{id}` does not exist on resource `{r}`"),
                ));
            }
            operation::role::update_role_setting(tx, ctx, &id, patch.clone())
                .map(|_| ((), Vec::new()))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn schedule_input(body: &Map<String, Value>) -> Result<Option<ScheduleInput>> {
    let Some(s) = body.opt_obj("schedule")? else {
        return Ok(None);
    };
    let field = |name: &str| {
        s.opt_str(name)
            .map_err(|_| DomainError::bad_request(format!("`schedule.{name}` must be a string")))
    };
    Ok(Some(ScheduleInput {
        kind: field("type")?,
        start: field("startDateTime")?,
        end: field("endDateTime")?.or(field("stopDateTime")?),
        duration: field("duration")?,
    }))
}

fn request_json(
    base: &str,
    r: &request::RoleAssignmentRequest,
    now: jiff::Timestamp,
    caller: &Caller,
    access: &dyn AccessView,
    tx: &mut dyn Tx,
) -> Result<Value> {
    let viewer = Viewer::new(caller, access, now);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        context(base, "governanceRoleAssignmentRequests", true),
    );
    body.extend(shape(
        tx,
        &Entity::Request(r.clone()),
        &QueryOptions::default(),
        &viewer,
    )?);
    Ok(Value::Object(body))
}

/// Decodes the body of a `POST …/roleAssignmentRequests`. `path_resource` is the resource
/// of a nested route (`resources/{rid}/…`): it fills a missing `resourceId` and must equal a
/// given one.
pub fn new_request(body: &Map<String, Value>, path_resource: Option<&str>) -> Result<NewRequest> {
    let text = |name: &str| body.opt_str(name).map(Option::unwrap_or_default);
    let kind = match body.opt_str("type")? {
        Some(t) => Some(RequestType::parse(&t).ok_or_else(|| {
            DomainError::bad_request(format!("`type` `{t}` is not a request type"))
        })?),
        None => None,
    };
    let state = match body.opt_str("assignmentState")? {
        Some(t) => Some(AssignmentState::parse(&t).ok_or_else(|| {
            DomainError::bad_request(format!(
                "`assignmentState` must be `Eligible` or `Active`, not `{t}`"
            ))
        })?),
        None => None,
    };
    let ticket = match body.opt_obj("ticketInfo")? {
        Some(t) => Some(TicketInfo {
            ticket_number: t.opt_str("ticketNumber")?,
            ticket_system: t.opt_str("ticketSystem")?,
        }),
        None => None,
    };
    let mut new = NewRequest {
        resource_id: text("resourceId")?,
        role_definition_id: text("roleDefinitionId")?,
        subject_id: text("subjectId")?,
        kind,
        state,
        schedule: schedule_input(body)?,
        reason: body.opt_str("reason")?,
        linked_eligible_id: body
            .opt_str("linkedEligibleRoleAssignmentId")?
            .filter(|s| !s.is_empty()),
        ticket,
        emergency: body.opt_bool("emergency")?.unwrap_or(false),
    };
    if let Some(r) = path_resource {
        if new.resource_id.is_empty() {
            new.resource_id = r.to_string();
        } else if new.resource_id != r {
            return Err(DomainError::bad_request(
                "`resourceId` differs from the resource in the path",
            ));
        }
    }
    Ok(new)
}

/// `POST …/roleAssignmentRequests`: `201` with the request.
pub async fn create_request(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(p): Params,
    RequestId(rid): RequestId,
    h: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    provider(&p)?;
    let new = new_request(&body, p.get("rid").map(String::as_str))?;
    let base = base_url(&h);
    let op = Operation::create_request(&new);
    let body = s
        .write(c, rid, op, move |tx, ctx| {
            let out = operation::request::submit(tx, ctx, new.clone())?;
            let json = request_json(&base, &out.request, ctx.now, ctx.caller, ctx.access, tx)?;
            Ok((json, out.changes))
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `POST …/roleAssignmentRequests/{id}/cancel`: `204`.
pub async fn cancel_request(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(p): Params,
    RequestId(rid): RequestId,
) -> ApiResult<Response> {
    provider(&p)?;
    let id = p.get("id").cloned().unwrap_or_default();
    s.write(c, rid, Operation::cancel_request(&id), move |tx, ctx| {
        operation::request::cancel(tx, ctx, &id).map(|o| ((), o.changes))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Decodes the body of a `POST …/roleAssignmentRequests/{id}/updateRequest`.
pub fn decision_input(body: &Map<String, Value>) -> Result<DecisionInput> {
    let input = DecisionInput {
        decision: body.opt_str("decision")?.ok_or_else(|| {
            DomainError::bad_request("`decision` is required (`AdminApproved` or `AdminDenied`)")
        })?,
        reason: body.opt_str("reason")?,
        schedule: schedule_input(body)?,
    };
    if let Some(st) = body.opt_str("assignmentState")? {
        AssignmentState::parse(&st).ok_or_else(|| {
            DomainError::bad_request(format!(
                "`assignmentState` must be `Eligible` or `Active`, not `{st}`"
            ))
        })?;
    }
    Ok(input)
}

/// `POST …/roleAssignmentRequests/{id}/updateRequest`: `200` with the request.
pub async fn update_request(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    Path(p): Params,
    RequestId(rid): RequestId,
    h: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    provider(&p)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let input = decision_input(&body)?;
    let base = base_url(&h);
    let body = s
        .write(c, rid, Operation::decide_request(&id), move |tx, ctx| {
            let out = operation::request::decide(tx, ctx, &id, &input)?;
            let json = request_json(&base, &out.request, ctx.now, ctx.caller, ctx.access, tx)?;
            Ok((json, out.changes))
        })
        .await?;
    Ok(axum::Json(body).into_response())
}

/// The CSV columns of an export (graph-pim-v2.md §6.12).
const EXPORT_HEADER: &str = "Assignment Level,User Group Name,Role Name,Email,Assignment Type,Assignment Start Time (UTC),Assignment End Time (UTC)";

/// One CSV cell: quoted when needed, and never starting like a spreadsheet formula.
pub fn csv_field(s: &str) -> String {
    // A cell starting like a formula would run in a spreadsheet: make it text.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Display names looked up once per export.
#[derive(Default)]
struct NameCache {
    resources: HashMap<String, String>,
    roles: HashMap<String, String>,
    subjects: HashMap<String, (String, String)>,
}

impl NameCache {
    fn resource(&mut self, tx: &mut dyn ReadTx, id: &str) -> Result<String> {
        if let Some(v) = self.resources.get(id) {
            return Ok(v.clone());
        }
        let v = tx.resource(id)?.map(|r| r.display_name).unwrap_or_default();
        self.resources.insert(id.to_string(), v.clone());
        Ok(v)
    }

    fn role(&mut self, tx: &mut dyn ReadTx, id: &str) -> Result<String> {
        if let Some(v) = self.roles.get(id) {
            return Ok(v.clone());
        }
        let v = tx
            .role_definition(id)?
            .map(|d| d.display_name)
            .unwrap_or_default();
        self.roles.insert(id.to_string(), v.clone());
        Ok(v)
    }

    fn subject(&mut self, tx: &mut dyn ReadTx, id: &str) -> Result<(String, String)> {
        if let Some(v) = self.subjects.get(id) {
            return Ok(v.clone());
        }
        let v = tx
            .subject(id)?
            .map(|s| (s.display_name, s.email.unwrap_or_default()))
            .unwrap_or_default();
        self.subjects.insert(id.to_string(), v.clone());
        Ok(v)
    }
}

/// The lines of an assignment export (graph-pim-v2.md §6.12): the header, then one CSV
/// line per assignment `caller` may read under resource `rid` (or anywhere), filtered and
/// paged by `opts`. The portal's "Download CSV" serves the same lines.
pub fn export_lines(
    tx: &mut dyn ReadTx,
    c: &Caller,
    access: &dyn AccessView,
    now: jiff::Timestamp,
    rid: Option<&str>,
    opts: &QueryOptions,
) -> Result<Vec<String>> {
    let scope = visibility::read_scope(
        Collection::RoleAssignments,
        rid,
        opts.filter.clone(),
        c,
        access,
        now,
    )?;
    let mut lines = vec![EXPORT_HEADER.to_string()];
    let mut names = NameCache::default();
    let mut skip = opts.skip.unwrap_or(0);
    let limit = opts.top.map_or(100_000, |t| t as usize);
    loop {
        let q = ListQuery {
            filter: scope.filter.clone(),
            restrictions: scope.restrictions.clone(),
            orderby: opts.orderby.clone(),
            top: 1000,
            skip,
            count: false,
        };
        let page = tx.list_assignments(&q)?;
        for a in &page.items {
            if lines.len() > limit {
                break;
            }
            let level = names.resource(tx, &a.resource_id)?;
            let (subject, email) = names.subject(tx, &a.subject_id)?;
            let role = names.role(tx, &a.role_definition_id)?;
            let fmt = rolegate_core::schedule::format_datetime;
            lines.push(
                [
                    level,
                    subject,
                    role,
                    email,
                    a.state.as_str().to_string(),
                    fmt(a.schedule.start),
                    a.schedule
                        .end
                        .map(fmt)
                        .unwrap_or_else(|| "Permanent".into()),
                ]
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
            );
        }
        if !page.more || lines.len() > limit {
            break;
        }
        skip += 1000;
    }
    Ok(lines)
}

/// The CSV file of export `lines`: a byte-order mark, then CRLF-terminated lines.
pub fn csv_document(lines: &[String]) -> String {
    let mut csv = String::from("\u{feff}");
    for l in lines {
        csv.push_str(l);
        csv.push_str("\r\n");
    }
    csv
}

/// `GET …/roleAssignments/export` (and `export()`): CSV with a BOM, or JSON lines when the
/// client asks only for JSON (the Graph SDK).
pub async fn export(
    State(s): State<Arc<AppState>>,
    Auth(c): Auth,
    OData(opts): OData,
    Path(p): Params,
    h: HeaderMap,
) -> ApiResult<Response> {
    provider(&p)?;
    let rid = p.get("rid").cloned();
    let accept = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json_only = accept.contains("application/json")
        && !accept.contains("octet-stream")
        && !accept.contains("*/*");
    let base = base_url(&h);
    s.read(move |tx, st| {
        let now = st.clock.now();
        let access = st.access_view();
        validate_options(Collection::RoleAssignments, &opts)?;
        ensure_resource(tx, st.lookup(), rid.as_deref())?;
        let lines = export_lines(tx, &c, &access, now, rid.as_deref(), &opts)?;
        if json_only {
            let body = json!({"@odata.context": format!("{base}/$metadata#Collection(Edm.String)"), "value": lines});
            return Ok(axum::Json(body).into_response());
        }
        Ok(([(header::CONTENT_TYPE, "application/octet-stream"), (header::CONTENT_DISPOSITION, "attachment; filename=\"roleAssignments.csv\"")], csv_document(&lines)).into_response())
    })
    .await
}
