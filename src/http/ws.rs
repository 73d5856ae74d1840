//! GraphQL over websocket, graphql-transport-ws protocol, served by hand: async-graphql
//! executes each operation, this module keeps the protocol and binds the socket to its
//! session.
//!
//! - `connection_init` must come first, within 10 s (4408), carrying
//!   `{ "authorization": "Bearer …" }` of a live session (4403 otherwise); a second one is
//!   4429; a `subscribe` before it is 4401; a malformed message 4400; an operation id
//!   already running 4409. Pings are answered with pongs.
//! - The socket follows its session: when it ends on any instance (logout, refresh-token
//!   reuse revocation, the inactivity timeout) or the access token passes its `exp`, the
//!   server closes it with 4403 within a second or two. Nothing the socket does counts as
//!   user activity: it looks at the session without pushing its deadline out.
//! - Each operation runs in a task of its own whose results go to the socket through one
//!   bounded queue: a client that does not read stalls only its own operations, whose
//!   subscriptions then lag on the bus and end with RESYNC.
use std::collections::HashMap;
use std::time::Duration;

use async_graphql::{Data, Response};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::HttpState;
use super::ws_session::WsSession;
use crate::identity::RequestMeta;
use crate::stores::bus::{Delivery, Topic};

pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting for the socket, across the socket's operations.
const OUTBOUND: usize = 64;
/// Most operations one socket runs at once.
const MAX_OPERATIONS: usize = 50;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    Ping {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<serde_json::Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<serde_json::Value>,
    },
    Subscribe {
        id: String,
        /// As over HTTP: `query`, or a persisted document by `documentId` or APQ hash.
        payload: Box<super::persisted::Wire>,
    },
    Complete {
        id: String,
    },
}

/// What an operation's task hands the socket (boxed strings: the queue's slots are
/// allocated up front, for each socket).
enum Out {
    Frame(Box<str>),
    Done(Box<str>),
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn bearer(payload: &Option<serde_json::Value>) -> Option<String> {
    let p = payload.as_ref()?;
    let auth = p.get("authorization").or_else(|| p.get("Authorization"))?;
    let v = auth.as_str()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::to_owned)
}

/// Serve one graphql-transport-ws socket.
pub async fn serve(socket: WebSocket, s: HttpState, meta: RequestMeta) {
    let (mut sink, mut stream) = socket.split();
    // connection_init first.
    let first = tokio::time::timeout(INIT_TIMEOUT, stream.next()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
        Ok(Some(Ok(_))) => {
            let _ = sink.send(close(4400, "Invalid message")).await;
            return;
        }
        Err(_) => {
            let _ = sink
                .send(close(4408, "Connection initialisation timeout"))
                .await;
            return;
        }
    };
    let token = match serde_json::from_str::<ClientMessage>(text.as_str()) {
        Ok(ClientMessage::ConnectionInit { payload }) => bearer(&payload),
        Ok(ClientMessage::Subscribe { .. }) => {
            let _ = sink.send(close(4401, "Unauthorized")).await;
            return;
        }
        _ => {
            let _ = sink.send(close(4400, "Invalid message")).await;
            return;
        }
    };
    let app = &s.app;
    let claims = token.as_deref().and_then(|t| app.tokens.verify(t));
    let signed_in = match (&token, &claims) {
        (Some(t), Some(_)) => Box::pin(crate::auth::service::resolve_viewer(app, t, meta.clone()))
            .await
            .ok()
            .flatten()
            .filter(|v| !v.restricted),
        _ => None,
    };
    let (Some(token), Some(claims), Some(viewer)) = (token, claims, signed_in) else {
        app.audit.note_unauthenticated(meta.ip.as_ref());
        let _ = sink.send(close(4403, "Forbidden")).await;
        return;
    };
    // The socket keeps its session's id, its token and when the token expires; the viewer
    // and the claims are let go (each operation resolves its own viewer).
    let exp = claims.exp;
    let sid = viewer.session_id.clone();
    drop((claims, viewer));
    let mut session_events = match uuid::Uuid::parse_str(&sid) {
        Ok(id) => Some(app.stores.bus.subscribe(vec![Topic::Session(id)])),
        Err(_) => None,
    };
    if sink
        .send(Message::Text(r#"{"type":"connection_ack"}"#.into()))
        .await
        .is_err()
    {
        return;
    }
    let expires = Instant::now()
        + Duration::from_secs(u64::try_from(exp - chrono::Utc::now().timestamp()).unwrap_or(0));
    // When to look at the session again (its inactivity deadline, as far as we know).
    let mut look_at = Instant::now() + Duration::from_secs(1);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTBOUND);
    let mut ops: HashMap<String, JoinHandle<()>> = HashMap::new();
    let ws_session = std::sync::Arc::new(WsSession { token, meta });

    let reason: Option<(u16, &'static str)> = loop {
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => break Some((4400, "Invalid message")),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                };
                match serde_json::from_str::<ClientMessage>(text.as_str()) {
                    Ok(ClientMessage::ConnectionInit { .. }) => {
                        break Some((4429, "Too many initialisation requests"));
                    }
                    Ok(ClientMessage::Ping { .. }) => {
                        if sink.send(Message::Text(r#"{"type":"pong"}"#.into())).await.is_err() {
                            break None;
                        }
                    }
                    Ok(ClientMessage::Pong { .. }) => {}
                    Ok(ClientMessage::Subscribe { id, payload }) => {
                        if ops.get(&id).is_some_and(|h| !h.is_finished()) {
                            break Some((4409, "Subscriber for this id already exists"));
                        }
                        if id.is_empty() || id.len() > 128 {
                            break Some((4400, "Invalid message"));
                        }
                        ops.retain(|_, h| !h.is_finished());
                        if ops.len() >= MAX_OPERATIONS {
                            let frame = error_frame(&id, "too many operations on one socket; complete some first");
                            if sink.send(Message::Text(frame.into())).await.is_err() {
                                break None;
                            }
                            continue;
                        }
                        let task = tokio::spawn(run(
                            s.ws_schema.clone(),
                            Documents {
                                persisted: s.persisted.clone(),
                                app: s.persisted.wants_staff().then(|| s.app.clone()),
                            },
                            ws_session.clone(),
                            id.clone(),
                            *payload,
                            out_tx.clone(),
                        ));
                        ops.insert(id, task);
                    }
                    Ok(ClientMessage::Complete { id }) => {
                        if let Some(h) = ops.remove(&id) {
                            h.abort();
                        }
                    }
                    Err(_) => break Some((4400, "Invalid message")),
                }
            }
            Some(out) = out_rx.recv() => match out {
                Out::Frame(f) => {
                    if sink.send(Message::Text(String::from(f).into())).await.is_err() {
                        break None;
                    }
                }
                Out::Done(id) => {
                    if ops.get(&*id).is_some_and(|h| h.is_finished()) {
                        ops.remove(&*id);
                    }
                }
            },
            Some(d) = next_session_event(&mut session_events) => {
                if d == Delivery::SessionChanged || d == Delivery::Resync {
                    match app.stores.sessions.peek(&sid).await {
                        Ok(Some(_)) => {}
                        Ok(None) => break Some((4403, "Forbidden")),
                        Err(e) => tracing::warn!(error = %e, "session check failed"),
                    }
                }
            }
            _ = sleep_until(look_at) => {
                match app.stores.sessions.peek(&sid).await {
                    Ok(Some((_, left))) => {
                        // Past its deadline it is gone; until then, look again when it is due
                        // (and at least every minute: another instance may shorten it).
                        look_at = Instant::now() + left.min(Duration::from_secs(60)) + Duration::from_millis(50);
                    }
                    Ok(None) => break Some((4403, "Forbidden")),
                    Err(e) => {
                        tracing::warn!(error = %e, "session check failed");
                        look_at = Instant::now() + Duration::from_secs(1);
                    }
                }
            }
            _ = sleep_until(expires) => break Some((4403, "Forbidden")),
        }
    };
    for (_, h) in ops {
        h.abort();
    }
    if let Some((code, why)) = reason {
        let _ = sink.send(close(code, why)).await;
    }
}

async fn next_session_event(
    sub: &mut Option<crate::stores::bus::Subscription>,
) -> Option<Delivery> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn error_frame(id: &str, message: &str) -> String {
    coded_error_frame(id, "VALIDATION", message)
}

fn coded_error_frame(id: &str, code: &str, message: &str) -> String {
    serde_json::json!({
        "type": "error",
        "id": id,
        "payload": [{ "message": message, "extensions": { "code": code } }],
    })
    .to_string()
}

/// What decides an operation's document (`http::persisted`); `app` only when the console's
/// freeform documents may run (trusted mode, `PERSISTED_QUERIES_CONSOLE`), to tell staff.
struct Documents {
    persisted: super::persisted::Persisted,
    app: Option<crate::state::AppState>,
}

/// Run one operation and send its results: `next` for each, then `complete`; a request
/// refused before it ran (validation, the token) is one `error`. Between results the task
/// holds only its stream and the frame being sent.
async fn run(
    schema: crate::schema::AppSchema,
    documents: Documents,
    session: std::sync::Arc<WsSession>,
    id: String,
    request: super::persisted::Wire,
    out: mpsc::Sender<Out>,
) {
    let viewer = match documents.app {
        Some(app) => {
            crate::auth::service::resolve_viewer(&app, &session.token, session.meta.clone())
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    let request = match documents.persisted.resolve(request, viewer.as_ref()).await {
        Ok(r) => r,
        Err(e) => {
            let frame = coded_error_frame(&id, e.code(), &e.to_string());
            let _ = out.send(Out::Frame(frame.into())).await;
            let _ = out.send(Out::Done(id.into())).await;
            return;
        }
    };
    drop(viewer);
    let mut data = Data::default();
    data.insert(WsSession {
        token: session.token.clone(),
        meta: session.meta.clone(),
    });
    drop(session);
    let mut results = schema.execute_stream_with_session_data(request, std::sync::Arc::new(data));
    drop(schema);
    let id: Box<str> = id.into();
    let mut first = true;
    while let Some(resp) = results.next().await {
        let refusal = first && refused(&resp);
        first = false;
        let frame = frame(&id, resp, refusal);
        if out.send(Out::Frame(frame)).await.is_err() {
            return;
        }
        if refusal {
            let _ = out.send(Out::Done(id)).await;
            return;
        }
    }
    let done = serde_json::json!({ "type": "complete", "id": &*id }).to_string();
    let _ = out.send(Out::Frame(done.into())).await;
    let _ = out.send(Out::Done(id)).await;
}

/// One `next` frame (the response), or, for a request refused before it ran, an `error`
/// frame (its errors alone).
fn frame(id: &str, resp: Response, refused: bool) -> Box<str> {
    let v = if refused {
        serde_json::json!({ "type": "error", "id": id, "payload": resp.errors })
    } else {
        serde_json::json!({ "type": "next", "id": id, "payload": resp })
    };
    v.to_string().into()
}

/// A response that is only errors, with no data at all: the request never ran.
fn refused(resp: &Response) -> bool {
    resp.data == async_graphql::Value::Null && !resp.errors.is_empty()
}
