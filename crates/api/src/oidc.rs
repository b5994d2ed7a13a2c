//! Production authentication (decisions.md §2 and §13): RS256 and ES256 bearer tokens from an
//! OIDC issuer, checked against its JSON Web Key Set.
//!
//! - The key set comes from a file, a URL, or the issuer's discovery document
//!   (`ISSUER/.well-known/openid-configuration`, `jwks_uri`). URLs must be `https`, except
//!   for loopback hosts. Fetches run on a blocking thread with a short timeout.
//! - Keys are cached by `kid`. A token naming an unknown `kid` triggers a refresh, at most
//!   one per [`REFRESH_INTERVAL`]; the set is also refreshed in the background once it is
//!   older than [`MAX_KEY_SET_AGE`], so keys the issuer withdrew stop being trusted.
//! - Only RS256 and ES256 are accepted, and a token's `alg` must match its key's `kty` (and
//!   the key's `alg`, when it names one): `none`, HS256 against a public key (algorithm
//!   confusion) and keys embedded in the token (`jwk`, `jku`) are never honoured.
//! - A verified token is remembered by the SHA-256 of its text until
//!   min(`exp`, [`VERIFIED_TTL`]), in a cache of at most [`VERIFIED_CAPACITY`] entries, so an
//!   RS256 check runs once per token, not once per request.
//!
//! Nothing here logs a token.

use crate::auth::{Claims, token_error, unauthorized};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rolegate_core::clock::Clock;
use rolegate_core::error::{DomainError, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// At most one key-set refresh per this interval (startup's load aside).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// A key set older than this is refreshed in the background on the next request.
pub const MAX_KEY_SET_AGE: Duration = Duration::from_secs(3600);
/// How long a verified token is remembered at most (never past its `exp`).
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// How many verified tokens are remembered at most.
pub const VERIFIED_CAPACITY: usize = 10_000;
/// Timeout of one HTTP fetch (discovery document or key set).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document or key set accepted.
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;
/// Leeway on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file (re-read on refresh).
    File(PathBuf),
    /// A URL (`https`, or `http` on a loopback host).
    Url(String),
    /// The issuer's discovery document names the URL (`jwks_uri`).
    Discovery,
}

/// Production authentication settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (a string, or one member of an array).
    pub audience: String,
    /// Where the keys come from.
    pub source: JwksSource,
}

/// One usable verification key.
struct Key {
    /// The only algorithm this key verifies (RS256 for RSA keys, ES256 for P-256 keys).
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys of one fetch.
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    all: Vec<Arc<Key>>,
    loaded: Instant,
}

struct Verified {
    claims: Claims,
    until: Instant,
}

struct Inner {
    config: OidcConfig,
    clock: Arc<dyn Clock>,
    /// `jwks_uri` from the discovery document, once known.
    jwks_uri: Mutex<Option<String>>,
    keys: RwLock<Arc<KeySet>>,
    /// When the last refresh after startup began; held while refreshing (single flight).
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    background: AtomicBool,
    rs256: Validation,
    es256: Validation,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// Verifies RS256/ES256 tokens against an issuer's key set.
#[derive(Clone)]
pub struct OidcVerifier(Arc<Inner>);

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.0.config.issuer)
            .field("audience", &self.0.config.audience)
            .field("source", &self.0.config.source)
            .finish_non_exhaustive()
    }
}

fn validation(alg: Algorithm, config: &OidcConfig) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECONDS;
    v.validate_nbf = true;
    v.validate_exp = true;
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.set_issuer(&[config.issuer.as_str()]);
    v.set_audience(&[config.audience.as_str()]);
    v
}

impl OidcVerifier {
    /// Checks the settings and loads the key set once; fails when no usable key can be had.
    pub async fn new(config: OidcConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        if config.issuer.trim().is_empty() {
            return Err(DomainError::bad_request("the OIDC issuer is empty"));
        }
        if config.audience.trim().is_empty() {
            return Err(DomainError::bad_request("the OIDC audience is empty"));
        }
        match &config.source {
            JwksSource::Url(url) => {
                check_url(url).map_err(DomainError::bad_request)?;
            }
            JwksSource::Discovery => {
                check_url(&discovery_url(&config.issuer)).map_err(|e| {
                    DomainError::bad_request(format!(
                        "cannot discover the key set from the issuer: {e}; or pass --jwks-file or --jwks-url"
                    ))
                })?;
            }
            JwksSource::File(_) => {}
        }
        let (set, uri) = load(config.clone(), None).await.map_err(|e| {
            DomainError::bad_request(format!("could not load the JSON Web Key Set: {e}"))
        })?;
        let inner = Inner {
            rs256: validation(Algorithm::RS256, &config),
            es256: validation(Algorithm::ES256, &config),
            config,
            clock,
            jwks_uri: Mutex::new(uri),
            keys: RwLock::new(Arc::new(set)),
            last_refresh: tokio::sync::Mutex::new(None),
            background: AtomicBool::new(false),
            verified: Mutex::new(HashMap::new()),
        };
        Ok(Self(Arc::new(inner)))
    }

    /// The number of usable keys in the current set.
    pub fn key_count(&self) -> usize {
        self.0.key_set().all.len()
    }

    /// Verifies `token` (without the `Bearer ` prefix) and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims> {
        let inner = &self.0;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = inner.remembered(&digest) {
            return Ok(claims);
        }
        self.refresh_if_stale();
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            unauthorized("the token is malformed or uses an algorithm that is not accepted")
        })?;
        let validation = match header.alg {
            Algorithm::RS256 => &inner.rs256,
            Algorithm::ES256 => &inner.es256,
            _ => {
                return Err(unauthorized(
                    "the token's algorithm is not accepted (RS256 or ES256 only)",
                ));
            }
        };
        let key = self.key_for(header.kid.as_deref()).await?;
        if key.alg != header.alg {
            return Err(unauthorized(
                "the token's algorithm does not match its signing key",
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, validation)
            .map_err(|e| token_error(&e))?;
        if data.claims.subject().trim().is_empty() {
            return Err(unauthorized("the token names no subject"));
        }
        inner.remember(digest, &data.claims);
        Ok(data.claims)
    }

    /// Verifies an OIDC ID token (the portal's sign-in) exactly as bearer tokens are
    /// verified (issuer, key set, algorithm, expiry), except that its audience must be the
    /// portal's client id. Not cached: each ID token is checked once.
    pub async fn verify_id_token(&self, token: &str, client_id: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            unauthorized("the ID token is malformed or uses an algorithm that is not accepted")
        })?;
        let mut validation = match header.alg {
            Algorithm::RS256 => self.0.rs256.clone(),
            Algorithm::ES256 => self.0.es256.clone(),
            _ => {
                return Err(unauthorized(
                    "the ID token's algorithm is not accepted (RS256 or ES256 only)",
                ));
            }
        };
        validation.set_audience(&[client_id]);
        let key = self.key_for(header.kid.as_deref()).await?;
        if key.alg != header.alg {
            return Err(unauthorized(
                "the ID token's algorithm does not match its signing key",
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| token_error(&e))?;
        if data.claims.subject().trim().is_empty() {
            return Err(unauthorized("the ID token names no subject"));
        }
        Ok(data.claims)
    }

    /// The issuer this verifier trusts.
    pub fn issuer(&self) -> &str {
        &self.0.config.issuer
    }

    /// The key a token names: by `kid`, refreshing the set once (rate limited) when the
    /// `kid` is unknown; without a `kid`, the set's only key.
    async fn key_for(&self, kid: Option<&str>) -> Result<Arc<Key>> {
        let inner = &self.0;
        let Some(kid) = kid else {
            let set = inner.key_set();
            return match set.all.as_slice() {
                [only] => Ok(Arc::clone(only)),
                _ => Err(unauthorized(
                    "the token names no key id (kid) and the key set has several keys",
                )),
            };
        };
        if let Some(k) = inner.key_set().by_kid.get(kid) {
            return Ok(Arc::clone(k));
        }
        let mut last = inner.last_refresh.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(k) = inner.key_set().by_kid.get(kid) {
            return Ok(Arc::clone(k));
        }
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return Err(unknown_kid());
        }
        *last = Some(Instant::now());
        inner.reload("unknown key id").await;
        drop(last);
        inner
            .key_set()
            .by_kid
            .get(kid)
            .cloned()
            .ok_or_else(unknown_kid)
    }

    /// Starts a background refresh when the set is older than [`MAX_KEY_SET_AGE`].
    fn refresh_if_stale(&self) {
        if self.0.key_set().loaded.elapsed() < MAX_KEY_SET_AGE
            || self.0.background.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Ok(mut last) = me.0.last_refresh.try_lock()
                && !last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL)
            {
                *last = Some(Instant::now());
                me.0.reload("scheduled").await;
            }
            me.0.background.store(false, Ordering::Release);
        });
    }
}

fn unknown_kid() -> DomainError {
    unauthorized("the token's signing key (kid) is not in the issuer's key set")
}

impl Inner {
    fn key_set(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Fetches the set again; keeps the old one (and says so) when that fails.
    async fn reload(&self, why: &str) {
        let uri = self.jwks_uri.lock().ok().and_then(|u| u.clone());
        match load(self.config.clone(), uri).await {
            Ok((set, uri)) => {
                tracing::info!(reason = why, keys = set.all.len(), "JWKS refreshed");
                if let Ok(mut u) = self.jwks_uri.lock() {
                    *u = uri;
                }
                match self.keys.write() {
                    Ok(mut k) => *k = Arc::new(set),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
                }
            }
            Err(e) => {
                tracing::warn!(reason = why, error = %e, "JWKS refresh failed; keeping the previous keys");
                // Read the discovery document again next time: `jwks_uri` may have moved.
                if self.config.source == JwksSource::Discovery
                    && let Ok(mut u) = self.jwks_uri.lock()
                {
                    *u = None;
                }
            }
        }
    }

    fn remembered(&self, digest: &[u8; 32]) -> Option<Claims> {
        let mut cache = self.verified.lock().ok()?;
        match cache.get(digest) {
            Some(v) if v.until > Instant::now() => Some(v.claims.clone()),
            Some(_) => {
                cache.remove(digest);
                None
            }
            None => None,
        }
    }

    fn remember(&self, digest: [u8; 32], claims: &Claims) {
        let left = claims.exp - self.clock.now().as_second();
        let Ok(left) = u64::try_from(left) else {
            return;
        };
        if left == 0 {
            return;
        }
        let now = Instant::now();
        let until = now + VERIFIED_TTL.min(Duration::from_secs(left));
        let Ok(mut cache) = self.verified.lock() else {
            return;
        };
        if cache.len() >= VERIFIED_CAPACITY {
            cache.retain(|_, v| v.until > now);
            if cache.len() >= VERIFIED_CAPACITY {
                // Every entry is still fresh: start over rather than grow (re-verifying
                // costs tens of microseconds per token).
                cache.clear();
            }
        }
        cache.insert(
            digest,
            Verified {
                claims: claims.clone(),
                until,
            },
        );
    }
}

/// `ISSUER/.well-known/openid-configuration`.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Whether `host` (as in a URL, IPv6 possibly in brackets) is a loopback host.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Ok(true)` for `http` on a loopback host, `Ok(false)` for `https`, else why not.
pub fn check_url(url: &str) -> std::result::Result<bool, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a valid URL"))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` names no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(false),
        Some("http") if is_loopback_host(host) => Ok(true),
        Some("http") => Err(format!(
            "`{url}` is plain http; only loopback hosts (127.0.0.0/8, ::1, localhost) may use http, others need https"
        )),
        _ => Err(format!("`{url}` is neither an https nor an http URL")),
    }
}

/// Loads the key set on a blocking thread; returns it with the `jwks_uri` it came from
/// (discovery only), to reuse next time.
async fn load(
    config: OidcConfig,
    known_uri: Option<String>,
) -> std::result::Result<(KeySet, Option<String>), String> {
    tokio::task::spawn_blocking(move || load_blocking(&config, known_uri))
        .await
        .map_err(|e| format!("the fetch task failed: {e}"))?
}

fn load_blocking(
    config: &OidcConfig,
    known_uri: Option<String>,
) -> std::result::Result<(KeySet, Option<String>), String> {
    let (doc, uri) = match &config.source {
        JwksSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let doc = serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            (doc, None)
        }
        JwksSource::Url(url) => (fetch_json(url)?, None),
        JwksSource::Discovery => {
            let uri = match known_uri {
                Some(u) => u,
                None => discover(&config.issuer)?,
            };
            (fetch_json(&uri)?, Some(uri))
        }
    };
    let set = parse_key_set(&doc)?;
    Ok((set, uri))
}

/// Reads `jwks_uri` from the issuer's discovery document (whose `issuer` must match).
fn discover(issuer: &str) -> std::result::Result<String, String> {
    let url = discovery_url(issuer);
    let doc = fetch_json(&url)?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(i) => {
            return Err(format!(
                "the discovery document at {url} is for issuer `{i}`, not `{issuer}`"
            ));
        }
        None => return Err(format!("the discovery document at {url} names no issuer")),
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the discovery document at {url} has no jwks_uri"))?;
    check_url(uri)?;
    Ok(uri.to_string())
}

/// An HTTP client for `url` at the issuer: short timeout; `https` through rustls on aws-lc-rs
/// with the Mozilla roots (at most 3 redirects when `fetching`, none otherwise); plain
/// `http` only to loopback (no proxy, no redirects). With `fetching`, a non-2xx answer is
/// an error; otherwise the caller reads it (a token endpoint's `error`).
fn issuer_agent(url: &str, fetching: bool) -> std::result::Result<ureq::Agent, String> {
    let loopback_http = check_url(url)?;
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(fetching)
        .user_agent(concat!("rolegate/", env!("CARGO_PKG_VERSION")));
    let config = if loopback_http {
        config.proxy(None).max_redirects(0)
    } else {
        config
            .https_only(true)
            .max_redirects(if fetching { 3 } else { 0 })
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
    };
    Ok(config.build().into())
}

/// The endpoints of an issuer's discovery document a relying party uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerEndpoints {
    /// `authorization_endpoint`.
    pub authorization: String,
    /// `token_endpoint`.
    pub token: String,
    /// `end_session_endpoint`, when the issuer offers RP-initiated sign-out.
    pub end_session: Option<String>,
    /// `device_authorization_endpoint` (RFC 8628), when the issuer offers the device grant.
    pub device_authorization: Option<String>,
}

/// Reads the relying-party endpoints from `issuer`'s discovery document (whose `issuer`
/// must match); each must be `https` (or `http` on a loopback host). Blocks.
pub fn discover_endpoints(issuer: &str) -> std::result::Result<IssuerEndpoints, String> {
    let url = discovery_url(issuer);
    let doc = fetch_json(&url)?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(format!(
            "the discovery document at {url} is not for issuer `{issuer}`"
        ));
    }
    let endpoint = |name: &str| -> std::result::Result<Option<String>, String> {
        match doc.get(name).and_then(Value::as_str) {
            Some(u) => {
                check_url(u)?;
                Ok(Some(u.to_string()))
            }
            None => Ok(None),
        }
    };
    let required = |name: &str| {
        endpoint(name)?.ok_or_else(|| format!("the discovery document at {url} has no {name}"))
    };
    Ok(IssuerEndpoints {
        authorization: required("authorization_endpoint")?,
        token: required("token_endpoint")?,
        end_session: endpoint("end_session_endpoint")?,
        device_authorization: endpoint("device_authorization_endpoint")?,
    })
}

/// The authorization code exchange of an OIDC sign-in (RFC 6749 §4.1.3 with PKCE,
/// RFC 7636 §4.5).
#[derive(Debug, Clone)]
pub struct CodeExchange<'a> {
    /// The issuer's token endpoint.
    pub token_endpoint: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret of a confidential client (sent with HTTP Basic).
    pub client_secret: Option<&'a str>,
    /// The code the browser brought back.
    pub code: &'a str,
    /// The redirect URI of the authorization request.
    pub redirect_uri: &'a str,
    /// The PKCE code verifier.
    pub code_verifier: &'a str,
}

/// Exchanges an authorization code for tokens; returns the ID token. Blocks. The reason of
/// a refusal is the issuer's `error` (never a token or the secret).
pub fn exchange_code(x: &CodeExchange) -> std::result::Result<String, String> {
    let agent = issuer_agent(x.token_endpoint, false)?;
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        enc(x.code),
        enc(x.redirect_uri),
        enc(x.code_verifier)
    );
    let mut req = agent
        .post(x.token_endpoint)
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded");
    let basic;
    match x.client_secret {
        Some(secret) => {
            use base64::Engine;
            basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(x.client_id),
                enc(secret)
            ));
            req = req.header("Authorization", &format!("Basic {basic}"));
        }
        None => form.push_str(&format!("&client_id={}", enc(x.client_id))),
    }
    let mut resp = req
        .send(form)
        .map_err(|e| format!("the token endpoint did not answer: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_string()
        .map_err(|e| format!("reading the token endpoint's answer: {e}"))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|_| format!("the token endpoint answered {status} with no JSON"))?;
    if status != 200 {
        let error = doc
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        return Err(format!("the issuer refused the code ({status} {error})"));
    }
    doc.get("id_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "the token endpoint returned no id_token".to_string())
}

/// GETs a JSON document: short timeout, size limit; `https` through rustls on aws-lc-rs
/// with the Mozilla roots; plain `http` only to loopback (no proxy, no redirects).
fn fetch_json(url: &str) -> std::result::Result<Value, String> {
    let agent = issuer_agent(url, true)?;
    let mut resp = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// The usable signing keys of a JWKS document. Keys for encryption, of other types or
/// curves, or naming another algorithm are skipped; a set with none left is an error.
fn parse_key_set(doc: &Value) -> std::result::Result<KeySet, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the key set has no `keys` array")?;
    let mut by_kid = HashMap::new();
    let mut all = Vec::new();
    for raw in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        let Some(key) = usable(&jwk) else {
            continue;
        };
        let key = Arc::new(key);
        if let Some(kid) = &jwk.common.key_id {
            by_kid.insert(kid.clone(), Arc::clone(&key));
        }
        all.push(key);
    }
    if all.is_empty() {
        return Err("the key set has no usable RS256 or ES256 signing key".into());
    }
    Ok(KeySet {
        by_kid,
        all,
        loaded: Instant::now(),
    })
}

fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let named = match jwk.common.key_algorithm {
        None => alg,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(_) => return None,
    };
    if named != alg {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { alg, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert_eq!(check_url("https://login.example.com/keys"), Ok(false));
        assert_eq!(check_url("http://127.0.0.1:8080/keys"), Ok(true));
        assert_eq!(check_url("http://127.5.6.7/keys"), Ok(true));
        assert_eq!(check_url("http://localhost:1/keys"), Ok(true));
        assert_eq!(check_url("http://[::1]:9/keys"), Ok(true));
        assert!(check_url("http://10.0.0.1/keys").is_err());
        assert!(check_url("http://login.example.com/keys").is_err());
        assert!(check_url("http://localhost.example.com/keys").is_err());
        assert!(check_url("ftp://127.0.0.1/keys").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn discovery_url_joins_without_double_slash() {
        assert_eq!(
            discovery_url("https://idp.example/tenant/v2.0/"),
            "https://idp.example/tenant/v2.0/.well-known/openid-configuration"
        );
    }

    #[test]
    fn key_sets_keep_only_rs256_and_es256_signing_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "rs384", "alg": "RS384", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "mismatch", "alg": "ES256", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "weird", "kid": "w"}
        ]});
        let set = parse_key_set(&doc).expect("usable keys");
        let mut kids: Vec<_> = set.by_kid.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["e", "r"]);
        assert_eq!(set.by_kid["r"].alg, Algorithm::RS256);
        assert_eq!(set.by_kid["e"].alg, Algorithm::ES256);
        assert!(
            parse_key_set(&serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).is_err()
        );
        assert!(parse_key_set(&serde_json::json!({"nokeys": []})).is_err());
    }

    #[test]
    fn https_fetches_go_through_rustls_and_fail_cleanly_on_a_bad_peer() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let peer = std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 512];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
            }
        });
        let e = fetch_json(&format!("https://127.0.0.1:{port}/jwks")).expect_err("not TLS");
        assert!(e.starts_with("GET https://127.0.0.1:"), "{e}");
        let _ = peer.join();
    }

    fn cache_only(now: i64) -> Inner {
        let config = OidcConfig {
            issuer: "https://issuer.example".into(),
            audience: "api://x".into(),
            source: JwksSource::File(PathBuf::from("/nonexistent")),
        };
        let at = jiff::Timestamp::from_second(now).expect("timestamp");
        Inner {
            rs256: validation(Algorithm::RS256, &config),
            es256: validation(Algorithm::ES256, &config),
            config,
            clock: Arc::new(rolegate_core::clock::ManualClock::new(at)),
            jwks_uri: Mutex::new(None),
            keys: RwLock::new(Arc::new(KeySet {
                by_kid: HashMap::new(),
                all: Vec::new(),
                loaded: Instant::now(),
            })),
            last_refresh: tokio::sync::Mutex::new(None),
            background: AtomicBool::new(false),
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "s".into(),
            oid: None,
            amr: Vec::new(),
            name: None,
            exp,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            nonce: None,
            acr: None,
        }
    }

    #[test]
    fn verified_tokens_are_remembered_until_min_of_exp_and_a_minute() {
        let now = 1_800_000_000;
        let inner = cache_only(now);
        inner.remember([1; 32], &claims(now + 3600));
        inner.remember([2; 32], &claims(now + 20));
        inner.remember([3; 32], &claims(now));
        inner.remember([4; 32], &claims(now - 30));
        assert!(inner.remembered(&[1; 32]).is_some());
        assert!(inner.remembered(&[2; 32]).is_some());
        assert!(inner.remembered(&[3; 32]).is_none(), "expired now");
        assert!(inner.remembered(&[4; 32]).is_none(), "within leeway only");
        assert!(inner.remembered(&[5; 32]).is_none());
        let cache = inner.verified.lock().expect("lock");
        let left = |d: [u8; 32]| cache[&d].until.saturating_duration_since(Instant::now());
        assert!(left([1; 32]) <= VERIFIED_TTL && left([1; 32]) > Duration::from_secs(50));
        assert!(left([2; 32]) <= Duration::from_secs(20));
    }

    #[test]
    fn the_verified_token_cache_is_bounded() {
        let now = 1_800_000_000;
        let inner = cache_only(now);
        for i in 0..VERIFIED_CAPACITY + 10 {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            inner.remember(digest, &claims(now + 3600));
            assert!(inner.verified.lock().expect("lock").len() <= VERIFIED_CAPACITY);
        }
    }
}
