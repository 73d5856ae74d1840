//! GraphQL over HTTP (POST, and GET for queries) and over websocket (graphql-transport-ws,
//! legacy graphql-ws accepted). The Viewer is built here, once per request.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Value};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};

use super::HttpState;
use super::persisted::Wire;
use super::ws_session::WsSession;
use crate::auth::service::resolve_viewer;
use crate::error::AppError;
use crate::graphql::context::{OverHttp, RequestCtx};
use crate::graphql::limits::{self, ShapeLimits};
use crate::identity::{RequestMeta, USER_AGENT_MAX, Viewer, clip};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

pub(super) fn meta(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpAddr]) -> RequestMeta {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    RequestMeta {
        ip: Some(Arc::from(
            client_ip(peer.ip(), text("x-forwarded-for"), trusted).to_string(),
        )),
        user_agent: text("user-agent").map(|u| Arc::from(clip(u, USER_AGENT_MAX))),
        // Well-formed: the middleware replaced any other (`http::drop_malformed_request_id`).
        request_id: text("x-request-id").map(Arc::from),
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(chain) = forwarded_for else {
        return peer;
    };
    for hop in chain.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

fn wants_graphql_response_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(GRAPHQL_RESPONSE_JSON))
}

/// The response as JSON. Every error already has its code and our words: the schema's
/// pipeline cleans them up for both transports (`graphql::request_errors`).
fn respond(resp: async_graphql::Response, graphql_json: bool) -> Response {
    // A request error (nothing executed) has no path on any error and no data.
    let request_error = resp.data == Value::Null
        && !resp.errors.is_empty()
        && resp.errors.iter().all(|e| e.path.is_empty());
    let status = if graphql_json && request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    match serde_json::to_vec(&resp) {
        Ok(body) => {
            let mut r = json_response(status, body, graphql_json);
            // What resolvers set: only `login`'s refresh cookie (`auth::cookie`).
            r.headers_mut().extend(resp.http_headers);
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>, graphql_json: bool) -> Response {
    let ct = if graphql_json {
        GRAPHQL_RESPONSE_JSON
    } else {
        "application/json"
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(ct))],
        body,
    )
        .into_response()
}

pub(super) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    graphql_json: bool,
) -> Response {
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    json_response(status, body.to_string().into_bytes(), graphql_json)
}

/// The server's own trouble (a store that failed): logged with its cause, answered as 503
/// INTERNAL, never with the cause.
pub(super) fn internal_error(
    cause: &dyn std::fmt::Debug,
    what: &str,
    graphql_json: bool,
) -> Response {
    tracing::error!(error = ?cause, "{what}");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL",
        "internal error",
        graphql_json,
    )
}

/// The viewer a valid bearer token names (`None` without one, or with an invalid one: the
/// schema then refuses protected fields as UNAUTHENTICATED).
async fn signed_in(
    s: &HttpState,
    headers: &HeaderMap,
    meta: &RequestMeta,
    graphql_json: bool,
) -> Result<Option<Viewer>, Response> {
    let Some(token) = bearer(headers) else {
        return Ok(None);
    };
    resolve_viewer(&s.app, token, meta.clone())
        .await
        .map_err(|e| internal_error(&e, "session lookup failed", graphql_json))
}

async fn run(
    s: &HttpState,
    req: async_graphql::Request,
    viewer: Option<Viewer>,
    meta: RequestMeta,
    graphql_json: bool,
) -> Response {
    let req = req.data(RequestCtx { viewer, meta }).data(OverHttp);
    let req = crate::schema::request_loaders(&s.app).attach(req);
    respond(s.schema.execute(req).await, graphql_json)
}

/// `Content-Type: application/json`, parameters (charset) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// POST: one GraphQL request as JSON (`query`, `operationName`, `variables`,
/// `extensions`) with `Content-Type: application/json` (415 otherwise). The body is taken
/// whole (the body limit applies, 413 in the GraphQL error shape) and parsed in one pass;
/// batches are refused, as is anything else that is not such a request, with a JSON error.
pub async fn post_handler(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let graphql_json = wants_graphql_response_json(&headers);
    let refuse = |status: StatusCode, message: &str| {
        error_response(status, "VALIDATION", message, graphql_json)
    };
    if !is_json(&headers) {
        // A cross-site form can send text/plain or form data without a preflight; only
        // JSON runs, so no other site can spend a visitor's sign-in budget or session.
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as JSON with Content-Type: application/json",
        );
    }
    // Who is asking decides how much may be sent: signed-in users may upload clinical
    // documents (1 MiB decoded), anyone else gets the small bound, before a byte is read.
    let meta = meta(&headers, peer, &s.app.cfg.trusted_proxies);
    let viewer = match signed_in(&s, &headers, &meta, graphql_json).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let limit = match viewer {
        Some(_) => s.app.cfg.max_authenticated_body_bytes,
        None => s.app.cfg.max_body_bytes,
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(e) if is_length_limit(&e) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let wire = match serde_json::from_slice::<Wire>(&body) {
        Ok(wire) => wire,
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the body is not a GraphQL request: send one JSON object with a \"query\"",
            );
        }
    };
    match s.persisted.resolve(wire, viewer.as_ref()).await {
        Ok(req) => run(&s, req, viewer, meta, graphql_json).await,
        Err(e) => request_refused(&e, graphql_json),
    }
}

/// A request refused before it ran (its document, here): a request error, 400 under
/// `application/graphql-response+json` and 200 under `application/json` (GraphQL over
/// HTTP), in the GraphQL error shape with its code.
fn request_refused(e: &AppError, graphql_json: bool) -> Response {
    if let AppError::Internal(cause) = e {
        // The document store failed: the server's trouble, not the request's.
        return internal_error(cause, "persisted document lookup failed", graphql_json);
    }
    let status = if graphql_json {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    error_response(status, e.code(), &e.to_string(), graphql_json)
}

/// Whether reading a body failed on its length limit (http-body's `LengthLimitError`, at
/// the bottom of axum's error chain).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The parameters of a GET request (GraphQL over HTTP). async-graphql's own reader of the
/// query string looks for `operation_name`, not `operationName`, so it is read here.
#[derive(serde::Deserialize)]
pub struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
    #[serde(rename = "documentId")]
    document_id: Option<String>,
}

impl GetParams {
    /// A request carries a document: its text, a `documentId`, or extensions (APQ).
    fn names_a_document(&self) -> bool {
        self.query.is_some() || self.document_id.is_some() || self.extensions.is_some()
    }

    fn into_wire(self) -> Option<Wire> {
        let mut wire = Wire {
            query: self.query,
            operation_name: self.operation_name,
            document_id: self.document_id.filter(|d| !d.is_empty()),
            ..Wire::default()
        };
        if let Some(v) = self.variables.filter(|v| !v.is_empty()) {
            wire.variables = serde_json::from_str(&v).ok()?;
        }
        if let Some(e) = self.extensions.filter(|e| !e.is_empty()) {
            wire.extensions = serde_json::from_str(&e).ok()?;
        }
        Some(wire)
    }
}

/// Whether the operation `req` selects is not a query. `Err` when the text exceeds the
/// shape limits (checked before it is parsed here) or does not parse; the pipeline then
/// reports that in full.
fn is_mutation(req: &async_graphql::Request, shape: &ShapeLimits) -> Result<bool, ()> {
    limits::prescan(&req.query, shape).map_err(drop)?;
    let doc = async_graphql::parser::parse_query(&req.query).map_err(drop)?;
    Ok(doc.operations.iter().any(|(name, op)| {
        let selected = match (&req.operation_name, name) {
            (Some(want), Some(n)) => want == n.as_str(),
            (None, _) => true,
            (Some(_), None) => false,
        };
        selected && op.node.ty != OperationType::Query
    }))
}

/// GraphiQL for browsers (development only); otherwise a query in the URL.
pub async fn get_handler(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Response {
    let graphql_json = wants_graphql_response_json(&headers);
    let params = match params {
        Ok(Query(p)) if p.names_a_document() => p,
        Ok(_) => {
            let browser = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            if browser && s.app.cfg.graphiql {
                return super::console::page();
            }
            return error_response(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "send a query with POST, or as ?query= on GET",
                graphql_json,
            );
        }
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "the query string is not a GraphQL request",
                graphql_json,
            );
        }
    };
    let Some(wire) = params.into_wire() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "the variables or extensions parameter is not a JSON object",
            graphql_json,
        );
    };
    let meta = meta(&headers, peer, &s.app.cfg.trusted_proxies);
    let viewer = match signed_in(&s, &headers, &meta, graphql_json).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    // The document is known only now (a persisted one by its id): only then can a
    // mutation be told from a query.
    let req = match s.persisted.resolve(wire, viewer.as_ref()).await {
        Ok(req) => req,
        Err(e) => return request_refused(&e, graphql_json),
    };
    if is_mutation(&req, &s.shape) == Ok(true) {
        let mut r = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "VALIDATION",
            "mutations must be sent with POST",
            graphql_json,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    run(&s, req, viewer, meta, graphql_json).await
}

/// GraphQL over websocket at `/graphql/ws`. graphql-transport-ws (what `graphql-ws`
/// clients speak) is served by [`super::ws`], bound to the session; the legacy
/// subscriptions-transport-ws protocol (`graphql-ws` subprotocol) by async-graphql, behind
/// the same token check at `connection_init` (4403) and the same per-operation viewer and
/// per-event access decision.
pub async fn ws_handler(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let meta = meta(&headers, peer, &s.app.cfg.trusted_proxies);
    let transport_ws = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "graphql-transport-ws");
    // A message is one operation: the same bound as a POST body (axum's default is 64 MiB).
    // Small buffers: an idle socket should cost kilobytes, not the 128 KiB default.
    let max = s.app.cfg.max_body_bytes;
    let upgrade = upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .protocols(ALL_WEBSOCKET_PROTOCOLS);
    if transport_ws {
        return upgrade.on_upgrade(move |socket| super::ws::serve(socket, s, meta));
    }
    // The legacy protocol is served by async-graphql itself, past the document check.
    if s.persisted.mode() == crate::config::PersistedMode::Trusted {
        return error_response(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "this server runs only its listed documents: speak graphql-transport-ws",
            false,
        );
    }
    upgrade.on_upgrade(move |socket| async move {
        let (mut sink, mut stream) = socket.split();
        let first = tokio::time::timeout(super::ws::INIT_TIMEOUT, stream.next()).await;
        let init = match first {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(_) => return,
            Err(_) => {
                let _ = sink
                    .send(close(4408, "connection initialisation timeout"))
                    .await;
                return;
            }
        };
        let token = serde_json::from_str::<serde_json::Value>(init.as_str())
            .ok()
            .and_then(|m| {
                if m["type"] != "connection_init" {
                    return None;
                }
                let auth = m["payload"]
                    .get("authorization")
                    .or_else(|| m["payload"].get("Authorization"))?;
                let v = auth.as_str()?;
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .map(str::to_owned)
            });
        let Some(token) = token else {
            s.app.audit.note_unauthenticated(meta.ip.as_ref());
            let _ = sink.send(close(4403, "Forbidden")).await;
            return;
        };
        let signed_in = resolve_viewer(&s.app, &token, meta.clone())
            .await
            .ok()
            .flatten();
        if signed_in.is_none_or(|v| v.restricted) {
            s.app.audit.note_unauthenticated(meta.ip.as_ref());
            let _ = sink.send(close(4403, "Forbidden")).await;
            return;
        }
        let replayed =
            futures_util::stream::once(async move { Ok(Message::Text(init)) }).chain(stream);
        GraphQLWebSocket::new_with_pair(sink, replayed, s.ws_schema.clone(), protocol)
            .on_connection_init(move |_payload| async move {
                // Only the token stays on the socket; each operation resolves the viewer
                // afresh (http::ws_session).
                let mut data = Data::default();
                data.insert(WsSession { token, meta });
                Ok(data)
            })
            .serve()
            .await
    })
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::client_ip;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let lb: std::net::IpAddr = "10.0.0.5".parse().unwrap();
        let client: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let trusted = [lb];
        // Untrusted peers cannot claim another address.
        assert_eq!(client_ip(client, Some("198.51.100.1"), &trusted), client);
        // Behind the load balancer: the right-most untrusted hop, not a spoofed left one.
        assert_eq!(
            client_ip(lb, Some("198.51.100.1, 203.0.113.7"), &trusted),
            client
        );
        assert_eq!(
            client_ip(lb, Some("203.0.113.7, 10.0.0.5"), &trusted),
            client
        );
        assert_eq!(client_ip(lb, None, &trusted), lb);
        assert_eq!(client_ip(lb, Some("garbage"), &trusted), lb);
    }
}
