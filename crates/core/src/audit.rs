//! Audit records: one per state change, written in the same transaction as the change,
//! shaped after Graph's `directoryAudit` (decisions.md §11).
//!
//! Besides the record itself this module owns everything every store must do the same way:
//! the `directoryAudit` document ([`AuditRecord::to_document`]), the columns a store indexes
//! for it ([`AuditIndex`]), the canonical form and hash chain ([`canonical_json`],
//! [`chain_hash`], [`ChainVerifier`]). Who may read which records is a read rule like the
//! others: [`crate::visibility::audit_restriction`].

use crate::error::{DomainError, Result};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiator {
    /// Subject id (or the token's subject for a tenant administrator outside the directory).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// User principal name, when known.
    pub user_principal_name: Option<String>,
    /// True when an application acted (Rolegate's connectors): the document then names it
    /// under `initiatedBy.app` (`id` as its `servicePrincipalId`) and `user` is `null`.
    pub application: bool,
}

impl Initiator {
    /// Rolegate's own application `display_name`, known by `id`.
    pub fn application(id: &str, display_name: &str) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
            user_principal_name: None,
            application: true,
        }
    }
}

/// A property changed by the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifiedProperty {
    /// Property name.
    pub display_name: String,
    /// Value before (JSON text), if any.
    pub old_value: Option<String>,
    /// Value after (JSON text), if any.
    pub new_value: Option<String>,
}

/// What the action touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Id of the touched entity.
    pub id: String,
    /// Its display name.
    pub display_name: String,
    /// Its kind (`Resource`, `RoleAssignment`, `Request`, `User`, `Group`, `RoleSetting`).
    pub kind: String,
    /// Changed properties.
    pub modified_properties: Vec<ModifiedProperty>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// GUID.
    pub id: String,
    /// `RoleManagement`, `UserManagement`, `GroupManagement`, `ResourceManagement`, `Policy`.
    pub category: String,
    /// The request id of the HTTP call that caused it.
    pub correlation_id: String,
    /// `success` or `failure`.
    pub result: String,
    /// Why it failed, or what it was.
    pub result_reason: String,
    /// e.g. `Add eligible member to role`.
    pub activity_display_name: String,
    /// When.
    pub activity_date_time: Timestamp,
    /// `Add`, `Update`, `Delete`, `Assign`, `Unassign`.
    pub operation_type: String,
    /// Who.
    pub initiated_by: Initiator,
    /// What.
    pub target_resources: Vec<Target>,
    /// Reason, ticket, requestId, roleDefinitionId, resourceId, …
    pub additional_details: Vec<(String, String)>,
}

impl Target {
    /// A target with no modified properties.
    pub fn new(kind: &str, id: &str, display_name: &str) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
            kind: kind.into(),
            modified_properties: Vec::new(),
        }
    }
}

impl AuditRecord {
    /// A `success` record of `activity` (operation type `operation`, in `category`) by
    /// `ctx`'s caller at `ctx.now`, correlated with its HTTP request, with a fresh id and no
    /// reason, targets or details yet.
    pub fn by(
        ctx: &crate::access::OpContext,
        category: &str,
        activity: &str,
        operation: &str,
    ) -> AuditRecord {
        AuditRecord {
            id: (ctx.new_id)(),
            category: category.into(),
            correlation_id: ctx.correlation_id.to_string(),
            result: "success".into(),
            result_reason: String::new(),
            activity_display_name: activity.into(),
            activity_date_time: ctx.now,
            operation_type: operation.into(),
            initiated_by: ctx.initiator(),
            target_resources: Vec::new(),
            additional_details: Vec::new(),
        }
    }

    /// `initiatedBy`: a user, or an application with `user` null.
    fn initiator_document(&self) -> Value {
        let i = &self.initiated_by;
        if i.application {
            json!({"app": {"displayName": i.display_name, "servicePrincipalId": i.id}, "user": null})
        } else {
            json!({"user": {
                "id": i.id,
                "displayName": i.display_name,
                "userPrincipalName": i.user_principal_name,
            }})
        }
    }

    /// The record as Graph's `directoryAudit` JSON document: what the API returns, what the
    /// store keeps, and what the hash chain covers.
    pub fn to_document(&self) -> Value {
        json!({
            "id": self.id,
            "category": self.category,
            "correlationId": self.correlation_id,
            "result": self.result,
            "resultReason": self.result_reason,
            "activityDisplayName": self.activity_display_name,
            "activityDateTime": crate::schedule::format_datetime(self.activity_date_time),
            "loggedByService": "PIM",
            "operationType": self.operation_type,
            "initiatedBy": self.initiator_document(),
            "targetResources": self.target_resources.iter().map(|t| json!({
                "id": t.id,
                "displayName": t.display_name,
                "type": t.kind,
                "modifiedProperties": t.modified_properties.iter().map(|m| json!({
                    "displayName": m.display_name,
                    "oldValue": m.old_value,
                    "newValue": m.new_value,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "additionalDetails": self.additional_details.iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect::<Vec<_>>(),
        })
    }
}

/// Who acted, as people read a record's `initiatedBy`: the user's `displayName`, or the
/// application's (`app.displayName`) for Rolegate's own connectors.
pub fn initiator_name(initiated_by: &Value) -> &str {
    initiated_by["user"]["displayName"]
        .as_str()
        .or_else(|| initiated_by["app"]["displayName"].as_str())
        .unwrap_or_default()
}

/// Who acted, by id, from a record's `initiatedBy`: the user's `id`, or the application's
/// `servicePrincipalId` when `user` is null (what stores index as the initiator).
pub fn initiator_id(initiated_by: &Value) -> Option<&str> {
    match &initiated_by["user"] {
        Value::Null => initiated_by["app"]["servicePrincipalId"].as_str(),
        user => user["id"].as_str(),
    }
}

/// The columns a store keeps beside an audit document so that lists filter and authorise
/// in the database. Every one is derived from the document by [`AuditIndex::of`], so a
/// verifier can check the stored columns against the (hashed) document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditIndex {
    /// `id`.
    pub id: String,
    /// `activityDateTime`, to the microsecond (as stores keep times).
    pub at: Timestamp,
    /// `category`.
    pub category: String,
    /// `activityDisplayName`.
    pub activity: String,
    /// `result`.
    pub result: String,
    /// `correlationId`.
    pub correlation_id: String,
    /// `initiatedBy.user.id`.
    pub initiator_id: String,
    /// The resource the record is about: its `resourceId` detail, else the id of its first
    /// target of type `Resource`. R3 holders read the records of their resources by it.
    pub resource_id: Option<String>,
    /// The request the record is about: its `requestId` detail (a request's history).
    pub request_id: Option<String>,
    /// The ids of `targetResources`, sorted, without duplicates.
    pub target_ids: Vec<String>,
}

impl AuditIndex {
    /// Derives the indexed columns from a `directoryAudit` document.
    pub fn of(doc: &Value) -> Result<AuditIndex> {
        let text = |v: &Value, what: &str| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                DomainError::internal(format!("audit document has no string `{what}`"))
            })
        };
        let at = text(&doc["activityDateTime"], "activityDateTime")?;
        let at = at.parse::<Timestamp>().map_err(|e| {
            DomainError::internal(format!("audit document `activityDateTime` `{at}`: {e}"))
        })?;
        let at = crate::schedule::truncate_to_micros(at);
        let empty = Vec::new();
        let targets = doc["targetResources"].as_array().unwrap_or(&empty);
        let details = doc["additionalDetails"].as_array().unwrap_or(&empty);
        let resource_id = details
            .iter()
            .find(|d| d["key"] == "resourceId")
            .and_then(|d| d["value"].as_str())
            .or_else(|| {
                targets
                    .iter()
                    .find(|t| t["type"] == "Resource")
                    .and_then(|t| t["id"].as_str())
            })
            .map(str::to_string);
        let request_id = details
            .iter()
            .find(|d| d["key"] == "requestId")
            .and_then(|d| d["value"].as_str())
            .map(str::to_string);
        let mut target_ids: Vec<String> = targets
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        target_ids.sort();
        target_ids.dedup();
        Ok(AuditIndex {
            id: text(&doc["id"], "id")?,
            at,
            category: text(&doc["category"], "category")?,
            activity: text(&doc["activityDisplayName"], "activityDisplayName")?,
            result: text(&doc["result"], "result")?,
            correlation_id: text(&doc["correlationId"], "correlationId")?,
            initiator_id: initiator_id(&doc["initiatedBy"])
                .map(str::to_string)
                .ok_or_else(|| {
                    DomainError::internal("audit document has no initiator id (user or app)")
                })?,
            resource_id,
            request_id,
            target_ids,
        })
    }
}

/// The `prev_hash` of the first record of a log: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical form of a JSON document: RFC 8785 (JCS) serialisation. Object members are
/// sorted by the UTF-16 code units of their names, there is no insignificant whitespace,
/// and strings escape only `"`, `\` and control characters (as `\b \f \n \r \t`, else
/// `\u00xx` in lower-case hex). Audit documents hold only strings, nulls, arrays and
/// objects, so JCS's number rules never come into play; any other number is written as
/// `serde_json` prints it.
pub fn canonical_json(doc: &Value) -> String {
    let mut out = String::new();
    write_canonical(doc, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut members: Vec<(&String, &Value)> = members.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The hash of a record in the chain: lower-case hex of
/// `SHA-256(prev_hash ‖ canonical_json(document))`, where `prev_hash` is the predecessor's
/// hash as 64 lower-case hex characters ([`GENESIS_HASH`] for the first record) and `‖` is
/// concatenation of the UTF-8 bytes. Each record stores both `prev_hash` and this hash.
pub fn chain_hash(prev_hash: &str, doc: &Value) -> String {
    chain_hash_of_canonical(prev_hash, &canonical_json(doc))
}

/// [`chain_hash`] of a document already in its canonical form (a writer that stores that
/// form computes it once).
pub fn chain_hash_of_canonical(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// An audit record as the store holds it, in chain order, for verification and export.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLink {
    /// Position in the log (strictly increasing).
    pub seq: i64,
    /// The stored `id` column.
    pub id: String,
    /// The stored document text.
    pub document: String,
    /// The stored predecessor hash (`None` if missing).
    pub prev_hash: Option<String>,
    /// The stored hash (`None` if missing).
    pub hash: Option<String>,
    /// The stored indexed columns (`None` if they could not be read).
    pub columns: Option<AuditIndex>,
}

/// Why a link of the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The broken record's id (its stored `id` column).
    pub id: String,
    /// Its position in the log.
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

/// Walks a chain in order, one link at a time (so a store can page through a large log).
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier at the start of the log.
    pub fn new() -> Self {
        Self {
            prev: GENESIS_HASH.to_string(),
            checked: 0,
        }
    }

    /// Links verified so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last verified link ([`GENESIS_HASH`] before the first): kept
    /// elsewhere, it shows later that the log was not rebuilt or cut short.
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Checks the next link: it names its predecessor's hash, its hash is that of its
    /// document, and its indexed columns are those of its document.
    pub fn check(&mut self, link: &ChainLink) -> std::result::Result<(), BrokenLink> {
        let broken = |reason: String| BrokenLink {
            id: link.id.clone(),
            seq: link.seq,
            reason,
        };
        let prev = link
            .prev_hash
            .as_deref()
            .ok_or_else(|| broken("it has no predecessor hash".into()))?;
        if prev != self.prev {
            return Err(broken(
                "its predecessor hash does not match the previous record (a record before it was removed or altered)".into(),
            ));
        }
        let stored = link
            .hash
            .as_deref()
            .ok_or_else(|| broken("it has no hash".into()))?;
        let doc: Value = serde_json::from_str(&link.document)
            .map_err(|e| broken(format!("its document is not JSON: {e}")))?;
        if chain_hash(prev, &doc) != stored {
            return Err(broken(
                "its hash does not match its content (the record was altered)".into(),
            ));
        }
        let index = AuditIndex::of(&doc).map_err(|e| broken(e.message))?;
        if link.columns.as_ref() != Some(&index) || index.id != link.id {
            return Err(broken(
                "its indexed columns differ from its content (the record was altered)".into(),
            ));
        }
        self.prev = stored.to_string();
        self.checked += 1;
        Ok(())
    }
}

/// The outcome of checking a whole log with [`crate::operation::audit::verify_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainReport {
    /// Every record holds.
    Intact {
        /// Records checked.
        checked: u64,
        /// The newest record's hash ([`GENESIS_HASH`] for an empty log).
        head: String,
    },
    /// The chain breaks at `link`.
    Broken {
        /// Records before it that hold.
        checked: u64,
        /// The first record that does not hold.
        link: BrokenLink,
    },
}

/// What a refused write was about, for its `failure` record: the entities it named and
/// the details it gave (as given: they may not exist, which may be why it was refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    /// Targets of the record.
    pub targets: Vec<Target>,
    /// Additional details of the record.
    pub details: Vec<(String, String)>,
}

impl About {
    /// Nothing known.
    pub const NOTHING: About = About {
        targets: Vec::new(),
        details: Vec::new(),
    };

    /// A refused role assignment request: the role, resource and subject it names, its
    /// type, state, justification and linked eligible assignment. The `resourceId` detail
    /// lets the resource's administrators (R3) read the refusal.
    pub fn request(new: &crate::request::NewRequest) -> Self {
        let mut about = About::NOTHING;
        for (kind, id) in [
            ("Role", &new.role_definition_id),
            ("Resource", &new.resource_id),
            ("Subject", &new.subject_id),
        ] {
            if !id.is_empty() {
                about.targets.push(Target::new(kind, id, id));
            }
        }
        let mut detail = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                about.details.push((k.into(), v.into()));
            }
        };
        detail("resourceId", Some(&new.resource_id));
        detail("roleDefinitionId", Some(&new.role_definition_id));
        detail("requestType", new.kind.map(|k| k.as_str()));
        detail("assignmentState", new.state.map(|s| s.as_str()));
        detail("reason", new.reason.as_deref());
        detail(
            "linkedEligibleRoleAssignmentId",
            new.linked_eligible_id.as_deref(),
        );
        if new.emergency {
            detail("emergency", Some("true"));
        }
        about
    }

    /// A refused action on one existing entity of `kind` (`Request`, `RoleSetting`, …),
    /// recorded as a target and as the detail `key`.
    pub fn entity(kind: &str, id: &str, key: &str) -> Self {
        About {
            targets: vec![Target::new(kind, id, id)],
            details: vec![(key.into(), id.into())],
        }
    }
}

/// The `failure` record of a write refused with `e` (decisions.md §11: every refused write
/// is audited): result `failure`, operation type `Refused`, the error's message as the
/// reason and its code as the `errorCode` detail.
pub fn refusal(
    ctx: &crate::access::OpContext,
    category: &str,
    activity: &str,
    e: &DomainError,
    about: About,
) -> AuditRecord {
    let mut additional_details = vec![("errorCode".to_string(), e.code.as_str().to_string())];
    additional_details.extend(about.details);
    AuditRecord {
        result: "failure".into(),
        result_reason: e.message.clone(),
        target_resources: about.targets,
        additional_details,
        ..AuditRecord::by(ctx, category, activity, "Refused")
    }
}

/// An audit record as listed: its document and the resource it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The `directoryAudit` document.
    pub document: serde_json::Map<String, Value>,
    /// The resource the record is about ([`AuditIndex::resource_id`]).
    pub resource_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, resource: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            category: "RoleManagement".into(),
            correlation_id: "corr-1".into(),
            result: "success".into(),
            result_reason: "Provisioned".into(),
            activity_display_name: "Activate role".into(),
            activity_date_time: "2024-05-01T10:00:00.123456Z".parse().unwrap(),
            operation_type: "UserAdd".into(),
            initiated_by: Initiator {
                id: "u1".into(),
                display_name: "Ann \"the admin\"".into(),
                user_principal_name: None,
                application: false,
            },
            target_resources: vec![
                Target::new("Role", "role-1", "Contributor"),
                Target::new("Resource", resource, "sub"),
                Target::new("Subject", "u1", "u1"),
            ],
            additional_details: vec![("reason".into(), "line\nbreak".into())],
        }
    }

    fn link(seq: i64, doc: &Value, prev: &str) -> ChainLink {
        ChainLink {
            seq,
            id: doc["id"].as_str().unwrap().into(),
            document: doc.to_string(),
            prev_hash: Some(prev.into()),
            hash: Some(chain_hash(prev, doc)),
            columns: AuditIndex::of(doc).ok(),
        }
    }

    #[test]
    fn canonical_form_is_jcs_and_the_hash_is_pinned() {
        let doc = json!({"b": "x\u{1}\"\\", "a": [null, "é"], "A": {"z": "1", "y": null}});
        let canonical = r#"{"A":{"y":null,"z":"1"},"a":[null,"é"],"b":"x\u0001\"\\"}"#;
        assert_eq!(canonical_json(&doc), canonical);
        // SHA-256 of 64 zeros followed by the canonical text, computed independently: a
        // PostgreSQL store must produce exactly this.
        assert_eq!(
            chain_hash(GENESIS_HASH, &doc),
            "7c946d10b00398174a0615e0bc8a8acd9b4ebb104310222eea0799db8c002655"
        );
        // Member order and whitespace of the stored text do not matter.
        let reordered: Value = serde_json::from_str(
            r#"{ "A": {"y": null, "z": "1"}, "b": "x\u0001\"\\", "a": [null, "é"] }"#,
        )
        .unwrap();
        assert_eq!(chain_hash("ab", &doc), chain_hash("ab", &reordered));
        assert_ne!(chain_hash("ab", &doc), chain_hash("ac", &doc));
        // UTF-16 order: U+1F600 (a surrogate pair, D83D DE00) sorts before U+FF61, unlike
        // in code point or UTF-8 order.
        let keys = json!({"\u{FF61}": 2, "\u{1F600}": 1});
        assert_eq!(canonical_json(&keys), "{\"\u{1F600}\":1,\"\u{FF61}\":2}");
    }

    #[test]
    fn index_comes_from_the_document() {
        let doc = record("a1", "res-1").to_document();
        let ix = AuditIndex::of(&doc).unwrap();
        assert_eq!(ix.id, "a1");
        assert_eq!(ix.at.to_string(), "2024-05-01T10:00:00.123456Z");
        assert_eq!(ix.initiator_id, "u1");
        assert_eq!(ix.resource_id.as_deref(), Some("res-1"));
        assert_eq!(ix.target_ids, ["res-1", "role-1", "u1"]);
        // A `resourceId` detail wins over a Resource target.
        let mut r = record("a2", "res-1");
        r.additional_details
            .push(("resourceId".into(), "res-2".into()));
        let ix = AuditIndex::of(&r.to_document()).unwrap();
        assert_eq!(ix.resource_id.as_deref(), Some("res-2"));
        r.target_resources.clear();
        r.additional_details.clear();
        assert_eq!(AuditIndex::of(&r.to_document()).unwrap().resource_id, None);
        assert!(AuditIndex::of(&json!({"id": "x"})).is_err());
    }

    #[test]
    fn verifier_finds_the_first_broken_link() {
        let docs: Vec<Value> = (0..4)
            .map(|i| record(&format!("r{i}"), "res").to_document())
            .collect();
        let mut links = Vec::new();
        let mut prev = GENESIS_HASH.to_string();
        for (i, d) in docs.iter().enumerate() {
            let l = link(i as i64 + 1, d, &prev);
            prev = l.hash.clone().unwrap();
            links.push(l);
        }
        let run = |links: &[ChainLink]| {
            let mut v = ChainVerifier::new();
            for l in links {
                v.check(l)?;
            }
            Ok::<u64, BrokenLink>(v.checked())
        };
        assert_eq!(run(&links), Ok(4));

        let mut altered = links.clone();
        altered[2].document = altered[2]
            .document
            .replace("Activate role", "Nothing to see");
        let e = run(&altered).unwrap_err();
        assert_eq!((e.id.as_str(), e.seq), ("r2", 3));
        assert!(e.reason.contains("altered"), "{}", e.reason);

        let mut removed = links.clone();
        removed.remove(1);
        assert_eq!(run(&removed).unwrap_err().id, "r2");

        let mut column = links.clone();
        if let Some(c) = column[1].columns.as_mut() {
            c.result = "failure".into();
        }
        assert_eq!(run(&column).unwrap_err().id, "r1");

        let mut rehashed = links.clone();
        rehashed[0].hash = Some(GENESIS_HASH.into());
        assert_eq!(run(&rehashed).unwrap_err().id, "r0");

        let mut garbage = links;
        garbage[3].document = "{not json".into();
        assert_eq!(run(&garbage).unwrap_err().id, "r3");
    }
}
