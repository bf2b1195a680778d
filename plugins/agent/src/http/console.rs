//! `/console`: the web console, bundled into the binary at build time (`build.rs`), served
//! with a strict Content-Security-Policy (no script, style or connection outside this agent).
//! Client routes fall back to `index.html`; hashed assets are cached for good.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    assets::ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, t, b)| (*t, *b))
}

fn serve(path: &str) -> Response {
    let (found, immutable) = match asset(path) {
        Some(a) => (Some(a), path.starts_with("assets/")),
        // A client route (or a file that is not there): the app, which shows its own 404.
        None if !path.starts_with("assets/") => (asset("index.html"), false),
        None => (None, false),
    };
    let Some((content_type, bytes)) = found else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    r
}

/// `/console` → `/console/` (relative asset paths resolve under it).
pub async fn root_redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `/console/`: the app.
pub async fn index() -> Response {
    serve("index.html")
}

/// `/console/{*path}`: a file of the bundle, or the app for a client route.
pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

/// Whether the real console is in this binary (the notice otherwise).
pub const BUILT: bool = assets::BUILT;
