//! Rolegate's integration tests: the real binary, a real SQLite file, real HTTP.
//! One test binary (each file under tests/ would be another link step); one module per area.

mod harness;
mod smoke;
