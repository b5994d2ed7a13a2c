//! The e-mail worker (decisions.md §12): it leases due rows of the durable e-mail outbox
//! (as the change-notification worker does), renders each message with the rules of
//! `rolegate_core::email`, builds it with `lettre`'s message builder (MIME, quoted-printable
//! bodies, RFC 2047 headers), and sends it over SMTP with a minimal client of our own (EHLO,
//! STARTTLS, AUTH PLAIN or LOGIN, MAIL FROM, RCPT TO, DATA, QUIT) on a blocking thread with
//! a short timeout: `lettre`'s SMTP transport keeps what a relay sends after its reply to
//! STARTTLS and reads it as if it came over TLS (a response injection), which this client
//! refuses (docs/security.md "E-mail"). The relay URL says how:
//!
//! | `--smtp-url` | connection |
//! |---|---|
//! | `smtp://host[:port]` (port 25) | plain TCP |
//! | `smtp://host[:port]?starttls=required` | plain TCP upgraded with STARTTLS; a relay that does not offer it is an error |
//! | `smtps://host[:port]` (port 465) | implicit TLS |
//!
//! Any of them may carry `user:password@` (percent-encoded) to authenticate with AUTH PLAIN
//! (or LOGIN when the relay offers only that), after TLS. Credentials are sent only over
//! TLS, or in the clear to a loopback relay; they are never logged nor shown in errors.
//! TLS is rustls (the aws-lc-rs provider the rest of the binary uses) with the webpki roots,
//! plus the certificates of `--smtp-ca-file` when given. A `250` after the data acknowledges (the row
//! is deleted); anything else is retried with exponential backoff until four hours have
//! passed since the change, then given up. Message bodies are never logged.

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use rolegate_api::AppState;
use rolegate_core::email::{self, Email, Message};
use rolegate_core::error::Result;
use rolegate_core::notification;
use rolegate_core::operation;
use rolegate_core::store;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// At most this many e-mails are claimed per poll.
const BATCH: u32 = 16;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP (`smtp://`).
    Plain,
    /// Plain TCP upgraded with STARTTLS before anything else is sent
    /// (`smtp://…?starttls=required`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

impl Security {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "none",
            Self::StartTls => "starttls",
            Self::Implicit => "implicit",
        }
    }
}

/// A user name and password for SMTP AUTH. Its `Debug` form hides both.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Where and how mail is sent (`--smtp-url`, `--smtp-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// How the connection is secured.
    pub security: Security,
    /// The relay's host name or address.
    pub host: String,
    /// Its port (default 25, or 465 for `smtps://`).
    pub port: u16,
    /// Who to authenticate as, if anyone.
    pub credentials: Option<Credentials>,
}

/// Decodes `%XX` escapes (URL userinfo).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("the credentials hold a malformed %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the credentials are not UTF-8".to_string())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Relay {
    /// Parses `smtp://[user:password@]host[:port][?starttls=required]` or
    /// `smtps://[user:password@]host[:port]`. Errors never repeat the URL (it may hold a
    /// password).
    pub fn parse(url: &str) -> std::result::Result<Relay, String> {
        let url = url.trim();
        let (implicit, rest) = if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else {
            return Err(
                "not an smtp:// or smtps:// URL (smtp://[user:password@]host[:port][?starttls=required])"
                    .into(),
            );
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let starttls = match query {
            None => false,
            Some("starttls=required") if !implicit => true,
            Some("starttls=required") => {
                return Err("smtps:// is TLS already; ?starttls=required is for smtp://".into());
            }
            Some(_) => return Err("the only query the SMTP URL takes is ?starttls=required".into()),
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err("the SMTP URL takes no path".into());
        }
        let credentials = userinfo
            .map(|u| {
                let (user, password) = u
                    .split_once(':')
                    .ok_or("the SMTP URL's credentials must be user:password")?;
                let (user, password) = (percent_decode(user)?, percent_decode(password)?);
                if user.is_empty() {
                    return Err("the SMTP URL's user name is empty".to_string());
                }
                Ok(Credentials { user, password })
            })
            .transpose()?;
        let default = if implicit { 465 } else { 25 };
        let port_of = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port number"))
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{rest}` is not a host"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, port_of(p)?),
                None if after.is_empty() => (h, default),
                None => return Err(format!("`{rest}` is not a host and port")),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, port_of(p)?),
                None => (rest, default),
            }
        };
        if host.is_empty() {
            return Err("the SMTP URL names no host".into());
        }
        let security = match (implicit, starttls) {
            (true, _) => Security::Implicit,
            (false, true) => Security::StartTls,
            (false, false) => Security::Plain,
        };
        if credentials.is_some() && security == Security::Plain && !is_loopback(host) {
            return Err(
                "credentials are sent only over TLS: use smtps:// or ?starttls=required (or a loopback relay)"
                    .into(),
            );
        }
        Ok(Relay {
            security,
            host: host.to_string(),
            port,
            credentials,
        })
    }
}

/// The TLS client configuration for the relay: the webpki roots, plus the PEM
/// certificates in `ca_file` when given (a private relay's CA, or a test certificate).
pub fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How the worker sends.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relay.
    pub relay: Relay,
    /// TLS settings for `smtps://` and STARTTLS ([`tls_config`]).
    pub tls: Arc<rustls::ClientConfig>,
    /// The envelope and `From:` address.
    pub from: String,
    /// The public base URL of this server (links in messages).
    pub base_url: String,
    /// The first retry's delay; each further one doubles.
    pub retry_base: Duration,
    /// How long the relay has for each step.
    pub timeout: Duration,
    /// How often the outbox is polled.
    pub poll: Duration,
}

/// Runs until `stop` turns true or its sender is dropped; the batch in flight then
/// finishes (each message within its timeout), and its rows are acknowledged or
/// rescheduled.
pub async fn run(state: Arc<AppState>, cfg: Config, mut stop: watch::Receiver<bool>) {
    let cfg = Arc::new(cfg);
    let owner = format!("mail-{}", uuid::Uuid::new_v4().simple());
    let mut ticks = tokio::time::interval(cfg.poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = ticks.tick() => {}
        }
        let (s, o, c) = (Arc::clone(&state), owner.clone(), Arc::clone(&cfg));
        let flag = stop.clone();
        let pass = tokio::task::spawn_blocking(move || {
            let batch = claim(&s, &o, &c)?;
            for e in batch {
                if *flag.borrow() {
                    // Not sent: the lease runs out and the row is taken up again.
                    break;
                }
                send_one(&s, &o, &c, e);
            }
            Ok::<(), rolegate_core::DomainError>(())
        })
        .await;
        match pass {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not read the e-mail outbox"),
            Err(e) => tracing::error!(error = %e, "e-mail task failed"),
        }
    }
    tracing::info!("e-mail worker stopped");
}

fn claim(state: &AppState, owner: &str, cfg: &Config) -> Result<Vec<Email>> {
    let now = state.clock.now();
    // The lease outlives a whole batch's timeouts, so nobody else takes a row in flight.
    let lease = jiff::SignedDuration::try_from(cfg.timeout * 8 * BATCH + Duration::from_secs(30))
        .unwrap_or(jiff::SignedDuration::from_secs(600));
    let until = now.checked_add(lease).unwrap_or(now);
    store::write(state.store.as_ref(), |tx| {
        tx.claim_emails(owner, now, until, BATCH)
    })
}

fn send_one(state: &AppState, owner: &str, cfg: &Config, e: Email) {
    let outcome = store::read(state.store.as_ref(), |tx| {
        operation::email::compose(tx, &e, &cfg.base_url)
    })
    .map_err(|err| err.message)
    .and_then(|m| match m {
        Some(m) => send(cfg, &m, state.clock.now()).map(|()| true),
        None => Ok(false),
    });
    let now = state.clock.now();
    let done = match outcome {
        Ok(sent) => {
            if sent {
                tracing::info!(email = %e.id, request = %e.request_id, event = e.event.as_str(), "e-mail sent");
            } else {
                tracing::info!(email = %e.id, event = e.event.as_str(), "e-mail dropped: the assignment it reminds of has ended or changed");
            }
            store::write(state.store.as_ref(), |tx| tx.finish_email(&e.id, owner))
        }
        Err(why) => {
            match notification::retry_at(e.first_due, now, e.attempts + 1, cfg.retry_base) {
                Some(at) => {
                    tracing::info!(email = %e.id, request = %e.request_id, attempts = e.attempts + 1, error = %why, "e-mail not sent; will retry");
                    store::write(state.store.as_ref(), |tx| tx.retry_email(&e.id, owner, at))
                }
                None => {
                    tracing::warn!(email = %e.id, request = %e.request_id, error = %why, "e-mail given up after four hours of retries");
                    store::write(state.store.as_ref(), |tx| tx.finish_email(&e.id, owner))
                }
            }
        }
    };
    if let Err(err) = done {
        tracing::warn!(email = %e.id, error = %err, "could not record an e-mail attempt; the lease will run out and it will be tried again");
    }
}

/// Sends `m` through the relay, dated `now`.
pub fn send(cfg: &Config, m: &Message, now: jiff::Timestamp) -> std::result::Result<(), String> {
    if !email::valid_address(&m.to) {
        return Err("the recipient's address is not valid".into());
    }
    // Built before connecting: a message that cannot be built opens no connection.
    let data = String::from_utf8(mime(&cfg.from, m, now)?.formatted())
        .map_err(|_| "the message is not UTF-8".to_string())?;
    let relay = &cfg.relay;
    let addrs: Vec<_> = (relay.host.as_str(), relay.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", relay.host))?
        .collect();
    let mut last = format!("{} does not resolve", relay.host);
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, cfg.timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    let tcp = tcp.ok_or(last)?;
    tcp.set_read_timeout(Some(cfg.timeout))
        .and_then(|()| tcp.set_write_timeout(Some(cfg.timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    let creds = relay.credentials.as_ref();
    let envelope = Envelope {
        from: &cfg.from,
        to: &m.to,
        data: &data,
    };
    match relay.security {
        Security::Implicit => {
            let mut conn = BufReader::new(tls(&cfg.tls, &relay.host, tcp)?);
            expect_greeting(&mut conn)?;
            let caps = ehlo(&mut conn)?;
            converse(conn, &caps, creds, &envelope)
        }
        Security::Plain => {
            let mut conn = BufReader::new(tcp);
            expect_greeting(&mut conn)?;
            let caps = ehlo(&mut conn)?;
            converse(conn, &caps, creds, &envelope)
        }
        Security::StartTls => {
            let mut conn = BufReader::new(tcp);
            expect_greeting(&mut conn)?;
            let caps = ehlo(&mut conn)?;
            if !caps.iter().any(|c| c.eq_ignore_ascii_case("STARTTLS")) {
                return Err("the relay does not offer STARTTLS, which the URL requires".into());
            }
            step(&mut conn, "STARTTLS\r\n", &[220])?;
            // Anything the relay sent past its reply would be read as if it came over TLS
            // (a STARTTLS injection): refuse.
            if !conn.buffer().is_empty() {
                return Err("the relay sent data before the TLS handshake".into());
            }
            let mut conn = BufReader::new(tls(&cfg.tls, &relay.host, conn.into_inner())?);
            // The capabilities heard in the clear are discarded (RFC 3207).
            let caps = ehlo(&mut conn)?;
            converse(conn, &caps, creds, &envelope)
        }
    }
}

fn tls(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> std::result::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS server name `{host}`: {e}"))?;
    let conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| format!("TLS: {e}"))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Reads one (possibly multi-line) reply: its code and the text of each line.
fn reply<R: BufRead>(r: &mut R) -> std::result::Result<(u16, Vec<String>), String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .map_err(|e| format!("reading the relay's reply: {e}"))?;
        if n == 0 {
            return Err("the relay closed the connection".into());
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("unexpected reply `{}`", one_line_prefix(&line)))?;
        lines.push(line.get(4..).unwrap_or("").trim_end().to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, lines));
        }
    }
}

/// The start of an unexpected reply, safe to put in a log line.
fn one_line_prefix(line: &str) -> String {
    line.chars()
        .take(60)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Sends `command` and reads the reply, which must have one of the `ok` codes; errors name
/// the command's verb only.
fn step<S: Read + Write>(
    conn: &mut BufReader<S>,
    command: &str,
    ok: &[u16],
) -> std::result::Result<Vec<String>, String> {
    let verb = command.split([' ', ':', '\r']).next().unwrap_or("");
    exchange(conn, command, ok, verb)
}

/// Sends `command` and reads the reply; errors call it `name` (credentials never appear).
fn exchange<S: Read + Write>(
    conn: &mut BufReader<S>,
    command: &str,
    ok: &[u16],
    name: &str,
) -> std::result::Result<Vec<String>, String> {
    conn.get_mut()
        .write_all(command.as_bytes())
        .and_then(|()| conn.get_mut().flush())
        .map_err(|e| format!("writing to the relay: {e}"))?;
    let (code, lines) = reply(conn)?;
    if ok.contains(&code) {
        Ok(lines)
    } else {
        Err(format!("the relay answered {code} to {name}"))
    }
}

fn expect_greeting<S: Read + Write>(conn: &mut BufReader<S>) -> std::result::Result<(), String> {
    let (greeting, _) = reply(conn)?;
    if greeting != 220 {
        return Err(format!("the relay greeted with {greeting}"));
    }
    Ok(())
}

/// EHLO; the relay's capability lines (without the greeting line).
fn ehlo<S: Read + Write>(conn: &mut BufReader<S>) -> std::result::Result<Vec<String>, String> {
    let lines = step(conn, "EHLO rolegate\r\n", &[250])?;
    Ok(lines.into_iter().skip(1).collect())
}

/// Standard base64 with padding (RFC 4648), for AUTH.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// AUTH with `creds`: PLAIN when the relay offers it, else LOGIN.
fn authenticate<S: Read + Write>(
    conn: &mut BufReader<S>,
    caps: &[String],
    creds: &Credentials,
) -> std::result::Result<(), String> {
    let mechanisms: Vec<String> = caps
        .iter()
        .filter_map(|c| {
            let upper = c.to_ascii_uppercase();
            upper
                .strip_prefix("AUTH ")
                .or_else(|| upper.strip_prefix("AUTH="))
                .map(str::to_string)
        })
        .flat_map(|m| m.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    if mechanisms.iter().any(|m| m == "PLAIN") {
        let token = base64(format!("\0{}\0{}", creds.user, creds.password).as_bytes());
        exchange(
            conn,
            &format!("AUTH PLAIN {token}\r\n"),
            &[235],
            "AUTH PLAIN",
        )?;
    } else if mechanisms.iter().any(|m| m == "LOGIN") {
        exchange(conn, "AUTH LOGIN\r\n", &[334], "AUTH LOGIN")?;
        let user = base64(creds.user.as_bytes());
        exchange(
            conn,
            &format!("{user}\r\n"),
            &[334],
            "AUTH LOGIN (user name)",
        )?;
        let password = base64(creds.password.as_bytes());
        exchange(
            conn,
            &format!("{password}\r\n"),
            &[235],
            "AUTH LOGIN (password)",
        )?;
    } else {
        return Err("the relay offers neither AUTH PLAIN nor AUTH LOGIN".into());
    }
    Ok(())
}

/// One message's envelope and content.
struct Envelope<'a> {
    from: &'a str,
    to: &'a str,
    data: &'a str,
}

/// After EHLO (and TLS): AUTH when there are credentials, then the message.
fn converse<S: Read + Write>(
    mut conn: BufReader<S>,
    caps: &[String],
    creds: Option<&Credentials>,
    m: &Envelope,
) -> std::result::Result<(), String> {
    if let Some(creds) = creds {
        authenticate(&mut conn, caps, creds)?;
    }
    step(&mut conn, &format!("MAIL FROM:<{}>\r\n", m.from), &[250])?;
    step(&mut conn, &format!("RCPT TO:<{}>\r\n", m.to), &[250, 251])?;
    step(&mut conn, "DATA\r\n", &[354])?;
    let mut body = String::with_capacity(m.data.len() + 64);
    for line in m.data.split("\r\n") {
        if line.starts_with('.') {
            body.push('.');
        }
        body.push_str(line);
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    step(&mut conn, &body, &[250])?;
    // The message is accepted; a failing QUIT does not change that.
    let _ = step(&mut conn, "QUIT\r\n", &[221]);
    Ok(())
}

/// Whether `from` can be the sender of every message (`--smtp-from`, checked at start): an
/// address by the directory's rules and by the message builder's, which are stricter.
pub fn check_sender(from: &str) -> std::result::Result<(), String> {
    if !email::valid_address(from) {
        return Err(format!("`{from}` is not an e-mail address"));
    }
    from.parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|e| format!("`{from}` cannot be a sender address: {e}"))
}

/// The whole message: headers and a `multipart/alternative` body (plain text, then HTML),
/// both quoted-printable.
fn mime(
    from: &str,
    m: &Message,
    now: jiff::Timestamp,
) -> std::result::Result<lettre::Message, String> {
    let address = |a: &str| {
        a.parse::<lettre::Address>()
            .map_err(|e| format!("an address of the message is not valid: {e}"))
    };
    let domain = from.rsplit_once('@').map_or("rolegate", |(_, d)| d);
    let part = |kind: ContentType, body: &str| {
        SinglePart::builder()
            .header(kind)
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(body.to_string())
    };
    lettre::Message::builder()
        .from(Mailbox::new(Some("Rolegate".into()), address(from)?))
        .to(Mailbox::new(None, address(&m.to)?))
        .subject(m.subject.as_str())
        .date(
            std::time::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(now.as_second()).unwrap_or_default()),
        )
        .message_id(Some(format!(
            "<{}@{domain}>",
            uuid::Uuid::new_v4().simple()
        )))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .multipart(
            MultiPart::alternative()
                .singlepart(part(ContentType::TEXT_PLAIN, &m.text))
                .singlepart(part(ContentType::TEXT_HTML, &m.html)),
        )
        .map_err(|e| format!("the message cannot be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_parse() {
        assert_eq!(
            Relay::parse("smtp://127.0.0.1:2525"),
            Ok(Relay {
                security: Security::Plain,
                host: "127.0.0.1".into(),
                port: 2525,
                credentials: None,
            })
        );
        assert_eq!(
            Relay::parse("smtps://mail.example.com"),
            Ok(Relay {
                security: Security::Implicit,
                host: "mail.example.com".into(),
                port: 465,
                credentials: None,
            })
        );
        assert_eq!(
            Relay::parse("smtp://pim%40corp:p%3Ass@mail.example.com:587?starttls=required"),
            Ok(Relay {
                security: Security::StartTls,
                host: "mail.example.com".into(),
                port: 587,
                credentials: Some(Credentials {
                    user: "pim@corp".into(),
                    password: "p:ss".into()
                }),
            })
        );
        // Credentials in the clear only to a loopback relay.
        assert!(Relay::parse("smtp://u:p@127.0.0.1:2525").is_ok());
        assert!(Relay::parse("smtp://u:p@[::1]:2525").is_ok());
        for bad in [
            "http://x",
            "smtp://",
            "smtp://host:x",
            "smtp://u:secret@mail.example.com",
            "smtp://u@localhost",
            "smtp://:p@localhost",
            "smtps://host?starttls=required",
            "smtp://host?starttls=optional",
            "smtp://host/path",
            "smtp://u:%zz@localhost",
        ] {
            let err = Relay::parse(bad).expect_err(bad);
            assert!(!err.contains("secret"), "{err}");
        }
        let relay = Relay::parse("smtps://u:hunter2@mail.example.com").unwrap();
        assert!(!format!("{relay:?}").contains("hunter2"));
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("\0user\0pass", "AHVzZXIAcGFzcw=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn messages_are_alternative_quoted_printable_and_auto_submitted() {
        let m = Message {
            to: "alice@example.com".into(),
            subject: "Approval needed: é".into(),
            text: format!("a=b é \n{}", "x".repeat(200)),
            html: "<p>é</p>".into(),
        };
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let raw =
            String::from_utf8(mime("pim@rolegate.test", &m, now).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("From: Rolegate <pim@rolegate.test>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("To: alice@example.com\r\n"), "{raw}");
        assert!(raw.contains("Auto-Submitted: auto-generated\r\n"), "{raw}");
        assert!(raw.contains("Message-ID: <"), "{raw}");
        assert!(raw.contains("@rolegate.test>"), "{raw}");
        assert!(
            raw.contains("Date: Fri, 15 Jan 2027 08:00:00 +0000"),
            "{raw}"
        );
        // The non-ASCII subject is an encoded word.
        assert!(raw.contains("Subject: Approval needed: =?utf-8?"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert_eq!(
            raw.matches("Content-Transfer-Encoding: quoted-printable")
                .count(),
            2,
            "{raw}"
        );
        assert!(raw.contains("a=3Db =C3=A9"), "{raw}");
        assert!(raw.split("\r\n").all(|l| l.len() <= 78), "{raw}");
        // A recipient that is no address is refused before any connection.
        let bad = Message {
            to: "not an address".into(),
            ..m
        };
        assert!(mime("pim@rolegate.test", &bad, now).is_err());
        assert!(check_sender("pim@rolegate.test").is_ok());
        assert!(check_sender("a..b@rolegate.test").is_err());
    }
}
