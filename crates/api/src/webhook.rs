//! Outbound webhook calls for change notifications (decisions.md §12): the target check
//! (the SSRF guard of [`TargetPolicy`], applied to every address the host resolves to),
//! the validation handshake, signed deliveries. Every call is blocking with a short
//! timeout, follows no redirects and uses no proxy; callers run it on a blocking thread.

use hmac::{Hmac, Mac};
use rolegate_core::error::Result;
use rolegate_core::notification::{TargetPolicy, invalid};
use sha2::Sha256;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// The header carrying a delivery's signature.
pub const SIGNATURE_HEADER: &str = "Rolegate-Signature";
/// The most of a receiver's answer that is read.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Checks `url` against `policy`: scheme and host first, then every address the host
/// resolves to. `400 InvalidRequest` when refused.
pub fn check_target(policy: &TargetPolicy, url: &str) -> Result<()> {
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
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (bare, port)
            .to_socket_addrs()
            .map(|it| it.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    policy.check(&scheme, &host, &addrs)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
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
        .build()
        .into()
}

/// The validation handshake: POSTs to `url?validationToken=<token>` and needs `200` with
/// the token as `text/plain` within `timeout`; otherwise `400 InvalidRequest`.
pub fn validate_endpoint(policy: &TargetPolicy, url: &str, timeout: Duration) -> Result<()> {
    check_target(policy, url)?;
    let token = format!("rolegate-{}", uuid::Uuid::new_v4().simple());
    let sep = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{sep}validationToken={token}");
    let failed = |why: String| {
        invalid(format!(
            "validating `notificationUrl` failed: {why} (it must answer 200 with the validationToken as text/plain within {} s)",
            timeout.as_secs()
        ))
    };
    let mut resp = agent(timeout)
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
    check_target(policy, url).map_err(|e| e.message)?;
    let resp = agent(timeout)
        .post(url)
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
}
