use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use super::HttpState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database and the session store answer.
pub async fn readyz(State(s): State<HttpState>) -> (StatusCode, Json<Value>) {
    let db = s.app.db.execute_unprepared("SELECT 1").await.is_ok();
    let store = s.app.stores.sessions.ping().await.is_ok();
    let status = if db && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(
            json!({ "status": word(db && store), "database": word(db), "sessionStore": word(store) }),
        ),
    )
}
