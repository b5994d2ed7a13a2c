//! Rolegate's domain core: the rules of the PIM contract, with no async runtime, no HTTP
//! and no SQL, in three layers (docs/architecture.md):
//!
//! - **Rules**, pure: one module per concept (a newcomer looking for a rule of the contract
//!   finds it in the module named after the thing the rule is about: [`policy`],
//!   [`request::decision`], [`scheduler`], [`reminder`], [`access`], [`directory`], …). No
//!   I/O; time comes in through [`clock::Clock`] or the operation's context.
//! - **The storage port**, [`store`]: small read and write traits phrased in domain terms.
//! - **Operations and reads** above it: [`operation`] runs every write as load → decide →
//!   apply in one transaction; [`visibility`] holds who may see what and sign-in; [`scim`]
//!   the SCIM protocol.
//!
//! `tests/module_graph.rs` keeps the module graph free of cycles.

pub mod access;
pub mod access_decision;
pub mod assignment;
pub mod audit;
pub mod change;
pub mod clock;
pub mod directory;
pub mod email;
pub mod entity_cache;
pub mod error;
pub mod held_assignments;
pub mod notification;
pub mod odata;
pub mod operation;
pub mod overview;
pub mod pending_access;
pub mod permissions;
pub mod policy;
pub mod provisioning;
pub mod query;
pub mod reminder;
pub mod request;
pub mod resource;
pub mod role;
pub mod schedule;
pub mod scheduler;
pub mod scim;
pub mod scope;
pub mod session;
pub mod store;
pub mod visibility;

pub use error::{DomainError, ErrorCode, Result};
