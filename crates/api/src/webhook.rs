//! Outbound webhook calls for change notifications (decisions.md §12): the target check
//! (the SSRF guard of [`TargetPolicy`], applied to every address the host resolves to),
//! the validation handshake, signed deliveries. Every call is blocking with a short
//! timeout, follows no redirects and uses no proxy; callers run it on a blocking thread.
//!
//! Each call connects only to the addresses its check approved: the host is resolved once,
//! checked, and the HTTP client's resolver answers with exactly those addresses (no second
//! lookup), so DNS rebinding between check and connection cannot redirect it.

use hmac::{Hmac, Mac};
use rolegate_core::error::Result;
use rolegate_core::notification::{TargetPolicy, invalid};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The header carrying a delivery's signature.
pub const SIGNATURE_HEADER: &str = "Rolegate-Signature";
/// The most of a receiver's answer that is read.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// A `notificationUrl` that passed the target check, with the addresses its host resolved
/// to then: the only addresses a call to it connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTarget {
    /// The URL.
    pub url: String,
    /// Its host, lower case, without IPv6 brackets.
    pub host: String,
    /// The approved addresses, with the URL's port.
    pub addrs: Vec<SocketAddr>,
}

/// Checks `url` against `policy`: scheme and host first, then every address the host
/// resolves to. `400 InvalidRequest` when refused.
pub fn check_target(policy: &TargetPolicy, url: &str) -> Result<CheckedTarget> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| invalid(format!("`notificationUrl` `{url}` is not a URL")))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("`notificationUrl` must name a host"))?
        .to_ascii_lowercase();
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("`notificationUrl` may not carry credentials"));
    }
    policy.check_scheme(&scheme, &host)?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (bare.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default(),
    };
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    policy.check(&scheme, &host, &ips)?;
    Ok(CheckedTarget {
        url: url.to_string(),
        host: bare,
        addrs,
    })
}

/// The HTTP client's resolver for one [`CheckedTarget`]: its host resolves to the approved
/// addresses and nothing else; any other host (there is none without redirects or a proxy)
/// does not resolve.
#[derive(Debug)]
struct PinnedResolver {
    host: String,
    addrs: Vec<SocketAddr>,
}

impl Resolver for PinnedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> std::result::Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or_default();
        if !host.eq_ignore_ascii_case(&self.host) {
            return Err(ureq::Error::HostNotFound);
        }
        let mut resolved = self.empty();
        for addr in &self.addrs {
            if resolved.try_push(*addr).is_err() {
                break;
            }
        }
        if resolved.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(resolved)
    }
}

/// A client for `target` only, connecting to its approved addresses.
fn agent(target: &CheckedTarget, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(concat!("rolegate/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .build(),
        )
        .build();
    ureq::Agent::with_parts(
        config,
        DefaultConnector::new(),
        PinnedResolver {
            host: target.host.clone(),
            addrs: target.addrs.clone(),
        },
    )
}

/// The validation handshake: POSTs to `url?validationToken=<token>` and needs `200` with
/// the token as `text/plain` within `timeout`; otherwise `400 InvalidRequest`.
pub fn validate_endpoint(policy: &TargetPolicy, url: &str, timeout: Duration) -> Result<()> {
    let checked = check_target(policy, url)?;
    let token = format!("rolegate-{}", uuid::Uuid::new_v4().simple());
    let sep = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{sep}validationToken={token}");
    let failed = |why: String| {
        invalid(format!(
            "validating `notificationUrl` failed: {why} (it must answer 200 with the validationToken as text/plain within {} s)",
            timeout.as_secs()
        ))
    };
    let mut resp = agent(&checked, timeout)
        .post(&target)
        .header("Content-Type", "text/plain")
        .send("")
        .map_err(|e| failed(e.to_string()))?;
    if resp.status().as_u16() != 200 {
        return Err(failed(format!("it answered {}", resp.status().as_u16())));
    }
    let plain = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/plain"));
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    if !plain || body.trim() != token {
        return Err(failed("it did not echo the token as text/plain".into()));
    }
    Ok(())
}

/// `sha256=<hex HMAC-SHA256 of body keyed by client_state>`.
pub fn signature(body: &[u8], client_state: &str) -> String {
    // HMAC takes keys of any length, the empty one included.
    let mut mac = match Hmac::<Sha256>::new_from_slice(client_state.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs one delivery `body` signed with `client_state`, after checking the target again
/// (its addresses may have changed); the receiver's status, or why there is none.
pub fn deliver(
    policy: &TargetPolicy,
    url: &str,
    body: &[u8],
    client_state: &str,
    timeout: Duration,
) -> std::result::Result<u16, String> {
    let target = check_target(policy, url).map_err(|e| e.message)?;
    post_signed(&target, body, client_state, timeout)
}

/// POSTs `body` to `target`'s approved addresses, signed with `client_state`.
fn post_signed(
    target: &CheckedTarget,
    body: &[u8],
    client_state: &str,
    timeout: Duration,
) -> std::result::Result<u16, String> {
    let resp = agent(target, timeout)
        .post(&target.url)
        .header("Content-Type", "application/json")
        .header(SIGNATURE_HEADER, signature(body, client_state))
        .send(body)
        .map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"what do ya want for nothing?", "Jefe"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn targets_are_checked_before_any_call() {
        let p = TargetPolicy::default();
        assert!(check_target(&p, "http://example.com/hook").is_err());
        assert!(check_target(&p, "https://10.0.0.8/hook").is_err());
        assert!(check_target(&p, "https://[fd00::1]/hook").is_err());
        assert!(check_target(&p, "https://user:pw@127.0.0.1/hook").is_err());
        assert!(check_target(&p, "http://127.0.0.1:9/hook").is_ok());
        assert!(check_target(&p, "not a url").is_err());
    }

    #[test]
    fn a_checked_target_keeps_the_addresses_it_was_approved_for() {
        let p = TargetPolicy::default();
        let t = check_target(&p, "http://127.0.0.1:9/hook").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.addrs, vec!["127.0.0.1:9".parse::<SocketAddr>().unwrap()]);
        let t = check_target(&p, "http://[::1]:9/hook").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.addrs, vec!["[::1]:9".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn the_resolver_answers_only_the_checked_host_with_the_checked_addresses() {
        let pinned: SocketAddr = "192.0.2.10:443".parse().unwrap();
        let resolver = PinnedResolver {
            host: "hooks.example".into(),
            addrs: vec![pinned],
        };
        let config = ureq::config::Config::default();
        let resolve = |url: &str| {
            let uri: ureq::http::Uri = url.parse().unwrap();
            resolver
                .resolve(&uri, &config, NextTimeout::default())
                .map(|r| r.iter().copied().collect::<Vec<_>>())
        };
        assert_eq!(resolve("https://hooks.example/x").unwrap(), vec![pinned]);
        assert_eq!(resolve("https://HOOKS.example/x").unwrap(), vec![pinned]);
        assert!(resolve("https://elsewhere.example/x").is_err());
    }

    /// The call connects to the approved address even though the host name resolves to
    /// nothing at all (`.invalid`): DNS is not asked a second time.
    #[test]
    fn a_delivery_connects_to_the_approved_address_without_a_second_lookup() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut head, mut length) = (Vec::new(), 0usize);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push(line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut out = conn;
            out.write_all(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            (head, body)
        });
        let target = CheckedTarget {
            url: format!("http://rebound.invalid:{}/hook", addr.port()),
            host: "rebound.invalid".into(),
            addrs: vec![addr],
        };
        let status = post_signed(&target, b"{}", "state-0123456789", Duration::from_secs(5));
        assert_eq!(status, Ok(202));
        let (head, body) = receiver.join().unwrap();
        assert!(head[0].starts_with("POST /hook "), "{head:?}");
        assert!(
            head.iter()
                .any(|h| h.to_ascii_lowercase().starts_with("host: rebound.invalid")),
            "{head:?}"
        );
        assert_eq!(body, b"{}");
    }
}
