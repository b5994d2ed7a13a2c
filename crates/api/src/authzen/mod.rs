//! The OpenID AuthZEN Authorization API 1.0 (authzen.md): `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations` and `GET /.well-known/authzen-configuration`. This layer
//! reads the JSON (errors name the member by its path), resolves subjects and resources
//! against the directory and the resource tree, checks who may ask (§9), and renders; the
//! decision is `rolegate_core::access_decision` over the access index's holdings.

use crate::error::{ApiError, ApiResult};
use crate::extract::JsonObject;
use crate::metrics::AuthzenEndpoint;
use crate::render::Lookup;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use rolegate_core::access::Caller;
use rolegate_core::access_decision::{self, Action, Evaluation, Holding};
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::error::{DomainError, Result};
use rolegate_core::permissions::{self, Plane};
use rolegate_core::resource::Resource;
use rolegate_core::scope::ArmId;
use rolegate_core::store::ReadTx;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

pub mod search;

/// The most items one `evaluations` request may hold.
const MAX_ITEMS: usize = 1000;

fn bad(message: impl Into<String>) -> DomainError {
    DomainError::bad_request(message)
}

/// A member of `obj`: `None` when absent or `null`.
fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn object<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a Map<String, Value>>> {
    match v {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(format!("`{path}` must be a JSON object"))),
    }
}

fn required_object<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a Map<String, Value>> {
    object(v, path)?.ok_or_else(|| bad(format!("`{path}` is required")))
}

fn string<'a>(obj: &'a Map<String, Value>, name: &str, path: &str) -> Result<Option<&'a str>> {
    match member(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("`{path}.{name}` must be a string"))),
    }
}

fn required_string<'a>(obj: &'a Map<String, Value>, name: &str, path: &str) -> Result<&'a str> {
    string(obj, name, path)?.ok_or_else(|| bad(format!("`{path}.{name}` is required")))
}

/// A subject as asked about: its type and id (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubjectRef {
    kind: String,
    id: String,
}

/// A resource as asked about (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceRef {
    kind: String,
    id: String,
}

/// An action as asked about (§3.3): a known action, or a name Rolegate does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ActionRef {
    Known(Action),
    RoleNamed(String),
    Unknown(String),
}

/// One question, after defaults.
#[derive(Debug, Clone)]
struct Question {
    subject: SubjectRef,
    resource: ResourceRef,
    action: ActionRef,
    at: Timestamp,
    /// Whether `at` is a `context.time` before the request's now: only then does history
    /// count (§4.4).
    past: bool,
}

fn parse_subject(v: Option<&Value>, path: &str) -> Result<SubjectRef> {
    let o = required_object(v, path)?;
    Ok(SubjectRef {
        kind: required_string(o, "type", path)?.to_string(),
        id: required_string(o, "id", path)?.to_string(),
    })
}

fn parse_resource(v: Option<&Value>, path: &str) -> Result<ResourceRef> {
    let o = required_object(v, path)?;
    Ok(ResourceRef {
        kind: required_string(o, "type", path)?.to_string(),
        id: required_string(o, "id", path)?.to_string(),
    })
}

fn parse_action(v: Option<&Value>, path: &str) -> Result<ActionRef> {
    let o = required_object(v, path)?;
    let name = required_string(o, "name", path)?;
    if name.is_empty() {
        return Err(bad(format!("`{path}.name` is empty")));
    }
    if name == "role" {
        let template_path = format!("{path}.properties.templateId");
        // A `properties` that is no object holds no `templateId` either.
        let Some(Value::Object(p)) = member(o, "properties") else {
            return Err(bad(format!(
                "`{template_path}` (or `displayName`) is required for the role action"
            )));
        };
        let template = match member(p, "templateId") {
            Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
            _ => None,
        };
        let display = match member(p, "displayName") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        return match (template, display) {
            (Some(t), _) => Ok(ActionRef::Known(Action::Role { template_id: t })),
            (None, Some(d)) => Ok(ActionRef::RoleNamed(d)),
            (None, None) => Err(bad(format!(
                "`{template_path}` (or `displayName`) must be a string for the role action"
            ))),
        };
    }
    let props = match member(o, "properties") {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(bad(format!("`{path}.properties` must be a JSON object"))),
    };
    let data = match props.and_then(|p| member(p, "isDataAction")) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(bad(format!(
                "`{path}.properties.isDataAction` must be a boolean"
            )));
        }
    };
    if !permissions::is_operation(name) {
        return Ok(ActionRef::Unknown(name.to_string()));
    }
    Ok(ActionRef::Known(Action::Operation {
        name: name.to_string(),
        plane: if data { Plane::Data } else { Plane::Control },
    }))
}

/// `context.time` (§3.4, §4.4): the instant to decide at, within 90 days before and 366
/// days after `now`.
fn parse_time(
    context: Option<&Map<String, Value>>,
    path: &str,
    now: Timestamp,
) -> Result<Timestamp> {
    let Some(v) = context.and_then(|c| member(c, "time")) else {
        return Ok(now);
    };
    let time_path = format!("{path}.time");
    let Value::String(text) = v else {
        return Err(bad(format!(
            "`{time_path}` must be an RFC 3339 date-time string"
        )));
    };
    let at = parse_instant(text).ok_or_else(|| {
        bad(format!(
            "`{time_path}` `{text}` is not an RFC 3339 date-time"
        ))
    })?;
    let earliest = now - SignedDuration::from_hours(90 * 24);
    let latest = now + SignedDuration::from_hours(366 * 24);
    if at < earliest || at > latest {
        return Err(bad(format!(
            "`{time_path}` must lie within 90 days before and 366 days after now"
        )));
    }
    Ok(at)
}

/// RFC 3339, also without seconds (`1985-10-26T01:22-07:00`) or without an offset (UTC).
fn parse_instant(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Some(ts);
    }
    // Without seconds: insert `:00` after an ASCII `HH:MM`.
    if let Some(pos) = t.find('T') {
        let (date, rest) = t.split_at(pos + 1);
        if let (Some(hhmm), Some(tail)) = (rest.get(..5), rest.get(5..))
            && hhmm.is_ascii()
            && !tail.starts_with(|c: char| c.is_ascii_digit() || c == ':')
        {
            let widened = format!("{date}{hhmm}:00{tail}");
            if let Ok(ts) = widened.parse::<Timestamp>() {
                return Some(ts);
            }
        }
    }
    let civil = t.parse::<jiff::civil::DateTime>().ok()?;
    civil
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// A subject resolved in the directory, or why not (§3.1).
#[derive(Clone)]
enum ResolvedSubject {
    Found(Subject),
    Unknown,
    Disabled(Subject),
}

fn subject_kind(kind: &str) -> Option<SubjectKind> {
    match kind.to_ascii_lowercase().as_str() {
        "user" => Some(SubjectKind::User),
        "group" => Some(SubjectKind::Group),
        "serviceprincipal" => Some(SubjectKind::ServicePrincipal),
        _ => None,
    }
}

fn kind_name(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::User => "user",
        SubjectKind::Group => "group",
        SubjectKind::ServicePrincipal => "servicePrincipal",
    }
}

/// Looks a subject up by id (case-insensitively), then `externalId` (exactly), then, for
/// users and service principals, `userName` (case-insensitively); the first step that finds
/// one of the asked type wins.
fn resolve_subject(tx: &mut dyn ReadTx, lookup: Lookup, s: &SubjectRef) -> Result<ResolvedSubject> {
    let Some(kind) = subject_kind(&s.kind) else {
        return Ok(ResolvedSubject::Unknown);
    };
    // Each step runs only when the ones before found nothing of the asked kind.
    let mut found: Option<Subject> = None;
    if let Some(s1) = lookup.subject(tx, &s.id.to_ascii_lowercase())?
        && s1.id.eq_ignore_ascii_case(&s.id)
        && s1.kind == kind
    {
        found = Some(s1);
    }
    if found.is_none()
        && let Some(s2) = lookup.subject(tx, &s.id)?
        && (s2.id == s.id || s2.external_id.as_deref() == Some(s.id.as_str()))
        && s2.kind == kind
    {
        found = Some(s2);
    }
    if found.is_none() && kind != SubjectKind::Group {
        found = rolegate_core::scim::users_named(tx, &s.id, 2)?
            .into_iter()
            .find(|c| c.kind == kind);
    }
    let Some(found) = found else {
        return Ok(ResolvedSubject::Unknown);
    };
    if !found.active && kind != SubjectKind::Group {
        return Ok(ResolvedSubject::Disabled(found));
    }
    Ok(ResolvedSubject::Found(found))
}

/// The registered resource a decision is computed at (§3.2), and whether the request named
/// something below it.
#[derive(Clone)]
struct Anchor {
    resource: Resource,
    below: bool,
}

fn resolve_resource(
    tx: &mut dyn ReadTx,
    lookup: Lookup,
    r: &ResourceRef,
) -> Result<Option<Anchor>> {
    if !r.kind.eq_ignore_ascii_case("azureResource") {
        return Ok(None);
    }
    let id = r.id.trim();
    if !id.starts_with('/') {
        return Ok(lookup.resource(tx, id)?.map(|resource| Anchor {
            resource,
            below: false,
        }));
    }
    let Ok(arm) = ArmId::parse(id.trim_end_matches('/')) else {
        return Ok(None);
    };
    if let Some(resource) = tx.resource_by_external_key(&arm.key())? {
        return Ok(Some(Anchor {
            resource,
            below: false,
        }));
    }
    for ancestor in arm.ancestors() {
        if let Some(resource) = tx.resource_by_external_key(&ancestor.key())? {
            return Ok(Some(Anchor {
                resource,
                below: true,
            }));
        }
    }
    Ok(None)
}

/// Who is asking (§9).
#[derive(Debug, Clone)]
pub enum Asker {
    /// A tenant administrator or a listed PEP client: may ask about anyone.
    Privileged,
    /// A directory subject: may ask about itself.
    Subject(Caller),
}

impl axum::extract::FromRequestParts<Arc<AppState>> for Asker {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> std::result::Result<Self, Self::Rejection> {
        asker(&parts.headers, state).await
    }
}

/// Authenticates the caller of an AuthZEN route: a listed PEP client (who need not be in
/// the directory), else a signed-in subject (tenant administrators included).
async fn asker(headers: &HeaderMap, state: &Arc<AppState>) -> std::result::Result<Asker, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let claims = state.auth.verify(header).await?;
    let token_subject = claims.subject().to_string();
    let subject = state.token_subject(&token_subject).await?;
    if state.is_authzen_client(&token_subject, subject.as_ref().map(|s| s.id.as_str())) {
        return Ok(Asker::Privileged);
    }
    state.rate_limits.check_subject(&token_subject)?;
    let token = rolegate_core::visibility::TokenIdentity {
        subject: &token_subject,
        name: claims.name.as_deref(),
        mfa: claims.mfa(),
    };
    let caller =
        rolegate_core::visibility::sign_in(&token, subject, |id| state.auth.is_admin([id]))?;
    Ok(if caller.is_tenant_admin {
        Asker::Privileged
    } else {
        Asker::Subject(caller)
    })
}

/// One evaluation's items before defaults: (subject, resource, action, context) values.
fn question(
    item: &Map<String, Value>,
    defaults: &Map<String, Value>,
    path: &str,
    now: Timestamp,
) -> Result<Question> {
    let pick = |name: &str| member(item, name).or_else(|| member(defaults, name));
    let named = |name: &str| {
        if member(item, name).is_none() && member(defaults, name).is_some() || path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    let context_path = named("context");
    let context = object(pick("context"), &context_path)?;
    let at = parse_time(context, &context_path, now)?;
    Ok(Question {
        subject: parse_subject(pick("subject"), &named("subject"))?,
        resource: parse_resource(pick("resource"), &named("resource"))?,
        action: parse_action(pick("action"), &named("action"))?,
        at,
        past: at < now,
    })
}

/// A question with its subject and resource resolved.
struct Resolved {
    question: Question,
    subject: Rc<ResolvedSubject>,
    anchor: Option<Rc<Anchor>>,
    action: ActionRef,
}

fn resolve(tx: &mut dyn ReadTx, lookup: Lookup, q: Question) -> Result<Resolved> {
    Resolutions::new(lookup).resolve(tx, q)
}

/// Subjects and resources already resolved in one batch (items often share them), by
/// type, then id.
struct Resolutions<'a> {
    lookup: Lookup<'a>,
    subjects: HashMap<String, HashMap<String, Rc<ResolvedSubject>>>,
    resources: HashMap<String, HashMap<String, Option<Rc<Anchor>>>>,
}

impl<'a> Resolutions<'a> {
    fn new(lookup: Lookup<'a>) -> Self {
        Self {
            lookup,
            subjects: HashMap::new(),
            resources: HashMap::new(),
        }
    }

    fn resolve(&mut self, tx: &mut dyn ReadTx, q: Question) -> Result<Resolved> {
        let (kind, id) = (&q.subject.kind, &q.subject.id);
        let subject = match self.subjects.get(kind).and_then(|m| m.get(id)) {
            Some(s) => s.clone(),
            None => {
                let s = Rc::new(resolve_subject(tx, self.lookup, &q.subject)?);
                self.subjects
                    .entry(kind.clone())
                    .or_default()
                    .insert(id.clone(), s.clone());
                s
            }
        };
        let (kind, id) = (&q.resource.kind, &q.resource.id);
        let anchor = match self.resources.get(kind).and_then(|m| m.get(id)) {
            Some(a) => a.clone(),
            None => {
                let a = resolve_resource(tx, self.lookup, &q.resource)?.map(Rc::new);
                self.resources
                    .entry(kind.clone())
                    .or_default()
                    .insert(id.clone(), a.clone());
                a
            }
        };
        resolve_with(tx, q, subject, anchor)
    }
}

fn resolve_with(
    tx: &mut dyn ReadTx,
    q: Question,
    subject: Rc<ResolvedSubject>,
    anchor: Option<Rc<Anchor>>,
) -> Result<Resolved> {
    // A role named by display name is looked for among the anchor's role definitions.
    let action = match (&q.action, &anchor) {
        (ActionRef::RoleNamed(name), Some(a)) => {
            let found = rolegate_core::role::BUILT_IN_ROLES
                .iter()
                .find(|r| r.display_name.eq_ignore_ascii_case(name))
                .map(|r| r.template_id.to_string());
            let found = match found {
                Some(t) => tx
                    .role_definition_by_template(&a.resource.id, &t)?
                    .map(|d| d.template_id.to_ascii_lowercase()),
                None => None,
            };
            match found {
                Some(template_id) => ActionRef::Known(Action::Role { template_id }),
                None => ActionRef::Unknown(format!("role {name}")),
            }
        }
        (other, _) => other.clone(),
    };
    Ok(Resolved {
        question: q,
        subject,
        anchor,
        action,
    })
}

/// Whether `asker` may ask about `r` (§9): privileged callers about anyone, a subject
/// about itself only.
fn may_ask(asker: &Asker, r: &Resolved) -> bool {
    match (asker, &*r.subject) {
        (Asker::Privileged, _) => true,
        (Asker::Subject(c), ResolvedSubject::Found(s) | ResolvedSubject::Disabled(s)) => {
            s.id == c.subject_id
        }
        (Asker::Subject(_), ResolvedSubject::Unknown) => false,
    }
}

fn instant(t: Timestamp) -> String {
    rolegate_core::schedule::format_datetime(t)
}

/// Names read while rendering one response.
struct Names<'a> {
    tx: &'a mut dyn ReadTx,
    lookup: Lookup<'a>,
    roles: HashMap<String, Option<String>>,
    resources: HashMap<String, Option<Resource>>,
    definitions: HashMap<(String, String), Option<String>>,
}

impl<'a> Names<'a> {
    fn new(tx: &'a mut dyn ReadTx, lookup: Lookup<'a>) -> Self {
        Self {
            tx,
            lookup,
            roles: HashMap::new(),
            resources: HashMap::new(),
            definitions: HashMap::new(),
        }
    }

    fn role_name(&mut self, id: &str) -> Result<String> {
        if !self.roles.contains_key(id) {
            let name = self
                .lookup
                .role_definition(self.tx, id)?
                .map(|d| d.display_name);
            self.roles.insert(id.to_string(), name);
        }
        Ok(self.roles.get(id).cloned().flatten().unwrap_or_default())
    }

    fn resource(&mut self, id: &str) -> Result<Option<&Resource>> {
        if !self.resources.contains_key(id) {
            let r = self.lookup.resource(self.tx, id)?;
            self.resources.insert(id.to_string(), r);
        }
        Ok(self.resources.get(id).and_then(Option::as_ref))
    }

    /// The name of a holding's role: a built-in role's comes with its permissions, others
    /// are read.
    fn role_display(&mut self, h: &Holding) -> Result<String> {
        match h
            .template_id
            .as_deref()
            .and_then(rolegate_core::permissions::built_in)
        {
            Some(p) => Ok(p.display_name.clone()),
            None => self.role_name(&h.role_definition_id),
        }
    }

    /// The id of the role definition with `template_id` at `resource_id`.
    fn definition_at(&mut self, resource_id: &str, template_id: &str) -> Result<Option<String>> {
        let key = (resource_id.to_string(), template_id.to_string());
        if !self.definitions.contains_key(&key) {
            let d = self
                .tx
                .role_definition_by_template(resource_id, template_id)?
                .map(|d| d.id);
            self.definitions.insert(key.clone(), d);
        }
        Ok(self.definitions.get(&key).cloned().flatten())
    }

    /// A Grant (`grant`) or Eligibility object of §5.3: only a grant names its state and
    /// the eligibility it activates.
    fn assignment<'h>(
        &mut self,
        h: &'h Holding<'h>,
        subject: &Subject,
        below: bool,
        grant: bool,
    ) -> Result<AssignmentView<'h>> {
        let member_type = if h.distance > 0 || below {
            "Inherited"
        } else if h.holder_id != subject.id {
            "Group"
        } else {
            "Direct"
        };
        Ok(AssignmentView {
            activate: None,
            assignment_id: &h.assignment_id,
            assignment_state: grant.then(|| h.state.as_str()),
            end_date_time: h.end.map(instant),
            linked_eligible_role_assignment_id: if grant {
                h.linked_eligible_id.as_deref()
            } else {
                None
            },
            member_type,
            resource_id: &h.resource_id,
            role_definition_id: &h.role_definition_id,
            role_name: self.role_display(h)?,
            scope: self
                .resource(&h.resource_id)?
                .map(|r| r.external_id.clone()),
            start_date_time: instant(h.start),
            subject_id: &h.holder_id,
            template_id: h.template_id.as_deref(),
        })
    }
}

/// A Grant or Eligibility object of §5.3, written straight to the response. Members are in
/// alphabetical order, as the rest of the API writes them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentView<'h> {
    #[serde(skip_serializing_if = "Option::is_none")]
    activate: Option<Activate<'h>>,
    assignment_id: &'h str,
    #[serde(skip_serializing_if = "Option::is_none")]
    assignment_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    linked_eligible_role_assignment_id: Option<&'h str>,
    member_type: &'static str,
    resource_id: &'h str,
    role_definition_id: &'h str,
    role_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    start_date_time: String,
    subject_id: &'h str,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_id: Option<&'h str>,
}

/// How to activate an eligibility (§5.3): the request a client sends.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Activate<'h> {
    linked_eligible_role_assignment_id: &'h str,
    resource_id: &'h str,
    role_definition_id: String,
}

/// A Decision object (§5.2).
#[derive(serde::Serialize)]
struct Decision<'h> {
    context: DecisionContext<'h>,
    decision: bool,
}

/// A decision's context (§5.3).
#[derive(serde::Serialize)]
struct DecisionContext<'h> {
    #[serde(skip_serializing_if = "Option::is_none")]
    eligible: Option<Vec<AssignmentView<'h>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<DecisionError>,
    evaluated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_change_at: Option<String>,
    reason_admin: ReasonAdmin<'h>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_user: Option<Message>,
}

/// Why, for administrators (§5.3).
#[derive(serde::Serialize)]
struct ReasonAdmin<'h> {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    grants: Option<Vec<AssignmentView<'h>>>,
    message: String,
}

/// A message.
#[derive(serde::Serialize)]
struct Message {
    message: String,
}

/// What kept a question from being evaluated (§5.3).
#[derive(serde::Serialize)]
struct DecisionError {
    message: String,
    status: u16,
}

fn deny(
    code: &'static str,
    message: String,
    user: &str,
    error: Option<u16>,
    at: Timestamp,
) -> Decision<'static> {
    Decision {
        decision: false,
        context: DecisionContext {
            eligible: None,
            error: error.map(|status| DecisionError {
                message: message.clone(),
                status,
            }),
            evaluated_at: instant(at),
            next_change_at: None,
            reason_admin: ReasonAdmin {
                code,
                grants: None,
                message,
            },
            reason_user: Some(Message {
                message: user.to_string(),
            }),
        },
    }
}

/// Decides one resolved question for `endpoint`, counts it in `/metrics`, and writes its
/// Decision object (§5.2, §5.3) to `out`.
fn decide(
    state: &AppState,
    names: &mut Names<'_>,
    r: &Resolved,
    endpoint: AuthzenEndpoint,
    out: &mut Vec<u8>,
) -> Result<bool> {
    let permitted = decide_one(state, names, r, out)?;
    crate::metrics::record_authzen(endpoint, Some(permitted));
    Ok(permitted)
}

fn write_decision(out: &mut Vec<u8>, d: &Decision<'_>) -> Result<bool> {
    serde_json::to_writer(&mut *out, d)
        .map_err(|e| DomainError::internal(format!("writing a decision: {e}")))?;
    Ok(d.decision)
}

/// The granted and eligible holdings of an evaluation, kept beyond the index's lock.
struct Decided {
    granted: Vec<Holding<'static>>,
    eligible: Vec<Holding<'static>>,
    next_change_at: Option<Timestamp>,
}

impl From<Evaluation<'_>> for Decided {
    fn from(e: Evaluation<'_>) -> Self {
        let owned = |list: Vec<&Holding<'_>>| {
            list.into_iter()
                .map(|h| h.clone().into_owned())
                .collect::<Vec<_>>()
        };
        Self {
            granted: owned(e.granted),
            eligible: owned(e.eligible),
            next_change_at: e.next_change_at,
        }
    }
}

/// Decides one resolved question and writes its Decision object (§5.2, §5.3).
fn decide_one(
    state: &AppState,
    names: &mut Names<'_>,
    r: &Resolved,
    out: &mut Vec<u8>,
) -> Result<bool> {
    let q = &r.question;
    let at = q.at;
    let mut refuse = |code, message, user: &str, status| {
        write_decision(&mut *out, &deny(code, message, user, status, at))
    };
    let subject = match &*r.subject {
        ResolvedSubject::Found(s) => s,
        ResolvedSubject::Unknown => {
            let m = format!("no {} `{}` in the directory", q.subject.kind, q.subject.id);
            return refuse(
                "unknown_subject",
                m,
                "You are not known to Rolegate.",
                Some(404),
            );
        }
        ResolvedSubject::Disabled(s) => {
            let m = format!(
                "{} `{}` is disabled in the directory",
                kind_name(s.kind),
                s.id
            );
            return refuse("subject_disabled", m, "Your account is disabled.", None);
        }
    };
    let Some(anchor) = r.anchor.as_deref() else {
        let m = format!(
            "`{}` is not a registered resource or below one",
            q.resource.id
        );
        let user = "This resource is not managed by Rolegate.";
        return refuse("unknown_resource", m, user, Some(404));
    };
    let action = match &r.action {
        ActionRef::Known(a) => a,
        ActionRef::Unknown(name) | ActionRef::RoleNamed(name) => {
            let m =
                format!("`{name}` is not an action Rolegate knows (an Azure operation or `role`)");
            return refuse("unknown_action", m, "This action is not known.", Some(400));
        }
    };
    let index = || {
        state
            .access
            .read()
            .map_err(|_| DomainError::internal("access index lock poisoned"))
    };
    let decided = if q.past {
        // In the past, what history holds counts too, until it stopped counting (§4.4).
        // The live holdings are read first, so an assignment moving to history in between
        // is seen at least once.
        let (mut holdings, holders, chain) = {
            let ix = index()?;
            let live: Vec<Holding<'static>> = ix
                .holdings(&subject.id, &anchor.resource.id)
                .into_iter()
                .map(Holding::into_owned)
                .collect();
            (
                live,
                ix.holders(&subject.id),
                ix.ancestors_or_self(&anchor.resource.id),
            )
        };
        let past = names.tx.history_of(Some(&holders), Some(&chain), at)?;
        let ix = index()?;
        holdings.extend(
            past.iter()
                .filter_map(|a| ix.holding_of(a, &anchor.resource.id))
                .map(Holding::into_owned),
        );
        Decided::from(access_decision::evaluate(&holdings, action, at))
    } else {
        let ix = index()?;
        let holdings = ix.holdings(&subject.id, &anchor.resource.id);
        Decided::from(access_decision::evaluate(&holdings, action, at))
    };
    let asked = match action {
        Action::Operation { name, .. } => name.clone(),
        Action::Role { template_id } => format!("role {template_id}"),
    };
    let next_change_at = decided.next_change_at.map(instant);
    let permitted = !decided.granted.is_empty();
    let context = if permitted {
        let mut grants = Vec::with_capacity(decided.granted.len());
        for h in &decided.granted {
            grants.push(names.assignment(h, subject, anchor.below, true)?);
        }
        DecisionContext {
            eligible: None,
            error: None,
            evaluated_at: instant(at),
            next_change_at,
            reason_admin: ReasonAdmin {
                code: "granted",
                message: format!("{} active assignment(s) grant {asked}", grants.len()),
                grants: Some(grants),
            },
            reason_user: None,
        }
    } else {
        let mut eligible = Vec::with_capacity(decided.eligible.len());
        let mut first: Option<(String, String)> = None;
        for h in &decided.eligible {
            let mut o = names.assignment(h, subject, anchor.below, false)?;
            if first.is_none() {
                let role = o.role_name.clone();
                let scope = names
                    .resource(&h.resource_id)?
                    .map(|r| r.display_name.clone())
                    .unwrap_or_default();
                first = Some((role, scope));
            }
            if subject.kind != SubjectKind::Group
                && let Some(t) = &h.template_id
                && let Some(definition) = names.definition_at(&anchor.resource.id, t)?
            {
                o.activate = Some(Activate {
                    linked_eligible_role_assignment_id: &h.assignment_id,
                    resource_id: &anchor.resource.id,
                    role_definition_id: definition,
                });
            }
            eligible.push(o);
        }
        let user = match first {
            Some((role, scope)) => format!(
                "You are eligible for {role} on {scope}; activate it to perform this action."
            ),
            None => "You do not hold a role that allows this action on this resource.".to_string(),
        };
        DecisionContext {
            eligible: Some(eligible),
            error: None,
            evaluated_at: instant(at),
            next_change_at,
            reason_admin: ReasonAdmin {
                code: "not_granted",
                grants: None,
                message: format!(
                    "no active assignment of {} {} on {} or its ancestors grants {asked}",
                    kind_name(subject.kind),
                    subject.id,
                    anchor.resource.external_id
                ),
            },
            reason_user: Some(Message { message: user }),
        }
    };
    write_decision(
        out,
        &Decision {
            context,
            decision: permitted,
        },
    )
}

/// How a batch stops early (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

fn semantic(body: &Map<String, Value>) -> Result<Semantic> {
    let Some(options) = object(member(body, "options"), "options")? else {
        return Ok(Semantic::ExecuteAll);
    };
    match member(options, "evaluations_semantic") {
        None => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "execute_all" => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) if s == "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
        Some(Value::String(s)) if s == "permit_on_first_permit" => {
            Ok(Semantic::PermitOnFirstPermit)
        }
        Some(_) => Err(bad(
            "`options.evaluations_semantic` must be `execute_all`, `deny_on_first_deny` or `permit_on_first_permit`",
        )),
    }
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /access/v1/evaluation` (§5).
pub async fn evaluation(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let answer = s
        .read(move |tx, st| {
            let q = question(&Map::new(), &body, "", st.clock.now())?;
            let r = resolve(tx, st.lookup(), q)?;
            if !may_ask(&asker, &r) {
                return Err(DomainError::denied(
                    "you may ask only about yourself (tenant administrators and listed enforcement points may ask about anyone)",
                ));
            }
            let mut names = Names::new(tx, st.lookup());
            let mut out = Vec::new();
            decide(st, &mut names, &r, AuthzenEndpoint::Evaluation, &mut out)?;
            Ok(out)
        })
        .await?;
    Ok(json_response(answer))
}

/// `POST /access/v1/evaluations` (§6): defaults, the three semantics, at most 1000 items.
pub async fn evaluations(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let answer = s
        .read(move |tx, st| {
            let now = st.clock.now();
            let semantic = semantic(&body)?;
            let items: Vec<&Map<String, Value>> = match member(&body, "evaluations") {
                None => Vec::new(),
                Some(Value::Array(list)) => {
                    if list.len() > MAX_ITEMS {
                        return Err(bad(format!(
                            "`evaluations` holds more than {MAX_ITEMS} items"
                        )));
                    }
                    let mut out = Vec::with_capacity(list.len());
                    for (i, v) in list.iter().enumerate() {
                        match v {
                            Value::Object(m) => out.push(m),
                            _ => {
                                return Err(bad(format!(
                                    "`evaluations[{i}]` must be a JSON object"
                                )));
                            }
                        }
                    }
                    out
                }
                Some(_) => return Err(bad("`evaluations` must be an array")),
            };
            if items.is_empty() {
                let r = resolve(tx, st.lookup(), question(&Map::new(), &body, "", now)?)?;
                if !may_ask(&asker, &r) {
                    return Err(DomainError::denied("you may ask only about yourself"));
                }
                let mut names = Names::new(tx, st.lookup());
                let mut out = Vec::new();
                decide(st, &mut names, &r, AuthzenEndpoint::Evaluations, &mut out)?;
                return Ok(out);
            }
            let mut resolved = Vec::with_capacity(items.len());
            let mut known = Resolutions::new(st.lookup());
            for (i, item) in items.iter().enumerate() {
                let q = question(item, &body, &format!("evaluations[{i}]"), now)?;
                resolved.push(known.resolve(tx, q)?);
            }
            // Authorization of every item before any is evaluated (§6.2).
            if resolved.iter().any(|r| !may_ask(&asker, r)) {
                return Err(DomainError::denied(
                    "you may ask only about yourself, in every item",
                ));
            }
            let mut names = Names::new(tx, st.lookup());
            let mut out = Vec::with_capacity(1024 * resolved.len());
            out.extend_from_slice(b"{\"evaluations\":[");
            for (i, r) in resolved.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let permitted = decide(st, &mut names, r, AuthzenEndpoint::Evaluations, &mut out)?;
                match semantic {
                    Semantic::DenyOnFirstDeny if !permitted => break,
                    Semantic::PermitOnFirstPermit if permitted => break,
                    _ => {}
                }
            }
            out.extend_from_slice(b"]}");
            Ok(out)
        })
        .await?;
    Ok(json_response(answer))
}

/// `GET /.well-known/authzen-configuration` (§8): no authentication.
pub async fn configuration(State(s): State<Arc<AppState>>) -> Response {
    let base = s.public_url.trim_end_matches('/').to_string();
    let doc = json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        axum::Json(doc),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_with_or_without_seconds_or_offset() {
        let p = |s| parse_instant(s).map(|t| t.to_string());
        assert_eq!(
            p("2026-12-04T10:00:00Z").as_deref(),
            Some("2026-12-04T10:00:00Z")
        );
        assert_eq!(
            p("1985-10-26T01:22-07:00").as_deref(),
            Some("1985-10-26T08:22:00Z")
        );
        assert_eq!(
            p("2026-12-04T10:00:00").as_deref(),
            Some("2026-12-04T10:00:00Z")
        );
        assert_eq!(
            p("2026-12-04T10:00:00.5+01:00").as_deref(),
            Some("2026-12-04T09:00:00.5Z")
        );
        assert!(p("yesterday").is_none());
        // Multi-byte characters where the minutes would end never panic.
        assert!(p("T123€").is_none());
        assert!(p("2026-12-04T1€:00").is_none());
        assert!(p("2026-12-04T10:0€").is_none());
        assert!(p("").is_none());
    }

    #[test]
    fn actions_read_as_the_contract_says() {
        let a = |v: Value| parse_action(Some(&v), "action");
        assert_eq!(
            a(json!({"name": "Microsoft.Compute/virtualMachines/read"})),
            Ok(ActionRef::Known(Action::Operation {
                name: "Microsoft.Compute/virtualMachines/read".into(),
                plane: Plane::Control
            }))
        );
        assert!(matches!(
            a(json!({"name": "x/y", "properties": {"isDataAction": true}})),
            Ok(ActionRef::Known(Action::Operation {
                plane: Plane::Data,
                ..
            }))
        ));
        assert!(a(json!({"name": "x/y", "properties": {"isDataAction": "yes"}})).is_err());
        assert_eq!(
            a(json!({"name": "can_read"})),
            Ok(ActionRef::Unknown("can_read".into()))
        );
        assert_eq!(
            a(json!({"name": "Microsoft.Compute/*"})),
            Ok(ActionRef::Unknown("Microsoft.Compute/*".into()))
        );
        assert!(a(json!({"name": "role"})).is_err());
        let e = a(json!({"name": "role", "properties": "x"})).expect_err("not an object");
        assert!(
            e.message.contains("action.properties.templateId"),
            "{}",
            e.message
        );
        assert!(a(json!({"name": "role", "properties": {"templateId": 5}})).is_err());
        assert_eq!(
            a(json!({"name": "role", "properties": {"templateId": "ABC", "displayName": "Owner"}})),
            Ok(ActionRef::Known(Action::Role {
                template_id: "abc".into()
            }))
        );
        assert_eq!(
            a(json!({"name": "role", "properties": {"displayName": "Owner"}})),
            Ok(ActionRef::RoleNamed("Owner".into()))
        );
        assert!(a(json!({"name": ""})).is_err());
        assert!(a(json!({})).is_err());
        assert!(a(json!("x")).is_err());
    }
}
