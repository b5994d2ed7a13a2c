//! Rolegate's integration tests: the real binary, a real SQLite file, real HTTP.
//! One test binary per backend (each file under tests/ would be another link step): this
//! one on SQLite, `tests/it_postgres.rs` the same modules on PostgreSQL; one module per area.

/// The database this binary's servers run on.
pub const BACKEND: harness::Backend = harness::Backend::Sqlite;

mod approvals;
mod audit;
mod authz;
mod authzen;
mod caches;
mod cli;
mod cli_oidc;
mod connectors;
mod copy;
mod durability;
mod email;
mod fixture;
mod group_commit;
mod harness;
mod lifecycle;
mod limits;
mod matrix;
mod notifications;
mod odata;
mod oidc;
mod openapi;
mod portal;
mod portal_browser;
mod portal_oidc;
mod provisioning;
mod provisioning_ldap;
mod python_client;
mod reads;
mod requests;
mod revocation;
mod scim;
mod smoke;
mod tls;
