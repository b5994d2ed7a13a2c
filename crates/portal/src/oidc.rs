//! Signing in with the organisation's OpenID provider (portal.md §2): the authorization
//! code flow with PKCE (`S256`), `state` bound to the browser by a cookie and used once,
//! `nonce` checked in the ID token, which is validated like an API token (issuer, keys,
//! expiry) with the portal's client id as audience; MFA step-up; RP-initiated sign-out.

use crate::page::ErrorPage;
use crate::session::{hash_id, random_token, safe_return, write_sessions};
use crate::signin::SignInFailure;
use crate::{Portal, S};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rolegate_api::extract::RequestId;
use rolegate_api::oidc::{CodeExchange, IssuerEndpoints, OidcVerifier, exchange_code};
use rolegate_core::session::{PendingSignIn, SIGN_IN_WINDOW};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The cookie binding a started sign-in to the browser that started it.
const SIGN_IN_COOKIE: &str = "rolegate_signin";

/// The portal as an OpenID relying party.
#[derive(Clone)]
pub struct OidcClient {
    /// The client id (the ID token's audience).
    pub client_id: String,
    /// The client secret of a confidential client; none for a public client.
    pub client_secret: Option<String>,
    /// Scopes asked for besides `openid profile email`.
    pub extra_scopes: Vec<String>,
    /// The `acr` value that counts as multi-factor authentication, also asked for at step-up.
    pub mfa_acr: Option<String>,
    /// The issuer's endpoints, from its discovery document.
    pub endpoints: IssuerEndpoints,
    /// Validates ID tokens (the API's verifier).
    pub verifier: OidcVerifier,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("client_id", &self.client_id)
            .field("confidential", &self.client_secret.is_some())
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `{public-url}/ui/auth/callback`.
fn redirect_uri(portal: &Portal) -> String {
    format!("{}/ui/auth/callback", public_origin(portal))
}

/// The public URL without a trailing slash (set whenever OIDC is).
fn public_origin(portal: &Portal) -> String {
    portal
        .config
        .public_url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}

fn signin_cookie(portal: &Portal, value: Option<&str>) -> HeaderValue {
    let secure = if public_origin(portal).starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let v = match value {
        Some(v) => format!(
            "{SIGN_IN_COOKIE}={v}; Path=/ui/auth; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
        ),
        None => {
            format!("{SIGN_IN_COOKIE}=; Path=/ui/auth; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
        }
    };
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// Sends the browser to the issuer to sign in, returning to `back` afterwards; with
/// `step_up`, the issuer must authenticate again (`prompt=login`, `max_age=0`) and is asked
/// for multi-factor authentication (`acr_values`).
pub async fn start(
    portal: &Portal,
    oidc: &OidcClient,
    back: String,
    step_up: bool,
    rid: &str,
) -> Response {
    let tokens = (random_token(), random_token(), random_token());
    let (Ok(state), Ok(nonce), Ok(verifier)) = tokens else {
        return ErrorPage::internal(rid).into_response();
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let now = portal.app.clock.now();
    let pending = PendingSignIn {
        state_hash: hash_id(&state),
        nonce: nonce.clone(),
        code_verifier: verifier,
        return_to: back,
        created_at: now,
    };
    let idle = portal.config.lifetime.idle_cutoff(now);
    let stored = write_sessions(&portal.app, move |tx| {
        tx.prune_portal_sessions(now, idle)?;
        tx.insert_pending_sign_in(&pending)
    })
    .await;
    if let Err(e) = stored {
        return ErrorPage::from_domain(rid, &e).into_response();
    }
    let mut scopes = vec!["openid".to_string(), "profile".into(), "email".into()];
    scopes.extend(oidc.extra_scopes.iter().cloned());
    let mut url = format!(
        "{}{}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
        oidc.endpoints.authorization,
        if oidc.endpoints.authorization.contains('?') {
            '&'
        } else {
            '?'
        },
        enc(&oidc.client_id),
        enc(&redirect_uri(portal)),
        enc(&scopes.join(" ")),
        state,
        nonce,
        challenge
    );
    if step_up {
        url.push_str("&prompt=login&max_age=0");
        if let Some(acr) = &oidc.mfa_acr {
            url.push_str(&format!("&acr_values={}", enc(acr)));
        }
    }
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, signin_cookie(portal, Some(&state)));
    resp
}

/// The query of `/ui/auth/callback`.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /ui/auth/callback`: finishes the sign-in and returns to the page asked for; any
/// failure ends on the sign-in page with "Sign-in failed: …".
pub async fn callback(
    State(portal): State<S>,
    RequestId(rid): RequestId,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let Some(oidc) = portal.config.oidc.clone() else {
        return ErrorPage::not_found(&rid).into_response();
    };
    let fail = |why: &str| {
        let mut resp = SignInFailure::new(why.to_string()).respond(&portal, &rid);
        resp.headers_mut()
            .append(header::SET_COOKIE, signin_cookie(&portal, None));
        resp
    };
    let Some(state) = q.state.filter(|s| !s.is_empty()) else {
        return fail("the identity provider's answer has no state");
    };
    let bound: bool = crate::session::cookie(&headers, SIGN_IN_COOKIE)
        .is_some_and(|c| c.as_bytes().ct_eq(state.as_bytes()).into());
    if !bound {
        return fail("this sign-in was not started in this browser");
    }
    let hash = hash_id(&state);
    let pending = match write_sessions(&portal.app, move |tx| tx.take_pending_sign_in(&hash)).await
    {
        Ok(Some(p)) => p,
        Ok(None) => return fail("this sign-in was already used or has expired"),
        Err(e) => return ErrorPage::from_domain(&rid, &e).into_response(),
    };
    let now = portal.app.clock.now();
    if now.duration_since(pending.created_at) > SIGN_IN_WINDOW {
        return fail("the sign-in took longer than 10 minutes; start again");
    }
    if let Some(error) = q.error {
        return fail(&format!("the identity provider answered `{error}`"));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return fail("the identity provider's answer has no code");
    };
    let redirect = redirect_uri(&portal);
    let exchange = {
        let oidc = oidc.clone();
        let verifier = pending.code_verifier.clone();
        tokio::task::spawn_blocking(move || {
            exchange_code(&CodeExchange {
                token_endpoint: &oidc.endpoints.token,
                client_id: &oidc.client_id,
                client_secret: oidc.client_secret.as_deref(),
                code: &code,
                redirect_uri: &redirect,
                code_verifier: &verifier,
            })
        })
        .await
    };
    let id_token = match exchange {
        Ok(Ok(t)) => t,
        Ok(Err(why)) => return fail(&why),
        Err(_) => return ErrorPage::internal(&rid).into_response(),
    };
    let claims = match oidc
        .verifier
        .verify_id_token(&id_token, &oidc.client_id)
        .await
    {
        Ok(c) => c,
        Err(e) => return fail(&e.message),
    };
    let nonce_ok: bool = claims
        .nonce
        .as_deref()
        .is_some_and(|n| n.as_bytes().ct_eq(pending.nonce.as_bytes()).into());
    if !nonce_ok {
        return fail("the ID token's nonce does not match this sign-in");
    }
    let mfa = claims.mfa()
        || oidc
            .mfa_acr
            .as_deref()
            .is_some_and(|want| claims.acr.as_deref() == Some(want));
    let expiry = jiff::Timestamp::from_second(claims.exp).ok();
    let subject = claims.subject().to_string();
    let started = crate::signin::admit_and_start(
        &portal,
        &headers,
        subject,
        claims.name.clone(),
        mfa,
        expiry.map(|e| (id_token, e)),
    )
    .await;
    match started {
        Ok(cookie) => {
            let mut resp = (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, safe_return(Some(&pending.return_to)))],
            )
                .into_response();
            let h = resp.headers_mut();
            h.append(header::SET_COOKIE, cookie);
            h.append(header::SET_COOKIE, signin_cookie(&portal, None));
            resp
        }
        Err(why) => fail(&why),
    }
}

/// Where "Sign out" continues after the session is gone: the issuer's
/// `end_session_endpoint` with `id_token_hint` and the portal as
/// `post_logout_redirect_uri`, when the issuer offers it.
pub fn end_session_url(portal: &Portal, id_token: Option<&str>) -> Option<String> {
    let oidc = portal.config.oidc.as_ref()?;
    let end = oidc.endpoints.end_session.as_deref()?;
    let mut url = format!(
        "{end}{}post_logout_redirect_uri={}&client_id={}",
        if end.contains('?') { '&' } else { '?' },
        enc(&format!("{}/ui/", public_origin(portal))),
        enc(&oidc.client_id)
    );
    if let Some(t) = id_token {
        url.push_str(&format!("&id_token_hint={}", enc(t)));
    }
    Some(url)
}

/// The step-up form: the activation form's fields, posted by its "Sign in again with
/// multi-factor authentication" button.
pub type StepUpForm = Vec<(String, String)>;

/// `POST /ui/auth/step-up`: back to the issuer for multi-factor authentication, then to
/// the form the button was in (`return`) with every input kept.
pub async fn step_up(
    State(portal): State<S>,
    visit: crate::session::Visit,
    axum::Form(fields): axum::Form<StepUpForm>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Err(r) = visit.check_csrf(field("csrf").unwrap_or_default()) {
        return r.into_response();
    }
    let Some(oidc) = portal.config.oidc.clone() else {
        return ErrorPage::not_found(&visit.request_id).into_response();
    };
    let base = safe_return(field("return"));
    let kept: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k != "csrf" && k != "return")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let back = if kept.is_empty() || base.contains('?') {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    start(&portal, &oidc, back, true, &visit.request_id).await
}

/// Starts the sign-in at the issuer for an anonymous visit to `back`.
pub async fn sign_in_page(
    portal: &Arc<Portal>,
    oidc: &OidcClient,
    back: String,
    rid: &str,
) -> Response {
    start(portal, oidc, back, false, rid).await
}
