//! Signing in and out (portal.md §2). This slice has the development sign-in: a form
//! naming a directory user (or an administrator's id), which exists only when the server
//! runs on development or demo authentication.

use crate::page::ErrorPage;
use crate::session::{
    self, Visit, hash_id, random_token, safe_return, same_origin, write_sessions,
};
use crate::{DemoUser, Portal, S, assets};
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rolegate_api::extract::RequestId;
use rolegate_core::error::Result;
use rolegate_core::session::PortalSession;
use rolegate_core::visibility::{self, TokenIdentity};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    css: &'static str,
    alert: Option<String>,
    back: String,
    user_name: String,
    mfa: bool,
    demo_users: &'a [DemoUser],
}

impl SignInPage<'_> {
    fn respond(&self, status: StatusCode, request_id: &str) -> Response {
        crate::page::render(status, self, request_id)
    }
}

/// The query of `GET /ui/signin`.
#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(rename = "return")]
    back: Option<String>,
}

/// `GET /ui/signin`: the development sign-in form (`404` when the server has none).
pub async fn form(
    State(portal): State<S>,
    RequestId(rid): RequestId,
    Query(q): Query<SignInQuery>,
) -> Response {
    if !portal.config.development_sign_in {
        return ErrorPage::not_found(&rid).into_response();
    }
    SignInPage {
        css: assets::css(),
        alert: None,
        back: safe_return(q.back.as_deref()),
        user_name: String::new(),
        mfa: false,
        demo_users: &portal.config.demo_users,
    }
    .respond(StatusCode::OK, &rid)
}

/// The fields of the sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    user_name: String,
    mfa: Option<String>,
    #[serde(rename = "return")]
    back: Option<String>,
}

/// Who a development user name signs in as: the one directory user with that `userName`,
/// or an administrator named by id.
async fn resolve(portal: &Portal, user_name: &str) -> Result<Option<(String, bool)>> {
    let name = user_name.to_string();
    let app = Arc::clone(&portal.app);
    let found = app
        .read(move |tx, _| rolegate_core::scim::users_named(tx, &name, 2))
        .await
        .map_err(|e| e.error)?;
    Ok(match found.as_slice() {
        [one] => Some((one.id.clone(), true)),
        [] if portal.app.auth.is_admin([user_name]) => Some((user_name.to_string(), false)),
        _ => None,
    })
}

/// `POST /ui/signin`: starts a session for the named user and returns to the page asked
/// for. A name that signs nobody in shows the form again with "Sign-in failed: …".
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
        SignInPage {
            css: assets::css(),
            alert: Some(format!("Sign-in failed: {why}")),
            back: back.clone(),
            user_name: user_name.clone(),
            mfa,
            demo_users: &portal.config.demo_users,
        }
        .respond(StatusCode::UNAUTHORIZED, &rid)
    };
    if user_name.is_empty() || user_name.contains('\0') {
        return failed("enter a user name".into());
    }
    let subject = match resolve(&portal, &user_name).await {
        Ok(Some((subject, _))) => subject,
        Ok(None) => return failed(format!("no user is named `{user_name}`")),
        Err(e) => return ErrorPage::from_domain(&rid, &e).into_response(),
    };
    // The same admission rule as an API token's: a disabled account cannot sign in.
    let lookup = subject.clone();
    let app = Arc::clone(&portal.app);
    let admitted = app
        .read(move |tx, st| {
            let s = tx.subject(&lookup)?;
            visibility::sign_in(
                &TokenIdentity {
                    subject: &lookup,
                    name: None,
                    mfa,
                },
                s,
                |id| st.auth.is_admin([id]),
            )
        })
        .await;
    if let Err(e) = admitted {
        return failed(e.error.message);
    }
    match start_session(&portal, &headers, subject, None, mfa, None).await {
        Ok(cookie) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, back)],
            [(header::SET_COOKIE, cookie)],
        )
            .into_response(),
        Err(e) => ErrorPage::from_domain(&rid, &e).into_response(),
    }
}

/// Stores a new session for `subject` (ending any session the browser had: the id rotates
/// at every sign-in) and returns its `Set-Cookie` value.
async fn start_session(
    portal: &Portal,
    headers: &HeaderMap,
    subject: String,
    name: Option<String>,
    mfa: bool,
    token: Option<(String, jiff::Timestamp)>,
) -> Result<axum::http::HeaderValue> {
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
    csrf: String,
}

/// `POST /ui/signout`: ends the session and clears the cookie.
pub async fn sign_out(
    State(portal): State<S>,
    visit: Visit,
    Form(f): Form<SignOutForm>,
) -> Response {
    if let Err(refused) = visit.check_csrf(&f.csrf) {
        return refused.into_response();
    }
    let hash = visit.session.id_hash.clone();
    if let Err(e) = write_sessions(&portal.app, move |tx| tx.delete_portal_session(&hash)).await {
        return ErrorPage::from_domain(&visit.request_id, &e).into_response();
    }
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/signin")]).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&portal, None));
    resp
}
