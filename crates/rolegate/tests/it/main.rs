//! Rolegate's integration tests: the real binary, a real SQLite file, real HTTP.
//! One test binary (each file under tests/ would be another link step); one module per area.

mod approvals;
mod audit;
mod authz;
mod copy;
mod durability;
mod email;
mod fixture;
mod harness;
mod lifecycle;
mod limits;
mod matrix;
mod notifications;
mod odata;
mod oidc;
mod openapi;
mod python_client;
mod reads;
mod requests;
mod revocation;
mod scim;
mod smoke;
mod tls;
