//! TLS for the `postgresql` kind: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! (connectors.md §5.1, §11.2) over the rustls the binary already uses. tokio-postgres
//! itself knows only `disable`, `prefer` and `require` and takes the TLS stack as a
//! [`MakeTlsConnect`]; [`MakeRustls`] is that adapter. (The `tokio-postgres-rustls` crate
//! would bring `ring` and X.509 parsing for SCRAM channel binding, which Rolegate does not
//! use: docs/connectors.md "PostgreSQL over TLS".)

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`, as far as Rolegate honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// `disable` and `allow`: never TLS.
    Disable,
    /// `prefer` (libpq's default): TLS when the server offers it, not verified.
    Prefer,
    /// `require`: TLS, not verified.
    Require,
    /// `verify-ca`: TLS, the chain verified against the roots, not the host name.
    VerifyCa,
    /// `verify-full`: TLS, the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    /// The mode of `sslmode=text`, `None` when libpq has no such mode.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" | "allow" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the server's certificate is verified.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// The TLS parameters of a libpq URI, percent-decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`.
    pub sslmode: Option<String>,
    /// `sslrootcert`: a PEM file of trusted roots, or `system`.
    pub sslrootcert: Option<String>,
    /// `sslcert`: the client's certificate chain (PEM).
    pub sslcert: Option<String>,
    /// `sslkey`: the client's private key (PEM).
    pub sslkey: Option<String>,
}

/// Splits a libpq URI into the URI tokio-postgres reads (the same without the TLS
/// parameters, which it would refuse or ignore) and those parameters.
pub fn split_uri(url: &str) -> (String, TlsParams) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), TlsParams::default());
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            Some(
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .to_string(),
            )
        };
        match k {
            "sslmode" => params.sslmode = value(),
            "sslrootcert" => params.sslrootcert = value(),
            "sslcert" => params.sslcert = value(),
            "sslkey" => params.sslkey = value(),
            _ => kept.push(pair),
        }
    }
    let uri = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (uri, params)
}

/// How a connector reaches its server: the mode and, unless it is `disable`, the TLS
/// configuration made from the files the URI names.
#[derive(Debug, Clone)]
pub struct PostgresTls {
    /// The mode.
    pub mode: SslMode,
    config: Option<Arc<ClientConfig>>,
}

impl PostgresTls {
    /// The TLS of `params`, reading the files they name now (so that `check` and the start
    /// report a missing or unusable file); the problem in words otherwise.
    pub fn of(params: &TlsParams) -> Result<Self, String> {
        let mode = match params.sslmode.as_deref() {
            None => SslMode::Prefer,
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                format!(
                    "sslmode `{text}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )
            })?,
        };
        if mode == SslMode::Disable {
            return Ok(Self { mode, config: None });
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if mode.verifies() {
            let roots = roots(params.sslrootcert.as_deref())?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        } else {
            Arc::new(AnyCertificate(Arc::clone(&provider)))
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&params.sslcert, &params.sslkey) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .and_then(|c| c.collect::<Result<_, _>>())
                    .map_err(|e| format!("sslcert: cannot read {cert}: {e}"))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey: cannot read {key}: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("sslcert and sslkey cannot be used together: {e}"))?
            }
            _ => return Err("sslcert and sslkey go together".into()),
        };
        Ok(Self {
            mode,
            config: Some(Arc::new(config)),
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS, and whether it must get it.
    pub fn ssl_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The connector tokio-postgres uses, `None` for `disable`.
    pub fn connector(&self) -> Option<MakeRustls> {
        self.config.clone().map(MakeRustls)
    }
}

/// The trusted roots: the PEM file `path`, or the system's (`system`, or no `sslrootcert`).
fn roots(path: Option<&str>) -> Result<RootCertStore, String> {
    match path {
        Some(path) if path != "system" => {
            super::pem_roots(path).map_err(|e| format!("sslrootcert: {e}"))
        }
        _ => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err("no sslrootcert given and no system root certificates found".into());
            }
            Ok(roots)
        }
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is verified before the name: a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, the certificate not verified (libpq's meaning; the
/// configuration allows them only for a loopback host or with `insecure = true`). The
/// handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS over rustls.
#[derive(Clone)]
pub struct MakeRustls(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: Arc::clone(&self.0),
            name: ServerName::try_from(domain)?.to_owned(),
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_uri() {
        let (uri, p) = split_uri(
            "postgresql://prov@db1.example.net:5432/postgres?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(
            uri,
            "postgresql://prov@db1.example.net:5432/postgres?application_name=x"
        );
        assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        let (uri, p) = split_uri("postgresql://prov@127.0.0.1/postgres?sslmode=disable");
        assert_eq!(uri, "postgresql://prov@127.0.0.1/postgres");
        assert_eq!(p.sslmode.as_deref(), Some("disable"));
        assert_eq!(split_uri("postgresql://h/db").1, TlsParams::default());
    }

    #[test]
    fn modes_and_files_are_checked() {
        let with = |mode: &str, root: Option<&str>| {
            PostgresTls::of(&TlsParams {
                sslmode: Some(mode.into()),
                sslrootcert: root.map(str::to_string),
                ..TlsParams::default()
            })
        };
        assert!(with("verify-everything", None).is_err());
        assert_eq!(
            with("disable", None).map(|t| t.connector().is_none()),
            Ok(true)
        );
        assert_eq!(with("require", None).map(|t| t.mode), Ok(SslMode::Require));
        let missing = with("verify-full", Some("/nonexistent/ca.pem")).map(|t| t.mode);
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.contains("/nonexistent/ca.pem")),
            "{missing:?}"
        );
        let only_cert = PostgresTls::of(&TlsParams {
            sslmode: Some("require".into()),
            sslcert: Some("/c.pem".into()),
            ..TlsParams::default()
        });
        assert!(only_cert.is_err());
    }
}
