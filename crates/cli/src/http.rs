//! The HTTP client: one agent per run, trusting the system's roots plus `--ca-file` (no
//! switch turns verification off), plain `http` only to loopback hosts; Graph error bodies
//! turned into one-line failures with the exit codes of cli.md §4.

use crate::error::{Exit, Failure, Outcome};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long one HTTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The longest body read from a server.
const MAX_BODY: u64 = 64 << 20;

/// What a query value keeps unescaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'(')
    .remove(b')')
    .remove(b',');

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// A path with a query: `path?name=value&…`, values encoded.
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    // An address that already has a query (an issuer's `…/authorize?p=policy`) gets more.
    let joiner = if path.contains('?') { '&' } else { '?' };
    format!("{path}{joiner}{}", q.join("&"))
}

/// An OData string literal: `'O''Brien'`.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// An HTTP agent for `url`: `https` with the system's roots plus `ca_file`, or `http` to a
/// loopback host.
pub fn agent(url: &str, ca_file: Option<&Path>) -> Outcome<ureq::Agent> {
    let loopback_http = rolegate_api::oidc::check_url(url).map_err(Failure::usage)?;
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("rolegate-cli/", env!("CARGO_PKG_VERSION")));
    let config = if loopback_http {
        config.proxy(None)
    } else {
        config.https_only(true).tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .root_certs(roots(ca_file)?)
                .build(),
        )
    };
    Ok(config.build().into())
}

/// The system's trusted roots, plus the certificates of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Outcome<ureq::tls::RootCerts> {
    let mut certs: Vec<ureq::tls::Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("reading the CA file {}: {e}", path.display())))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.len() == before {
            return Err(Failure::usage(format!(
                "the CA file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    if certs.is_empty() {
        return Ok(ureq::tls::RootCerts::WebPki);
    }
    Ok(ureq::tls::RootCerts::Specific(Arc::new(certs)))
}

/// A server's answer.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `request-id` header.
    pub request_id: Option<String>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Outcome<Value> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(|_| {
            let mut f = Failure::server(format!(
                "the server answered {} with a body that is not JSON",
                self.status
            ));
            f.request_id = self.request_id.clone();
            f
        })
    }

    /// The failure a non-2xx answer means (cli.md §4), from its Graph error body.
    pub fn failure(&self) -> Failure {
        let doc: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        let error = &doc["error"];
        let code = error["code"].as_str().map(str::to_string);
        let message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| match self.status {
                s if s >= 500 => format!("the server failed ({s})"),
                s => format!("the server answered {s}"),
            });
        let request_id = self.request_id.clone().or_else(|| {
            error["innerError"]["request-id"]
                .as_str()
                .map(str::to_string)
        });
        let exit = match (self.status, code.as_deref()) {
            (401, _) => Exit::SignIn,
            (403, _) => Exit::Forbidden,
            (_, Some("RoleAssignmentRequestPolicyValidationFailed")) => Exit::Denied,
            _ => Exit::Failure,
        };
        let message = if exit == Exit::SignIn {
            format!("{message} (run `rolegate login`)")
        } else if exit == Exit::Denied && message.starts_with("MfaRule") {
            format!("{message} (sign in again with MFA: `rolegate login`)")
        } else {
            message
        };
        Failure {
            exit,
            code,
            message,
            request_id,
        }
    }
}

/// Sends `request` and reads the answer; a network failure is exit 1.
pub fn exchange(
    what: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Outcome<Answer> {
    let mut response = result.map_err(|e| Failure::server(format!("{what}: {e}")))?;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| Failure::server(format!("{what}: reading the answer: {e}")))?;
    Ok(Answer {
        status,
        request_id,
        body,
    })
}
