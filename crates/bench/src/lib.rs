//! Shared pieces of Rolegate's benchmarks: latency statistics and tokens.

/// An HS256 token for `subject`, signed with `secret`, valid an hour, MFA satisfied: what
/// the load generators send as a person.
pub fn mfa_token(secret: &str, subject: &str) -> anyhow::Result<String> {
    use rolegate_core::clock::Clock;
    let now = rolegate_core::clock::SystemClock.now().as_second();
    let claims = rolegate_api::auth::Claims {
        sub: subject.into(),
        oid: None,
        amr: vec!["pwd".into(), "mfa".into()],
        name: None,
        exp: now + 3600,
        nbf: None,
        iat: Some(now),
        iss: None,
        aud: None,
        nonce: None,
        acr: None,
    };
    Ok(rolegate_api::auth::mint_hs256(secret.as_bytes(), &claims)?)
}

/// Latency percentiles of a run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

/// Percentiles of `samples` (sorted in place); `None` when empty.
pub fn percentiles(samples: &mut [u64]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Some(Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_hundred() {
        let mut v: Vec<u64> = (1..=100).collect();
        let p = percentiles(&mut v).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (51, 90, 99, 100));
        assert!(percentiles(&mut []).is_none());
    }
}
