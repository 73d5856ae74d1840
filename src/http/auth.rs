//! The browser's refresh path: `POST /auth/refresh` and `POST /auth/logout`, which read
//! the refresh token from its cookie (`auth::cookie`, set by `login(refreshTokenIn:
//! COOKIE)`). Script never holds that token, so a cross-site script cannot steal it, and
//! these endpoints answer only the portal's own pages:
//! - the cookie is `SameSite=Strict`: another site's page does not send it at all;
//! - the request must carry `X-Caregraph-Refresh`, which no HTML form can send and no
//!   cross-origin script can add without a CORS preflight, which these paths never grant;
//! - where the browser says where the request comes from (`Sec-Fetch-Site`, `Origin`), it
//!   must be this origin.
//!
//! A refresh answers `{accessToken, expiresAt, idleTimeoutSeconds}` and rotates the
//! cookie; a rotated-out cookie presented again revokes the session (as `refreshSession`).
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};

use super::HttpState;
use super::graphql::{error_response, internal_error, meta};
use crate::auth::{cookie, service};
use crate::error::AppError;

/// The header a same-origin script adds to say the request is its own.
pub const CSRF_HEADER: &str = "x-caregraph-refresh";

/// POST /auth/refresh
pub async fn refresh(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = cross_site(&headers, s.app.cfg.public_url.as_deref()) {
        return refused;
    }
    let Some(token) = refresh_cookie(&headers) else {
        return signed_out("no session: sign in again");
    };
    let meta = meta(&headers, peer, &s.app.cfg.trusted_proxies);
    match service::refresh(&s.app, &meta, token).await {
        Ok(tokens) => {
            let body = serde_json::json!({
                "accessToken": tokens.access_token,
                "expiresAt": Utc.timestamp_opt(tokens.expires_at, 0).single(),
                "idleTimeoutSeconds": s.app.cfg.session_idle.as_secs(),
            });
            let Ok(set) = HeaderValue::from_str(&cookie::set(
                &tokens.refresh_token,
                s.app.cfg.refresh_token_ttl,
            )) else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::SET_COOKIE, set),
                ],
                body.to_string(),
            )
                .into_response()
        }
        Err(AppError::SignInFailed(_) | AppError::Unauthenticated) => {
            signed_out("the session has ended: sign in again")
        }
        Err(e) => refused(&e),
    }
}

/// POST /auth/logout: ends the cookie's session (if it is still live) and removes the
/// cookie. 204 either way, so signing out twice is no error.
pub async fn logout(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = cross_site(&headers, s.app.cfg.public_url.as_deref()) {
        return refused;
    }
    if let Some(token) = refresh_cookie(&headers) {
        let meta = meta(&headers, peer, &s.app.cfg.trusted_proxies);
        if let Err(e) = service::logout_by_refresh(&s.app, &meta, token).await {
            // The session could not be ended here (it still ends at its idle timeout);
            // the cookie goes anyway, so this browser cannot resume it.
            let mut r = refused(&e);
            r.headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_static(cookie::CLEAR));
            return r;
        }
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, HeaderValue::from_static(cookie::CLEAR))],
    )
        .into_response()
}

fn refresh_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie::read(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// FORBIDDEN unless the request comes from this origin's own script (module docs). The
/// origin is `PUBLIC_URL`'s when it is set (behind a proxy that rewrites `Host`), else the
/// `Host` the request was sent to.
fn cross_site(headers: &HeaderMap, public_url: Option<&str>) -> Option<Response> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forbid = |message: &str| {
        Some(error_response(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            message,
            false,
        ))
    };
    if text(CSRF_HEADER).is_none_or(str::is_empty) {
        return forbid(
            "send this request from the portal's own script, with X-Caregraph-Refresh: 1",
        );
    }
    if text("sec-fetch-site").is_some_and(|site| site != "same-origin") {
        return forbid("this request must come from this site");
    }
    if let Some(origin) = text("origin") {
        let same = match public_url {
            // `scheme://host[:port]`, exactly as the public URL begins.
            Some(public) => origin_of(public) == Some(origin),
            // Its authority must be the one this request was sent to.
            None => origin.split_once("://").map(|(_, a)| a) == text("host"),
        };
        if !same {
            return forbid("this request must come from this site");
        }
    }
    None
}

/// `scheme://authority` of a URL (what a browser sends as `Origin`).
fn origin_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

/// 401, and the cookie removed: it names no live session.
fn signed_out(message: &str) -> Response {
    let mut r = error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message, false);
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static(cookie::CLEAR));
    r
}

/// Any other failure, by its code: throttling is 429; the server's own trouble is 503
/// (the stores), never the cause.
fn refused(e: &AppError) -> Response {
    let status = match e {
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Internal(_) => return internal_error(e, "refresh path failed", false),
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(status, e.code(), &e.to_string(), false)
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn the_origin_of_a_url_is_its_scheme_and_authority() {
        assert_eq!(
            origin_of("https://portal.example.org/api/"),
            Some("https://portal.example.org")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("portal.example.org"), None);
    }
}
