//! The storage the domain needs, phrased in domain terms. A [`Store`] runs closures inside
//! transactions: a [`ReadTx`] has only the reads, a [`Tx`] adds the writes. Both are made
//! of small traits, one read and one write trait per aggregate (directory, catalog,
//! assignments, requests, subscriptions, audit log, access log, portal sessions,
//! connector delivery), plus the
//! scheduler's [`DueWork`] and the [`Outbox`]es, which only write transactions have. Every
//! state change happens in one write transaction together with its audit record, so a
//! change is all there or not at all.
//! Backends: SQLite (embedded, default) and PostgreSQL implement these traits.

pub use crate::assignment::AssignmentKey;
use crate::assignment::{AssignmentState, EndReason, RoleAssignment};
use crate::audit::{AuditEntry, AuditRecord, ChainLink};
use crate::directory::Subject;
use crate::error::{DomainError, Result};
use crate::provisioning::delivery::{ConnectorItem, ItemState, LedgerEntry, RequestedKey};
use crate::query::{ListQuery, Page};
use crate::request::{Approval, RoleAssignmentRequest};
use crate::resource::Resource;
use crate::role::{RoleDefinition, RoleSetting};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// Reads of the directory: subjects, their SCIM records, group membership.
pub trait DirectoryRead {
    /// A subject by id or external id.
    fn subject(&mut self, id: &str) -> Result<Option<Subject>>;
    /// The subjects whose id or external id is one of `ids` (in no order; unknown ids are
    /// left out), in one statement: `$expand` of a whole page at once.
    fn subjects_by_id(&mut self, ids: &[String]) -> Result<Vec<Subject>>;
    /// Subjects matching a SCIM list query, with their SCIM records, paged (`total` is
    /// always counted). Filters run in the database with bound parameters.
    fn list_subjects(
        &mut self,
        q: &crate::scim::record::SubjectQuery,
    ) -> Result<Page<(Subject, crate::scim::record::ScimRecord)>>;
    /// The SCIM record of subject `id` (by id only).
    fn subject_scim(&mut self, id: &str) -> Result<Option<crate::scim::record::ScimRecord>>;
    /// Every subject (connectors' desired state needs them all to find principals two
    /// subjects share), by id.
    fn all_subjects(&mut self) -> Result<Vec<Subject>>;
    /// Every subject with its SCIM record (connectors mapping principals from extension
    /// attributes), by id.
    fn all_subjects_with_scim(&mut self)
    -> Result<Vec<(Subject, crate::scim::record::ScimRecord)>>;
    /// A number every change of a subject (insert, update, delete) moves, on any node:
    /// whether a directory read earlier is still current.
    fn directory_generation(&mut self) -> Result<i64>;
    /// Direct members of a group.
    fn group_members(&mut self, group_id: &str) -> Result<Vec<String>>;
    /// Direct groups of a subject.
    fn groups_of(&mut self, member_id: &str) -> Result<Vec<String>>;
    /// Every (group, member) pair, for building the access index.
    fn all_memberships(&mut self) -> Result<Vec<(String, String)>>;
}

/// Writes of the directory.
pub trait DirectoryWrite {
    /// Inserts a subject, created at `now`.
    fn insert_subject(&mut self, s: &Subject, now: Timestamp) -> Result<()>;
    /// Replaces a subject's attributes.
    fn update_subject(&mut self, s: &Subject) -> Result<()>;
    /// Deletes a subject and its memberships (both as member and as group).
    fn delete_subject(&mut self, id: &str) -> Result<()>;
    /// Replaces the SCIM record of subject `id`.
    fn set_subject_scim(&mut self, id: &str, rec: &crate::scim::record::ScimRecord) -> Result<()>;
    /// Replaces a group's direct members.
    fn set_group_members(&mut self, group_id: &str, members: &[String]) -> Result<()>;
}

/// Reads of the catalog: resources, role definitions and role settings.
pub trait CatalogRead {
    /// A resource by id.
    fn resource(&mut self, id: &str) -> Result<Option<Resource>>;
    /// The resources with one of `ids` (in no order; unknown ids are left out), in one
    /// statement.
    fn resources_by_id(&mut self, ids: &[String]) -> Result<Vec<Resource>>;
    /// A resource by ARM id key (lower-cased canonical ARM id).
    fn resource_by_external_key(&mut self, key: &str) -> Result<Option<Resource>>;
    /// Lists resources.
    fn list_resources(&mut self, q: &ListQuery) -> Result<Page<Resource>>;
    /// Number of live assignments and role definitions on a resource.
    fn resource_counts(&mut self, id: &str, now: Timestamp) -> Result<(u64, u64)>;
    /// Every (resource, parent) pair, for building the access index.
    fn all_resource_parents(&mut self) -> Result<Vec<(String, Option<String>)>>;
    /// Every (role definition, template id) pair, for building the access index.
    fn all_role_templates(&mut self) -> Result<Vec<(String, String)>>;
    /// A role definition by id.
    fn role_definition(&mut self, id: &str) -> Result<Option<RoleDefinition>>;
    /// The role definitions with one of `ids` (in no order; unknown ids are left out), in
    /// one statement.
    fn role_definitions_by_id(&mut self, ids: &[String]) -> Result<Vec<RoleDefinition>>;
    /// The role definition with `template_id` on `resource_id`.
    fn role_definition_by_template(
        &mut self,
        resource_id: &str,
        template_id: &str,
    ) -> Result<Option<RoleDefinition>>;
    /// Lists role definitions.
    fn list_role_definitions(&mut self, q: &ListQuery) -> Result<Page<RoleDefinition>>;
    /// A role setting by id.
    fn role_setting(&mut self, id: &str) -> Result<Option<RoleSetting>>;
    /// The role setting of a role definition.
    fn role_setting_of(&mut self, role_definition_id: &str) -> Result<Option<RoleSetting>>;
    /// Lists role settings.
    fn list_role_settings(&mut self, q: &ListQuery) -> Result<Page<RoleSetting>>;
}

/// Writes of the catalog.
pub trait CatalogWrite {
    /// Inserts a resource; `ancestors` are its ancestors' ids, nearest first.
    fn insert_resource(&mut self, r: &Resource, ancestors: &[String]) -> Result<()>;
    /// Inserts a role definition and its role setting.
    fn insert_role_definition(&mut self, d: &RoleDefinition, s: &RoleSetting) -> Result<()>;
    /// Replaces a role setting's rules and metadata.
    fn update_role_setting(&mut self, s: &RoleSetting) -> Result<()>;
}

/// Reads of role assignments, live and in history.
pub trait AssignmentRead {
    /// An assignment by id (live or ended but not yet moved to history).
    fn assignment(&mut self, id: &str) -> Result<Option<RoleAssignment>>;
    /// An assignment moved to history (removed, or ended and archived), by id.
    fn assignment_in_history(&mut self, id: &str) -> Result<Option<RoleAssignment>>;
    /// Assignments (live or ended, not in history) with this key.
    fn assignments_with_key(&mut self, key: &AssignmentKey) -> Result<Vec<RoleAssignment>>;
    /// Assignments in history with this key that ended by expiry after `since`.
    fn expired_in_history(
        &mut self,
        key: &AssignmentKey,
        since: Timestamp,
    ) -> Result<Vec<RoleAssignment>>;
    /// `subject_id`'s own assignments in history that ended by expiry after `since`,
    /// latest end first (at most 100).
    fn expired_assignments_of(
        &mut self,
        subject_id: &str,
        since: Timestamp,
    ) -> Result<Vec<RoleAssignment>>;
    /// Assignments made on `resource_id` that ended by expiry after `since`, latest end
    /// first, at most `limit`.
    fn expired_assignments_on(
        &mut self,
        resource_id: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<RoleAssignment>>;
    /// Activations linked to an eligible assignment.
    fn activations_of(&mut self, eligible_id: &str) -> Result<Vec<RoleAssignment>>;
    /// Assignments of any of `subjects` in `state` on any of `resources`.
    fn assignments_of(
        &mut self,
        subjects: &[String],
        resources: &[String],
        state: AssignmentState,
    ) -> Result<Vec<RoleAssignment>>;
    /// Assignments in history (of any of `subjects`, on any of `resources`, each `None`
    /// meaning any) that still counted after `after`, with `end` the instant each stopped
    /// counting (its end, or when it was revoked, deactivated or closed, whichever came
    /// first): for decisions in the past.
    fn history_of(
        &mut self,
        subjects: Option<&[String]>,
        resources: Option<&[String]>,
        after: Timestamp,
    ) -> Result<Vec<RoleAssignment>>;
    /// Every assignment row (live, or ended and not yet moved to history) whose subject
    /// (itself, not through groups) or resource (itself, not its ancestors), as `by` says,
    /// is one of `ids`, with its list position, in list order: for
    /// [`crate::held_assignments`].
    fn held_assignments(
        &mut self,
        by: crate::assignment::HeldBy,
        ids: &[String],
    ) -> Result<Vec<crate::assignment::HeldAssignment>>;
    /// Live assignments of a subject.
    fn live_assignments_of(&mut self, subject_id: &str) -> Result<Vec<RoleAssignment>>;
    /// Lists assignments (joined with their role definitions for filtering).
    fn list_assignments(&mut self, q: &ListQuery) -> Result<Page<RoleAssignment>>;
    /// Calls `each` for every assignment not ended at `now`, for building the access index,
    /// with whether its role administers access.
    fn for_each_live_assignment(
        &mut self,
        now: Timestamp,
        each: &mut dyn FnMut(RoleAssignment, bool),
    ) -> Result<()>;
    /// Active assignments current at `now` on any of `resources` whose role is Owner or
    /// User Access Administrator (the R3 holders of decisions.md §7, before expanding
    /// groups).
    fn access_administrators(
        &mut self,
        resources: &[String],
        now: Timestamp,
    ) -> Result<Vec<RoleAssignment>>;
}

/// Writes of role assignments (only [`crate::operation::apply`] calls them).
pub trait AssignmentWrite {
    /// Inserts an assignment.
    fn insert_assignment(&mut self, a: &RoleAssignment) -> Result<()>;
    /// Replaces an assignment's schedule and request id.
    fn update_assignment(&mut self, a: &RoleAssignment) -> Result<()>;
    /// Moves an assignment out of the live set into history.
    fn end_assignment(
        &mut self,
        a: &RoleAssignment,
        at: Timestamp,
        reason: EndReason,
        request_id: Option<&str>,
    ) -> Result<()>;
    /// Moves a history row back into the live set (renewal of an expired assignment).
    fn restore_assignment(&mut self, a: &RoleAssignment) -> Result<()>;
}

/// Reads of role assignment requests and their approvals.
pub trait RequestRead {
    /// A request by id.
    fn request(&mut self, id: &str) -> Result<Option<RoleAssignmentRequest>>;
    /// The pending request with this key, if any.
    fn pending_request(&mut self, key: &AssignmentKey) -> Result<Option<RoleAssignmentRequest>>;
    /// Pending activation requests linked to an eligible assignment.
    fn pending_requests_linked_to(
        &mut self,
        eligible_id: &str,
    ) -> Result<Vec<RoleAssignmentRequest>>;
    /// Pending requests of a subject (for cancelling them when it is deleted or disabled).
    fn pending_requests_of(&mut self, subject_id: &str) -> Result<Vec<RoleAssignmentRequest>>;
    /// Lists requests.
    fn list_requests(&mut self, q: &ListQuery) -> Result<Page<RoleAssignmentRequest>>;
    /// Approval decisions recorded for a request.
    fn approvals(&mut self, request_id: &str) -> Result<Vec<Approval>>;
    /// The decisions `approver_id` made, latest first, at most `limit` ("Decided by me").
    fn approvals_by(&mut self, approver_id: &str, limit: u32) -> Result<Vec<Approval>>;
}

/// Writes of role assignment requests (only [`crate::operation::apply`] calls them).
pub trait RequestWrite {
    /// Inserts a request.
    fn insert_request(&mut self, r: &RoleAssignmentRequest) -> Result<()>;
    /// Replaces a request whose stored version is `r.version - 1` (optimistic concurrency);
    /// a mismatch fails with `Conflict`.
    fn update_request(&mut self, r: &RoleAssignmentRequest) -> Result<()>;
    /// Records who may approve a pending request (the ApprovalRule's users and groups), so
    /// approvers can find it.
    fn set_request_approvers(&mut self, request_id: &str, approvers: &[String]) -> Result<()>;
    /// Records one approval decision.
    fn insert_approval(&mut self, a: &Approval) -> Result<()>;
}

/// The background scheduler's work ([`crate::operation::scheduler`]), in write transactions
/// only. Each query finds due rows through an index, earliest first; writes are serialised
/// on both backends, so what it finds is current, and request rows are written back with
/// their version checked.
pub trait DueWork {
    /// Requests stored `Granted` whose start is at or before `now`, earliest start first,
    /// at most `limit`.
    fn due_grants(&mut self, now: Timestamp, limit: u32) -> Result<Vec<RoleAssignmentRequest>>;
    /// Requests stored `PendingApproval` whose approval deadline is at or before `now`,
    /// earliest deadline first, at most `limit`.
    fn expired_approvals(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<RoleAssignmentRequest>>;
    /// Assignments (not yet in history) whose end is at or before `now`, earliest end
    /// first, at most `limit`.
    fn ended_assignments(&mut self, now: Timestamp, limit: u32) -> Result<Vec<RoleAssignment>>;
    /// Locks assignment `id` for moving to history if it is still in the live set with its
    /// end at or before `now`; whether it is (the caller then calls [`AssignmentWrite::end_assignment`]).
    fn claim_ended_assignment(&mut self, id: &str, now: Timestamp) -> Result<bool>;
    /// Live assignments that have started at or before `now` and end after `now` and at or
    /// before `until`, that are activations (active and linked to an eligible assignment)
    /// or not as `activations` says, and that have no reminder `threshold` recorded for
    /// their current end; earliest end first, at most `limit`.
    fn unreminded_assignments(
        &mut self,
        threshold: &str,
        activations: bool,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<RoleAssignment>>;
    /// Records that reminder `threshold` of assignment `assignment_id` ending at `end` was
    /// sent at `now`, unless it already is (a unique key: assignment, threshold, end);
    /// whether this call recorded it. Concurrent claims of one key record it once.
    fn claim_reminder(
        &mut self,
        assignment_id: &str,
        threshold: &str,
        end: Timestamp,
        now: Timestamp,
    ) -> Result<bool>;
    /// Forgets the reminders of ends at or before `now` (they can never be due again).
    fn forget_reminders_ending_by(&mut self, now: Timestamp) -> Result<()>;
}

/// Reads of change-notification subscriptions.
pub trait SubscriptionRead {
    /// A subscription by id.
    fn subscription(&mut self, id: &str) -> Result<Option<crate::notification::Subscription>>;
    /// Every subscription, expired ones included, oldest first.
    fn subscriptions(&mut self) -> Result<Vec<crate::notification::Subscription>>;
}

/// Writes of change-notification subscriptions.
pub trait SubscriptionWrite {
    /// Stores a change-notification subscription.
    fn insert_subscription(&mut self, s: &crate::notification::Subscription) -> Result<()>;
    /// Moves a subscription's expiration to `expires_at`.
    fn renew_subscription(&mut self, id: &str, expires_at: Timestamp) -> Result<()>;
    /// Deletes a subscription with its undelivered notifications.
    fn delete_subscription(&mut self, id: &str) -> Result<()>;
}

/// The durable outboxes of change notifications and e-mail: rows written in the transaction of the change, leased by workers.
pub trait Outbox {
    /// Writes one outbox row, due at `now`, for each subscription unexpired at `now` that
    /// watches `entity`, wants `change` and has no resource filter or one naming
    /// `resource_id` or an ancestor of it.
    fn enqueue_notifications(
        &mut self,
        entity: crate::notification::Entity,
        id: &str,
        change: crate::notification::ChangeType,
        resource_id: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// Leases up to `limit` outbox rows due at `now` and not leased by anyone (or whose
    /// lease ran out) to `owner` until `lease_until`, with a guarded update, and returns
    /// them, earliest due first. Rows of expired or deleted subscriptions are dropped.
    fn claim_deliveries(
        &mut self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::notification::Delivery>>;
    /// Removes delivered (or given-up) notification `id` if `owner` still holds its
    /// lease; whether it did.
    fn finish_delivery(&mut self, id: &str, owner: &str) -> Result<bool>;
    /// Releases notification `id` held by `owner` for another attempt at `at`, counting
    /// the failed one; whether it did.
    fn retry_delivery(&mut self, id: &str, owner: &str, at: Timestamp) -> Result<bool>;
    /// Writes one e-mail outbox row, due at its `first_due`.
    fn enqueue_email(&mut self, e: &crate::email::Email) -> Result<()>;
    /// Leases up to `limit` e-mail rows due at `now` and not leased by anyone (or whose
    /// lease has run out) to `owner` until `until`, earliest first.
    fn claim_emails(
        &mut self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::email::Email>>;
    /// Removes sent (or given-up) e-mail `id` if `owner` still holds its lease.
    fn finish_email(&mut self, id: &str, owner: &str) -> Result<bool>;
    /// Releases e-mail `id` held by `owner` for another attempt at `at`, counting the
    /// failed one.
    fn retry_email(&mut self, id: &str, owner: &str, at: Timestamp) -> Result<bool>;
}

/// Reads of portal sessions.
pub trait SessionRead {
    /// The session whose id hashes to `id_hash`, if stored (live or not).
    fn portal_session(&mut self, id_hash: &str) -> Result<Option<crate::session::PortalSession>>;
}

/// Writes of portal sessions.
pub trait SessionWrite {
    /// Stores a new session.
    fn insert_portal_session(&mut self, s: &crate::session::PortalSession) -> Result<()>;
    /// Records a request of session `id_hash` at `at`, and the viewer's time zone when given.
    fn touch_portal_session(
        &mut self,
        id_hash: &str,
        at: Timestamp,
        time_zone: Option<&str>,
    ) -> Result<()>;
    /// Deletes session `id_hash` (sign-out); whether it existed.
    fn delete_portal_session(&mut self, id_hash: &str) -> Result<bool>;
    /// Deletes every session of `subject`.
    fn delete_portal_sessions_of(&mut self, subject: &str) -> Result<()>;
    /// Deletes sessions past their absolute end at `now` or last seen before `idle_before`,
    /// and sign-ins started before `idle_before` that never finished.
    fn prune_portal_sessions(&mut self, now: Timestamp, idle_before: Timestamp) -> Result<()>;
    /// Stores a sign-in started at the identity provider.
    fn insert_pending_sign_in(&mut self, p: &crate::session::PendingSignIn) -> Result<()>;
    /// Removes and returns the started sign-in whose state hashes to `state_hash` (each
    /// is used at most once).
    fn take_pending_sign_in(
        &mut self,
        state_hash: &str,
    ) -> Result<Option<crate::session::PendingSignIn>>;
}

/// Reads of the audit log.
pub trait AuditRead {
    /// Lists audit records, newest first unless `$orderby` says otherwise (restrictions:
    /// [`crate::query::Restriction::ResourceUnder`] on the record's resource).
    fn list_audit(&mut self, q: &ListQuery) -> Result<Page<AuditEntry>>;
    /// One audit record by id.
    fn audit_entry(&mut self, id: &str) -> Result<Option<AuditEntry>>;
    /// Audit record `id` as the chain stores it (its hash and its predecessor's).
    fn audit_link(&mut self, id: &str) -> Result<Option<ChainLink>>;
    /// The audit records about request `request_id` (its `requestId` detail), oldest
    /// first, at most `limit`.
    fn request_history(&mut self, request_id: &str, limit: u32) -> Result<Vec<AuditEntry>>;
    /// Up to `limit` audit records after position `after_seq` (0 = from the start), oldest
    /// first, as stored, with their chain hashes; with `since`, only records at or after it.
    fn audit_chain(
        &mut self,
        after_seq: i64,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<ChainLink>>;
}

/// Appends to the audit log.
pub trait AuditWrite {
    /// Appends an audit record: its `directoryAudit` document, the columns of
    /// [`crate::audit::AuditIndex`] (with one indexed row per target id), and its place in the
    /// hash chain (the previous record's hash and [`crate::audit::chain_hash`]), all in this
    /// transaction.
    fn append_audit(&mut self, rec: &AuditRecord) -> Result<()>;
}

/// Reads of the access log: how nodes sharing a database keep their access indexes current.
pub trait AccessLogRead {
    /// Up to `limit` access-log entries after position `after`, oldest first.
    fn access_changes_since(&mut self, after: i64, limit: u32) -> Result<Vec<AccessLogEntry>>;
    /// The position of the newest access-log entry (0 for none).
    fn access_log_head(&mut self) -> Result<i64>;
}

/// Writes of the access log.
pub trait AccessLogWrite {
    /// Appends the changes to effective access this transaction made, written at `at`;
    /// returns the entry's position.
    fn log_access_changes(
        &mut self,
        changes: &[crate::access::AccessChange],
        at: Timestamp,
    ) -> Result<i64>;
    /// Deletes access-log entries written before `before`.
    fn prune_access_log(&mut self, before: Timestamp) -> Result<()>;
}

/// Reads of connector delivery (connectors.md §6, §7): requested state, ledger, items,
/// passes and findings, per connector.
pub trait ConnectorRead {
    /// What the newest item of each key of `connector` asked for.
    fn requested_keys(
        &mut self,
        connector: &str,
    ) -> Result<BTreeMap<(String, String), RequestedKey>>;
    /// The grants Rolegate made through `connector` and has not revoked.
    fn connector_ledger(&mut self, connector: &str) -> Result<Vec<LedgerEntry>>;
    /// Whether Rolegate's ledger of `connector` holds (`target`, `principal`).
    fn in_connector_ledger(
        &mut self,
        connector: &str,
        target: &str,
        principal: &str,
    ) -> Result<bool>;
    /// Items of `connector`, newest first, only those in `state` when given.
    fn connector_items(
        &mut self,
        connector: &str,
        state: Option<ItemState>,
        limit: u32,
    ) -> Result<Vec<ConnectorItem>>;
    /// The newest item of each key of `connector` that is unfinished, or dead since
    /// `dead_since` or later.
    fn settling_items(
        &mut self,
        connector: &str,
        dead_since: Timestamp,
    ) -> Result<Vec<ConnectorItem>>;
    /// The keys (target, principal) of the items of `connector` that succeeded at or
    /// after `since`.
    fn succeeded_since(
        &mut self,
        connector: &str,
        since: Timestamp,
    ) -> Result<Vec<(String, String)>>;
    /// When the next item of `connector` may be claimed: the earliest next attempt of a
    /// waiting item, or lease end of a running one; `None` when nothing is unfinished.
    fn next_connector_item_due(&mut self, connector: &str) -> Result<Option<Timestamp>>;
    /// The number of items of `connector` in each state.
    fn connector_item_counts(&mut self, connector: &str) -> Result<Vec<(ItemState, u64)>>;
    /// The newest reconciliation pass of `connector` (its §7.4 summary document).
    fn last_reconcile_pass(&mut self, connector: &str) -> Result<Option<serde_json::Value>>;
    /// The findings of kind `kind` (`outside`, `unmapped`) recorded for `connector`: two
    /// keys and a detail each.
    fn connector_findings(
        &mut self,
        connector: &str,
        kind: &str,
    ) -> Result<Vec<(String, String, String)>>;
}

/// Writes of connector delivery.
pub trait ConnectorWrite {
    /// Writes `item` (state `pending`): the older items of its key that are not running
    /// become `superseded`, and the key's requested state becomes the item's operation.
    fn enqueue_connector_item(&mut self, item: &ConnectorItem) -> Result<()>;
    /// Leases up to `limit` items of `connector` that may run at `now` to `owner` until
    /// `lease_until` (state `inProgress`, one more attempt): due `pending` or `retrying`
    /// items and running items whose lease ran out, never one with an older unfinished
    /// item of its key, oldest first.
    fn claim_connector_items(
        &mut self,
        connector: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ConnectorItem>>;
    /// Settles running `item` if `owner` still holds it: `succeeded` (and the ledger
    /// follows: a grant enters it, a revoke leaves it), `retrying` at `next_attempt`, or
    /// `dead`. False when the lease was lost (another node took the item over).
    fn settle_connector_item(
        &mut self,
        item: &ConnectorItem,
        owner: &str,
        outcome: &ItemOutcome,
        now: Timestamp,
    ) -> Result<bool>;
    /// Supersedes every item of `connector` that has not run yet (the connector left the
    /// file, §6.6).
    fn supersede_connector_items(&mut self, connector: &str, now: Timestamp) -> Result<()>;
    /// Records that the last requested grant of (`target`, `principal`) now stands on
    /// other assignments (`refreshed`), and re-arms its item if that died (§6.4: a newer
    /// change of its key re-arms a dead item). Returns whether an item was re-armed.
    fn refresh_requested_grant(
        &mut self,
        connector: &str,
        refreshed: &crate::provisioning::delivery::RefreshedGrant,
        now: Timestamp,
    ) -> Result<bool>;
    /// Re-arms the dead items of `connector` that died before `died_before` (every one
    /// when `None`): `pending` again, attempts reset, with `cause` when given (`operator`,
    /// §5.3). Returns how many.
    fn rearm_dead_items(
        &mut self,
        connector: &str,
        died_before: Option<Timestamp>,
        cause: Option<&str>,
        now: Timestamp,
    ) -> Result<u64>;
    /// Adds a grant found present and desired to the ledger (reconciliation's adoption).
    fn adopt_connector_grant(&mut self, connector: &str, entry: &LedgerEntry) -> Result<()>;
    /// Takes the cluster-wide lease `name` for `owner` until `until` when it is free, run
    /// out or already `owner`'s. True when taken.
    fn claim_connector_lease(
        &mut self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    /// Frees lease `name` if `owner` holds it.
    fn release_connector_lease(&mut self, name: &str, owner: &str) -> Result<()>;
    /// Stores a reconciliation pass of `connector` (its §7.4 summary document with `id`
    /// and `startDateTime`), replacing an earlier version of the same pass.
    fn record_reconcile_pass(&mut self, connector: &str, pass: &serde_json::Value) -> Result<()>;
    /// Replaces the findings of kind `kind` of `connector`.
    fn replace_connector_findings(
        &mut self,
        connector: &str,
        kind: &str,
        rows: &[(String, String, String)],
    ) -> Result<()>;
    /// Deletes settled items: succeeded and superseded ones completed before
    /// `settled_before`, dead ones before `dead_before`; and passes started before
    /// `settled_before`.
    fn prune_connector_items(
        &mut self,
        settled_before: Timestamp,
        dead_before: Timestamp,
    ) -> Result<()>;
}

/// How an attempt at an item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Applied.
    Succeeded,
    /// Failed; try again at `next_attempt`.
    Retry {
        /// When.
        next_attempt: Timestamp,
        /// The error's code.
        code: String,
        /// The error's message (redacted).
        message: String,
    },
    /// Failed for the last time.
    Dead {
        /// The error's code.
        code: String,
        /// The error's message (redacted).
        message: String,
    },
}

/// A read transaction: every read, nothing that writes, so a write in a read path does not
/// compile.
pub trait ReadTx:
    DirectoryRead
    + CatalogRead
    + AssignmentRead
    + RequestRead
    + SubscriptionRead
    + AuditRead
    + AccessLogRead
    + SessionRead
    + ConnectorRead
{
}

impl<
    T: ?Sized
        + DirectoryRead
        + CatalogRead
        + AssignmentRead
        + RequestRead
        + SubscriptionRead
        + AuditRead
        + AccessLogRead
        + SessionRead
        + ConnectorRead,
> ReadTx for T
{
}

/// Nesting inside a write transaction: the writes a batch commits together (group commit)
/// each run so that one that fails is undone alone: in a savepoint, or, where the store
/// counts rows written, without one as long as every failing write failed before writing.
pub trait Savepoints {
    /// Runs `f` in a savepoint of this transaction: what it wrote is kept when it returns
    /// `Ok` and undone when it returns `Err` (the inner result); the transaction stays open
    /// either way. The outer `Err` means the transaction itself failed: roll it back.
    fn savepoint(&mut self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<Result<()>>;
    /// How many rows this transaction has written so far, when the store counts them
    /// (SQLite) and the transaction is still open; `None` otherwise. Equal counts before
    /// and after a failed write prove it left nothing to undo.
    fn rows_written(&self) -> Option<u64>;
}

/// A write transaction: every read and every write.
pub trait Tx:
    ReadTx
    + Savepoints
    + DirectoryWrite
    + CatalogWrite
    + AssignmentWrite
    + RequestWrite
    + DueWork
    + SubscriptionWrite
    + Outbox
    + AuditWrite
    + AccessLogWrite
    + SessionWrite
    + ConnectorWrite
{
}

impl<
    T: ?Sized
        + ReadTx
        + Savepoints
        + DirectoryWrite
        + CatalogWrite
        + AssignmentWrite
        + RequestWrite
        + DueWork
        + SubscriptionWrite
        + Outbox
        + AuditWrite
        + AccessLogWrite
        + SessionWrite
        + ConnectorWrite,
> Tx for T
{
}

/// One entry of the access log: the changes to effective access one write committed.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogEntry {
    /// Its position in commit order.
    pub seq: i64,
    /// The changes, in the order they were made; `None` when this version cannot read
    /// them (a newer node wrote a kind of change it does not know). The tables hold every
    /// change too, so a reader that meets one rebuilds what it keeps from them.
    pub changes: Option<Vec<crate::access::AccessChange>>,
}

/// A database holding Rolegate's state.
pub trait Store: Send + Sync {
    /// Runs `f` in a read-only transaction.
    fn read_dyn(&self, f: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()>;
    /// Runs `f` with reads that each see the latest committed state but no one snapshot
    /// across them: for a single read that needs no snapshot (catching up with the access
    /// log). On PostgreSQL it opens no transaction, so the read is one round trip instead
    /// of three.
    fn read_latest_dyn(&self, f: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()> {
        self.read_dyn(f)
    }
    /// Runs `f` in a write transaction, committed when `f` returns `Ok`, rolled back otherwise.
    /// Write transactions are serialised.
    fn write_dyn(&self, f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;
    /// Whether the database answers.
    fn ping(&self) -> Result<()>;
    /// How many read transactions can run at once (one connection each); callers queue the
    /// others fairly rather than have them wait on a connection in no particular order.
    fn concurrent_reads(&self) -> usize {
        64
    }
    /// Whether other processes may write the same database (several nodes on one
    /// PostgreSQL), so in-memory state must catch up with the database's access log.
    fn shared(&self) -> bool {
        false
    }
}

/// A transaction body that must run exactly once, and its value.
struct Body<F, T> {
    f: Option<F>,
    out: Option<T>,
}

impl<F, T> Body<F, T> {
    fn new(f: F) -> Self {
        Self {
            f: Some(f),
            out: None,
        }
    }

    fn call(&mut self, run: impl FnOnce(F) -> Result<T>) -> Result<()> {
        let f = self
            .f
            .take()
            .ok_or_else(|| DomainError::internal("transaction body ran twice"))?;
        self.out = Some(run(f)?);
        Ok(())
    }

    fn value(self) -> Result<T> {
        self.out
            .ok_or_else(|| DomainError::internal("transaction body did not run"))
    }
}

/// Runs `f` in a read transaction of `store` and returns its value.
pub fn read<T>(store: &dyn Store, f: impl FnOnce(&mut dyn ReadTx) -> Result<T>) -> Result<T> {
    let mut body = Body::new(f);
    store.read_dyn(&mut |tx| body.call(|f| f(tx)))?;
    body.value()
}

/// Runs `f` on `store` with reads that see the latest committed state, one statement at a
/// time ([`Store::read_latest_dyn`]), and returns its value.
pub fn read_latest<T>(
    store: &dyn Store,
    f: impl FnOnce(&mut dyn ReadTx) -> Result<T>,
) -> Result<T> {
    let mut body = Body::new(f);
    store.read_latest_dyn(&mut |tx| body.call(|f| f(tx)))?;
    body.value()
}

/// Runs `f` in a write transaction of `store` and returns its value.
pub fn write<T>(store: &dyn Store, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
    let mut body = Body::new(f);
    store.write_dyn(&mut |tx| body.call(|f| f(tx)))?;
    body.value()
}
