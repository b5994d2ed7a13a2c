//! Connector delivery (connectors.md §6, §7): items, requested state, ledger, passes,
//! findings and leases.

use super::tx::*;

const ITEM_COLS: &str = "i.id, i.connector, i.target, i.principal, i.subject_id, i.operation, i.cause, \
     i.cause_id, i.assignment_ids, i.not_after, i.state, i.attempts, i.created_at, i.due_at, \
     i.next_attempt_at, i.last_attempt_at, i.completed_at, i.error_code, i.error_message";

/// The item that `item` names (an alias, or the table in an UPDATE) is the newest of its
/// key.
fn newest(item: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM connector_items n WHERE n.connector = {item}.connector \
         AND n.target = {item}.target AND n.principal = {item}.principal AND n.seq > {item}.seq)"
    )
}

/// States in which an item will still run.
const UNFINISHED: &str = "('pending', 'retrying', 'inProgress')";

/// Comma-separated assignment ids, as items and requested keys keep them.
fn ids(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn item_row(r: &Row) -> Result<ConnectorItem> {
    let operation: String = r.get(5)?;
    let state: String = r.get(10)?;
    let ids_text: String = r.get(8)?;
    let opt_ts =
        |i: usize| -> Result<Option<Timestamp>> { r.get::<Option<i64>>(i)?.map(ts).transpose() };
    let code: Option<String> = r.get(17)?;
    let message: Option<String> = r.get(18)?;
    Ok(ConnectorItem {
        id: r.get(0)?,
        connector: r.get(1)?,
        target: r.get(2)?,
        principal: r.get(3)?,
        subject_id: r.get(4)?,
        operation: ItemOperation::parse(&operation)
            .ok_or_else(|| bad_column("item operation", &operation))?,
        cause: r.get(6)?,
        cause_id: r.get(7)?,
        assignment_ids: ids(&ids_text),
        not_after: opt_ts(9)?,
        state: ItemState::parse(&state).ok_or_else(|| bad_column("item state", &state))?,
        attempts: r.get(11)?,
        created: ts(r.get(12)?)?,
        due: ts(r.get(13)?)?,
        next_attempt: ts(r.get(14)?)?,
        last_attempt: opt_ts(15)?,
        completed: opt_ts(16)?,
        last_error: code.map(|c| (c, message.unwrap_or_default())),
    })
}

impl ConnectorRead for SqlTx<'_> {
    fn requested_keys(
        &mut self,
        connector: &str,
    ) -> Result<std::collections::BTreeMap<(String, String), RequestedKey>> {
        let rows = self.many(
            "SELECT target, principal, operation, subject_id, not_after, assignment_ids \
             FROM connector_requested WHERE connector = ?",
            &params![connector],
            |r| {
                let operation: String = r.get(2)?;
                Ok((
                    (r.get::<String>(0)?, r.get::<String>(1)?),
                    RequestedKey {
                        operation: ItemOperation::parse(&operation)
                            .ok_or_else(|| bad_column("requested operation", &operation))?,
                        subject_id: r.get(3)?,
                        not_after: r.get::<Option<i64>>(4)?.map(ts).transpose()?,
                        assignment_ids: ids(&r.get::<String>(5)?),
                    },
                ))
            },
        )?;
        Ok(rows.into_iter().collect())
    }
    fn connector_ledger(&mut self, connector: &str) -> Result<Vec<LedgerEntry>> {
        self.many(
            "SELECT target, principal, subject_id, since, item_id FROM connector_ledger \
             WHERE connector = ? ORDER BY target, principal",
            &params![connector],
            |r| {
                Ok(LedgerEntry {
                    target: r.get(0)?,
                    principal: r.get(1)?,
                    subject_id: r.get(2)?,
                    since: ts(r.get(3)?)?,
                    item_id: r.get(4)?,
                })
            },
        )
    }
    fn in_connector_ledger(
        &mut self,
        connector: &str,
        target: &str,
        principal: &str,
    ) -> Result<bool> {
        Ok(self
            .one(
                "SELECT 1 FROM connector_ledger WHERE connector = ? AND target = ? AND principal = ?",
                &params![connector, target, principal],
                |r| r.get::<i64>(0),
            )?
            .is_some())
    }
    fn connector_items(
        &mut self,
        connector: &str,
        state: Option<ItemState>,
        limit: u32,
    ) -> Result<Vec<ConnectorItem>> {
        match state {
            Some(state) => self.many(
                &format!(
                    "SELECT {ITEM_COLS} FROM connector_items i WHERE i.connector = ? AND i.state = ? \
                     ORDER BY i.seq DESC LIMIT ?"
                ),
                &params![connector, state.as_str(), limit],
                item_row,
            ),
            None => self.many(
                &format!(
                    "SELECT {ITEM_COLS} FROM connector_items i WHERE i.connector = ? \
                     ORDER BY i.seq DESC LIMIT ?"
                ),
                &params![connector, limit],
                item_row,
            ),
        }
    }
    fn settling_items(
        &mut self,
        connector: &str,
        dead_since: Timestamp,
    ) -> Result<Vec<ConnectorItem>> {
        self.many(
            &format!(
                "SELECT {ITEM_COLS} FROM connector_items i WHERE i.connector = ?1 \
                 AND (i.state IN {UNFINISHED} OR (i.state = 'dead' AND i.completed_at >= ?2)) \
                 AND NOT EXISTS (SELECT 1 FROM connector_items n WHERE n.connector = i.connector \
                   AND n.target = i.target AND n.principal = i.principal AND n.seq > i.seq \
                   AND n.state <> 'superseded') \
                 ORDER BY i.seq"
            ),
            &params![connector, us(dead_since)],
            item_row,
        )
    }
    fn next_connector_item_due(&mut self, connector: &str) -> Result<Option<Timestamp>> {
        self.one(
            "SELECT min(CASE WHEN state = 'inProgress' THEN lease_until ELSE next_attempt_at END) \
             FROM connector_items WHERE connector = ? AND state IN ('pending', 'retrying', 'inProgress')",
            &params![connector],
            |r| r.get::<Option<i64>>(0),
        )?
        .flatten()
        .map(ts)
        .transpose()
    }
    fn succeeded_since(
        &mut self,
        connector: &str,
        since: Timestamp,
    ) -> Result<Vec<(String, String)>> {
        self.many(
            "SELECT target, principal FROM connector_items WHERE connector = ? \
             AND state = 'succeeded' AND completed_at >= ?",
            &params![connector, us(since)],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )
    }
    fn connector_item_counts(&mut self, connector: &str) -> Result<Vec<(ItemState, u64)>> {
        self.many(
            // A dead item a newer item of its key followed says nothing any more.
            &format!(
                "SELECT i.state, count(*) FROM connector_items i WHERE i.connector = ? \
                 AND (i.state <> 'dead' OR {}) GROUP BY i.state",
                newest("i")
            ),
            &params![connector],
            |r| {
                let state: String = r.get(0)?;
                Ok((
                    ItemState::parse(&state).ok_or_else(|| bad_column("item state", &state))?,
                    u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
                ))
            },
        )
    }
    fn last_reconcile_pass(&mut self, connector: &str) -> Result<Option<serde_json::Value>> {
        self.one(
            "SELECT summary FROM connector_passes WHERE connector = ? \
             ORDER BY started_at DESC, id DESC LIMIT 1",
            &params![connector],
            |r| serde_json::from_str(&r.get::<String>(0)?).map_err(json_err),
        )
    }
    fn connector_findings(
        &mut self,
        connector: &str,
        kind: &str,
    ) -> Result<Vec<(String, String, String)>> {
        self.many(
            "SELECT a, b, detail FROM connector_findings WHERE connector = ? AND kind = ? \
             ORDER BY a, b",
            &params![connector, kind],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }
}

impl ConnectorWrite for SqlTx<'_> {
    fn enqueue_connector_item(&mut self, item: &ConnectorItem) -> Result<()> {
        self.exec(
            "UPDATE connector_items SET state = 'superseded', completed_at = ?4, lease_owner = NULL \
             WHERE connector = ?1 AND target = ?2 AND principal = ?3 \
               AND state IN ('pending', 'retrying')",
            &params![item.connector, item.target, item.principal, us(item.created)],
        )?;
        self.exec(
            "INSERT INTO connector_items (id, connector, target, principal, subject_id, operation, \
             cause, cause_id, assignment_ids, not_after, state, attempts, created_at, due_at, \
             next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &params![
                item.id,
                item.connector,
                item.target,
                item.principal,
                item.subject_id,
                item.operation.as_str(),
                item.cause,
                item.cause_id,
                item.assignment_ids.join(","),
                item.not_after.map(us),
                item.state.as_str(),
                item.attempts,
                us(item.created),
                us(item.due),
                us(item.next_attempt)
            ],
        )?;
        self.exec(
            "INSERT INTO connector_requested (connector, target, principal, operation, subject_id, \
             not_after, assignment_ids) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (connector, target, principal) DO UPDATE SET \
             operation = excluded.operation, subject_id = excluded.subject_id, \
             not_after = excluded.not_after, assignment_ids = excluded.assignment_ids",
            &params![
                item.connector,
                item.target,
                item.principal,
                item.operation.as_str(),
                item.subject_id,
                item.not_after.map(us),
                item.assignment_ids.join(",")
            ],
        )?;
        Ok(())
    }
    fn claim_connector_items(
        &mut self,
        connector: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ConnectorItem>> {
        let ids = self.many(
            &format!(
                // Candidates through the state index (settled items, the bulk of the
                // table, are never read), then the oldest unblocked ones.
                "SELECT i.id FROM connector_items i WHERE i.id IN ( \
                   SELECT c.id FROM connector_items c WHERE c.connector = ?1 \
                   AND c.state IN ('pending', 'retrying') AND c.next_attempt_at <= ?2 \
                   UNION ALL SELECT c.id FROM connector_items c WHERE c.connector = ?1 \
                   AND c.state = 'inProgress' AND c.lease_until < ?2) \
                 AND NOT EXISTS (SELECT 1 FROM connector_items o WHERE o.connector = i.connector \
                   AND o.target = i.target AND o.principal = i.principal AND o.seq < i.seq \
                   AND o.state IN {UNFINISHED}) \
                 ORDER BY i.seq LIMIT ?3"
            ),
            &params![connector, us(now), limit],
            |r| r.get::<String>(0),
        )?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            self.exec(
                "UPDATE connector_items SET state = 'inProgress', lease_owner = ?2, \
                 lease_until = ?3, attempts = attempts + 1, last_attempt_at = ?4 WHERE id = ?1",
                &params![id, owner, us(lease_until), us(now)],
            )?;
            claimed.extend(self.one(
                &format!("SELECT {ITEM_COLS} FROM connector_items i WHERE i.id = ?"),
                &params![id],
                item_row,
            )?);
        }
        Ok(claimed)
    }
    fn settle_connector_item(
        &mut self,
        item: &ConnectorItem,
        owner: &str,
        outcome: &ItemOutcome,
        now: Timestamp,
    ) -> Result<bool> {
        let held = "id = ?1 AND lease_owner = ?2 AND state = 'inProgress'";
        let id = item.id.as_str();
        let changed = match outcome {
            ItemOutcome::Succeeded => self.exec(
                &format!(
                    "UPDATE connector_items SET state = 'succeeded', completed_at = ?3, \
                     lease_owner = NULL, lease_until = 0, error_code = NULL, error_message = NULL \
                     WHERE {held}"
                ),
                &params![id, owner, us(now)],
            )?,
            ItemOutcome::Retry {
                next_attempt,
                code,
                message,
            } => self.exec(
                &format!(
                    "UPDATE connector_items SET state = 'retrying', next_attempt_at = ?3, \
                     lease_owner = NULL, lease_until = 0, error_code = ?4, error_message = ?5 \
                     WHERE {held}"
                ),
                &params![id, owner, us(*next_attempt), code, message],
            )?,
            ItemOutcome::Dead { code, message } => self.exec(
                &format!(
                    "UPDATE connector_items SET state = 'dead', completed_at = ?3, \
                     lease_owner = NULL, lease_until = 0, error_code = ?4, error_message = ?5 \
                     WHERE {held}"
                ),
                &params![id, owner, us(now), code, message],
            )?,
        };
        if changed == 0 {
            return Ok(false);
        }
        if *outcome == ItemOutcome::Succeeded {
            match item.operation {
                ItemOperation::Grant => self.adopt_connector_grant(
                    &item.connector,
                    &LedgerEntry {
                        target: item.target.clone(),
                        principal: item.principal.clone(),
                        subject_id: item.subject_id.clone(),
                        since: now,
                        item_id: item.id.clone(),
                    },
                )?,
                ItemOperation::Revoke => {
                    self.exec(
                        "DELETE FROM connector_ledger \
                         WHERE connector = ? AND target = ? AND principal = ?",
                        &params![item.connector, item.target, item.principal],
                    )?;
                }
            }
        }
        Ok(true)
    }
    fn supersede_connector_items(&mut self, connector: &str, now: Timestamp) -> Result<()> {
        self.exec(
            "UPDATE connector_items SET state = 'superseded', completed_at = ?2, lease_owner = NULL \
             WHERE connector = ?1 AND state IN ('pending', 'retrying')",
            &params![connector, us(now)],
        )?;
        Ok(())
    }
    fn refresh_requested_grant(
        &mut self,
        connector: &str,
        refreshed: &RefreshedGrant,
        now: Timestamp,
    ) -> Result<bool> {
        let (target, principal) = &refreshed.key;
        self.exec(
            "UPDATE connector_requested SET assignment_ids = ?, not_after = ? \
             WHERE connector = ? AND target = ? AND principal = ? AND operation = 'grant'",
            &params![
                refreshed.assignment_ids.join(","),
                refreshed.not_after.map(us),
                connector,
                target,
                principal
            ],
        )?;
        // The key's newest item, if it is a dead grant, runs again.
        let rearmed = self.exec(
            &format!(
                "UPDATE connector_items SET state = 'pending', attempts = 0, next_attempt_at = ?, \
                 completed_at = NULL, assignment_ids = ?, not_after = ? \
                 WHERE connector = ? AND target = ? AND principal = ? AND state = 'dead' \
                 AND operation = 'grant' AND {}",
                newest("connector_items")
            ),
            &params![
                us(now),
                refreshed.assignment_ids.join(","),
                refreshed.not_after.map(us),
                connector,
                target,
                principal
            ],
        )?;
        Ok(rearmed > 0)
    }
    fn rearm_dead_items(
        &mut self,
        connector: &str,
        died_before: Option<Timestamp>,
        cause: Option<&str>,
        now: Timestamp,
    ) -> Result<u64> {
        // Only the newest item of a key is re-armed: an older dead one is outdated.
        let newest = newest("connector_items");
        let sql = |extra: &str| {
            format!(
                "UPDATE connector_items SET state = 'pending', attempts = 0, next_attempt_at = ?2, \
                 completed_at = NULL, cause = coalesce(?3, cause) \
                 WHERE connector = ?1 AND state = 'dead' AND {newest}{extra}"
            )
        };
        match died_before {
            Some(before) => self.exec(
                &sql(" AND completed_at < ?4"),
                &params![connector, us(now), cause, us(before)],
            ),
            None => self.exec(&sql(""), &params![connector, us(now), cause]),
        }
    }
    fn adopt_connector_grant(&mut self, connector: &str, e: &LedgerEntry) -> Result<()> {
        self.exec(
            "INSERT INTO connector_ledger (connector, target, principal, subject_id, since, item_id) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connector, target, principal) DO UPDATE SET \
             subject_id = excluded.subject_id, since = excluded.since, item_id = excluded.item_id",
            &params![
                connector,
                e.target,
                e.principal,
                e.subject_id,
                us(e.since),
                e.item_id
            ],
        )?;
        Ok(())
    }
    fn claim_connector_lease(
        &mut self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO connector_leases (name, owner, until) VALUES (?1, ?2, ?4) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE connector_leases.until < ?3 OR connector_leases.owner = ?2",
            &params![name, owner, us(now), us(until)],
        )?;
        Ok(n > 0)
    }
    fn release_connector_lease(&mut self, name: &str, owner: &str) -> Result<()> {
        self.exec(
            "DELETE FROM connector_leases WHERE name = ? AND owner = ?",
            &params![name, owner],
        )?;
        Ok(())
    }
    fn record_reconcile_pass(&mut self, connector: &str, pass: &serde_json::Value) -> Result<()> {
        let id = pass["id"].as_str().unwrap_or_default();
        let started = pass["startDateTime"]
            .as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .ok_or_else(|| DomainError::internal("a pass summary without startDateTime"))?;
        let text = pass.to_string();
        self.exec(
            "INSERT INTO connector_passes (id, connector, started_at, summary) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET summary = excluded.summary",
            &params![id, connector, us(started), text],
        )?;
        Ok(())
    }
    fn replace_connector_findings(
        &mut self,
        connector: &str,
        kind: &str,
        rows: &[(String, String, String)],
    ) -> Result<()> {
        self.exec(
            "DELETE FROM connector_findings WHERE connector = ? AND kind = ?",
            &params![connector, kind],
        )?;
        for (a, b, detail) in rows {
            self.exec(
                "INSERT INTO connector_findings (connector, kind, a, b, detail) \
                 VALUES (?, ?, ?, ?, ?)",
                &params![connector, kind, a, b, detail],
            )?;
        }
        Ok(())
    }
    fn prune_connector_items(
        &mut self,
        settled_before: Timestamp,
        dead_before: Timestamp,
    ) -> Result<()> {
        self.exec(
            "DELETE FROM connector_items WHERE (state IN ('succeeded', 'superseded') \
             AND completed_at < ?1) OR (state = 'dead' AND completed_at < ?2)",
            &params![us(settled_before), us(dead_before)],
        )?;
        self.exec(
            "DELETE FROM connector_passes WHERE started_at < ?",
            &params![us(settled_before)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rolegate_core::provisioning::delivery::{Cause, PlannedItem};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn item(id: &str, principal: &str, operation: ItemOperation, s: i64) -> ConnectorItem {
        ConnectorItem::new(
            id.into(),
            "pg",
            PlannedItem {
                key: ("t".into(), principal.into()),
                operation,
                subject_id: Some(format!("s-{principal}")),
                cause: Cause::Assignment,
                cause_id: None,
                assignment_ids: vec!["a1".into(), "a2".into()],
                not_after: Some(at(500)),
                due: at(s),
            },
            at(s),
        )
    }

    /// Item `id` as stored.
    fn stored(tx: &mut SqlTx<'_>, id: &str) -> Result<ConnectorItem> {
        tx.connector_items("pg", None, 100)?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| DomainError::internal(format!("no item {id}")))
    }

    fn ids(items: &[ConnectorItem]) -> Vec<&str> {
        items.iter().map(|i| i.id.as_str()).collect()
    }

    /// Items of one key run in order, one at a time; a newer item supersedes the waiting
    /// ones; leases are exclusive until they run out; settling moves the ledger; dead items
    /// are re-armed only as the newest of their key; settled items are pruned.
    #[test]
    fn items_run_in_order_per_key_under_exclusive_leases() -> Result<()> {
        crate::sql::with_memory_tx(|mut tx| {
            tx.enqueue_connector_item(&item("g-alice", "alice", ItemOperation::Grant, 1))?;
            tx.enqueue_connector_item(&item("g-bob", "bob", ItemOperation::Grant, 1))?;
            let requested = tx.requested_keys("pg")?;
            assert_eq!(requested.len(), 2);
            // Two keys, two items claimed at once; nothing left for another node.
            assert_eq!(tx.next_connector_item_due("pg")?, Some(at(1)));
            let claimed = tx.claim_connector_items("pg", "A", at(2), at(60), 10)?;
            assert_eq!(ids(&claimed), ["g-alice", "g-bob"]);
            assert_eq!(
                tx.next_connector_item_due("pg")?,
                Some(at(60)),
                "the leases' end"
            );
            assert_eq!(claimed[0].attempts, 1);
            assert_eq!(claimed[0].assignment_ids, ["a1", "a2"]);
            assert!(
                tx.claim_connector_items("pg", "B", at(3), at(63), 10)?
                    .is_empty()
            );
            // A revoke of alice's key waits behind her running grant.
            tx.enqueue_connector_item(&item("r-alice", "alice", ItemOperation::Revoke, 4))?;
            assert!(
                tx.claim_connector_items("pg", "B", at(5), at(65), 10)?
                    .is_empty()
            );
            // Only the holder settles; the grant enters the ledger.
            let held = stored(&mut tx, "g-alice")?;
            assert!(!tx.settle_connector_item(&held, "B", &ItemOutcome::Succeeded, at(6))?);
            let held = stored(&mut tx, "g-alice")?;
            assert!(tx.settle_connector_item(&held, "A", &ItemOutcome::Succeeded, at(6))?);
            assert_eq!(tx.connector_ledger("pg")?.len(), 1);
            assert_eq!(
                tx.succeeded_since("pg", at(6))?,
                [("t".to_string(), "alice".to_string())]
            );
            assert!(tx.succeeded_since("pg", at(7))?.is_empty());
            assert!(tx.in_connector_ledger("pg", "t", "alice")?);
            assert!(!tx.in_connector_ledger("pg", "t", "bob")?);
            // Bob's lease runs out (node A died): B takes his grant over.
            let taken = tx.claim_connector_items("pg", "B", at(61), at(120), 10)?;
            assert_eq!(ids(&taken), ["g-bob", "r-alice"]);
            let held = stored(&mut tx, "g-bob")?;
            assert!(!tx.settle_connector_item(&held, "A", &ItemOutcome::Succeeded, at(62))?);
            let held = stored(&mut tx, "g-bob")?;
            assert!(tx.settle_connector_item(&held, "B", &ItemOutcome::Succeeded, at(62))?);
            // The revoke fails, is retried later, then succeeds: the ledger entry goes.
            let retry = ItemOutcome::Retry {
                next_attempt: at(100),
                code: "Unreachable".into(),
                message: "down".into(),
            };
            let held = stored(&mut tx, "r-alice")?;
            assert!(tx.settle_connector_item(&held, "B", &retry, at(62))?);
            assert!(
                tx.claim_connector_items("pg", "B", at(99), at(160), 10)?
                    .is_empty()
            );
            let again = tx.claim_connector_items("pg", "B", at(100), at(160), 10)?;
            assert_eq!(ids(&again), ["r-alice"]);
            assert_eq!(again[0].attempts, 2);
            assert_eq!(
                again[0].last_error,
                Some(("Unreachable".into(), "down".into()))
            );
            let held = stored(&mut tx, "r-alice")?;
            assert!(tx.settle_connector_item(&held, "B", &ItemOutcome::Succeeded, at(101))?);
            let ledger = tx.connector_ledger("pg")?;
            assert!(ledger.iter().all(|e| e.principal != "alice"), "{ledger:?}");
            // A waiting item is superseded by a newer one of its key.
            tx.enqueue_connector_item(&item("g2-alice", "alice", ItemOperation::Grant, 110))?;
            tx.enqueue_connector_item(&item("r2-alice", "alice", ItemOperation::Revoke, 111))?;
            let states: Vec<_> = tx
                .connector_items("pg", None, 10)?
                .into_iter()
                .map(|i| (i.id, i.state))
                .collect();
            assert_eq!(states[0], ("r2-alice".to_string(), ItemState::Pending));
            assert_eq!(states[1], ("g2-alice".to_string(), ItemState::Superseded));
            // It dies; re-armed only before the cut-off and only as the newest of its key.
            let claimed = tx.claim_connector_items("pg", "A", at(112), at(170), 10)?;
            assert_eq!(ids(&claimed), ["r2-alice"]);
            let dead = ItemOutcome::Dead {
                code: "Refused".into(),
                message: "no".into(),
            };
            let held = stored(&mut tx, "r2-alice")?;
            assert!(tx.settle_connector_item(&held, "A", &dead, at(113))?);
            assert_eq!(tx.settling_items("pg", at(113))?.len(), 1);
            assert_eq!(tx.rearm_dead_items("pg", Some(at(113)), None, at(114))?, 0);
            assert_eq!(
                tx.rearm_dead_items("pg", None, Some("operator"), at(114))?,
                1
            );
            assert_eq!(stored(&mut tx, "r2-alice")?.cause, "operator");
            let counts = tx.connector_item_counts("pg")?;
            assert!(counts.contains(&(ItemState::Pending, 1)), "{counts:?}");
            // Pruning keeps what is recent or unfinished.
            tx.prune_connector_items(at(1000), at(1000))?;
            let left = tx.connector_items("pg", None, 10)?;
            assert_eq!(ids(&left), ["r2-alice"]);
            Ok(())
        })
    }

    /// A grant that stands on other assignments updates its key's requested state, and
    /// re-arms its item if that died; a revoke's key is left alone.
    #[test]
    fn a_refreshed_grant_follows_its_assignments_and_rearms_a_dead_item() -> Result<()> {
        crate::sql::with_memory_tx(|mut tx| {
            tx.enqueue_connector_item(&item("g-alice", "alice", ItemOperation::Grant, 1))?;
            tx.enqueue_connector_item(&item("r-bob", "bob", ItemOperation::Revoke, 1))?;
            let claimed = tx.claim_connector_items("pg", "A", at(2), at(60), 10)?;
            assert_eq!(claimed.len(), 2);
            let dead = ItemOutcome::Dead {
                code: "Refused".into(),
                message: "no".into(),
            };
            let held = stored(&mut tx, "g-alice")?;
            assert!(tx.settle_connector_item(&held, "A", &dead, at(3))?);
            let refreshed = |principal: &str| RefreshedGrant {
                key: ("t".into(), principal.into()),
                assignment_ids: vec!["a3".into()],
                not_after: Some(at(900)),
            };
            assert!(tx.refresh_requested_grant("pg", &refreshed("alice"), at(4))?);
            let requested = tx.requested_keys("pg")?;
            let alice = &requested[&("t".to_string(), "alice".to_string())];
            assert_eq!(alice.assignment_ids, ["a3"]);
            assert_eq!(alice.not_after, Some(at(900)));
            let again = stored(&mut tx, "g-alice")?;
            assert_eq!((again.state, again.attempts), (ItemState::Pending, 0));
            assert_eq!(again.assignment_ids, ["a3"]);
            // Once re-armed, refreshing again re-arms nothing more.
            assert!(!tx.refresh_requested_grant("pg", &refreshed("alice"), at(5))?);
            // Bob's key was last requested revoked: untouched.
            assert!(!tx.refresh_requested_grant("pg", &refreshed("bob"), at(5))?);
            let requested = tx.requested_keys("pg")?;
            assert_eq!(
                requested[&("t".to_string(), "bob".to_string())].assignment_ids,
                ["a1", "a2"]
            );
            Ok(())
        })
    }

    /// Every insert, update and delete of a subject moves the directory generation, which
    /// the connectors' planning trusts to know its cached directory is current.
    #[test]
    fn every_change_of_a_subject_moves_the_directory_generation() -> Result<()> {
        use rolegate_core::directory::{Subject, SubjectKind};
        crate::sql::with_memory_tx(|mut tx| {
            let mut alice = Subject {
                id: "s-alice".into(),
                external_id: None,
                kind: SubjectKind::User,
                display_name: "Alice".into(),
                principal_name: Some("alice@example.test".into()),
                email: None,
                active: true,
            };
            let before = tx.directory_generation()?;
            tx.insert_subject(&alice, at(1))?;
            let inserted = tx.directory_generation()?;
            assert!(inserted > before);
            alice.active = false;
            tx.update_subject(&alice)?;
            let updated = tx.directory_generation()?;
            assert!(updated > inserted);
            tx.delete_subject("s-alice")?;
            assert!(tx.directory_generation()? > updated);
            // Reads move nothing.
            let now = tx.directory_generation()?;
            tx.all_subjects()?;
            assert_eq!(tx.directory_generation()?, now);
            Ok(())
        })
    }

    /// A lease row is held by one owner until it runs out or is released.
    #[test]
    fn a_connector_lease_has_one_holder() -> Result<()> {
        crate::sql::with_memory_tx(|mut tx| {
            assert!(tx.claim_connector_lease("reconcile:pg", "A", at(0), at(60))?);
            assert!(tx.claim_connector_lease("reconcile:pg", "A", at(1), at(61))?);
            assert!(!tx.claim_connector_lease("reconcile:pg", "B", at(2), at(62))?);
            assert!(tx.claim_connector_lease("reconcile:pg", "B", at(62), at(120))?);
            tx.release_connector_lease("reconcile:pg", "A")?;
            assert!(!tx.claim_connector_lease("reconcile:pg", "A", at(63), at(123))?);
            tx.release_connector_lease("reconcile:pg", "B")?;
            assert!(tx.claim_connector_lease("reconcile:pg", "A", at(64), at(124))?);
            Ok(())
        })
    }
}
