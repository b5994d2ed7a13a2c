//! Portal sessions (portal.md §2), shared by every node of a database.

use super::tx::*;
use rolegate_core::session::{PendingSignIn, PortalSession};

const SESSION_COLS: &str = "id_hash, subject, name, mfa, csrf_token, created_at, last_seen, expires_at, id_token, time_zone";

fn session_row(r: &Row) -> Result<PortalSession> {
    Ok(PortalSession {
        id_hash: r.get(0)?,
        subject: r.get(1)?,
        name: r.get(2)?,
        mfa: r.get(3)?,
        csrf_token: r.get(4)?,
        created_at: ts(r.get(5)?)?,
        last_seen: ts(r.get(6)?)?,
        expires_at: ts(r.get(7)?)?,
        id_token: r.get(8)?,
        time_zone: r.get(9)?,
    })
}

impl SessionRead for SqlTx<'_> {
    fn portal_session(&mut self, id_hash: &str) -> Result<Option<PortalSession>> {
        self.one(
            &format!("SELECT {SESSION_COLS} FROM portal_sessions WHERE id_hash = ?"),
            &params![id_hash],
            session_row,
        )
    }
}

impl SessionWrite for SqlTx<'_> {
    fn insert_portal_session(&mut self, s: &PortalSession) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO portal_sessions ({SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &params![
                s.id_hash,
                s.subject,
                s.name,
                s.mfa,
                s.csrf_token,
                us(s.created_at),
                us(s.last_seen),
                us(s.expires_at),
                s.id_token,
                s.time_zone
            ],
        )?;
        Ok(())
    }
    fn touch_portal_session(
        &mut self,
        id_hash: &str,
        at: Timestamp,
        time_zone: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE portal_sessions SET last_seen = ?, time_zone = coalesce(?, time_zone) WHERE id_hash = ?",
            &params![us(at), time_zone, id_hash],
        )?;
        Ok(())
    }
    fn delete_portal_session(&mut self, id_hash: &str) -> Result<bool> {
        Ok(self.exec(
            "DELETE FROM portal_sessions WHERE id_hash = ?",
            &params![id_hash],
        )? > 0)
    }
    fn delete_portal_sessions_of(&mut self, subject: &str) -> Result<()> {
        self.exec(
            "DELETE FROM portal_sessions WHERE subject = ?",
            &params![subject],
        )?;
        Ok(())
    }
    fn prune_portal_sessions(&mut self, now: Timestamp, idle_before: Timestamp) -> Result<()> {
        self.exec(
            "DELETE FROM portal_sessions WHERE expires_at <= ? OR last_seen < ?",
            &params![us(now), us(idle_before)],
        )?;
        self.exec(
            "DELETE FROM portal_sign_ins WHERE created_at < ?",
            &params![us(idle_before)],
        )?;
        Ok(())
    }
    fn insert_pending_sign_in(&mut self, p: &PendingSignIn) -> Result<()> {
        self.exec(
            "INSERT INTO portal_sign_ins (state_hash, nonce, code_verifier, return_to, created_at) VALUES (?, ?, ?, ?, ?)",
            &params![p.state_hash, p.nonce, p.code_verifier, p.return_to, us(p.created_at)],
        )?;
        Ok(())
    }
    fn take_pending_sign_in(&mut self, state_hash: &str) -> Result<Option<PendingSignIn>> {
        let found = self.one(
            "SELECT state_hash, nonce, code_verifier, return_to, created_at FROM portal_sign_ins WHERE state_hash = ?",
            &params![state_hash],
            |r| {
                Ok(PendingSignIn {
                    state_hash: r.get(0)?,
                    nonce: r.get(1)?,
                    code_verifier: r.get(2)?,
                    return_to: r.get(3)?,
                    created_at: ts(r.get(4)?)?,
                })
            },
        )?;
        // Used once: a second callback with the same state finds nothing.
        if found.is_some()
            && self.exec(
                "DELETE FROM portal_sign_ins WHERE state_hash = ?",
                &params![state_hash],
            )? == 0
        {
            return Ok(None);
        }
        Ok(found)
    }
}
