//! Router and middleware.
pub mod graphql;
pub mod health;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::graphql::AppSchema;
use crate::state::AppState;

/// What the HTTP handlers share: behind one `Arc`, so handing it to a request is a single
/// reference count, not one for every store, pool and key in `AppState`.
pub type HttpState = Arc<Shared>;

pub struct Shared {
    pub app: AppState,
    pub schema: AppSchema,
    pub ws_schema: AppSchema,
}

pub fn router(app: AppState) -> Router {
    let state = Arc::new(Shared {
        schema: crate::graphql::build(&app),
        ws_schema: crate::graphql::build_ws(&app),
        app,
    });
    let max_body = state.app.cfg.max_body_bytes;
    let request_id = HeaderName::from_static("x-request-id");
    let middleware = ServiceBuilder::new()
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
        .layer(RequestBodyLimitLayer::new(max_body))
        .map_response(secure_headers)
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
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(middleware);
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

/// Headers every response carries (one layer rather than one per header).
fn secure_headers(mut res: axum::response::Response) -> axum::response::Response {
    let h = res.headers_mut();
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
