//! Persisted documents over HTTP and websocket: APQ (miss, registration, hits over POST
//! and GET, a wrong hash, an oversized document, two instances sharing registrations),
//! trusted documents (listed ones run by id, hash or exact text; anything else refused,
//! an APQ registration included; a listed mutation over GET is 405; the console's
//! freeform documents for staff only), `off`, and `Cache-Control: no-store`.
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::on_both_backends;
use caregraph::http::persisted::hash;

on_both_backends!(
    apq_registers_then_runs_by_hash,
    apq_is_bounded,
    trusted_documents_run_only_what_is_listed,
);

const ME: &str = "query Me { me { email role } }";
const GRAPHQL_JSON: &str = "application/graphql-response+json";

fn apq(h: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": h } })
}

/// POST `body` (with `token`), accepting `accept`; the status and the body.
async fn post(app_url: &str, token: Option<&str>, accept: &str, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(app_url)
        .header("accept", accept)
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// GET with these query parameters; the status, `Cache-Control` and the body.
async fn get(app: &TestApp, token: &str, params: &[(&str, String)]) -> (u16, String, Value) {
    let r = app
        .client
        .get(&app.url)
        .query(params)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, r.json().await.unwrap_or(Value::Null))
}

async fn apq_registers_then_runs_by_hash(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let h = hash(ME);
    // A miss: a request error, in the words APQ clients look for, 200 under
    // application/json and 400 under application/graphql-response+json.
    let miss = json!({ "extensions": apq(&h) });
    let (status, r) = post(&app.url, Some(&t), "application/json", miss.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["errors"][0]["message"], "PersistedQueryNotFound", "{r}");
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"));
    assert!(r["data"].is_null(), "{r}");
    let (status, r) = post(&app.url, Some(&t), GRAPHQL_JSON, miss.clone()).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"));
    // A registration whose hash is not its text's is refused, and registers nothing.
    let wrong = hash("{ me { email } }");
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "query": ME, "extensions": apq(&wrong) }),
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "extensions": apq(&wrong) }),
    )
    .await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"), "{r}");
    // Registered with its text (and run)...
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "query": ME, "extensions": apq(&h) }),
    )
    .await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    // ...then by hash alone, over POST and over GET (not cached by anyone on the way).
    let (_, r) = post(&app.url, Some(&t), "application/json", miss).await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    let (status, cache, r) = get(&app, &t, &[("extensions", apq(&h).to_string())]).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    assert_eq!(cache, "no-store");
    // A malformed hash or version is VALIDATION, not a miss.
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": h } } }),
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "extensions": apq("abc") }),
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // A registered mutation over GET is still 405.
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "query": "mutation Nothing { __typename }", "extensions": apq(&hash("mutation Nothing { __typename }")) }),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let (status, _, _) = get(
        &app,
        &t,
        &[(
            "extensions",
            apq(&hash("mutation Nothing { __typename }")).to_string(),
        )],
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(app.me(&t).await["email"], PATIENT);
}

/// A document longer than APQ_MAX_DOCUMENT_BYTES is not registered (VALIDATION); past
/// APQ_MAX_DOCUMENTS a document still runs but is not kept (in-process and in Redis); an
/// anonymous caller's document runs and is not kept either.
async fn apq_is_bounded(b: Backend) {
    let anonymous = "{ __typename }";
    let app = spawn_app_with(b, |v| {
        v.insert("APQ_MAX_DOCUMENT_BYTES".into(), "40".into());
        v.insert("APQ_MAX_DOCUMENTS".into(), "1".into());
    })
    .await;
    let (_, r) = post(
        &app.url,
        None,
        "application/json",
        json!({ "query": anonymous, "extensions": apq(&hash(anonymous)) }),
    )
    .await;
    assert_eq!(r["data"]["__typename"], "Query", "{r}");
    let (_, r) = post(
        &app.url,
        None,
        "application/json",
        json!({ "extensions": apq(&hash(anonymous)) }),
    )
    .await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"), "{r}");
    let t = app.token(PATIENT).await;
    let long = "query Long { me { email role patientId providerId } }";
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "query": long, "extensions": apq(&hash(long)) }),
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let (a, b) = ("{ me { email } }", "{ me { role } }");
    for doc in [a, b] {
        let (_, r) = post(
            &app.url,
            Some(&t),
            "application/json",
            json!({ "query": doc, "extensions": apq(&hash(doc)) }),
        )
        .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let by_hash = |doc: &str| json!({ "extensions": apq(&hash(doc)) });
    let (_, r) = post(&app.url, Some(&t), "application/json", by_hash(a)).await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    let (_, r) = post(&app.url, Some(&t), "application/json", by_hash(b)).await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"), "{r}");
}

/// Registrations live in Redis: one made through instance A is found by instance B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_registrations() {
    let app = spawn_app(Backend::Postgres).await;
    let other = spawn_instance(&app).await;
    let t = app.token(PATIENT).await;
    let doc = "query Shared { me { email } }";
    let (_, r) = post(
        &other.url,
        Some(&t),
        "application/json",
        json!({ "extensions": apq(&hash(doc)) }),
    )
    .await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"), "{r}");
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "query": doc, "extensions": apq(&hash(doc)) }),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let (_, r) = post(
        &other.url,
        Some(&t),
        "application/json",
        json!({ "extensions": apq(&hash(doc)) }),
    )
    .await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
}

/// A document whose text Redis evicted while the set of hashes still counts it is taken
/// again when re-sent, even with the store full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_document_is_registered_again_when_the_store_is_full() {
    let app = spawn_app_with(Backend::Postgres, |v| {
        v.insert("APQ_MAX_DOCUMENTS".into(), "1".into());
    })
    .await;
    let t = app.token(PATIENT).await;
    let doc = "query Kept { me { email } }";
    let register = json!({ "query": doc, "extensions": apq(&hash(doc)) });
    let (_, r) = post(&app.url, Some(&t), "application/json", register.clone()).await;
    assert!(r["errors"].is_null(), "{r}");
    let key = format!("{}doc:{}", app.vars["REDIS_KEY_PREFIX"], hash(doc));
    assert_eq!(
        redis_int(&["DEL", &key]).await,
        1,
        "the document was stored under {key}"
    );
    // A second instance has not seen it, so it asks Redis.
    let other = spawn_instance(&app).await;
    let by_hash = json!({ "extensions": apq(&hash(doc)) });
    let (_, r) = post(&other.url, Some(&t), "application/json", by_hash.clone()).await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_FOUND"), "{r}");
    let (_, r) = post(&other.url, Some(&t), "application/json", register).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        redis_int(&["EXISTS", &key]).await,
        1,
        "not taken again: the full set still counted it"
    );
    let third = spawn_instance(&app).await;
    let (_, r) = post(&third.url, Some(&t), "application/json", by_hash).await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
}

const WHO: &str = "query Who { me { email role } }";
const NOTHING: &str = "mutation Nothing { __typename }";
const UNREAD: &str = "subscription Unread { unreadCountChanged }";

/// A manifest listing sign-in and a few documents, as the client preset writes it (one
/// key with the `sha256:` prefix).
fn manifest(dir: &std::path::Path) -> String {
    let path = dir.join("persisted-documents.json");
    let m = json!({
        hash(LOGIN): LOGIN,
        format!("sha256:{}", hash(WHO)): WHO,
        hash(NOTHING): NOTHING,
        hash(UNREAD): UNREAD,
    });
    std::fs::write(&path, m.to_string()).unwrap();
    path.display().to_string()
}

async fn trusted_documents_run_only_what_is_listed(b: Backend) {
    let dir = std::env::temp_dir().join(format!("cg-trusted-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = manifest(&dir);
    let app = spawn_app_with(b, |v| {
        v.insert("PERSISTED_QUERIES".into(), "trusted".into());
        v.insert("PERSISTED_DOCUMENTS_FILE".into(), file.clone());
    })
    .await;
    // Sign-in is listed, so it runs as text.
    let t = app.token(PATIENT).await;
    // By documentId, bare or prefixed, and by APQ hash.
    for id in [hash(WHO), format!("sha256:{}", hash(WHO))] {
        let (_, r) = post(
            &app.url,
            Some(&t),
            "application/json",
            json!({ "documentId": id }),
        )
        .await;
        assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    }
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "extensions": apq(&hash(WHO)) }),
    )
    .await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    let (status, cache, r) =
        get(&app, &t, &[("documentId", format!("sha256:{}", hash(WHO)))]).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    assert_eq!(cache, "no-store");
    // Anything unlisted is refused before it runs: freeform text, an unknown id, an APQ
    // registration.
    let unlisted = "{ me { email } }";
    for body in [
        json!({ "query": unlisted }),
        json!({ "documentId": hash(unlisted) }),
        json!({ "query": unlisted, "extensions": apq(&hash(unlisted)) }),
    ] {
        let (status, r) = post(&app.url, Some(&t), GRAPHQL_JSON, body.clone()).await;
        assert_eq!(status, 400, "{body}: {r}");
        assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_IN_LIST"), "{body}: {r}");
        assert!(
            !r.to_string().contains("me { email }"),
            "the document was echoed: {r}"
        );
    }
    // A listed document's id with some other text is not that document.
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "documentId": hash(WHO), "query": unlisted }),
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // A listed mutation runs by POST, never by GET.
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "documentId": hash(NOTHING) }),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let (status, _, _) = get(&app, &t, &[("documentId", hash(NOTHING))]).await;
    assert_eq!(status, 405);
    // The console's freeform documents are off unless configured.
    let doc = app.token(DOCTOR).await;
    let (_, r) = post(
        &app.url,
        Some(&doc),
        "application/json",
        json!({ "query": unlisted }),
    )
    .await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_IN_LIST"), "{r}");
    // Over the websocket: a listed subscription runs (by its text, its documentId, or its
    // APQ hash with an empty text, as urql's persisted exchange sends it); an unlisted one
    // is refused.
    let mut ws = ws_signed_in(&app, &t).await;
    let unread = hash(UNREAD);
    for (id, payload) in [
        ("listed", json!({ "query": UNREAD })),
        ("by-id", json!({ "documentId": format!("sha256:{unread}") })),
        (
            "by-hash",
            json!({ "query": "", "extensions": apq(&unread) }),
        ),
        (
            "unlisted",
            json!({ "query": "subscription { unreadCountChanged }" }),
        ),
    ] {
        ws.send(Message::Text(
            json!({ "type": "subscribe", "id": id, "payload": payload })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        let frame = loop {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
                .await
                .expect("a frame")
                .unwrap()
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    break v;
                }
            }
        };
        match id {
            "listed" | "by-id" | "by-hash" => assert_eq!(frame["type"], "next", "{frame}"),
            _ => {
                assert_eq!(frame["type"], "error", "{frame}");
                assert_eq!(
                    frame["payload"][0]["extensions"]["code"],
                    "PERSISTED_QUERY_NOT_IN_LIST"
                );
            }
        }
    }
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

/// `PERSISTED_QUERIES_CONSOLE=true` (development): signed-in providers and admins may send
/// freeform documents; patients and anonymous callers still may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_may_run_freeform_documents_for_staff_only() {
    let dir = std::env::temp_dir().join(format!("cg-console-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = manifest(&dir);
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert("PERSISTED_QUERIES".into(), "trusted".into());
        v.insert("PERSISTED_DOCUMENTS_FILE".into(), file.clone());
        v.insert("PERSISTED_QUERIES_CONSOLE".into(), "true".into());
    })
    .await;
    let freeform = "{ me { email } }";
    let doc = app.token(DOCTOR).await;
    let (_, r) = post(
        &app.url,
        Some(&doc),
        "application/json",
        json!({ "query": freeform }),
    )
    .await;
    assert_eq!(r["data"]["me"]["email"], DOCTOR, "{r}");
    let pat = app.token(PATIENT).await;
    let (_, r) = post(
        &app.url,
        Some(&pat),
        "application/json",
        json!({ "query": freeform }),
    )
    .await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_IN_LIST"), "{r}");
    let (_, r) = post(
        &app.url,
        None,
        "application/json",
        json!({ "query": freeform }),
    )
    .await;
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_IN_LIST"), "{r}");
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

/// `PERSISTED_QUERIES=off`: a request by hash alone is PERSISTED_QUERY_NOT_SUPPORTED, so
/// an APQ client sends the text, which runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_tells_apq_clients_to_send_text() {
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert("PERSISTED_QUERIES".into(), "off".into());
    })
    .await;
    let t = app.token(PATIENT).await;
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "extensions": apq(&hash(ME)) }),
    )
    .await;
    assert_eq!(
        r["errors"][0]["message"], "PersistedQueryNotSupported",
        "{r}"
    );
    assert_eq!(code(&r), Some("PERSISTED_QUERY_NOT_SUPPORTED"));
    let (_, r) = post(
        &app.url,
        Some(&t),
        "application/json",
        json!({ "query": ME, "extensions": apq(&hash(ME)) }),
    )
    .await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
}
