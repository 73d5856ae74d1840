//! Router and middleware.
pub mod auth;
pub mod console;
pub mod graphql;
pub mod health;
pub mod persisted;
pub mod portal;
pub mod ws;
pub mod ws_session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::schema::AppSchema;
use crate::state::AppState;

/// What the HTTP handlers share: behind one `Arc`, so handing it to a request is a single
/// reference count, not one for every store, pool and key in `AppState`.
pub type HttpState = Arc<Shared>;

pub struct Shared {
    pub app: AppState,
    pub schema: AppSchema,
    pub ws_schema: AppSchema,
    /// The schema's shape limits, for the GET handler's look at the operation type.
    pub shape: crate::graphql::limits::ShapeLimits,
    /// Which documents run (`PERSISTED_QUERIES`).
    pub persisted: persisted::Persisted,
}

/// The router; `persisted` is loaded at start-up (its manifest checked there).
pub fn router(app: AppState, persisted: persisted::Persisted) -> Router {
    let state = Arc::new(Shared {
        persisted,
        schema: crate::schema::build(&app),
        ws_schema: ws_session::build_ws(&app),
        shape: crate::graphql::Limits::of(&app.cfg).shape,
        app,
    });
    let max_body = state.app.cfg.max_body_bytes;
    let hsts = state.app.cfg.https();
    let request_id = HeaderName::from_static("x-request-id");
    let middleware = ServiceBuilder::new()
        .map_request(drop_malformed_request_id)
        .layer(SetRequestIdLayer::new(request_id.clone(), NewRequestId))
        .layer(
            // Method, path and status only: never headers, bodies or query strings.
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        // A request refused for its size leaves its body unread on the socket, so
        // the connection cannot carry another request: tell the client so.
        .layer(SetResponseHeaderLayer::overriding(
            header::CONNECTION,
            |res: &axum::http::Response<_>| {
                (res.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE)
                    .then(|| HeaderValue::from_static("close"))
            },
        ))
        // The handler's body extractor enforces the limit, so an oversized body is answered
        // like every other refusal (GraphQL error shape, code, security headers).
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .map_response(move |res| secure_headers(res, hsts))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)));
    // No origins, no CORS layer: browsers then refuse cross-origin calls by themselves, and
    // same-origin and server-to-server requests skip its work on every response.
    let origins = &state.app.cfg.cors_origins;
    let cors = (!origins.is_empty()).then(|| cors_layer(origins));
    let router = Router::new()
        .route(
            "/graphql",
            get(graphql::get_handler).post(graphql::post_handler),
        )
        .route("/graphql/ws", get(graphql::ws_handler))
        .route("/graphql/console/console.js", get(console::script))
        .route("/graphql/console/console.css", get(console::style))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    let router = match portal::routes(&state.app.cfg.portal_dir) {
        Some(portal) => router.merge(portal),
        None => router,
    };
    let router = router.layer(middleware);
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

/// Headers every response carries (one layer rather than one per header).
fn secure_headers(mut res: axum::response::Response, hsts: bool) -> axum::response::Response {
    let h = res.headers_mut();
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The longest client-supplied request id kept; it lands in every audit row of the request.
pub const REQUEST_ID_MAX: usize = 64;

/// A client's `X-Request-Id` is kept only when short and made of `[A-Za-z0-9._-]`; any
/// other (or a repeated header) is dropped, and [`NewRequestId`] generates one instead. It
/// is stored in every audit row the request writes, which nobody can delete.
fn drop_malformed_request_id<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let h = req.headers();
    let mut values = h.get_all("x-request-id").iter();
    let ok = match (values.next(), values.next()) {
        (Some(v), None) => well_formed_request_id(v.as_bytes()),
        (None, _) => true,
        _ => false,
    };
    if !ok {
        req.headers_mut().remove("x-request-id");
    }
    req
}

fn well_formed_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_MAX
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A random (v4) request id for requests that arrive without one, from the thread's CSPRNG
/// rather than a syscall per request as `MakeRequestUuid` does.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        HeaderValue::from_str(&id.to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// CORS for the portal's origins (`CORS_ALLOWED_ORIGINS`).
fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(Duration::from_secs(600))
}
