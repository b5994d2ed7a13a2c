//! The scheduler's queries and claims (due grants, expired approvals, ended assignments, reminders).

use super::tx::*;

const DUE_GRANTS: &str =
    "WHERE q.sub_status = 'Granted' AND q.start_at <= ? ORDER BY q.start_at LIMIT ?";

const EXPIRED_APPROVALS: &str = "WHERE q.sub_status = 'PendingApproval' AND q.approval_deadline <= ? \
     ORDER BY q.approval_deadline LIMIT ?";

const ENDED_ASSIGNMENTS: &str =
    "WHERE a.end_at IS NOT NULL AND a.end_at <= ? ORDER BY a.end_at LIMIT ?";

impl DueWork for SqlTx<'_> {
    fn due_grants(&mut self, now: Timestamp, limit: u32) -> Result<Vec<RoleAssignmentRequest>> {
        self.many(
            &format!("SELECT {REQUEST_COLS} FROM requests q {DUE_GRANTS}"),
            &params![us(now), i64::from(limit)],
            request_row,
        )
    }
    fn expired_approvals(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<RoleAssignmentRequest>> {
        self.many(
            &format!("SELECT {REQUEST_COLS} FROM requests q {EXPIRED_APPROVALS}"),
            &params![us(now), i64::from(limit)],
            request_row,
        )
    }
    fn ended_assignments(&mut self, now: Timestamp, limit: u32) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!("SELECT {ASSIGNMENT_COLS} FROM assignments a {ENDED_ASSIGNMENTS}"),
            &params![us(now), i64::from(limit)],
            assignment_row,
        )
    }
    fn claim_ended_assignment(&mut self, id: &str, now: Timestamp) -> Result<bool> {
        // A no-op update: it matches only a row that is still live and ended, and takes the
        // row lock (PostgreSQL), so a second node re-checks after the first commits and
        // finds nothing.
        let n = self.exec(
            "UPDATE assignments SET end_at = end_at WHERE id = ? AND end_at IS NOT NULL AND end_at <= ?",
            &params![id, us(now)],
        )?;
        Ok(n == 1)
    }
    fn unreminded_assignments(
        &mut self,
        threshold: &str,
        activations: bool,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<RoleAssignment>> {
        // Through `assignments_end`: the range of ends (now, until], earliest first.
        let kind = if activations {
            "a.state = 'Active' AND a.linked_eligible_id IS NOT NULL"
        } else {
            "(a.state <> 'Active' OR a.linked_eligible_id IS NULL)"
        };
        self.many(
            &format!(
                "SELECT {ASSIGNMENT_COLS} FROM assignments a \
                 WHERE a.end_at IS NOT NULL AND a.end_at > ?1 AND a.end_at <= ?2 AND a.start_at <= ?1 AND {kind} \
                 AND NOT EXISTS (SELECT 1 FROM reminders_sent s \
                                 WHERE s.assignment_id = a.id AND s.threshold = ?3 AND s.end_at = a.end_at) \
                 ORDER BY a.end_at LIMIT ?4"
            ),
            &params![us(now), us(until), threshold, i64::from(limit)],
            assignment_row,
        )
    }
    fn claim_reminder(
        &mut self,
        assignment_id: &str,
        threshold: &str,
        end: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO reminders_sent (assignment_id, threshold, end_at, sent_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
            &params![assignment_id, threshold, us(end), us(now)],
        )?;
        Ok(n == 1)
    }
    fn forget_reminders_ending_by(&mut self, now: Timestamp) -> Result<()> {
        self.exec(
            "DELETE FROM reminders_sent WHERE end_at <= ?",
            &params![us(now)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod scheduler_tests {
    use super::*;
    use crate::sqlite::db;
    use rusqlite::Connection;

    /// Each scheduler query is one range scan of its index, already in due order: no
    /// table scan, no sort, whatever the size of the tables.
    #[test]
    fn scheduler_queries_scan_their_index_in_due_order() -> Result<()> {
        let c = Connection::open_in_memory().map_err(db)?;
        crate::sqlite::migrate(&c)?;
        for (sql, index) in [
            (
                format!("SELECT {REQUEST_COLS} FROM requests q {DUE_GRANTS}"),
                "requests_granted_start",
            ),
            (
                format!("SELECT {REQUEST_COLS} FROM requests q {EXPIRED_APPROVALS}"),
                "requests_approval_deadline",
            ),
            (
                format!("SELECT {ASSIGNMENT_COLS} FROM assignments a {ENDED_ASSIGNMENTS}"),
                "assignments_end",
            ),
        ] {
            let mut stmt = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(db)?;
            let plan: Vec<String> = stmt
                .query_map([0, 10], |r| r.get(3))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            assert_eq!(plan.len(), 1, "{sql}: {plan:?}");
            assert!(
                plan[0].contains(&format!("USING INDEX {index}")),
                "{sql}: {plan:?}"
            );
        }
        Ok(())
    }
}
