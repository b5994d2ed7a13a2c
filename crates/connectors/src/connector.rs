//! The one trait every kind implements (connectors.md §5.4): apply, revoke, list. A fourth
//! kind is one more implementation in `crate::kind`.

use std::future::Future;
use std::pin::Pin;

/// A future a connector returns (boxed, so that connectors can be held as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A (target, principal) pair in the external system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// A PostgreSQL role, an LDAP group DN, an opaque string for `exec`.
    pub target: String,
    /// A PostgreSQL login role, a member DN, an opaque string.
    pub principal: String,
}

/// What an apply or revoke is about, beyond the grant (the `exec` document carries it,
/// §5.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyContext {
    /// The outbox item being applied.
    pub item_id: String,
    /// The subject the principal stands for (`id`, `type`, `userName`, `externalId`,
    /// `displayName`), or `None` for a grant made outside Rolegate.
    pub subject: Option<serde_json::Value>,
    /// Why (`assignment`, `ended`, `reconcile`, …).
    pub cause: String,
    /// The assignments that justify a grant.
    pub assignment_ids: Vec<String>,
    /// The latest end among them (`None`: one is permanent, or a revoke).
    pub not_after: Option<String>,
    /// When the item was written.
    pub created: String,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorError {
    /// True when the target could not be reached (it then counts as down); false when it
    /// answered with an error.
    pub unreachable: bool,
    /// A short code (`TargetNotFound`, `PrincipalCannotLogin`, `Unreachable`, …).
    pub code: String,
    /// What happened, without any secret.
    pub message: String,
}

impl ConnectorError {
    /// The target answered with an error.
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        Self {
            unreachable: false,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The target could not be reached.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            unreachable: true,
            code: "Unreachable".into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A link to one external system.
pub trait Connector: Send + Sync {
    /// Makes `grant` present. Idempotent: applying a present grant succeeds.
    fn apply<'a>(
        &'a self,
        grant: &'a Grant,
        ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
    /// Makes `grant` absent, whoever made it. Idempotent.
    fn revoke<'a>(
        &'a self,
        grant: &'a Grant,
        ctx: &'a ApplyContext,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
    /// The actual grants on exactly `targets`: all of them, or an error (never a partial
    /// answer, so an unreadable target is never taken for an empty one).
    fn list<'a>(
        &'a self,
        targets: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Grant>, ConnectorError>>;
}
