//! Flood protection in the HTTP layer: rate limits per client address (before
//! authentication) and per token subject (after it), as token buckets; the client address
//! behind trusted reverse proxies (`X-Forwarded-For`); and the request timeout.

use crate::error::ApiError;
use axum::http::HeaderMap;
use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use rolegate_core::error::{DomainError, ErrorCode};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many requests a key may make: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The sustained rate.
    pub per_second: u32,
    /// The bucket's size: how many requests may come at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// `per_second` requests a second with a burst of twice that; `None` (no limit) for 0.
    pub fn per_second(per_second: u32) -> Option<Rate> {
        (per_second > 0).then(|| Rate {
            per_second,
            burst: per_second.saturating_mul(2),
        })
    }
}

/// The most keys one set of buckets tracks: past it (after dropping the buckets that are
/// full again), requests are let through uncounted until some refill, so memory stays
/// bounded under an address-spraying flood (which a per-address limit cannot stop anyway).
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// How often buckets that are full again are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often they are looked for while [`MAX_TRACKED_KEYS`] are tracked.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One token bucket per key (`governor`'s keyed GCRA limiter), made on a key's first
/// request and dropped once it is full again (a full bucket and no bucket behave the same).
pub struct TokenBuckets<K: Hash + Eq + Clone, C: Clock = MonotonicClock> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// The clock's reading when made: sweep times are kept as nanoseconds since.
    start: C::Instant,
    /// When buckets were last swept (nanoseconds since `start`); claimed without a lock,
    /// since every request reads it.
    last_sweep: AtomicU64,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    /// Empty buckets refilling at `rate`, on the monotonic clock.
    pub fn new(rate: Rate) -> Self {
        Self::with_clock(rate, MonotonicClock)
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> TokenBuckets<K, C> {
    /// Empty buckets refilling at `rate`, on `clock`.
    pub fn with_clock(rate: Rate, clock: C) -> Self {
        let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            start: clock.now(),
            last_sweep: AtomicU64::new(0),
            clock,
        }
    }

    /// Takes one token from `key`'s bucket: `Ok`, or `Err` with how long until the next
    /// token.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut full = self.limiter.len() >= MAX_TRACKED_KEYS;
        let at = u64::from(now.duration_since(self.start));
        let last = self.last_sweep.load(Ordering::Relaxed);
        let since = Duration::from_nanos(at.saturating_sub(last));
        // Full, buckets are looked at again at most once a second (a sweep walks every
        // key; a flood must not make every request pay for one). One request claims it.
        let due = since >= SWEEP_INTERVAL || (full && since >= FULL_SWEEP_INTERVAL);
        if due
            && self
                .last_sweep
                .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
            if since >= SWEEP_INTERVAL {
                self.limiter.shrink_to_fit();
            }
            full = self.limiter.len() >= MAX_TRACKED_KEYS;
        }
        if full {
            return Ok(());
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// How many keys have a bucket now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> std::fmt::Debug for TokenBuckets<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBuckets")
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// An address or a network (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`), for `--trusted-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix_len: u8,
}

impl IpRange {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(canonical)
            .map_err(|_| format!("`{s}` is not an IP address or a network such as 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries left of
/// it were written by the client and cannot be trusted). An entry that is not an address
/// stops the walk at the hop that wrote it.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded(entry) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// The bucket key of a client address: IPv4 addresses alone, IPv6 addresses by their /64
/// (one host usually holds a whole /64, so single addresses would be free to rotate).
fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The server's rate limits (`--rate-limit-per-ip`, `--rate-limit-per-subject`,
/// `--trusted-proxy`). The default limits nothing.
#[derive(Debug, Default)]
pub struct RateLimits {
    per_client: Option<TokenBuckets<IpAddr>>,
    per_subject: Option<TokenBuckets<String>>,
    trusted_proxies: Vec<IpRange>,
}

impl RateLimits {
    /// Limits per client address and per token subject (`None`: unlimited), with the
    /// proxies whose `X-Forwarded-For` names the client.
    pub fn new(
        per_client: Option<Rate>,
        per_subject: Option<Rate>,
        trusted_proxies: Vec<IpRange>,
    ) -> Self {
        Self {
            per_client: per_client.map(TokenBuckets::new),
            per_subject: per_subject.map(TokenBuckets::new),
            trusted_proxies,
        }
    }

    /// Counts a request from `peer` (the TCP peer) against its client's bucket.
    pub fn check_client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(buckets) = &self.per_client else {
            return Ok(());
        };
        let client = client_address(peer, headers, &self.trusted_proxies);
        buckets
            .take(&client_key(client))
            .map_err(|wait| too_many("this client address", wait))
    }

    /// Counts a request authenticated as `subject` (a verified token's) against its bucket.
    pub fn check_subject(&self, subject: &str) -> Result<(), ApiError> {
        let Some(buckets) = &self.per_subject else {
            return Ok(());
        };
        buckets
            .take(&subject.to_string())
            .map_err(|wait| too_many("this caller", wait))
    }
}

/// `429 TooManyRequests` with `Retry-After` in whole seconds (at least 1).
fn too_many(who: &str, wait: Duration) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    ApiError::from(DomainError::new(
        ErrorCode::TooManyRequests,
        format!("too many requests from {who}; retry after {seconds} s"),
    ))
    .retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use governor::clock::FakeRelativeClock;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let buckets = TokenBuckets::with_clock(rate(2, 3), clock.clone());
        for _ in 0..3 {
            assert_eq!(buckets.take(&"a"), Ok(()));
        }
        let wait = buckets.take(&"a").unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(buckets.take(&"b"), Ok(()));
        // Half a second later one token is back, and only one.
        clock.advance(Duration::from_millis(500));
        assert_eq!(buckets.take(&"a"), Ok(()));
        assert!(buckets.take(&"a").is_err());
    }

    #[test]
    fn idle_buckets_are_dropped() {
        let clock = FakeRelativeClock::default();
        let buckets = TokenBuckets::with_clock(rate(10, 10), clock.clone());
        for i in 0..100 {
            assert_eq!(buckets.take(&i), Ok(()));
        }
        assert_eq!(buckets.tracked(), 100);
        // Refilled (1 s) and past the sweep interval: only the new key stays.
        clock.advance(SWEEP_INTERVAL);
        assert_eq!(buckets.take(&1000), Ok(()));
        assert_eq!(buckets.tracked(), 1);
    }

    #[test]
    fn past_the_bound_requests_pass_uncounted_until_buckets_refill() {
        let clock = FakeRelativeClock::default();
        let buckets = TokenBuckets::with_clock(rate(1, 1), clock.clone());
        for i in 0..MAX_TRACKED_KEYS {
            assert_eq!(buckets.take(&i), Ok(()));
        }
        // Every bucket is empty and none is full again: a key over its rate passes.
        assert_eq!(buckets.take(&0), Ok(()));
        assert_eq!(buckets.tracked(), MAX_TRACKED_KEYS);
        // Once they refill they are dropped and counting resumes.
        clock.advance(Duration::from_secs(2));
        assert_eq!(buckets.take(&0), Ok(()));
        assert!(buckets.take(&0).is_err());
        assert_eq!(buckets.tracked(), 1);
    }

    #[test]
    fn zero_disables_a_limit() {
        assert_eq!(Rate::per_second(0), None);
        assert_eq!(Rate::per_second(5), Some(rate(5, 10)));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let e = too_many("x", Duration::from_millis(1200));
        assert_eq!(e.retry_after_seconds, Some(2));
        assert_eq!(e.error.code, ErrorCode::TooManyRequests);
        let e = too_many("x", Duration::from_millis(10));
        assert_eq!(e.retry_after_seconds, Some(1));
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains("10.1.2.3".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        let one: IpRange = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("proxy.example".parse::<IpRange>().is_err());
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted = vec!["10.0.0.0/24".parse::<IpRange>().unwrap()];
        let h = forwarded(&["203.0.113.9"]);
        // An untrusted peer cannot name another client.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(stranger, &h, &trusted), stranger);
        assert_eq!(client_address(proxy, &h, &[]), proxy);
        // A trusted proxy's entry names the client.
        assert_eq!(
            client_address(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A client-written entry left of the proxy's is ignored; a chain of trusted
        // proxies is walked through; entries may carry ports or come in several headers.
        let h = forwarded(&["1.1.1.1, 203.0.113.9:4711", "10.0.0.9"]);
        assert_eq!(
            client_address(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the hop that wrote it; no header means the proxy itself.
        let h = forwarded(&["203.0.113.9, garbage"]);
        assert_eq!(client_address(proxy, &h, &trusted), proxy);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
    }
}
