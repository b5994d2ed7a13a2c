//! Production authentication: RS256/ES256 tokens against a JSON Web Key Set from a file, a
//! URL or the issuer's discovery document. Keys are made by the `openssl` CLI in a temp
//! dir; tokens are signed with jsonwebtoken; the key set is served by a tiny HTTP server
//! in this process that counts its requests.

// Setup failures are meant to panic; token times use the wall clock.
#![allow(clippy::expect_used, clippy::disallowed_methods)]

use crate::harness::{ADMIN, Reply, Server, refused_start, uuid_like};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const ISSUER: &str = "https://login.example.test/tenant-1/v2.0";
const AUDIENCE: &str = "api://rolegate";

/// A key pair made by `openssl`.
struct TestKey {
    /// Private key, PKCS#8 PEM.
    private_pem: Vec<u8>,
    /// Public key, SubjectPublicKeyInfo PEM.
    public_pem: Vec<u8>,
    /// The public JWK (without `kid`).
    jwk: Value,
    alg: Algorithm,
}

impl TestKey {
    fn jwk(&self, kid: &str) -> Value {
        let mut j = self.jwk.clone();
        j["kid"] = json!(kid);
        j["use"] = json!("sig");
        j
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private_pem).expect("RSA PEM"),
            _ => EncodingKey::from_ec_pem(&self.private_pem).expect("EC PEM"),
        }
    }

    /// A token signed by this key, naming `kid`.
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).expect("sign")
    }
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("these tests need the `openssl` command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn key_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rolegate-it-keys-{}", uuid_like()));
        std::fs::create_dir_all(&d).expect("key dir");
        d
    })
}

fn rsa_key(name: &str) -> TestKey {
    let path = key_dir().join(format!("{name}.pem"));
    let p = path.to_str().expect("utf8 path");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        p,
    ]);
    let modulus =
        String::from_utf8(openssl(&["rsa", "-in", p, "-noout", "-modulus"])).expect("utf8");
    let modulus = modulus.trim().strip_prefix("Modulus=").expect("modulus");
    let key = TestKey {
        private_pem: std::fs::read(&path).expect("read key"),
        public_pem: openssl(&["pkey", "-in", p, "-pubout"]),
        // openssl's default public exponent is 65537.
        jwk: json!({"kty": "RSA", "alg": "RS256", "n": b64url(&hex_bytes(modulus)), "e": "AQAB"}),
        alg: Algorithm::RS256,
    };
    std::fs::remove_file(&path).ok();
    key
}

fn ec_key(name: &str) -> TestKey {
    let path = key_dir().join(format!("{name}.pem"));
    let p = path.to_str().expect("utf8 path");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        p,
    ]);
    // The SubjectPublicKeyInfo DER ends with the uncompressed point 04 || X || Y.
    let der = openssl(&["pkey", "-in", p, "-pubout", "-outform", "DER"]);
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 4, "uncompressed EC point");
    let key = TestKey {
        private_pem: std::fs::read(&path).expect("read key"),
        public_pem: openssl(&["pkey", "-in", p, "-pubout"]),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..])}),
        alg: Algorithm::ES256,
    };
    std::fs::remove_file(&path).ok();
    key
}

/// The test keys, made once per test run.
struct Keys {
    rsa: TestKey,
    ec: TestKey,
    /// Another RSA key (unknown to the server, or rotated in).
    rsa2: TestKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: rsa_key("rsa"),
        ec: ec_key("ec"),
        rsa2: rsa_key("rsa2"),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("seconds")
}

/// Valid claims for the tenant administrator (who needs no directory entry).
fn claims(issuer: &str) -> Value {
    let t = now();
    json!({"sub": ADMIN, "iss": issuer, "aud": AUDIENCE, "iat": t, "nbf": t - 5, "exp": t + 600, "amr": ["pwd", "mfa"]})
}

fn jwks(keys: &[(&TestKey, &str)]) -> String {
    json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()}).to_string()
}

/// A tiny HTTP server for the discovery document (`/.well-known/openid-configuration`)
/// and the key set (`/jwks`), counting requests to each.
struct JwksServer {
    origin: String,
    body: Arc<Mutex<String>>,
    jwks_hits: Arc<AtomicUsize>,
    discovery_hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let body = Arc::new(Mutex::new(body));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let discovery_hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, j, d, s, o) = (
            Arc::clone(&body),
            Arc::clone(&jwks_hits),
            Arc::clone(&discovery_hits),
            Arc::clone(&stop),
            origin.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = serve_one(conn, &o, &b, &j, &d);
            }
        });
        JwksServer {
            origin,
            body,
            jwks_hits,
            discovery_hits,
            stop,
        }
    }

    fn set(&self, body: String) {
        *self.body.lock().expect("lock") = body;
    }

    fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.origin.trim_start_matches("http://"));
    }
}

fn serve_one(
    conn: TcpStream,
    origin: &str,
    body: &Mutex<String>,
    jwks_hits: &AtomicUsize,
    discovery_hits: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, text) = match path {
        "/jwks" => {
            jwks_hits.fetch_add(1, Ordering::SeqCst);
            ("200 OK", body.lock().map(|b| b.clone()).unwrap_or_default())
        }
        "/.well-known/openid-configuration" => {
            discovery_hits.fetch_add(1, Ordering::SeqCst);
            (
                "200 OK",
                json!({"issuer": origin, "jwks_uri": format!("{origin}/jwks")}).to_string(),
            )
        }
        _ => ("404 Not Found", "{}".to_string()),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}

/// Starts a server in production mode with `args` after the issuer and audience.
fn start(issuer: &str, args: &[&str]) -> Server {
    let mut all = vec!["--oidc-issuer", issuer, "--oidc-audience", AUDIENCE];
    all.extend_from_slice(args);
    Server::start_without_dev_auth(&all)
}

fn jwks_file(body: &str) -> PathBuf {
    let path = key_dir().join(format!("jwks-{}.json", uuid_like()));
    std::fs::write(&path, body).expect("write jwks");
    path
}

/// Asserts a `401 InvalidAuthenticationToken` with a Bearer challenge whose message
/// contains `why`.
fn assert_refused(s: &Server, token: &str, what: &str, why: &str) -> Reply {
    let r = s.get(&s.pim("/resources"), token);
    assert_eq!(r.status, 401, "{what}: {}", r.text);
    let message = r.json["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(why), "{what}: {message}");
    assert_eq!(r.code(), "InvalidAuthenticationToken", "{what}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{what}: {:?}",
        r.headers
    );
    r
}

fn assert_accepted(s: &Server, token: &str, what: &str) {
    let r = s.get(&s.pim("/resources"), token);
    assert_eq!(r.status, 200, "{what}: {}", r.text);
}

#[test]
fn rs256_and_es256_tokens_from_a_jwks_file_are_accepted() {
    let k = keys();
    let file = jwks_file(&jwks(&[(&k.rsa, "rsa-1"), (&k.ec, "ec-1")]));
    let s = start(ISSUER, &["--jwks-file", file.to_str().expect("utf8")]);
    let c = claims(ISSUER);
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &c), "RS256");
    assert_accepted(&s, &k.ec.sign(Some("ec-1"), &c), "ES256");
    // The same token again (served from the verified-token cache).
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &c), "RS256 again");
    // `aud` as an array that holds the audience.
    let mut many = c.clone();
    many["aud"] = json!(["api://other", AUDIENCE]);
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &many), "aud array");
    // `oid` wins over `sub`.
    let mut oid = c.clone();
    oid["sub"] = json!("pairwise-subject");
    oid["oid"] = json!(ADMIN);
    assert_accepted(&s, &k.ec.sign(Some("ec-1"), &oid), "oid");
    // Within the 60 s leeway: expired 30 s ago, valid from 30 s on.
    let mut late = c.clone();
    late["exp"] = json!(now() - 30);
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &late), "exp within leeway");
    let mut early = c.clone();
    early["nbf"] = json!(now() + 30);
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &early), "nbf within leeway");
    // A development token is not accepted in production mode.
    assert_refused(
        &s,
        &s.token(ADMIN, true),
        "development HS256 token",
        "algorithm is not accepted",
    );
    std::fs::remove_file(file).ok();
}

#[test]
fn bad_tokens_are_refused_with_401_and_a_bearer_challenge() {
    let k = keys();
    let file = jwks_file(&jwks(&[(&k.rsa, "rsa-1"), (&k.ec, "ec-1")]));
    let s = start(ISSUER, &["--jwks-file", file.to_str().expect("utf8")]);
    let c = claims(ISSUER);
    let mut tokens = Vec::new();
    let mut refuse = |token: String, what: &str, why: &str| {
        assert_refused(&s, &token, what, why);
        tokens.push(token);
    };

    refuse(
        k.rsa2.sign(Some("rsa-1"), &c),
        "signed by an unknown key under a known kid",
        "signature is not valid",
    );
    refuse(
        k.rsa2.sign(None, &c),
        "no kid while the set has several keys",
        "no key id",
    );
    let none = format!(
        "{}.{}.",
        b64url(
            json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})
                .to_string()
                .as_bytes()
        ),
        b64url(c.to_string().as_bytes())
    );
    refuse(none, "alg none", "malformed or uses an algorithm");
    let hs_key = EncodingKey::from_secret(&k.rsa.public_pem).expect("secret");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-1".into());
    refuse(
        jsonwebtoken::encode(&hs_header, &c, &hs_key).expect("sign"),
        "HS256 with the RSA public key as the secret",
        "algorithm is not accepted",
    );
    let ec_as_hs = EncodingKey::from_secret(&k.ec.public_pem).expect("secret");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("ec-1".into());
    refuse(
        jsonwebtoken::encode(&hs_header, &c, &ec_as_hs).expect("sign"),
        "HS256 with the EC public key as the secret",
        "algorithm is not accepted",
    );
    refuse(
        k.ec.sign(Some("rsa-1"), &c),
        "ES256 token naming an RSA key",
        "does not match its signing key",
    );
    refuse(
        k.rsa.sign(Some("ec-1"), &c),
        "RS256 token naming an EC key",
        "does not match its signing key",
    );
    let mut expired = c.clone();
    expired["exp"] = json!(now() - 120);
    refuse(
        k.rsa.sign(Some("rsa-1"), &expired),
        "expired beyond leeway",
        "expired",
    );
    let mut future = c.clone();
    future["nbf"] = json!(now() + 120);
    refuse(
        k.rsa.sign(Some("rsa-1"), &future),
        "not yet valid",
        "not valid yet",
    );
    let mut aud = c.clone();
    aud["aud"] = json!("api://someone-else");
    refuse(
        k.rsa.sign(Some("rsa-1"), &aud),
        "wrong audience",
        "another audience",
    );
    let mut auds = c.clone();
    auds["aud"] = json!(["api://someone-else", "api://third"]);
    refuse(
        k.ec.sign(Some("ec-1"), &auds),
        "audience array without ours",
        "another audience",
    );
    let mut no_aud = c.clone();
    no_aud.as_object_mut().expect("object").remove("aud");
    refuse(
        k.rsa.sign(Some("rsa-1"), &no_aud),
        "no audience",
        "lacks a required claim",
    );
    let mut iss = c.clone();
    iss["iss"] = json!("https://login.example.test/other-tenant/v2.0");
    refuse(
        k.ec.sign(Some("ec-1"), &iss),
        "wrong issuer",
        "another issuer",
    );
    let mut no_iss = c.clone();
    no_iss.as_object_mut().expect("object").remove("iss");
    refuse(
        k.rsa.sign(Some("rsa-1"), &no_iss),
        "no issuer",
        "lacks a required claim",
    );
    let good = k.rsa.sign(Some("rsa-1"), &c);
    let (head, _) = good.rsplit_once('.').expect("three parts");
    refuse(
        format!("{head}.AAAA"),
        "tampered signature",
        "signature is not valid",
    );
    refuse("not-a-jwt".into(), "garbage", "malformed");

    // Nothing above reached the log.
    let log = s.log();
    for t in &tokens {
        assert!(!log.contains(t.as_str()), "a token was logged");
    }
    std::fs::remove_file(file).ok();
}

#[test]
fn an_unknown_kid_refreshes_the_key_set_at_most_once_per_ten_seconds() {
    let k = keys();
    let idp = JwksServer::start(jwks(&[(&k.rsa, "rsa-1")]));
    let url = format!("{}/jwks", idp.origin);
    let s = start(ISSUER, &["--jwks-url", &url]);
    assert_eq!(idp.jwks_hits(), 1, "one fetch at startup");
    let c = claims(ISSUER);
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &c), "known kid");
    assert_eq!(idp.jwks_hits(), 1, "a known kid needs no fetch");

    assert_refused(
        &s,
        &k.rsa2.sign(Some("unknown-1"), &c),
        "unknown kid",
        "not in the issuer's key set",
    );
    assert_eq!(idp.jwks_hits(), 2, "an unknown kid triggers one refresh");
    assert_refused(
        &s,
        &k.rsa2.sign(Some("unknown-2"), &c),
        "second unknown kid",
        "not in the issuer's key set",
    );
    assert_refused(
        &s,
        &k.rsa2.sign(Some("unknown-1"), &c),
        "first unknown kid again",
        "not in the issuer's key set",
    );
    assert_eq!(idp.jwks_hits(), 2, "no second refresh within 10 s");
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &c), "known kid still works");
}

#[test]
fn a_rotated_in_key_is_picked_up_on_first_use_through_discovery() {
    let k = keys();
    let idp = JwksServer::start(jwks(&[(&k.rsa, "rsa-1")]));
    // Discovery: no --jwks-file or --jwks-url; the issuer is the local server.
    let s = start(&idp.origin, &[]);
    assert_eq!(idp.discovery_hits(), 1);
    assert_eq!(idp.jwks_hits(), 1);
    let c = claims(&idp.origin);
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &c), "the first key");

    idp.set(jwks(&[
        (&k.rsa, "rsa-1"),
        (&k.rsa2, "rsa-2"),
        (&k.ec, "ec-2"),
    ]));
    assert_accepted(&s, &k.rsa2.sign(Some("rsa-2"), &c), "the rotated-in key");
    assert_eq!(idp.jwks_hits(), 2, "one refresh found the new key");
    assert_eq!(idp.discovery_hits(), 1, "the jwks_uri is remembered");
    assert_accepted(&s, &k.ec.sign(Some("ec-2"), &c), "the other new key");
    assert_accepted(&s, &k.rsa.sign(Some("rsa-1"), &c), "the first key still");
    assert_eq!(idp.jwks_hits(), 2);
}

#[test]
fn serve_refuses_unsafe_or_incomplete_production_settings() {
    let k = keys();
    let file = jwks_file(&jwks(&[(&k.rsa, "rsa-1")]));
    let f = file.to_str().expect("utf8");
    let prod = ["--oidc-issuer", ISSUER, "--oidc-audience", AUDIENCE];

    let mut both = prod.to_vec();
    both.extend([
        "--jwks-file",
        f,
        "--auth-hs256-secret",
        "0123456789abcdef0123",
    ]);
    let e = refused_start(&both, &[]);
    assert!(e.contains("cannot be combined"), "{e}");
    // The same through the environment.
    let e = refused_start(
        &["--jwks-file", f],
        &[
            ("ROLEGATE_OIDC_ISSUER", ISSUER),
            ("ROLEGATE_OIDC_AUDIENCE", AUDIENCE),
            ("ROLEGATE_AUTH_HS256_SECRET", "0123456789abcdef0123"),
        ],
    );
    assert!(e.contains("cannot be combined"), "{e}");

    let e = refused_start(&["--oidc-issuer", ISSUER, "--jwks-file", f], &[]);
    assert!(e.contains("--oidc-audience"), "{e}");
    let e = refused_start(&["--oidc-audience", AUDIENCE, "--jwks-file", f], &[]);
    assert!(e.contains("--oidc-issuer"), "{e}");

    let mut two = prod.to_vec();
    two.extend([
        "--jwks-file",
        f,
        "--jwks-url",
        "https://login.example.test/keys",
    ]);
    let e = refused_start(&two, &[]);
    assert!(e.contains("not both"), "{e}");

    // Plain http is for loopback only (refused before any connection is tried).
    let mut http = prod.to_vec();
    http.extend(["--jwks-url", "http://jwks.example.test/keys"]);
    let e = refused_start(&http, &[]);
    assert!(e.contains("loopback"), "{e}");
    let e = refused_start(
        &[
            "--oidc-issuer",
            "http://login.example.test/t",
            "--oidc-audience",
            AUDIENCE,
        ],
        &[],
    );
    assert!(e.contains("loopback"), "{e}");

    let mut demo = prod.to_vec();
    demo.extend(["--jwks-file", f, "--demo"]);
    let e = refused_start(&demo, &[]);
    assert!(e.contains("--demo"), "{e}");

    let e = refused_start(&[], &[]);
    assert!(e.contains("no authentication configured"), "{e}");

    // A key set without a usable key, or one that cannot be read.
    let empty = jwks_file(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0"}]}"#);
    let mut bad = prod.to_vec();
    bad.extend(["--jwks-file", empty.to_str().expect("utf8")]);
    let e = refused_start(&bad, &[]);
    assert!(e.contains("no usable"), "{e}");
    let mut missing = prod.to_vec();
    missing.extend(["--jwks-file", "/nonexistent/rolegate/jwks.json"]);
    let e = refused_start(&missing, &[]);
    assert!(e.contains("JSON Web Key Set"), "{e}");
    std::fs::remove_file(file).ok();
    std::fs::remove_file(empty).ok();
}
