//! Signing in and out (portal.md §2). With OIDC configured, `/ui/signin` sends the browser
//! to the issuer ([`crate::oidc`]); on development or demo authentication it is a form
//! naming a directory user (or an administrator's id), with the demo users as buttons.
//! Either way the signed-in subject is admitted by the API's own rule
//! ([`visibility::sign_in`]) and gets a new session.

use crate::page::ErrorPage;
use crate::session::{
    self, Visit, hash_id, random_token, safe_return, same_origin, write_sessions,
};
use crate::{DemoUser, Portal, S, assets};
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rolegate_api::extract::RequestId;
use rolegate_core::session::PortalSession;
use rolegate_core::visibility::{self, TokenIdentity};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    css: &'static str,
    alert: Option<String>,
    status: Option<&'static str>,
    back: String,
    development: bool,
    user_name: String,
    mfa: bool,
    demo_users: &'a [DemoUser],
}

impl<'a> SignInPage<'a> {
    /// The sign-in page of `portal`, returning to `back`, with no message.
    fn of(portal: &'a Portal, back: String) -> Self {
        Self {
            css: assets::css(),
            alert: None,
            status: None,
            back,
            development: portal.config.development_sign_in,
            user_name: String::new(),
            mfa: false,
            demo_users: &portal.config.demo_users,
        }
    }
}

/// The sign-in page showing "Sign-in failed: {why}".
pub struct SignInFailure {
    why: String,
    back: String,
    user_name: String,
    mfa: bool,
}

impl SignInFailure {
    /// A failure saying `why`.
    pub fn new(why: String) -> Self {
        Self {
            why,
            back: "/ui/".into(),
            user_name: String::new(),
            mfa: false,
        }
    }

    /// The page, `401`.
    pub fn respond(&self, portal: &Portal, request_id: &str) -> Response {
        let page = SignInPage {
            alert: Some(format!("Sign-in failed: {}", self.why)),
            user_name: self.user_name.clone(),
            mfa: self.mfa,
            ..SignInPage::of(portal, self.back.clone())
        };
        crate::page::render(StatusCode::UNAUTHORIZED, &page, request_id)
    }
}

/// The query of `GET /ui/signin`.
#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(rename = "return")]
    back: Option<String>,
}

/// `GET /ui/signin`: straight to the issuer with OIDC; else the development sign-in form
/// (`404` when the server has neither).
pub async fn form(
    State(portal): State<S>,
    RequestId(rid): RequestId,
    Query(q): Query<SignInQuery>,
) -> Response {
    let back = safe_return(q.back.as_deref());
    if let Some(oidc) = portal.config.oidc.clone() {
        return crate::oidc::sign_in_page(&portal, &oidc, back, &rid).await;
    }
    if !portal.config.development_sign_in {
        return ErrorPage::not_found(&rid).into_response();
    }
    let page = SignInPage::of(&portal, back);
    crate::page::render(StatusCode::OK, &page, &rid)
}

/// The fields of the development sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    user_name: String,
    mfa: Option<String>,
    #[serde(rename = "return")]
    back: Option<String>,
}

/// Who a development user name signs in as: the one directory user with that `userName`,
/// or an administrator named by id.
async fn resolve(portal: &Portal, user_name: &str) -> Result<Option<String>, String> {
    let name = user_name.to_string();
    let app = Arc::clone(&portal.app);
    let found = app
        .read(move |tx, _| rolegate_core::scim::users_named(tx, &name, 2))
        .await
        .map_err(|e| e.error.message)?;
    Ok(match found.as_slice() {
        [one] => Some(one.id.clone()),
        [] if portal.app.auth.is_admin([user_name]) => Some(user_name.to_string()),
        _ => None,
    })
}

/// `POST /ui/signin` (development sign-in only): starts a session for the named user and
/// returns to the page asked for. A name that signs nobody in shows the form again with
/// "Sign-in failed: …".
pub async fn submit(
    State(portal): State<S>,
    RequestId(rid): RequestId,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    if !portal.config.development_sign_in {
        return ErrorPage::not_found(&rid).into_response();
    }
    if !same_origin(&portal, &headers) {
        return ErrorPage::denied(&rid).into_response();
    }
    let back = safe_return(f.back.as_deref());
    let user_name = f.user_name.trim().to_string();
    let mfa = f.mfa.is_some();
    let failed = |why: String| {
        SignInFailure {
            why,
            back: back.clone(),
            user_name: user_name.clone(),
            mfa,
        }
        .respond(&portal, &rid)
    };
    if user_name.is_empty() || user_name.contains('\0') {
        return failed("enter a user name.".into());
    }
    let subject = match resolve(&portal, &user_name).await {
        Ok(Some(subject)) => subject,
        Ok(None) => return failed(format!("no user is named “{user_name}”.")),
        Err(why) => return failed(why),
    };
    // An administrator outside the directory has no name there: the demo's button has one.
    let name = portal
        .config
        .demo_users
        .iter()
        .find(|u| u.user_name == user_name)
        .map(|u| u.display_name.clone());
    match admit_and_start(&portal, &headers, subject, name, mfa, None).await {
        Ok(cookie) => {
            let mut resp =
                (StatusCode::SEE_OTHER, [(header::LOCATION, back.clone())]).into_response();
            resp.headers_mut().append(header::SET_COOKIE, cookie);
            resp
        }
        Err(why) => failed(why),
    }
}

/// Admits `subject` by the API's rule (in the directory, enabled, not a group; or an
/// administrator) and starts a session; the `Set-Cookie` value, or why not.
pub async fn admit_and_start(
    portal: &Portal,
    headers: &HeaderMap,
    subject: String,
    name: Option<String>,
    mfa: bool,
    token: Option<(String, jiff::Timestamp)>,
) -> Result<HeaderValue, String> {
    let lookup = subject.clone();
    let display = name.clone();
    let app = Arc::clone(&portal.app);
    app.read(move |tx, st| {
        let s = tx.subject(&lookup)?;
        visibility::sign_in(
            &TokenIdentity {
                subject: &lookup,
                name: display.as_deref(),
                mfa,
            },
            s,
            |id| st.auth.is_admin([id]),
        )
    })
    .await
    .map_err(|e| e.error.message)?;
    start_session(portal, headers, subject, name, mfa, token)
        .await
        .map_err(|e| e.message)
}

/// Stores a new session for `subject` (ending any session the browser had: the id rotates
/// at every sign-in) and returns its `Set-Cookie` value.
pub async fn start_session(
    portal: &Portal,
    headers: &HeaderMap,
    subject: String,
    name: Option<String>,
    mfa: bool,
    token: Option<(String, jiff::Timestamp)>,
) -> rolegate_core::error::Result<HeaderValue> {
    let id = random_token()?;
    let now = portal.app.clock.now();
    let lifetime = portal.config.lifetime;
    let (id_token, token_expiry) = match token {
        Some((t, exp)) => (Some(t), Some(exp)),
        None => (None, None),
    };
    let row = PortalSession {
        id_hash: hash_id(&id),
        subject,
        name,
        mfa,
        csrf_token: random_token()?,
        created_at: now,
        last_seen: now,
        expires_at: lifetime.expires_at(now, token_expiry),
        id_token,
        time_zone: None,
    };
    let previous = session::presented_id(headers).map(|old| hash_id(&old));
    write_sessions(&portal.app, move |tx| {
        if let Some(old) = previous {
            tx.delete_portal_session(&old)?;
        }
        tx.prune_portal_sessions(now, lifetime.idle_cutoff(now))?;
        tx.insert_portal_session(&row)
    })
    .await?;
    Ok(session::set_cookie(portal, Some(&id)))
}

/// The form of the "Sign out" button.
#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    csrf: Option<String>,
}

/// `POST /ui/signout`: ends the session, clears the cookie, and continues at the issuer's
/// sign-out when it offers one (else at the sign-in page).
pub async fn sign_out(
    State(portal): State<S>,
    visit: Visit,
    Form(f): Form<SignOutForm>,
) -> Response {
    if let Err(refused) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return refused.into_response();
    }
    let hash = visit.session.id_hash.clone();
    if let Err(e) = write_sessions(&portal.app, move |tx| tx.delete_portal_session(&hash)).await {
        return ErrorPage::from_domain(&visit.request_id, &e).into_response();
    }
    let next = crate::oidc::end_session_url(&portal, visit.session.id_token.as_deref())
        .unwrap_or_else(|| {
            if portal.config.oidc.is_some() {
                "/ui/signed-out".to_string()
            } else {
                "/ui/signin".to_string()
            }
        });
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, session::set_cookie(&portal, None));
    resp
}

/// `GET /ui/signed-out`: where "Sign out" ends when the issuer offers no sign-out of its
/// own (going straight back to the issuer would sign the person in again).
pub async fn signed_out(State(portal): State<S>, RequestId(rid): RequestId) -> Response {
    let page = SignInPage {
        status: Some("You are signed out."),
        ..SignInPage::of(&portal, "/ui/".into())
    };
    crate::page::render(StatusCode::OK, &page, &rid)
}

/// The form the portal's script posts once per session: the browser's IANA time zone.
#[derive(Debug, Deserialize)]
pub struct TimeZoneForm {
    csrf: Option<String>,
    tz: Option<String>,
}

/// `POST /ui/timezone`: keeps the viewer's time zone in the session (times are shown in it
/// from the next page on). An unknown zone is refused `400` and changes nothing.
pub async fn time_zone(
    State(portal): State<S>,
    visit: Visit,
    Form(f): Form<TimeZoneForm>,
) -> Response {
    if let Err(refused) = visit.check_csrf(f.csrf.as_deref().unwrap_or_default()) {
        return refused.into_response();
    }
    let name = f.tz.unwrap_or_default().trim().to_string();
    if crate::text::zone(&name).is_none() {
        return (StatusCode::BAD_REQUEST, "unknown time zone").into_response();
    }
    let hash = visit.session.id_hash.clone();
    let now = portal.app.clock.now();
    match write_sessions(&portal.app, move |tx| {
        tx.touch_portal_session(&hash, now, Some(&name))
    })
    .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ErrorPage::from_domain(&visit.request_id, &e).into_response(),
    }
}
