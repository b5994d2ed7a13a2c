//! Provisioning connectors (connectors.md): activations take effect in real systems. This
//! crate holds the I/O side: the configuration file and its secrets, and the kinds
//! (`postgresql`, `ldap`, `exec`). The rules themselves are `rolegate_core::provisioning`.

pub mod check;
pub mod config;
pub mod connector;
pub mod kind;
pub mod secret;
