//! The HTTP listener: HTTP/1.1 and HTTP/2 (chosen by ALPN over TLS, or by the client's
//! preface over plain TCP, "prior knowledge"), optionally over TLS (rustls on the aws-lc-rs
//! provider the rest of the binary uses), with connection limits — request headers of at
//! most [`MAX_HEADER_BYTES`], and a connection without a request in flight for the idle
//! timeout (a slow client still sending its headers included) is closed, and at most
//! `max_connections` open at once (over it, new connections wait in the kernel's accept
//! queue until one closes) — and graceful shutdown: on the signal it stops accepting, lets
//! requests in flight finish and closes idle connections.

use anyhow::{Context, anyhow, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The most bytes of request headers: the HTTP/1.1 read buffer (past it hyper answers
/// `431`) and the HTTP/2 header list size.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Reads the PEM certificate chain and private key of `--tls-cert` / `--tls-key` and
/// builds the TLS configuration (TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`). Fails with a
/// message naming the file when one cannot be read or parsed, or when the key is not the
/// certificate's.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "--tls-cert {}: the file holds no PEM certificate",
            cert.display()
        );
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            anyhow!(
                "--tls-cert {} with --tls-key {}: {e} (is the key the certificate's?)",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration of a listener, re-read from its files on demand (`SIGHUP`): new
/// connections use the configuration current when they are accepted; open ones keep theirs.
pub struct TlsFiles {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: std::sync::RwLock<Arc<rustls::ServerConfig>>,
}

impl TlsFiles {
    /// Reads `cert` and `key` ([`tls_config`]); fails as it does.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<TlsFiles> {
        Ok(TlsFiles {
            current: std::sync::RwLock::new(tls_config(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Reads the files again and, when they hold a valid certificate and its key, serves
    /// them to new connections; otherwise keeps the current ones and says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = tls_config(&self.cert, &self.key)?;
        let mut current = self
            .current
            .write()
            .map_err(|_| anyhow!("TLS configuration lock poisoned"))?;
        *current = fresh;
        Ok(())
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current
            .read()
            .ok()
            .map(|c| TlsAcceptor::from(Arc::clone(&c)))
    }
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` at which a request last ended.
    last_ended_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
        }
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since_open = self.opened.elapsed();
        since_open.saturating_sub(Duration::from_millis(
            self.last_ended_ms.load(Ordering::Acquire),
        ))
    }
}

/// Counts one request in flight while alive.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The default `--max-connections`: three quarters of the process's open-file limit
/// (the rest is for the database, connectors and files), between 64 and 16,384; 768 when
/// the limit cannot be read (Linux's usual 1,024).
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_limit(&text));
    soft.map_or(768, |n| (n / 4 * 3).clamp(64, 16_384))
}

/// The soft "Max open files" limit of a `/proc/self/limits` text (`None` when unlimited
/// or absent).
fn open_files_limit(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the connections
/// to finish (requests in flight complete; idle connections are closed). With `tls`, every
/// connection is TLS (with the configuration current when it is accepted); a client
/// speaking plain HTTP to it gets no HTTP answer.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<TlsFiles>>,
    app: Router,
    idle_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    // Connection tasks watch `stop` for the shutdown and each hold a clone of `open`: the
    // server is done when the last one is dropped.
    let (stop_tx, stop_rx) = watch::channel(());
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    // One permit per open connection: at the cap the loop stops accepting, so new
    // connections wait in the kernel's queue (or are refused when it is full) rather than
    // the process running out of file descriptors.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    // One warning per stretch at the cap, not one per connection accepted during it.
    let mut warned = false;
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                warned = false;
                slot
            }
            Err(_) => {
                if !warned {
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                    warned = true;
                }
                // The semaphore is never closed: the wait ends with a slot or the shutdown.
                tokio::select! {
                    Ok(slot) = Arc::clone(&slots).acquire_owned() => slot,
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            builder: Arc::clone(&builder),
            app: app.clone(),
            peer,
            tls: tls.is_some(),
            idle_timeout,
            stop: stop_rx.clone(),
            _open: open_rx.clone(),
            _slot: slot,
        };
        match &tls {
            None => {
                tokio::spawn(connection.run(tcp));
            }
            Some(files) => {
                let Some(acceptor) = files.acceptor() else {
                    tracing::error!("TLS configuration unavailable; connection dropped");
                    continue;
                };
                tokio::spawn(async move {
                    match tokio::time::timeout(idle_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection.run(stream).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(open_rx);
    let _ = stop_tx.send(());
    open_tx.closed().await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    peer: SocketAddr,
    tls: bool,
    idle_timeout: Duration,
    stop: watch::Receiver<()>,
    /// Held until the connection is done (see [`serve`]).
    _open: watch::Receiver<()>,
    /// Its place under `max_connections`, given back when it is done.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let (peer, tls) = (self.peer, self.tls);
        let counted = Arc::clone(&activity);
        let service = self
            .app
            .clone()
            .map_request(move |req: Request<Incoming>| with_origin(req.map(Body::new), peer, tls))
            .map_future(move |response| {
                let in_flight = InFlight::start(&counted);
                async move {
                    // The request stays in flight until its body is sent (or dropped): a
                    // large answer to a slow reader is not an idle connection.
                    response.await.map(|resp: axum::response::Response| {
                        resp.map(|body| {
                            Body::new(body.map_frame(move |frame| {
                                let _sending = &in_flight;
                                frame
                            }))
                        })
                    })
                }
            });
        let mut conn = std::pin::pin!(
            self.builder
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        );
        let mut watchdog = tokio::time::interval(
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        );
        let mut stopping = false;
        let mut closing_idle_since: Option<Instant> = None;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = watchdog.tick() => {
                    if activity.idle_for() < self.idle_timeout {
                        closing_idle_since = None;
                        continue;
                    }
                    match closing_idle_since {
                        // Ask politely first (HTTP/2 GOAWAY; HTTP/1.1 closes when idle)…
                        None => {
                            closing_idle_since = Some(Instant::now());
                            conn.as_mut().graceful_shutdown();
                        }
                        // …then drop a client that keeps the connection half-open.
                        Some(since) if since.elapsed() >= self.idle_timeout => {
                            tracing::debug!(%peer, "closing an idle connection");
                            return;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

/// The request as the router sees it: the peer address (for the per-client rate limit),
/// `Host` from the HTTP/2 `:authority` when absent, and over TLS `X-Forwarded-Proto:
/// https` (the links Rolegate builds follow both).
fn with_origin(mut req: Request<Body>, peer: SocketAddr, tls: bool) -> Request<Body> {
    req.extensions_mut().insert(ConnectInfo(peer));
    if !req.headers().contains_key(header::HOST)
        && let Some(authority) = req.uri().authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, host);
    }
    if tls {
        req.headers_mut()
            .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn the_test_certificate_loads_with_h2_and_http11() {
        let config = tls_config(&fixture("tls-cert.pem"), &fixture("tls-key.pem")).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let e = tls_config(&fixture("tls-cert.pem"), &fixture("other-key.pem")).unwrap_err();
        assert!(
            e.to_string().contains("is the key the certificate's?"),
            "{e}"
        );
    }

    #[test]
    fn missing_or_swapped_files_are_named() {
        let e = tls_config(&fixture("nope.pem"), &fixture("tls-key.pem")).unwrap_err();
        assert!(e.to_string().starts_with("--tls-cert"), "{e}");
        // A key file holds no certificate; a certificate file holds no key.
        let e = tls_config(&fixture("tls-key.pem"), &fixture("tls-key.pem")).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = tls_config(&fixture("tls-cert.pem"), &fixture("tls-cert.pem")).unwrap_err();
        assert!(e.to_string().starts_with("--tls-key"), "{e}");
    }

    #[test]
    fn a_connection_is_idle_only_without_requests_in_flight() {
        let activity = Arc::new(Activity::new());
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.idle_for() >= Duration::from_millis(20));
        let request = InFlight::start(&activity);
        assert_eq!(activity.idle_for(), Duration::ZERO);
        drop(request);
        assert!(activity.idle_for() < Duration::from_millis(20));
    }

    /// A body that sends `first;`, pauses, then sends `second`.
    struct SlowBody {
        sent: u8,
        pause: std::pin::Pin<Box<tokio::time::Sleep>>,
    }

    impl hyper::body::Body for SlowBody {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            use std::task::Poll;
            let chunk = match self.sent {
                0 => "first;",
                1 => match self.pause.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => "second",
                },
                _ => return Poll::Ready(None),
            };
            self.sent += 1;
            Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk.into()))))
        }
    }

    /// Serves `app` over plain TCP on a loopback port until the test ends; its address.
    async fn plain_server(
        app: Router,
        idle_timeout: Duration,
        max_connections: usize,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            None,
            app,
            idle_timeout,
            max_connections,
            std::future::pending(),
        ));
        addr
    }

    #[tokio::test]
    async fn a_slow_answer_keeps_its_connection_open_past_the_idle_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                Body::new(SlowBody {
                    sent: 0,
                    pause: Box::pin(tokio::time::sleep(Duration::from_millis(800))),
                })
            }),
        );
        let addr = plain_server(app, Duration::from_millis(100), 16).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.contains("first;"), "{answer}");
        assert!(answer.contains("second"), "{answer}");
    }

    #[tokio::test]
    async fn over_the_connection_limit_a_client_waits_for_a_place() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let addr = plain_server(app, Duration::from_secs(30), 2).await;
        let ask = |mut c: tokio::net::TcpStream| async move {
            c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).await.map(|_| answer)
        };
        // Two idle connections take both places (each answered, so surely accepted).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
            held.push(c);
        }
        // A third connects (the kernel queues it) but gets no answer while both are held.
        let third = tokio::spawn(ask(tokio::net::TcpStream::connect(addr).await.unwrap()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!third.is_finished(), "served over the limit");
        // One closes: the third is served.
        drop(held.pop());
        let answer = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(answer.contains("hello"), "{answer}");
    }

    #[test]
    fn the_default_connection_limit_follows_the_open_file_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max cpu time              unlimited            unlimited            seconds\n\
                    Max open files            20000                20000                files\n";
        assert_eq!(open_files_limit(text), Some(20_000));
        assert_eq!(
            open_files_limit("Max open files            unlimited            unlimited   files"),
            None
        );
        assert_eq!(open_files_limit("nothing"), None);
        assert!((64..=16_384).contains(&default_max_connections()));
    }

    #[test]
    fn tls_requests_say_https_and_http2_requests_get_a_host() {
        let req = Request::builder()
            .uri("https://pim.example:8443/beta")
            .header("x-forwarded-proto", "http")
            .body(Body::empty())
            .unwrap();
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let req = with_origin(req, peer, true);
        assert_eq!(req.headers()["host"], "pim.example:8443");
        assert_eq!(req.headers()["x-forwarded-proto"], "https");
        assert_eq!(
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            Some(peer)
        );
    }
}
