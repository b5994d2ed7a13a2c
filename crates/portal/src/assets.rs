//! The portal's static files, embedded in the binary and served under a name holding a
//! hash of their content, so browsers may cache them for a year (portal.md §1).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file.
struct Asset {
    /// `/ui/assets/{stem}.{hash}.{ext}`.
    path: String,
    content_type: &'static str,
    body: &'static [u8],
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let hash = hex::encode(&Sha256::digest(body)[..8]);
    Asset {
        path: format!("/ui/assets/{stem}.{hash}.{ext}"),
        content_type,
        body,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset(
            "portal",
            "css",
            "text/css; charset=utf-8",
            include_bytes!("../assets/portal.css"),
        ),
        asset(
            "portal",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/portal.js"),
        ),
    ]
});

/// The stylesheet's path.
pub fn css() -> &'static str {
    &ASSETS[0].path
}

/// The script's path.
pub fn js() -> &'static str {
    &ASSETS[1].path
}

/// `GET /ui/assets/{name}`: the file, cacheable forever (its name changes with it).
pub async fn serve(Path(name): Path<String>) -> Response {
    let path = format!("/ui/assets/{name}");
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => {
            let mut resp = (StatusCode::OK, a.body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "not found",
        )
            .into_response(),
    }
}
