//! The provider console (GraphiQL) at GET /graphql in development, served whole from this
//! binary so that it works without internet access. `console/` holds the bundle built from
//! `web-examples/console` (`scripts/build-console.sh`): GraphiQL, React, the graphql-ws
//! client and a sign-in bar. The page names its assets with their content hash, so the
//! assets may be cached for a year while the page itself is never cached.
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::HttpState;

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &[u8] = include_bytes!("console/console.js");
const STYLE: &[u8] = include_bytes!("console/console.css");

const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The console page, under a same-origin CSP. connect-src 'self' covers ws:// and wss://
/// to this host as well (CSP level 3). The one stylesheet GraphiQL adds at run time (its
/// dialogs' scroll lock) carries the page's nonce, so style-src needs no 'unsafe-inline'.
/// No Cache-Control: the security-headers layer makes the page `no-store`, so each load
/// gets a fresh nonce and a new build's asset names.
pub fn page() -> Response {
    let nonce = STANDARD.encode(rand::random::<[u8; 16]>());
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    let Ok(csp) = HeaderValue::from_str(&csp) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        PAGE.replace("{{nonce}}", &nonce),
    )
        .into_response()
}

/// GET /graphql/console/console.js
pub async fn script(State(s): State<HttpState>) -> Response {
    asset(&s, "text/javascript; charset=utf-8", SCRIPT)
}

/// GET /graphql/console/console.css
pub async fn style(State(s): State<HttpState>) -> Response {
    asset(&s, "text/css; charset=utf-8", STYLE)
}

/// The assets exist only where the console does (not in production).
fn asset(s: &HttpState, content_type: &'static str, body: &'static [u8]) -> Response {
    if !s.app.cfg.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE)),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_the_assets_it_is_served_with() {
        assert!(PAGE.contains("/graphql/console/console.js?v="));
        assert!(PAGE.contains("/graphql/console/console.css?v="));
        // No inline script for the CSP to refuse.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(PAGE.contains("<script defer src="));
    }

    #[test]
    fn page_carries_its_csp_with_a_fresh_nonce() {
        let nonce = |r: &Response| {
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                csp.starts_with("default-src 'self'; script-src 'self'; "),
                "{csp}"
            );
            assert!(!csp.contains("unsafe"), "{csp}");
            let n = csp
                .split("'nonce-")
                .nth(1)
                .unwrap()
                .split('\'')
                .next()
                .unwrap();
            n.to_owned()
        };
        let (a, b) = (page(), page());
        assert!(!a.headers().contains_key(header::CACHE_CONTROL));
        let (na, nb) = (nonce(&a), nonce(&b));
        assert_ne!(na, nb);
        assert_eq!(na.len(), 24);
        assert!(PAGE.contains("nonce=\"{{nonce}}\""));
    }
}
