//! Provisioning audit records (connectors.md §7.5): category `Provisioning`, initiated by
//! the application "Rolegate connectors", one target for the connector's target and one for
//! the subject when known.

use super::delivery::{ConnectorItem, ItemOperation};
use crate::assignment::RoleAssignment;
use crate::audit::{AuditRecord, Initiator, ModifiedProperty, Target};
use crate::directory::Subject;
use jiff::Timestamp;

/// The id records name the connectors' application by (`initiatedBy.app.servicePrincipalId`).
pub const CONNECTORS_APP_ID: &str = "rolegate-connectors";
/// The name records show for the connectors' application.
pub const CONNECTORS_APP_NAME: &str = "Rolegate connectors";

/// What reconciliation found about a key whose item later ran (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Desired and absent.
    Missing,
    /// Present, not desired, made by Rolegate.
    Stale,
    /// Present, not desired, not made by Rolegate.
    Outside,
}

/// The activity of a settled item (§7.5's table): what it did, and whether reconciliation
/// (`finding`) caused it.
pub fn item_activity(item: &ConnectorItem, finding: Option<Finding>, dead: bool) -> &'static str {
    if dead {
        return "Connector item failed";
    }
    match (item.operation, finding) {
        (ItemOperation::Grant, Some(Finding::Missing)) => "Restore missing connector grant",
        (ItemOperation::Grant, _) => "Grant connector access",
        (ItemOperation::Revoke, Some(Finding::Stale)) => "Revoke stale connector grant",
        (ItemOperation::Revoke, Some(Finding::Outside)) => "Revoke grant made outside Rolegate",
        (ItemOperation::Revoke, _) => "Revoke connector access",
    }
}

/// Facts every provisioning record carries.
#[derive(Debug, Clone)]
pub struct RecordContext<'a> {
    /// The record's id.
    pub id: String,
    /// The connector's name.
    pub connector: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// When.
    pub at: Timestamp,
}

/// A provisioning record: `activity` about `target`/`principal` (`principal` granted when
/// `granted`, else removed), correlated with `correlation_id`, with `details` after the
/// ones every record has.
#[allow(clippy::too_many_arguments)]
pub fn record(
    ctx: &RecordContext<'_>,
    activity: &str,
    operation_type: &str,
    failure: Option<&str>,
    correlation_id: &str,
    target: &str,
    principal: Option<(&str, bool)>,
    subject: Option<&Subject>,
    details: Vec<(String, String)>,
) -> AuditRecord {
    let quoted = |p: &str| serde_json::Value::String(p.to_string()).to_string();
    let mut connector_target = Target::new(
        "ConnectorTarget",
        &format!("{}/{}", ctx.connector, target),
        target,
    );
    if let Some((p, granted)) = principal {
        connector_target.modified_properties.push(ModifiedProperty {
            display_name: "member".into(),
            old_value: (!granted).then(|| quoted(p)),
            new_value: granted.then(|| quoted(p)),
        });
    }
    let mut targets = vec![connector_target];
    if let Some(s) = subject {
        targets.push(Target::new(s.kind.as_str(), &s.id, &s.display_name));
    }
    let mut additional = vec![
        ("connector".to_string(), ctx.connector.to_string()),
        ("kind".to_string(), ctx.kind.to_string()),
        ("target".to_string(), target.to_string()),
    ];
    if let Some((p, _)) = principal {
        additional.push(("principal".into(), p.to_string()));
    }
    additional.extend(details);
    AuditRecord {
        correlation_id: correlation_id.to_string(),
        target_resources: targets,
        additional_details: additional,
        ..application_record(&ctx.id, ctx.at, activity, operation_type, failure)
    }
}

/// A `Provisioning` record by the application "Rolegate connectors", correlated with its own
/// id, without targets or details yet; `failure` makes it a `failure` with that reason.
fn application_record(
    id: &str,
    at: Timestamp,
    activity: &str,
    operation_type: &str,
    failure: Option<&str>,
) -> AuditRecord {
    AuditRecord {
        id: id.to_string(),
        category: "Provisioning".into(),
        correlation_id: id.to_string(),
        result: if failure.is_some() {
            "failure"
        } else {
            "success"
        }
        .into(),
        result_reason: failure.unwrap_or_default().to_string(),
        activity_display_name: activity.to_string(),
        activity_date_time: at,
        operation_type: operation_type.to_string(),
        initiated_by: Initiator::application(CONNECTORS_APP_ID, CONNECTORS_APP_NAME),
        target_resources: Vec::new(),
        additional_details: Vec::new(),
    }
}

/// The record of a reload of the connectors file at `path` (§2.1, §6.6): `failure` holds
/// the problem lines of an invalid file; `removed` names the connectors the new file left
/// out, whose `left_behind` ledger entries stay in their targets.
pub fn reload_record(
    id: &str,
    at: Timestamp,
    path: &str,
    failure: Option<&str>,
    removed: &[String],
    left_behind: usize,
) -> AuditRecord {
    let mut details = vec![("path".to_string(), path.to_string())];
    if !removed.is_empty() {
        details.push(("removedConnectors".into(), removed.join(",")));
        details.push(("ledgerEntriesLeftBehind".into(), left_behind.to_string()));
    }
    AuditRecord {
        target_resources: vec![Target::new("ConnectorConfiguration", "connectors", path)],
        additional_details: details,
        ..application_record(id, at, "Reload connector configuration", "Update", failure)
    }
}

/// The record of an item that succeeded or died (§7.5). `assignment` is its first
/// assignment (live or in history): its resource lets that resource's R3 holders read the
/// record, its request is named.
pub fn item_record(
    ctx: &RecordContext<'_>,
    item: &ConnectorItem,
    finding: Option<Finding>,
    error: Option<&str>,
    subject: Option<&Subject>,
    assignment: Option<&RoleAssignment>,
) -> AuditRecord {
    let granted = item.operation == ItemOperation::Grant;
    let mut details = vec![
        ("itemId".to_string(), item.id.clone()),
        ("cause".to_string(), item.cause.clone()),
    ];
    if let Some(s) = &item.subject_id {
        details.push(("subjectId".into(), s.clone()));
    }
    if let Some(a) = item.assignment_ids.first() {
        details.push(("assignmentId".into(), a.clone()));
    }
    if let Some(a) = assignment {
        details.push(("resourceId".into(), a.resource_id.clone()));
        if !a.request_id.is_empty() {
            details.push(("requestId".into(), a.request_id.clone()));
        }
    }
    if item.cause == super::delivery::Cause::Reconcile.as_str()
        && let Some(pass) = &item.cause_id
    {
        details.push(("reconcileId".into(), pass.clone()));
    }
    if let Some(e) = error {
        details.push(("reason".into(), e.to_string()));
    }
    record(
        ctx,
        item_activity(item, finding, error.is_some()),
        if granted { "Assign" } else { "Unassign" },
        error,
        &item.id,
        &item.target,
        Some((&item.principal, granted)),
        subject,
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::delivery::{Cause, PlannedItem};

    fn item(operation: ItemOperation) -> ConnectorItem {
        ConnectorItem::new(
            "item-1".into(),
            "pg",
            PlannedItem {
                key: ("app_admin".into(), "alice".into()),
                operation,
                subject_id: Some("s-1".into()),
                cause: Cause::Assignment,
                cause_id: Some("a-1".into()),
                assignment_ids: vec!["a-1".into()],
                not_after: None,
                due: Timestamp::UNIX_EPOCH,
            },
            Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn activities_follow_the_operation_the_finding_and_the_outcome() {
        let grant = item(ItemOperation::Grant);
        let revoke = item(ItemOperation::Revoke);
        assert_eq!(item_activity(&grant, None, false), "Grant connector access");
        assert_eq!(
            item_activity(&grant, Some(Finding::Missing), false),
            "Restore missing connector grant"
        );
        assert_eq!(
            item_activity(&revoke, None, false),
            "Revoke connector access"
        );
        assert_eq!(
            item_activity(&revoke, Some(Finding::Stale), false),
            "Revoke stale connector grant"
        );
        assert_eq!(
            item_activity(&revoke, Some(Finding::Outside), false),
            "Revoke grant made outside Rolegate"
        );
        assert_eq!(item_activity(&revoke, None, true), "Connector item failed");
    }

    #[test]
    fn an_item_record_names_the_target_the_member_change_and_the_application() {
        let ctx = RecordContext {
            id: "rec-1".into(),
            connector: "pg",
            kind: "postgresql",
            at: Timestamp::UNIX_EPOCH,
        };
        let assignment = RoleAssignment {
            id: "a-1".into(),
            resource_id: "r-1".into(),
            role_definition_id: "role".into(),
            subject_id: "s-1".into(),
            state: crate::assignment::AssignmentState::Active,
            linked_eligible_id: None,
            schedule: crate::schedule::Schedule {
                start: Timestamp::UNIX_EPOCH,
                end: None,
            },
            request_id: "req-1".into(),
        };
        let doc = item_record(
            &ctx,
            &item(ItemOperation::Revoke),
            None,
            None,
            None,
            Some(&assignment),
        )
        .to_document();
        let detail = |doc: &serde_json::Value, key: &str| {
            doc["additionalDetails"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["key"] == key)
                .map(|d| d["value"].clone())
        };
        assert_eq!(detail(&doc, "resourceId"), Some("r-1".into()));
        assert_eq!(detail(&doc, "requestId"), Some("req-1".into()));
        assert_eq!(detail(&doc, "cause"), Some("assignment".into()));
        assert_eq!(detail(&doc, "reconcileId"), None);
        // An item a reconciliation pass wrote names the pass.
        let mut restore = item(ItemOperation::Grant);
        restore.cause = "reconcile".into();
        restore.cause_id = Some("pass-1".into());
        let restored =
            item_record(&ctx, &restore, Some(Finding::Missing), None, None, None).to_document();
        assert_eq!(detail(&restored, "reconcileId"), Some("pass-1".into()));
        assert_eq!(doc["category"], "Provisioning");
        assert_eq!(doc["correlationId"], "item-1");
        assert_eq!(doc["operationType"], "Unassign");
        assert_eq!(doc["initiatedBy"]["user"], serde_json::Value::Null);
        assert_eq!(
            doc["initiatedBy"]["app"]["displayName"],
            "Rolegate connectors"
        );
        let target = &doc["targetResources"][0];
        assert_eq!(target["id"], "pg/app_admin");
        assert_eq!(target["type"], "ConnectorTarget");
        assert_eq!(target["modifiedProperties"][0]["oldValue"], "\"alice\"");
        assert_eq!(
            target["modifiedProperties"][0]["newValue"],
            serde_json::Value::Null
        );
        let index = crate::audit::AuditIndex::of(&doc).map(|i| i.initiator_id);
        assert_eq!(index.ok().as_deref(), Some(CONNECTORS_APP_ID));
    }
}
