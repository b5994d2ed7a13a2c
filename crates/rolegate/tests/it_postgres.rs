//! The integration tests of `tests/it` again, with every server on PostgreSQL (a fresh
//! schema each; see `harness`): the whole suite runs on both backends from one source.
//! Without a reachable PostgreSQL server the tests run on SQLite and say so.

/// The database this binary's servers run on.
pub const BACKEND: harness::Backend = harness::Backend::Postgres;

#[path = "it/approvals.rs"]
mod approvals;
#[path = "it/audit.rs"]
mod audit;
#[path = "it/authz.rs"]
mod authz;
#[path = "it/authzen.rs"]
mod authzen;
#[path = "it/caches.rs"]
mod caches;
#[path = "it/deployment.rs"]
mod deployment;
#[path = "it/durability.rs"]
mod durability;
#[path = "it/email.rs"]
mod email;
#[path = "it/fixture.rs"]
mod fixture;
#[path = "it/group_commit.rs"]
mod group_commit;
#[path = "it/harness.rs"]
mod harness;
#[path = "it/lifecycle.rs"]
mod lifecycle;
#[path = "it/limits.rs"]
mod limits;
#[path = "it/matrix.rs"]
mod matrix;
#[path = "it/multinode.rs"]
mod multinode;
#[path = "it/notifications.rs"]
mod notifications;
#[path = "it/odata.rs"]
mod odata;
#[path = "it/oidc.rs"]
mod oidc;
#[path = "it/openapi.rs"]
mod openapi;
#[path = "it/portal.rs"]
mod portal;
#[path = "it/provisioning.rs"]
mod provisioning;
#[path = "it/provisioning_ldap.rs"]
mod provisioning_ldap;
#[path = "it/python_client.rs"]
mod python_client;
#[path = "it/reads.rs"]
mod reads;
#[path = "it/requests.rs"]
mod requests;
#[path = "it/revocation.rs"]
mod revocation;
#[path = "it/scim.rs"]
mod scim;
#[path = "it/smoke.rs"]
mod smoke;
#[path = "it/tls.rs"]
mod tls;
