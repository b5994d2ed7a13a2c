//! What the store keeps of a subject for SCIM, and the list query it answers: the types the
//! storage port names, apart from the SCIM operations that use the store.

use super::filter::{Cond, Field};
use crate::directory::SubjectKind;
use jiff::Timestamp;
use serde_json::{Map, Value};

/// What the store keeps of a subject for SCIM.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRecord {
    /// The document's attributes (without `id`, `meta`, `schemas`, group members).
    pub attributes: Map<String, Value>,
    /// `meta.created`.
    pub created: Option<Timestamp>,
    /// `meta.lastModified`.
    pub last_modified: Option<Timestamp>,
    /// `meta.version`: 1 at creation, +1 per change.
    pub version: u64,
}

/// Sort key of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// What to sort by ([`Field::Column`] or [`Field::Doc`]).
    pub field: Field,
    /// Text sorts case-sensitively.
    pub case_exact: bool,
    /// Descending.
    pub descending: bool,
}

/// A SCIM list query for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectQuery {
    /// Subjects of these kinds.
    pub kinds: Vec<SubjectKind>,
    /// Matching this.
    pub filter: Option<Cond>,
    /// Ordered by this (else by creation).
    pub sort: Option<Sort>,
    /// Rows to skip.
    pub skip: u64,
    /// Page size.
    pub top: u32,
}
