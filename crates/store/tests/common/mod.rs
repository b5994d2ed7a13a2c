//! What the store's integration tests share.

// Temp names use the wall clock; setup failures are meant to panic.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::path::PathBuf;

/// A fresh database path `NAME.db` in a directory of its own under the temp dir.
pub fn temp_db(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "rolegate-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.db"))
}
