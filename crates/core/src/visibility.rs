//! Who may see what, and who is signed in: the read rules of decisions.md §7 (resources,
//! role definitions and settings, assignments, requests) and §11 (the audit log), and the
//! sign-in rules of §2 and §13. Every façade (the Graph routes, and the portal, ARM and
//! AuthZEN to come) resolves its caller with [`sign_in`], loads one item with
//! [`load_item`] and lists with [`list`] under a [`read_scope`], then renders what comes
//! back: it decides nothing about visibility itself.

use crate::access::{AccessView, Caller};
use crate::assignment::{MemberType, RoleAssignment};
use crate::audit::AuditEntry;
use crate::directory::{Subject, SubjectKind};
use crate::error::{DomainError, ErrorCode, Result};
use crate::notification::Subscription;
use crate::odata::{self, EntityFields, Filter, Literal, Operand};
use crate::policy::RuleCollection;
use crate::query::{self, ListQuery, Page, Restriction};
use crate::request::{self, RequestType, RoleAssignmentRequest};
use crate::resource::Resource;
use crate::role::{RoleDefinition, RoleSetting};
use crate::store::ReadTx;
use jiff::Timestamp;

/// What a verified token says about its bearer.
#[derive(Debug, Clone, Copy)]
pub struct TokenIdentity<'a> {
    /// The token's subject (`sub`, or `oid` where the issuer sends it).
    pub subject: &'a str,
    /// The token's display name claim, if any.
    pub name: Option<&'a str>,
    /// Whether the token shows multi-factor authentication.
    pub mfa: bool,
}

/// Resolves who calls (decisions.md §2, §13). `subject` is the directory subject the token's
/// subject names (by id or external id), if any; `is_administrator` says whether an id is on
/// the server's administrator list. Administrators are matched by the token's subject or
/// the subject's server-assigned id, never by its external id (a SCIM client can change
/// that), and need not be in the directory. A group cannot sign in; a disabled account is
/// refused unless it is an administrator's; anyone else must be in the directory.
pub fn sign_in(
    token: &TokenIdentity,
    subject: Option<Subject>,
    is_administrator: impl Fn(&str) -> bool,
) -> Result<Caller> {
    if token.subject.contains('\0') {
        return Err(DomainError::denied(
            "the token's subject holds a NUL character and names nobody",
        ));
    }
    let is_tenant_admin = is_administrator(token.subject)
        || subject.as_ref().is_some_and(|s| is_administrator(&s.id));
    match subject {
        Some(s) if s.kind == SubjectKind::Group => Err(DomainError::denied(
            "a group cannot sign in; use a member's token",
        )),
        Some(s) if s.active || is_tenant_admin => Ok(Caller {
            subject_id: s.id,
            display_name: s.display_name,
            principal_name: s.principal_name,
            is_tenant_admin,
            mfa: token.mfa,
        }),
        Some(_) => Err(DomainError::denied("the caller's account is disabled")),
        None if is_tenant_admin => Ok(Caller {
            subject_id: token.subject.to_string(),
            display_name: token.name.unwrap_or(token.subject).to_string(),
            principal_name: None,
            is_tenant_admin,
            mfa: token.mfa,
        }),
        None => Err(DomainError::denied(format!(
            "the token's subject `{}` is not in the directory",
            token.subject
        ))),
    }
}

/// The id (and display name) audit records give the SCIM provisioning client.
pub const PROVISIONING_CALLER: &str = "scim-provisioning";

/// The caller a request bearing the SCIM provisioning secret (`--scim-token-file`) acts
/// as, on `/scim` only (decisions.md §3): a tenant administrator of the directory with no
/// directory subject of its own.
pub fn provisioning_client() -> Caller {
    Caller {
        subject_id: PROVISIONING_CALLER.into(),
        display_name: "SCIM provisioning client".into(),
        principal_name: None,
        is_tenant_admin: true,
        mfa: false,
    }
}

/// Whether `caller` may use the SCIM directory API (decisions.md §3): tenant administrators
/// only (the provisioning client signs in as one).
pub fn may_provision(caller: &Caller) -> Result<()> {
    if caller.is_tenant_admin {
        Ok(())
    } else {
        Err(DomainError::denied(
            "only tenant administrators and the provisioning client may call /scim",
        ))
    }
}

/// Whether `viewer` sees a subscription's `clientState`: it keys the HMAC of every
/// delivery, so only its creator and tenant administrators do; an R3 holder who may manage
/// someone else's subscription must not be able to forge its deliveries.
pub fn sees_client_state(viewer: &Caller, s: &Subscription) -> bool {
    viewer.is_tenant_admin || viewer.subject_id == s.creator_id
}

/// The collections a caller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// Resources.
    Resources,
    /// Role definitions.
    RoleDefinitions,
    /// Role settings.
    RoleSettings,
    /// Role assignments (eligible and active).
    RoleAssignments,
    /// Role assignment requests.
    RoleAssignmentRequests,
    /// The audit log.
    DirectoryAudits,
}

impl Collection {
    /// The fields a filter or an ordering may name.
    pub fn fields(self) -> &'static EntityFields {
        match self {
            Self::Resources => &query::RESOURCE_FIELDS,
            Self::RoleDefinitions => &query::ROLE_DEFINITION_FIELDS,
            Self::RoleSettings => &query::ROLE_SETTING_FIELDS,
            Self::RoleAssignments => &query::ROLE_ASSIGNMENT_FIELDS,
            Self::RoleAssignmentRequests => &query::ROLE_ASSIGNMENT_REQUEST_FIELDS,
            Self::DirectoryAudits => &query::DIRECTORY_AUDIT_FIELDS,
        }
    }

    /// What one item is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Resources => "resource",
            Self::RoleDefinitions => "role definition",
            Self::RoleSettings => "role setting",
            Self::RoleAssignments => "role assignment",
            Self::RoleAssignmentRequests => "role assignment request",
            Self::DirectoryAudits => "audit record",
        }
    }

    /// The error for item `id` that does not exist (or that the caller may not know of).
    pub fn not_found(self, id: &str) -> DomainError {
        let code = match self {
            Self::Resources => ErrorCode::ResourceNotFound,
            Self::RoleDefinitions => ErrorCode::RoleDefinitionNotFound,
            Self::RoleSettings => ErrorCode::RoleSettingNotFound,
            Self::RoleAssignments => ErrorCode::RoleAssignmentNotFound,
            Self::RoleAssignmentRequests => ErrorCode::RoleAssignmentRequestNotFound,
            Self::DirectoryAudits => ErrorCode::NotFound,
        };
        DomainError::new(code, format!("{} `{id}` does not exist", self.noun()))
    }

    fn denied(self) -> DomainError {
        DomainError::denied(format!("the caller has no access to this {}", self.noun()))
    }
}

/// One item a caller may see, as loaded.
#[derive(Debug, Clone)]
pub enum Item {
    /// A resource.
    Resource(Resource),
    /// A role definition.
    RoleDefinition(RoleDefinition),
    /// A role setting.
    RoleSetting(RoleSetting),
    /// An assignment, with how the viewer holds it.
    Assignment(RoleAssignment, MemberType),
    /// A request.
    Request(RoleAssignmentRequest),
    /// An audit record.
    AuditEntry(AuditEntry),
}

/// What a list is scoped to, and how assignment rows are shown to this viewer.
#[derive(Debug, Clone)]
pub struct ReadScope {
    /// Restrictions the store applies besides the filter.
    pub restrictions: Vec<Restriction>,
    /// The caller's filter, with "my" and "this resource" equalities widened to the groups
    /// and ancestors they stand for.
    pub filter: Option<Filter>,
    /// The resource whose assignments are listed (rows from ancestors are `Inherited`).
    viewed_resource: Option<String>,
    /// The subjects the listing is "for" (rows held through their groups are `Group`).
    viewers: Vec<String>,
}

impl ReadScope {
    /// How an assignment row of this listing is held (`memberType`).
    pub fn member_type(&self, a: &RoleAssignment) -> MemberType {
        if self
            .viewed_resource
            .as_deref()
            .is_some_and(|r| r != a.resource_id)
        {
            MemberType::Inherited
        } else if !self.viewers.is_empty() && !self.viewers.contains(&a.subject_id) {
            MemberType::Group
        } else {
            MemberType::Direct
        }
    }
}

fn in_list(path: &str, values: &[String]) -> Filter {
    Filter::In {
        operand: Operand::Property(path.split('/').map(str::to_string).collect()),
        values: values.iter().map(|v| Literal::String(v.clone())).collect(),
    }
}

const RESOURCE_PATHS: [&str; 3] = ["resourceid", "resource/id", "roledefinition/resource/id"];
const SUBJECT_PATHS: [&str; 2] = ["subjectid", "subject/id"];

/// `id` and the groups it belongs to, directly or through nesting.
fn with_groups(access: &dyn AccessView, id: &str) -> Vec<String> {
    let mut v = vec![id.to_string()];
    v.extend(access.groups_of(id));
    v
}

/// Works out the restrictions of a list (decisions.md §6, §7, §11): R1 on a named resource
/// (`rid`, or a resource equality of the filter), "mine" by subject, or everything the
/// caller can see; for assignments, the group and inheritance expansions behind
/// `memberType` and only rows current at `now`.
pub fn read_scope(
    coll: Collection,
    rid: Option<&str>,
    filter: Option<Filter>,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
) -> Result<ReadScope> {
    if coll == Collection::DirectoryAudits {
        return Ok(ReadScope {
            restrictions: audit_restriction(caller, access, now)?
                .into_iter()
                .collect(),
            filter,
            viewed_resource: None,
            viewers: Vec::new(),
        });
    }
    let equalities = filter
        .as_ref()
        .map(odata::top_level_equalities)
        .unwrap_or_default();
    let pinned_resource = rid.map(str::to_string).or_else(|| {
        let paths: &[&str] = if coll == Collection::Resources {
            &["id"]
        } else {
            &RESOURCE_PATHS
        };
        equalities
            .iter()
            .find(|(p, _)| paths.contains(&p.as_str()))
            .map(|(_, v)| v.clone())
    });
    let pinned_subject = equalities
        .iter()
        .find(|(p, _)| SUBJECT_PATHS.contains(&p.as_str()))
        .map(|(_, v)| v.clone());
    let mut scope = ReadScope {
        restrictions: Vec::new(),
        filter,
        viewed_resource: None,
        viewers: Vec::new(),
    };
    let visible = || Restriction::ResourceUnder(access.anchors(&caller.subject_id, now));
    if let Some(r) = &pinned_resource {
        may_read_resource(caller, access, r, now)?;
        if coll == Collection::RoleAssignments {
            let lineage = access.ancestors_or_self(r);
            scope
                .restrictions
                .push(Restriction::ResourceIn(lineage.clone()));
            scope.filter = scope.filter.map(|f| {
                odata::map_equalities(f, &mut |path, literal| {
                    (RESOURCE_PATHS.contains(&path) && literal == r.as_str())
                        .then(|| in_list("resourceId", &lineage))
                })
            });
            scope.viewed_resource = Some(r.clone());
        } else if let Some(rid) = rid {
            scope
                .restrictions
                .push(Restriction::ResourceIn(vec![rid.to_string()]));
        }
    } else {
        let mine = pinned_subject.as_deref() == Some(caller.subject_id.as_str());
        if !caller.is_tenant_admin && !mine {
            let me = || with_groups(access, &caller.subject_id);
            scope.restrictions.push(match coll {
                Collection::RoleAssignments => {
                    Restriction::AnyOf(vec![visible(), Restriction::SubjectIn(me())])
                }
                // Listed approvers also find the activations awaiting their decision.
                Collection::RoleAssignmentRequests => Restriction::AnyOf(vec![
                    visible(),
                    Restriction::SubjectIn(me()),
                    Restriction::AwaitingApproverIn(me()),
                ]),
                _ => visible(),
            });
        }
    }
    if coll == Collection::RoleAssignments {
        if let Some(s) = &pinned_subject {
            let holders = with_groups(access, s);
            scope.filter = scope.filter.map(|f| {
                odata::map_equalities(f, &mut |path, literal| {
                    (SUBJECT_PATHS.contains(&path) && literal == s.as_str())
                        .then(|| in_list("subjectId", &holders))
                })
            });
            scope.viewers.push(s.clone());
        }
        scope.restrictions.push(Restriction::CurrentAt(now));
    }
    Ok(scope)
}

/// Lists `coll` with `q` (built from a [`read_scope`]), assignment rows with their
/// `memberType` for this viewer.
pub fn list(
    tx: &mut dyn ReadTx,
    coll: Collection,
    q: &ListQuery,
    scope: &ReadScope,
) -> Result<Page<Item>> {
    Ok(match coll {
        Collection::Resources => tx.list_resources(q)?.map(Item::Resource),
        Collection::RoleDefinitions => tx.list_role_definitions(q)?.map(Item::RoleDefinition),
        Collection::RoleSettings => tx.list_role_settings(q)?.map(Item::RoleSetting),
        Collection::RoleAssignments => tx.list_assignments(q)?.map(|a| {
            let m = scope.member_type(&a);
            Item::Assignment(a, m)
        }),
        Collection::RoleAssignmentRequests => tx.list_requests(q)?.map(Item::Request),
        Collection::DirectoryAudits => tx.list_audit(q)?.map(Item::AuditEntry),
    })
}

/// R1 (decisions.md §7): `caller` may read resource `resource_id` and what is defined on it
/// (tenant administrators, and holders of any current assignment on it or an ancestor).
pub fn may_read_resource(
    caller: &Caller,
    access: &dyn AccessView,
    resource_id: &str,
    now: Timestamp,
) -> Result<()> {
    if caller.may_read(access, resource_id, now) {
        Ok(())
    } else {
        Err(DomainError::denied(format!(
            "the caller has no access to resource `{resource_id}`"
        )))
    }
}

/// Whether `caller` may follow navigation `nav` to resource `resource_id`: `parent` leads
/// to another resource, which needs R1 of its own (decisions.md §7); the other navigations
/// stay on what the caller could already read.
pub fn may_navigate_to_resource(
    caller: &Caller,
    access: &dyn AccessView,
    nav: &str,
    resource_id: &str,
    now: Timestamp,
) -> Result<()> {
    if nav.eq_ignore_ascii_case("parent") {
        may_read_resource(caller, access, resource_id, now)
    } else {
        Ok(())
    }
}

/// Resource `id` (`found`, as loaded), if the caller may read it (R1: decisions.md §7).
pub fn readable_resource(
    found: Option<Resource>,
    id: &str,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
) -> Result<Resource> {
    let r = found.ok_or_else(|| Collection::Resources.not_found(id))?;
    if caller.may_read(access, &r.id, now) {
        Ok(r)
    } else {
        Err(Collection::Resources.denied())
    }
}

/// Loads item `id` of `coll` if `caller` may read it, as seen through resource `rid` when
/// the item is addressed below a resource (an item of another resource is not found there).
pub fn load_item(
    tx: &mut dyn ReadTx,
    coll: Collection,
    id: &str,
    rid: Option<&str>,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
) -> Result<Item> {
    let nf = || coll.not_found(id);
    let check = |resource: &str| {
        if caller.may_read(access, resource, now) {
            Ok(())
        } else {
            Err(coll.denied())
        }
    };
    let under = |resource: &str| rid.is_none_or(|r| r == resource);
    match coll {
        Collection::Resources => {
            readable_resource(tx.resource(id)?, id, caller, access, now).map(Item::Resource)
        }
        Collection::RoleDefinitions => {
            let d = tx
                .role_definition(id)?
                .filter(|d| under(&d.resource_id))
                .ok_or_else(nf)?;
            check(&d.resource_id)?;
            Ok(Item::RoleDefinition(d))
        }
        Collection::RoleSettings => {
            let s = tx
                .role_setting(id)?
                .filter(|s| under(&s.resource_id))
                .ok_or_else(nf)?;
            check(&s.resource_id)?;
            Ok(Item::RoleSetting(s))
        }
        Collection::RoleAssignments => {
            let a = tx
                .assignment(id)?
                .filter(|a| a.is_current(now))
                .ok_or_else(nf)?;
            if let Some(r) = rid
                && !access.ancestors_or_self(r).contains(&a.resource_id)
            {
                return Err(nf());
            }
            let groups = access.groups_of(&caller.subject_id);
            let own = a.subject_id == caller.subject_id || groups.contains(&a.subject_id);
            if !own {
                check(rid.unwrap_or(&a.resource_id))?;
            }
            let member = if rid.is_some_and(|r| r != a.resource_id) {
                MemberType::Inherited
            } else if groups.contains(&a.subject_id) {
                MemberType::Group
            } else {
                MemberType::Direct
            };
            Ok(Item::Assignment(a, member))
        }
        Collection::RoleAssignmentRequests => {
            let r = tx
                .request(id)?
                .filter(|r| under(&r.resource_id))
                .ok_or_else(nf)?;
            let own = r.subject_id == caller.subject_id || r.requested_by == caller.subject_id;
            if !own
                && !caller.may_read(access, &r.resource_id, now)
                && !is_approver_of(tx, &caller.subject_id, access, &r)?
            {
                return Err(coll.denied());
            }
            Ok(Item::Request(r))
        }
        Collection::DirectoryAudits => {
            // Who may not read the log at all learns nothing about which ids exist.
            audit_restriction(caller, access, now)?;
            let e = tx.audit_entry(id)?.ok_or_else(nf)?;
            if !may_read_audit_entry(caller, access, e.resource_id.as_deref(), now) {
                return Err(coll.denied());
            }
            Ok(Item::AuditEntry(e))
        }
    }
}

/// Whether `caller_id` is a listed approver of the activation `r` (a listed user or a member
/// of a listed group of its role's ApprovalRule) or has already decided it. Approvers read
/// the requests they decide without any assignment on the resource (decisions.md §6; the
/// approval e-mail of §12 links to the request).
fn is_approver_of(
    tx: &mut dyn ReadTx,
    caller_id: &str,
    access: &dyn AccessView,
    r: &RoleAssignmentRequest,
) -> Result<bool> {
    if r.kind != RequestType::UserAdd {
        return Ok(false);
    }
    if tx
        .approvals(&r.id)?
        .iter()
        .any(|a| a.approver_id == caller_id)
    {
        return Ok(true);
    }
    let Some(setting) = tx.role_setting_of(&r.role_definition_id)? else {
        return Ok(false);
    };
    let policy = setting.rules.policy(RuleCollection::UserMember)?;
    Ok(request::decision::listed_approver(
        &policy,
        caller_id,
        &access.groups_of(caller_id),
    ))
}

/// The requests `caller` may decide now, oldest first (`$filter=asApprover()`; the
/// approvals inbox of the portal and the CLI), on resource `rid` only when given: awaiting
/// approval or an administrator's decision, not the caller's own, not yet decided by the
/// caller, and decidable by the caller under its role's rules
/// ([`crate::request::decision::may_decide`]).
pub fn awaiting_decision(
    tx: &mut dyn ReadTx,
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
    rid: Option<&str>,
) -> Result<Vec<RoleAssignmentRequest>> {
    let pending = odata::parse_filter(
        "status/subStatus eq 'PendingApproval' or status/subStatus eq 'PendingAdminDecision'",
    )?;
    let mut restrictions: Vec<Restriction> = rid
        .map(|r| Restriction::ResourceIn(vec![r.to_string()]))
        .into_iter()
        .collect();
    if !caller.is_tenant_admin {
        restrictions.push(Restriction::AnyOf(vec![
            Restriction::AwaitingApproverIn(with_groups(access, &caller.subject_id)),
            Restriction::ResourceUnder(administered_anchors(caller, access, now)),
        ]));
    }
    const PAGE: u32 = 500;
    // Requests of one role share its rules: each role's are read once.
    let mut policies: Vec<(String, Option<crate::policy::Policy>)> = Vec::new();
    let mut out = Vec::new();
    let mut skip = 0;
    loop {
        let page = tx.list_requests(&ListQuery {
            filter: Some(pending.clone()),
            restrictions: restrictions.clone(),
            orderby: Vec::new(),
            top: PAGE,
            skip,
            count: false,
        })?;
        for r in page.items {
            if request::decision::awaits_decision_by(&caller.subject_id, now, &r).is_err() {
                continue;
            }
            let known = policies
                .iter()
                .position(|(id, _)| *id == r.role_definition_id);
            let at = match known {
                Some(at) => at,
                None => {
                    let p = match tx.role_setting_of(&r.role_definition_id)? {
                        Some(s) => Some(s.rules.policy(RuleCollection::UserMember)?),
                        None => None,
                    };
                    policies.push((r.role_definition_id.clone(), p));
                    policies.len() - 1
                }
            };
            let decides = policies[at]
                .1
                .as_ref()
                .is_some_and(|p| request::decision::may_decide(caller, access, now, &r, p).is_ok());
            if decides
                && !tx
                    .approvals(&r.id)?
                    .iter()
                    .any(|a| a.approver_id == caller.subject_id)
            {
                out.push(r);
            }
        }
        if !page.more {
            return Ok(out);
        }
        skip = skip.saturating_add(PAGE);
    }
}

/// How a caller may act on a resource, as `governanceResource.permissions` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLevel {
    /// R3: may administer access.
    AdminReadWrite,
    /// R1: may read.
    UserRead,
    /// Neither.
    None,
}

/// The caller's [`AccessLevel`] on resource `resource_id` at `now`.
pub fn access_level(
    caller: &Caller,
    access: &dyn AccessView,
    resource_id: &str,
    now: Timestamp,
) -> AccessLevel {
    if caller.may_administer(access, resource_id, now) {
        AccessLevel::AdminReadWrite
    } else if caller.may_read(access, resource_id, now) {
        AccessLevel::UserRead
    } else {
        AccessLevel::None
    }
}

/// Which audit records `caller` may list (decisions.md §11): every record for tenant
/// administrators (`None`), the records about resources it administers (R3: active Owner or
/// User Access Administrator on the resource or an ancestor) for others. Anyone else is
/// refused with `403 Authorization_RequestDenied`.
pub fn audit_restriction(
    caller: &Caller,
    access: &dyn AccessView,
    now: Timestamp,
) -> Result<Option<Restriction>> {
    if caller.is_tenant_admin {
        return Ok(None);
    }
    let administered = administered_anchors(caller, access, now);
    if administered.is_empty() {
        return Err(DomainError::denied(
            "reading the audit log needs tenant administration or an active Owner or User Access Administrator assignment",
        ));
    }
    Ok(Some(Restriction::ResourceUnder(administered)))
}

/// The resources `caller` administers (R3) at the top: every resource it administers is at
/// or under one of them (the resource of each Owner or User Access Administrator grant).
fn administered_anchors(caller: &Caller, access: &dyn AccessView, now: Timestamp) -> Vec<String> {
    access
        .anchors(&caller.subject_id, now)
        .into_iter()
        .filter(|r| access.administers(&caller.subject_id, r, now))
        .collect()
}

/// Whether `caller` may check the whole audit chain ("Verify integrity"): tenant
/// administrators only, since the report counts every record, not only the caller's.
pub fn may_verify_audit_chain(caller: &Caller) -> bool {
    caller.is_tenant_admin
}

/// Whether `caller` may read one audit record about `resource_id` (see
/// [`audit_restriction`]).
pub fn may_read_audit_entry(
    caller: &Caller,
    access: &dyn AccessView,
    resource_id: Option<&str>,
    now: Timestamp,
) -> bool {
    caller.is_tenant_admin || resource_id.is_some_and(|r| caller.may_administer(access, r, now))
}

/// Whose connector grant rows of an assignment on `resource_id` `caller` sees, once it may
/// read the assignment: every holder's (`None`) for tenant administrators and R3 holders of
/// the resource, who read the connectors' audit records too (decisions.md §11); only its
/// own (`Some(its id)`) for anyone else, since rows name principals in other systems.
pub fn connector_grants_viewed_by(
    caller: &Caller,
    access: &dyn AccessView,
    resource_id: &str,
    now: Timestamp,
) -> Option<String> {
    (!may_read_audit_entry(caller, access, Some(resource_id), now))
        .then(|| caller.subject_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AccessIndex;
    use crate::assignment::AssignmentState;
    use crate::schedule::Schedule;

    fn caller(id: &str, admin: bool) -> Caller {
        Caller {
            subject_id: id.into(),
            display_name: id.into(),
            principal_name: None,
            is_tenant_admin: admin,
            mfa: true,
        }
    }

    fn subject(id: &str, kind: SubjectKind, active: bool) -> Subject {
        Subject {
            id: id.into(),
            external_id: Some(format!("ext-{id}")),
            kind,
            display_name: format!("Name {id}"),
            principal_name: None,
            email: None,
            active,
        }
    }

    #[test]
    fn sign_in_resolves_subjects_administrators_and_refusals() {
        let token = |subject| TokenIdentity {
            subject,
            name: Some("Token Name"),
            mfa: true,
        };
        let admins = |id: &str| id == "root" || id == "u-admin";
        // A directory user, not an administrator.
        let c = sign_in(
            &token("ext-u1"),
            Some(subject("u1", SubjectKind::User, true)),
            admins,
        )
        .unwrap();
        assert_eq!(
            (c.subject_id.as_str(), c.is_tenant_admin, c.mfa),
            ("u1", false, true)
        );
        // Named an administrator by server id, even when disabled.
        let c = sign_in(
            &token("ext-u-admin"),
            Some(subject("u-admin", SubjectKind::User, false)),
            admins,
        )
        .unwrap();
        assert!(c.is_tenant_admin);
        // Never by external id: a SCIM client could set it.
        let c = sign_in(
            &token("u9"),
            Some(subject("u9", SubjectKind::User, true)),
            |id| id == "ext-u9",
        )
        .unwrap();
        assert!(!c.is_tenant_admin);
        // An administrator outside the directory signs in under the token's subject.
        let c = sign_in(&token("root"), None, admins).unwrap();
        assert_eq!(
            (c.subject_id.as_str(), c.display_name.as_str()),
            ("root", "Token Name")
        );
        // Refusals.
        for (who, s) in [
            ("ext-g", Some(subject("g", SubjectKind::Group, true))),
            ("ext-u2", Some(subject("u2", SubjectKind::User, false))),
            ("stranger", None),
        ] {
            let e = sign_in(&token(who), s, admins).unwrap_err();
            assert_eq!(e.code, ErrorCode::AuthorizationRequestDenied, "{who}");
        }
        // A group is refused even when listed as an administrator.
        assert!(
            sign_in(
                &token("root"),
                Some(subject("root", SubjectKind::Group, true)),
                admins
            )
            .is_err()
        );
    }

    fn tree() -> AccessIndex {
        let mut ix = AccessIndex::new();
        ix.add_resource("sub", None);
        ix.add_resource("rg", Some("sub"));
        ix.add_resource("other", None);
        ix
    }

    fn grant(id: &str, subject: &str, resource: &str, state: AssignmentState) -> RoleAssignment {
        RoleAssignment {
            id: id.into(),
            resource_id: resource.into(),
            role_definition_id: "role".into(),
            subject_id: subject.into(),
            state,
            linked_eligible_id: None,
            schedule: Schedule {
                start: "2024-01-01T00:00:00Z".parse().unwrap(),
                end: None,
            },
            request_id: "req".into(),
        }
    }

    #[test]
    fn member_type_says_direct_group_or_inherited() {
        let now: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let mut ix = tree();
        ix.add_membership("g", "alice");
        ix.upsert(&grant("a1", "g", "sub", AssignmentState::Eligible), false);
        let alice = caller("alice", false);
        let filter = odata::parse_filter("subjectId eq 'alice'").unwrap();
        let scope = read_scope(
            Collection::RoleAssignments,
            Some("rg"),
            Some(filter),
            &alice,
            &ix,
            now,
        )
        .unwrap();
        assert_eq!(
            scope.member_type(&grant("a1", "g", "sub", AssignmentState::Eligible)),
            MemberType::Inherited
        );
        assert_eq!(
            scope.member_type(&grant("a2", "g", "rg", AssignmentState::Eligible)),
            MemberType::Group
        );
        assert_eq!(
            scope.member_type(&grant("a3", "alice", "rg", AssignmentState::Active)),
            MemberType::Direct
        );
        // R1 on the named resource is needed.
        let bob = caller("bob", false);
        let e = read_scope(
            Collection::RoleAssignments,
            Some("rg"),
            None,
            &bob,
            &ix,
            now,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthorizationRequestDenied);
        assert!(may_navigate_to_resource(&alice, &ix, "parent", "sub", now).is_ok());
        assert!(may_navigate_to_resource(&bob, &ix, "Parent", "sub", now).is_err());
        assert!(may_navigate_to_resource(&bob, &ix, "roleDefinition", "sub", now).is_ok());
        assert_eq!(access_level(&alice, &ix, "rg", now), AccessLevel::UserRead);
        assert_eq!(access_level(&alice, &ix, "other", now), AccessLevel::None);
        assert_eq!(
            access_level(&caller("root", true), &ix, "other", now),
            AccessLevel::AdminReadWrite
        );
    }

    #[test]
    fn audit_readers_are_tenant_admins_and_r3_holders() {
        let now: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let mut ix = tree();
        ix.upsert(&grant("a1", "owner", "rg", AssignmentState::Active), true);
        ix.upsert(
            &grant("a2", "eligible-owner", "rg", AssignmentState::Eligible),
            true,
        );
        ix.upsert(&grant("a3", "reader", "rg", AssignmentState::Active), false);
        assert_eq!(audit_restriction(&caller("root", true), &ix, now), Ok(None));
        assert_eq!(
            audit_restriction(&caller("owner", false), &ix, now),
            Ok(Some(Restriction::ResourceUnder(vec!["rg".into()])))
        );
        for who in ["eligible-owner", "reader", "nobody"] {
            let e = audit_restriction(&caller(who, false), &ix, now).unwrap_err();
            assert_eq!(e.code, ErrorCode::AuthorizationRequestDenied);
        }
        let owner = caller("owner", false);
        assert!(may_read_audit_entry(&owner, &ix, Some("rg"), now));
        assert!(!may_read_audit_entry(&owner, &ix, Some("sub"), now));
        assert!(!may_read_audit_entry(&owner, &ix, Some("other"), now));
        assert!(!may_read_audit_entry(&owner, &ix, None, now));
        assert!(may_read_audit_entry(&caller("root", true), &ix, None, now));
    }
}
