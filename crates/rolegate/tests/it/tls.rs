//! The listener: HTTPS with `--tls-cert`/`--tls-key` (HTTP/1.1 and HTTP/2 chosen by ALPN,
//! plain HTTP refused), HTTP/2 with prior knowledge over plain TCP, and a clear refusal to
//! start on bad certificate or key files.
//!
//! `tests/fixtures/tls-cert.pem` and `tls-key.pem` are a self-signed P-256 certificate for
//! `localhost` and `127.0.0.1` (CN and SAN), valid for 100 years; `other-key.pem` is a key
//! of no certificate. Made with:
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
//!   -keyout tls-key.pem -out tls-cert.pem -subj /CN=localhost \
//!   -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
//!   -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::harness::{ADMIN, Server, refused_start, token};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_str()
        .expect("utf8 path")
        .to_string()
}

fn start_tls() -> Server {
    let (cert, key) = (fixture("tls-cert.pem"), fixture("tls-key.pem"));
    Server::start_with(&["--tls-cert", &cert, "--tls-key", &key])
}

/// `host:port` of an origin such as `https://127.0.0.1:PORT`.
fn authority(origin: &str) -> &str {
    origin.split_once("://").expect("scheme").1
}

/// A client trusting only the test certificate, offering `alpn`.
fn client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("tls-cert.pem")).expect("test certificate"))
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What one request over one fresh connection saw.
#[derive(Debug)]
struct Seen {
    alpn: Option<Vec<u8>>,
    version: Version,
    status: u16,
    body: Value,
}

/// GETs `path` (as the tenant administrator) over `io`, in HTTP/2 when `h2`, else HTTP/1.1.
async fn get<I>(io: I, h2: bool, authority: &str, path: &str) -> (Version, u16, Value)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let bearer = format!("Bearer {}", token(ADMIN, true));
    let io = TokioIo::new(io);
    let req = Request::get(format!("https://{authority}{path}"))
        .header("authorization", bearer)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("HTTP/2 request")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.headers.insert("host", authority.parse().unwrap());
        parts.uri = path.parse().unwrap();
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .expect("HTTP/1.1 request")
    };
    let (version, status) = (resp.version(), resp.status().as_u16());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        version,
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One HTTPS request offering `alpn`, connecting to `origin` as `localhost`.
fn https_get(origin: &str, alpn: &[&[u8]], path: &str) -> Seen {
    let authority = authority(origin).to_string();
    let config = client_config(alpn);
    let path = path.to_string();
    runtime().block_on(async move {
        let tcp = TcpStream::connect(&authority).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake trusting the test certificate");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let h2 = alpn.as_deref() == Some(b"h2");
        let port = authority.rsplit_once(':').expect("port").1;
        let (version, status, body) = get(tls, h2, &format!("localhost:{port}"), &path).await;
        Seen {
            alpn,
            version,
            status,
            body,
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const RESOURCES: &str = "/beta/privilegedAccess/azureResources/resources";

#[test]
fn https_serves_http2_and_http11_by_alpn() {
    let s = start_tls();
    assert!(s.origin.starts_with("https://127.0.0.1:"), "{}", s.origin);

    let h2 = https_get(&s.origin, &[b"h2", b"http/1.1"], RESOURCES);
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]), "{h2:?}");
    assert_eq!(h2.version, Version::HTTP_2);
    assert_eq!(h2.status, 200, "{h2:?}");
    // Links name the scheme and authority the client used.
    let port = s.origin.rsplit_once(':').unwrap().1;
    assert_eq!(
        h2.body["@odata.context"].as_str().unwrap_or_default(),
        format!("https://localhost:{port}/beta/$metadata#governanceResources"),
        "{h2:?}"
    );

    let h1 = https_get(&s.origin, &[b"http/1.1"], RESOURCES);
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]), "{h1:?}");
    assert_eq!(h1.version, Version::HTTP_11);
    assert_eq!(h1.status, 200, "{h1:?}");

    // A client offering no ALPN gets HTTP/1.1.
    let none = https_get(&s.origin, &[], RESOURCES);
    assert_eq!(none.alpn, None);
    assert_eq!(none.version, Version::HTTP_11);
    assert_eq!(none.status, 200, "{none:?}");
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let s = start_tls();
    let plain = format!("http://{}/healthz", authority(&s.origin));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let answer = agent.get(&plain).call();
    assert!(
        answer.is_err(),
        "plain HTTP got an answer: {:?}",
        answer.map(|r| r.status())
    );
    // The server is still there for TLS clients.
    assert_eq!(https_get(&s.origin, &[b"h2"], "/healthz").status, 200);
}

#[test]
fn plain_http_accepts_http2_with_prior_knowledge() {
    let s = Server::start();
    let authority = authority(&s.origin).to_string();
    let (version, status, _) = runtime().block_on(async move {
        let tcp = TcpStream::connect(&authority).await.expect("connect");
        get(tcp, true, &authority, RESOURCES).await
    });
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(status, 200);
}

#[test]
fn bad_certificate_or_key_files_stop_the_server_with_a_clear_message() {
    let auth = ["--auth-hs256-secret", crate::harness::SECRET];
    let (cert, key, other) = (
        fixture("tls-cert.pem"),
        fixture("tls-key.pem"),
        fixture("other-key.pem"),
    );
    let missing = fixture("no-such-file.pem");
    let cases: [(&[&str], &str); 5] = [
        (&["--tls-cert", &missing, "--tls-key", &key], "--tls-cert"),
        (&["--tls-cert", &cert, "--tls-key", &missing], "--tls-key"),
        (
            &["--tls-cert", &cert, "--tls-key", &other],
            "is the key the certificate's?",
        ),
        (
            &["--tls-cert", &key, "--tls-key", &key],
            "no PEM certificate",
        ),
        (&["--tls-cert", &cert], "--tls-key"),
    ];
    for (args, expected) in cases {
        let stderr = refused_start(&[&auth[..], args].concat(), &[]);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The certificate the server at `origin` presents to a new connection, trusting `roots`.
fn served_certificate(origin: &str, roots: &[&str]) -> Vec<u8> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(CertificateDer::from_pem_file(r).expect("a trusted certificate"))
            .expect("trust it");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    let authority = authority(origin).to_string();
    runtime().block_on(async move {
        let tcp = TcpStream::connect(&authority).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        let certs = tls.get_ref().1.peer_certificates().expect("a certificate");
        certs[0].as_ref().to_vec()
    })
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(pem)
        .expect("certificate")
        .as_ref()
        .to_vec()
}

#[test]
fn sighup_reloads_the_certificate_and_bad_files_keep_the_current_one() {
    let dir = std::env::temp_dir().join(format!("rolegate-it-tls-{}", crate::harness::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (cert, key) = (path("cert.pem"), path("key.pem"));
    std::fs::copy(fixture("tls-cert.pem"), &cert).unwrap();
    std::fs::copy(fixture("tls-key.pem"), &key).unwrap();
    let s = Server::start_with(&["--tls-cert", &cert, "--tls-key", &key]);
    let (old, new) = (fixture("tls-cert.pem"), path("new-cert.pem"));
    assert_eq!(served_certificate(&s.origin, &[&old]), der_of(&old));

    // A rotated certificate, written over the files the server was started with.
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &path("new-key.pem"),
            "-out",
            &new,
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .output()
        .expect("this test needs the `openssl` command (Debian package openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::copy(&new, &cert).unwrap();
    std::fs::copy(path("new-key.pem"), &key).unwrap();
    let pid = s.pid().expect("running").to_string();
    let hup = || {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        assert!(sent.is_ok_and(|st| st.success()), "kill -HUP");
    };
    hup();
    crate::harness::wait_until(5, "the rotated certificate is served", || {
        served_certificate(&s.origin, &[&old, &new]) == der_of(&new)
    });

    // Files that do not load (a half-written rotation) keep the current certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    hup();
    crate::harness::wait_until(5, "the failed reload is logged", || {
        s.log().contains("TLS files not reloaded")
    });
    assert_eq!(served_certificate(&s.origin, &[&old, &new]), der_of(&new));
    let _ = std::fs::remove_dir_all(&dir);
}
