//! Verifying the audit log's hash chain against the store ([`crate::audit::ChainVerifier`]).

use crate::audit::{ChainReport, ChainVerifier};
use crate::error::Result;

/// Checks the whole audit log of `store`, oldest record first, in one read transaction.
pub fn verify_log(store: &dyn crate::store::Store) -> Result<ChainReport> {
    crate::store::read(store, |tx| {
        let mut verifier = ChainVerifier::new();
        let mut after = 0;
        loop {
            let links = tx.audit_chain(after, None, 1000)?;
            if links.is_empty() {
                return Ok(ChainReport::Intact {
                    checked: verifier.checked(),
                    head: verifier.head().to_string(),
                });
            }
            for link in &links {
                if let Err(broken) = verifier.check(link) {
                    return Ok(ChainReport::Broken {
                        checked: verifier.checked(),
                        link: broken,
                    });
                }
                after = link.seq;
            }
        }
    })
}
