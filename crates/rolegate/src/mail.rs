//! The e-mail worker (decisions.md §12): it leases due rows of the durable e-mail outbox
//! (as the change-notification worker does), renders each message with the rules of
//! `rolegate_core::email`, and sends it over SMTP with a minimal client (EHLO, MAIL FROM,
//! RCPT TO, DATA, QUIT; plain TCP for `smtp://`, implicit TLS with rustls for `smtps://`)
//! on a blocking thread with a short timeout. A `250` after the data acknowledges (the row
//! is deleted); anything else is retried with exponential backoff until four hours have
//! passed since the change, then given up. Message bodies are never logged.

use rolegate_api::AppState;
use rolegate_core::email::{self, Email, Message};
use rolegate_core::error::Result;
use rolegate_core::notification;
use rolegate_core::store;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// At most this many e-mails are claimed per poll.
const BATCH: u32 = 16;

/// Where and how mail is sent (`--smtp-url`, `--smtp-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Implicit TLS (`smtps://`).
    pub tls: bool,
    /// The relay's host name or address.
    pub host: String,
    /// Its port (default 25, or 465 for `smtps://`).
    pub port: u16,
}

impl Relay {
    /// Parses `smtp://host[:port]` or `smtps://host[:port]`.
    pub fn parse(url: &str) -> std::result::Result<Relay, String> {
        let url = url.trim();
        let (tls, rest) = if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else {
            return Err(format!(
                "`{url}` is not an smtp:// or smtps:// URL (smtp://host:port)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') || rest.contains('/') || rest.contains('?') {
            return Err("the SMTP URL takes a host and port only (no credentials or path)".into());
        }
        let default = if tls { 465 } else { 25 };
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
        Ok(Relay {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// How the worker sends.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relay.
    pub relay: Relay,
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
        email::compose(tx, &e, &cfg.base_url)
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
    let data = mime(&cfg.from, m, now);
    if relay.tls {
        let stream = tls(&relay.host, tcp)?;
        converse(stream, &cfg.from, &m.to, &data)
    } else {
        converse(tcp, &cfg.from, &m.to, &data)
    }
}

fn tls(
    host: &str,
    tcp: TcpStream,
) -> std::result::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS server name `{host}`: {e}"))?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS: {e}"))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Reads one (possibly multi-line) reply; returns its code.
fn reply<R: BufRead>(r: &mut R) -> std::result::Result<u16, String> {
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
            .ok_or_else(|| format!("unexpected reply `{}`", line.trim_end()))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

fn step<S: Read + Write>(
    conn: &mut BufReader<S>,
    command: &str,
    ok: &[u16],
) -> std::result::Result<(), String> {
    conn.get_mut()
        .write_all(command.as_bytes())
        .and_then(|()| conn.get_mut().flush())
        .map_err(|e| format!("writing to the relay: {e}"))?;
    let code = reply(conn)?;
    if ok.contains(&code) {
        Ok(())
    } else {
        let verb = command.split([' ', ':', '\r']).next().unwrap_or("");
        Err(format!("the relay answered {code} to {verb}"))
    }
}

fn converse<S: Read + Write>(
    stream: S,
    from: &str,
    to: &str,
    data: &str,
) -> std::result::Result<(), String> {
    let mut conn = BufReader::new(stream);
    let greeting = reply(&mut conn)?;
    if greeting != 220 {
        return Err(format!("the relay greeted with {greeting}"));
    }
    step(&mut conn, "EHLO rolegate\r\n", &[250])?;
    step(&mut conn, &format!("MAIL FROM:<{from}>\r\n"), &[250])?;
    step(&mut conn, &format!("RCPT TO:<{to}>\r\n"), &[250, 251])?;
    step(&mut conn, "DATA\r\n", &[354])?;
    let mut body = String::with_capacity(data.len() + 64);
    for line in data.split("\r\n") {
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

/// A header value: ASCII as is, anything else as an RFC 2047 encoded word.
fn header_text(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return s.to_string();
    }
    let mut out = String::from("=?UTF-8?Q?");
    for b in s.bytes() {
        match b {
            b' ' => out.push('_'),
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b',' | b'-' | b':' | b'!' => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

/// Quoted-printable (RFC 2045), lines of at most 76 characters, CRLF line ends.
fn quoted_printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bytes = line.as_bytes();
        let mut width = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let piece = match b {
                b' ' | b'\t' if !last => char::from(b).to_string(),
                33..=60 | 62..=126 => char::from(b).to_string(),
                _ => format!("={b:02X}"),
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
    }
    out
}

/// The whole message: headers and a `multipart/alternative` body (plain text, then HTML).
fn mime(from: &str, m: &Message, now: jiff::Timestamp) -> String {
    let boundary = format!("rolegate-{}", uuid::Uuid::new_v4().simple());
    let date = now.strftime("%a, %d %b %Y %H:%M:%S +0000");
    let id = uuid::Uuid::new_v4().simple();
    let domain = from.rsplit_once('@').map_or("rolegate", |(_, d)| d);
    let mut out = String::new();
    for (k, v) in [
        ("From", format!("Rolegate <{from}>")),
        ("To", format!("<{}>", m.to)),
        ("Subject", header_text(&m.subject)),
        ("Date", date.to_string()),
        ("Message-ID", format!("<{id}@{domain}>")),
        ("MIME-Version", "1.0".to_string()),
        ("Auto-Submitted", "auto-generated".to_string()),
        (
            "Content-Type",
            format!("multipart/alternative; boundary=\"{boundary}\""),
        ),
    ] {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    for (kind, body) in [("plain", &m.text), ("html", &m.html)] {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: text/{kind}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
            quoted_printable(body)
        ));
    }
    out.push_str(&format!("--{boundary}--"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_parse() {
        assert_eq!(
            Relay::parse("smtp://127.0.0.1:2525"),
            Ok(Relay {
                tls: false,
                host: "127.0.0.1".into(),
                port: 2525
            })
        );
        assert_eq!(
            Relay::parse("smtps://mail.example.com"),
            Ok(Relay {
                tls: true,
                host: "mail.example.com".into(),
                port: 465
            })
        );
        for bad in ["http://x", "smtp://", "smtp://u:p@host", "smtp://host:x"] {
            assert!(Relay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_are_quoted_printable_with_short_lines() {
        let long = "x".repeat(200);
        let qp = quoted_printable(&format!("a=b é \n{long}"));
        assert!(qp.starts_with("a=3Db =C3=A9=20\r\n"), "{qp}");
        assert!(qp.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(header_text("Approval needed"), "Approval needed");
        assert_eq!(header_text("é"), "=?UTF-8?Q?=C3=A9?=");
    }
}
