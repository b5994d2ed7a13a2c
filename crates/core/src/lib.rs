//! Rolegate's domain core: the rules of the PIM contract, with no I/O, no async runtime,
//! no HTTP and no SQL. Time comes in through [`clock::Clock`]; storage is reached only
//! through the [`store`] traits, phrased in domain terms.
//!
//! One module per concept: a newcomer looking for a rule of the contract finds it in the
//! module named after the thing the rule is about.

pub mod access;
pub mod assignment;
pub mod audit;
pub mod change;
pub mod clock;
pub mod directory;
pub mod email;
pub mod error;
pub mod notification;
pub mod odata;
pub mod operation;
pub mod policy;
pub mod query;
pub mod reminder;
pub mod request;
pub mod resource;
pub mod role;
pub mod schedule;
pub mod scheduler;
pub mod scim;
pub mod scope;
pub mod store;
pub mod visibility;

pub use error::{DomainError, ErrorCode, Result};
