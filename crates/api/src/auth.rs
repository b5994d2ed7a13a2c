//! Authentication (decisions.md §2): bearer JWTs, the caller's subject from `oid` or `sub`,
//! MFA from `amr`, tenant administrators named at start. Development mode verifies HS256
//! tokens with a shared secret; `rolegate token` mints them. Production mode verifies
//! RS256/ES256 tokens against an OIDC issuer's key set ([`crate::oidc`]).

use crate::oidc::OidcVerifier;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rolegate_core::error::{DomainError, ErrorCode, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The claims Rolegate reads (and `rolegate token` writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject.
    pub sub: String,
    /// Entra object id; wins over `sub` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Authentication methods; `mfa` satisfies MfaRule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// The nonce of an ID token (OIDC sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The authentication context class an ID token reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

/// The `aud` claim: one string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Claims {
    /// The caller's subject id: `oid`, else `sub`.
    pub fn subject(&self) -> &str {
        self.oid
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.sub)
    }

    /// Whether `amr` says MFA was done.
    pub fn mfa(&self) -> bool {
        self.amr.iter().any(|m| m.eq_ignore_ascii_case("mfa"))
    }
}

/// How tokens are verified.
#[allow(clippy::large_enum_variant, reason = "one per server")]
enum Mode {
    /// Development: HS256 with a shared secret.
    Hs256 {
        key: DecodingKey,
        validation: Validation,
    },
    /// Production: RS256/ES256 against an issuer's key set.
    Oidc(OidcVerifier),
}

/// Verifies bearer tokens and knows the tenant administrators.
pub struct Authenticator {
    mode: Mode,
    admins: HashSet<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Hs256 { .. } => "hs256",
            Mode::Oidc(_) => "oidc",
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .field("admins", &self.admins)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unauthorized(msg: impl Into<String>) -> DomainError {
    DomainError::new(ErrorCode::InvalidAuthenticationToken, msg)
}

/// A token's verification failure as a `401`, saying why without echoing the token.
pub(crate) fn token_error(e: &jsonwebtoken::errors::Error) -> DomainError {
    use jsonwebtoken::errors::ErrorKind;
    let why = match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidSignature => "the token's signature is not valid",
        ErrorKind::InvalidAudience => "the token is for another audience",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
        _ => "the token is malformed",
    };
    unauthorized(why)
}

fn admin_set(admins: impl IntoIterator<Item = String>) -> HashSet<String> {
    admins
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

impl Authenticator {
    /// Development mode: HS256 with `secret`; `issuer`/`audience` are checked when given.
    pub fn hs256(
        secret: &[u8],
        issuer: Option<&str>,
        audience: Option<&str>,
        admins: impl IntoIterator<Item = String>,
    ) -> Result<Self> {
        if secret.len() < 16 {
            return Err(DomainError::bad_request(
                "the HS256 secret must be at least 16 bytes",
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 60;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        if let Some(i) = issuer {
            validation.set_issuer(&[i]);
        }
        Ok(Self {
            mode: Mode::Hs256 {
                key: DecodingKey::from_secret(secret)
                    .map_err(|e| DomainError::bad_request(format!("invalid HS256 secret: {e}")))?,
                validation,
            },
            admins: admin_set(admins),
        })
    }

    /// Production mode: RS256/ES256 tokens checked by `verifier`.
    pub fn oidc(verifier: OidcVerifier, admins: impl IntoIterator<Item = String>) -> Self {
        Self {
            mode: Mode::Oidc(verifier),
            admins: admin_set(admins),
        }
    }

    /// Verifies an `Authorization` header value and returns the claims. Production mode
    /// may fetch the issuer's key set (on a blocking thread) when the token's `kid` is new.
    pub async fn verify(&self, header: Option<&str>) -> Result<Claims> {
        let header = header.ok_or_else(|| unauthorized("the request has no bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let (key, validation) = match &self.mode {
            Mode::Hs256 { key, validation } => (key, validation),
            Mode::Oidc(verifier) => return verifier.verify(token).await,
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| token_error(&e))?;
        if data.claims.subject().trim().is_empty() {
            return Err(unauthorized("the token names no subject"));
        }
        Ok(data.claims)
    }

    /// The OIDC verifier, in production mode (the portal validates ID tokens with it).
    pub fn oidc_verifier(&self) -> Option<&OidcVerifier> {
        match &self.mode {
            Mode::Oidc(v) => Some(v),
            Mode::Hs256 { .. } => None,
        }
    }

    /// Whether any of `ids` names a tenant administrator.
    pub fn is_admin<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> bool {
        ids.into_iter().any(|id| self.admins.contains(id))
    }
}

/// A development (HS256) token for `subject` valid `ttl_seconds` from `now`: what
/// `rolegate token` prints and `rolegate login --dev-user` stores. `mfa` sets
/// `amr: ["pwd","mfa"]`.
pub fn development_token(
    secret: &[u8],
    subject: &str,
    name: Option<String>,
    mfa: bool,
    ttl_seconds: i64,
    now: jiff::Timestamp,
) -> Result<String> {
    let now_s = now.as_second();
    let claims = Claims {
        sub: subject.to_string(),
        oid: None,
        amr: if mfa {
            vec!["pwd".into(), "mfa".into()]
        } else {
            vec!["pwd".into()]
        },
        name,
        exp: now_s.saturating_add(ttl_seconds),
        nbf: Some(now_s - 1),
        iat: Some(now_s),
        iss: None,
        aud: None,
        nonce: None,
        acr: None,
    };
    mint_hs256(secret, &claims)
}

/// Mints an HS256 token (`rolegate token`, the demo, tests).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String> {
    let key = EncodingKey::from_secret(secret)
        .map_err(|e| DomainError::internal(format!("invalid HS256 secret: {e}")))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .map_err(|e| DomainError::internal(format!("could not sign token: {e}")))
}
