//! The access log several nodes share.

use super::tx::*;

impl AccessLogRead for SqlTx<'_> {
    fn access_changes_since(&mut self, after: i64, limit: u32) -> Result<Vec<AccessLogEntry>> {
        self.many(
            "SELECT seq, changes FROM access_log WHERE seq > ? ORDER BY seq LIMIT ?",
            &params![after, limit],
            |r| {
                let text: String = r.get(1)?;
                Ok(AccessLogEntry {
                    seq: r.get(0)?,
                    changes: serde_json::from_str(&text).ok(),
                })
            },
        )
    }
    fn access_log_head(&mut self) -> Result<i64> {
        Ok(self
            .one("SELECT coalesce(max(seq), 0) FROM access_log", &[], |r| {
                r.get::<i64>(0)
            })?
            .unwrap_or(0))
    }
}

impl AccessLogWrite for SqlTx<'_> {
    fn log_access_changes(&mut self, changes: &[AccessChange], at: Timestamp) -> Result<i64> {
        let json = serde_json::to_string(changes)
            .map_err(|e| DomainError::internal(format!("access changes: {e}")))?;
        self.one(
            "INSERT INTO access_log (at, changes) VALUES (?, ?) RETURNING seq",
            &params![us(at), json],
            |r| r.get::<i64>(0),
        )?
        .ok_or_else(|| DomainError::internal("access log insert returned no seq"))
    }
    fn prune_access_log(&mut self, before: Timestamp) -> Result<()> {
        self.exec("DELETE FROM access_log WHERE at < ?", &params![us(before)])?;
        Ok(())
    }
}
