//! The built patient portal (`web-examples/portal`, `npm run build`) at `/portal/`, from
//! `PORTAL_DIR` when it holds an `index.html` at start-up. Any path under `/portal/`
//! that is not a file is the app's own route and gets `index.html`; the content-hashed
//! files under `assets/` may be cached for a year, everything else is `no-store`. One CSP
//! for all of it: the page may load and call only this origin (its API included, the
//! websocket too: `connect-src 'self'` covers ws:// and wss:// to this host).
use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, Response, header};
use tower::Layer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; font-src 'self'; connect-src 'self'; \
                   object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The portal's routes, or none when `dir` holds no built portal.
pub fn routes<S: Clone + Send + Sync + 'static>(dir: &Path) -> Option<Router<S>> {
    let index = dir.join("index.html");
    if !index.is_file() {
        tracing::info!(dir = %dir.display(), "no built portal: /portal/ is not served");
        return None;
    }
    let cache = SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, |res: &Response<_>| {
        res.status()
            .is_success()
            .then(|| HeaderValue::from_static(ASSET_CACHE))
    });
    let assets = cache.layer(ServeDir::new(dir.join("assets")));
    let app = ServeDir::new(dir).fallback(ServeFile::new(index));
    Some(
        Router::new()
            .nest_service("/portal/assets", assets)
            .nest_service("/portal", app)
            .layer(SetResponseHeaderLayer::overriding(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            )),
    )
}
