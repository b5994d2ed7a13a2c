//! The audit log and its hash chain.

use super::tx::*;

impl AuditRead for SqlTx<'_> {
    fn audit_link(&mut self, id: &str) -> Result<Option<ChainLink>> {
        self.one(
            &format!("SELECT {CHAIN_COLS} FROM audit_log l WHERE l.id = ?"),
            &params![id],
            chain_row,
        )
    }
    fn request_history(&mut self, request_id: &str, limit: u32) -> Result<Vec<AuditEntry>> {
        self.many(
            &format!(
                "SELECT {AUDIT_COLS} FROM audit_log l WHERE l.request_id = ? ORDER BY l.seq LIMIT ?"
            ),
            &params![request_id, limit],
            audit_row,
        )
    }
    fn list_audit(&mut self, q: &ListQuery) -> Result<Page<AuditEntry>> {
        self.list(&AUDITS, q, audit_row)
    }
    fn audit_entry(&mut self, id: &str) -> Result<Option<AuditEntry>> {
        self.one(
            &format!("SELECT {AUDIT_COLS} FROM audit_log l WHERE l.id = ?"),
            &params![id],
            audit_row,
        )
    }
    fn audit_chain(
        &mut self,
        after_seq: i64,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<ChainLink>> {
        let mut links = match since {
            None => self.many(
                &format!("SELECT {CHAIN_COLS} FROM audit_log l WHERE l.seq > ? ORDER BY l.seq LIMIT ?"),
                &params![after_seq, i64::from(limit)],
                chain_row,
            )?,
            Some(t) => self.many(
                &format!(
                    "SELECT {CHAIN_COLS} FROM audit_log l WHERE l.seq > ? AND l.at >= ? ORDER BY l.seq LIMIT ?"
                ),
                &params![after_seq, us(t), i64::from(limit)],
                chain_row,
            )?,
        };
        let (Some(first), Some(last)) = (links.first(), links.last()) else {
            return Ok(links);
        };
        let targets: Vec<(i64, String)> = self.many(
            "SELECT audit_seq, target_id FROM audit_targets WHERE audit_seq BETWEEN ? AND ? ORDER BY audit_seq, target_id",
            &params![first.seq, last.seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut targets = targets.into_iter().peekable();
        for link in &mut links {
            while targets.next_if(|(seq, _)| *seq < link.seq).is_some() {}
            while let Some((_, id)) = targets.next_if(|(seq, _)| *seq == link.seq) {
                if let Some(c) = link.columns.as_mut() {
                    c.target_ids.push(id);
                }
            }
        }
        Ok(links)
    }
}

impl AuditWrite for SqlTx<'_> {
    fn append_audit(&mut self, rec: &AuditRecord) -> Result<()> {
        insert_audit_document(self.c, &rec.to_document())
    }
}
