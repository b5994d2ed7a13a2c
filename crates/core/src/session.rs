//! Portal sign-in sessions (portal.md §2): what the database keeps of a signed-in browser,
//! and the rules of when a session ends. The session id itself lives only in the browser's
//! cookie; the database keeps its SHA-256, so a leaked table cannot be replayed.

use jiff::{SignedDuration, Timestamp};

/// A signed-in browser session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    /// Hex SHA-256 of the cookie's session id.
    pub id_hash: String,
    /// The signed-in subject as a token names it (`oid`, else `sub`; for the development
    /// sign-in, the directory id). Resolved against the directory on every request, so a
    /// disabled or deleted subject loses the session at once.
    pub subject: String,
    /// The display name the identity provider gave, for an administrator outside the
    /// directory.
    pub name: Option<String>,
    /// Whether the sign-in satisfied multi-factor authentication.
    pub mfa: bool,
    /// The per-session token every form posts back (compared in constant time).
    pub csrf_token: String,
    /// When the browser signed in.
    pub created_at: Timestamp,
    /// The last request seen (at most [`TOUCH_INTERVAL`] stale).
    pub last_seen: Timestamp,
    /// The absolute end: sign-in plus the absolute lifetime, never past the ID token's expiry.
    pub expires_at: Timestamp,
    /// The ID token of an OIDC sign-in, for `id_token_hint` at sign-out.
    pub id_token: Option<String>,
    /// The viewer's IANA time zone, as the browser reported it.
    pub time_zone: Option<String>,
}

/// A sign-in started at the identity provider and not yet finished (OIDC authorization
/// code flow with PKCE): what the callback checks and needs. Used once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    /// Hex SHA-256 of the `state` sent to the provider (also in the browser's cookie).
    pub state_hash: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub code_verifier: String,
    /// The portal path to return to.
    pub return_to: String,
    /// When it started.
    pub created_at: Timestamp,
}

/// How long a started sign-in may take at the identity provider.
pub const SIGN_IN_WINDOW: SignedDuration = SignedDuration::from_mins(10);

/// How long `last_seen` may lag: a session is written back at most this often, so page
/// views are reads.
pub const TOUCH_INTERVAL: SignedDuration = SignedDuration::from_secs(60);

/// The idle and absolute lifetimes of sessions (`--ui-session-idle`; 12 h absolute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    /// A session unused this long has ended.
    pub idle: SignedDuration,
    /// A session ends this long after sign-in, whatever happens.
    pub absolute: SignedDuration,
}

impl Default for SessionLifetime {
    fn default() -> Self {
        Self {
            idle: SignedDuration::from_mins(30),
            absolute: SignedDuration::from_hours(12),
        }
    }
}

impl SessionLifetime {
    /// The absolute end of a session signed in at `now` with a token expiring at
    /// `token_expiry` (if any).
    pub fn expires_at(&self, now: Timestamp, token_expiry: Option<Timestamp>) -> Timestamp {
        let cap = now.saturating_add(self.absolute).unwrap_or(Timestamp::MAX);
        token_expiry.map_or(cap, |t| t.min(cap))
    }

    /// Whether `s` is still signed in at `now`: before its absolute end, and used within
    /// the idle timeout.
    pub fn is_live(&self, s: &PortalSession, now: Timestamp) -> bool {
        now < s.expires_at && now.duration_since(s.last_seen) < self.idle
    }

    /// Whether a request at `now` should write `last_seen` back.
    pub fn needs_touch(&self, s: &PortalSession, now: Timestamp) -> bool {
        now.duration_since(s.last_seen) >= TOUCH_INTERVAL
    }

    /// Sessions last seen before this instant have ended by idling (for pruning).
    pub fn idle_cutoff(&self, now: Timestamp) -> Timestamp {
        now.saturating_sub(self.idle).unwrap_or(Timestamp::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn session(created: Timestamp, expires: Timestamp) -> PortalSession {
        PortalSession {
            id_hash: "h".into(),
            subject: "s".into(),
            name: None,
            mfa: false,
            csrf_token: "c".into(),
            created_at: created,
            last_seen: created,
            expires_at: expires,
            id_token: None,
            time_zone: None,
        }
    }

    #[test]
    fn the_absolute_end_is_twelve_hours_or_the_token_expiry_whichever_is_first() {
        let l = SessionLifetime::default();
        assert_eq!(l.expires_at(at(0), None), at(12 * 3600));
        assert_eq!(l.expires_at(at(0), Some(at(3600))), at(3600));
        assert_eq!(l.expires_at(at(0), Some(at(24 * 3600))), at(12 * 3600));
    }

    #[test]
    fn a_session_ends_when_idle_for_the_timeout_or_at_its_absolute_end() {
        let l = SessionLifetime::default();
        let mut s = session(at(0), l.expires_at(at(0), None));
        assert!(l.is_live(&s, at(29 * 60)));
        assert!(!l.is_live(&s, at(30 * 60)), "idle for 30 min");
        s.last_seen = at(11 * 3600 + 50 * 60);
        assert!(l.is_live(&s, at(11 * 3600 + 59 * 60)));
        assert!(!l.is_live(&s, at(12 * 3600)), "12 h after sign-in");
    }

    #[test]
    fn last_seen_is_written_back_at_most_once_a_minute() {
        let l = SessionLifetime::default();
        let s = session(at(0), at(3600));
        assert!(!l.needs_touch(&s, at(59)));
        assert!(l.needs_touch(&s, at(60)));
        assert_eq!(l.idle_cutoff(at(3600)), at(1800));
    }
}
