//! HTTP and websocket protocol, health, the checked-in schema, PHI at rest and in logs,
//! production refusals.
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    graphql_over_http,
    health_and_readiness,
    websocket_requires_a_token,
    websocket_operations_recheck_the_session,
    no_plaintext_phi_at_rest,
    every_plaintext_column_is_declared,
    introspection_needs_a_signed_in_viewer,
    legacy_plaintext_sex_and_gender_are_sealed_at_start,
    no_phi_in_logs
);

/// Values seeded for the demo patients; none may appear at rest or in logs.
const SEEDED_PHI: &[&str] = &[
    "Testy",
    "Demopatient",
    "Examplepatient",
    "patient@caregraph.dev",
    "+15555550100",
    "1980-01-01",
    "900000001",
    "Demo peanut protein",
    "1 Example Street",
    "Casey Democontact",
];

#[test]
fn schema_file_is_up_to_date() {
    let sdl = caregraph::schema::sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(path, &sdl).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == sdl,
        "schema.graphql is stale: run `UPDATE_SCHEMA=1 cargo test schema_file` or `caregraph schema > schema.graphql`"
    );
}

#[test]
fn production_refuses_unsafe_settings() {
    let dir = std::env::temp_dir().join(format!("cg-prod-{}", uuid::Uuid::new_v4().simple()));
    let run = |envs: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_caregraph"))
            .arg("serve")
            .env("APP_ENV", "production")
            .env("DATA_DIR", &dir)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&[]).contains("development keys"));
    let keys = serde_json::to_string(&caregraph::crypto::KeyFile::generate(false)).unwrap();
    assert!(run(&[("CAREGRAPH_KEYS", &keys)]).contains("DATABASE_URL"));
    let err = run(&[
        ("CAREGRAPH_KEYS", &keys),
        ("DATABASE_URL", "postgres://127.0.0.1:1/x"),
    ]);
    assert!(err.contains("REDIS_URL"), "{err}");
    let safe = [
        ("CAREGRAPH_KEYS", keys.as_str()),
        ("DATABASE_URL", "postgres://127.0.0.1:1/x"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
    ];
    // Trusted documents by default, and they need their manifest.
    let err = run(&safe);
    assert!(err.contains("PERSISTED_DOCUMENTS_FILE"), "{err}");
    // The console's freeform documents are for development.
    let err = run(&[
        safe[0],
        safe[1],
        safe[2],
        ("PERSISTED_QUERIES", "apq"),
        ("PERSISTED_QUERIES_CONSOLE", "true"),
    ]);
    assert!(err.contains("PERSISTED_QUERIES_CONSOLE"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

async fn graphql_over_http(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    // GET for queries.
    let r = app
        .client
        .get(&app.url)
        .query(&[("query", "{ me { email } }")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["data"]["me"]["email"],
        PATIENT
    );
    // Never mutations over GET.
    let r = app
        .client
        .get(&app.url)
        .query(&[("query", "mutation { logout }")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(app.me(&t).await["email"], PATIENT, "a GET mutation ran");
    // application/graphql-response+json: request errors are 4xx, field errors 200.
    let post = |body: serde_json::Value| {
        app.client
            .post(&app.url)
            .header("accept", "application/graphql-response+json")
            .bearer_auth(&t)
            .json(&body)
            .send()
    };
    let r = post(json!({ "query": "{ me { email " })).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"],
        "application/graphql-response+json"
    );
    let r = post(json!({ "query": "{ nope }" })).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&body), Some("VALIDATION"));
    let r = post(json!({ "query": "query($id: ID!) { patient(id: $id) { id } }", "variables": { "id": uuid::Uuid::new_v4().to_string() } }))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(code(&r.json().await.unwrap()), Some("NOT_FOUND"));
    // Plain application/json clients get 200 and a JSON body.
    let r = app
        .client
        .post(&app.url)
        .json(&json!({ "query": "{ me { email " }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Bodies that are not one GraphQL request: a JSON error, not the input echoed back.
    for (content_type, body, status) in [
        ("application/json", "{\"query\": ", 400),
        (
            "application/json",
            "[{\"query\": \"{ me { email } }\"}]",
            400,
        ),
        ("application/json", "{\"query\": 42}", 400),
        ("multipart/form-data; boundary=x", "--x--", 415),
    ] {
        let r = app
            .client
            .post(&app.url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(code(&answer), Some("VALIDATION"), "{body}");
        assert!(!answer.to_string().contains("email"), "{answer}");
    }
    // Oversized bodies are refused before parsing.
    let big = "x".repeat(300 * 1024);
    let r = app
        .client
        .post(&app.url)
        .json(&json!({ "query": big }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["connection"], "close");
    // Depth and complexity limits.
    let deep = format!("{{ me {} }}", "{ id ".repeat(20) + &"}".repeat(20));
    let r = app.gql(Some(&t), &deep, json!({})).await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["limit"], "depth", "{r}");
    // GraphiQL for browsers in development.
    let r = app
        .client
        .get(&app.url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().to_lowercase().contains("graphiql"));
    // Security headers and a request id.
    let r = app
        .client
        .post(&app.url)
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().contains_key("x-request-id"));
}

async fn health_and_readiness(b: Backend) {
    let app = spawn_app(b).await;
    let base = format!("http://{}", app.addr);
    let r: serde_json::Value = app
        .client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ok");
    let r = app
        .client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["sessionStore"], "ok");
}

/// The close code the server ends the socket with; `None` if it answers anything else
/// first or stays open for 5 s.
async fn closed_with(ws: &mut Ws) -> Option<u16> {
    match next_message(ws).await {
        Some(Message::Close(Some(f))) => Some(u16::from(f.code)),
        _ => None,
    }
}

async fn websocket_requires_a_token(b: Backend) {
    let app = spawn_app(b).await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        // No token: closed with 4403.
        let mut ws = ws_connect(&app, protocol).await;
        ws.send(Message::Text(
            json!({ "type": "connection_init", "payload": {} })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        assert_eq!(
            closed_with(&mut ws).await,
            Some(4403),
            "{protocol}: no token"
        );
        // A forged token is refused the same way.
        let mut ws = ws_connect(&app, protocol).await;
        ws.send(Message::Text(
            json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        assert_eq!(closed_with(&mut ws).await, Some(4403), "{protocol}: forged");
        // A valid token is acknowledged.
        let t = app.token(PATIENT).await;
        let mut ws = ws_connect(&app, protocol).await;
        ws.send(Message::Text(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {t}") } }).to_string().into()))
            .await
            .unwrap();
        match next_message(&mut ws).await {
            Some(Message::Text(t)) => assert!(t.contains("connection_ack"), "{protocol}: {t}"),
            other => panic!("{protocol}: expected connection_ack, got {other:?}"),
        }
    }
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn no_plaintext_phi_at_rest(b: Backend) {
    let app = spawn_app(b).await;
    // Write more PHI through the API, including a note-like allergy reaction.
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let q = "mutation($id: ID!) { recordAllergy(patientId: $id, input: { substance: \"Fixturecillin\", reaction: \"Demo wheeze noted\", severity: SEVERE }) { id } }";
    assert!(
        app.gql(Some(&doc), q, json!({ "id": pid })).await["data"]["recordAllergy"]["id"]
            .is_string()
    );
    let mut needles: Vec<&str> = SEEDED_PHI.to_vec();
    needles.extend(["Fixturecillin", "Demo wheeze noted", "doctor@caregraph.dev"]);
    let dump: Vec<u8> = match app.backend {
        Backend::Sqlite => {
            // Everything SQLite has on disk: the database file and its write-ahead log.
            let mut all = Vec::new();
            for entry in std::fs::read_dir(&app.dir).unwrap() {
                let p = entry.unwrap().path();
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("caregraph.db")
                {
                    std::fs::File::open(&p)
                        .unwrap()
                        .read_to_end(&mut all)
                        .unwrap();
                }
            }
            assert!(all.len() > 10_000);
            all
        }
        Backend::Postgres => {
            let url = app.vars["DATABASE_URL"].clone();
            let mut all = Vec::new();
            // Every table there is, so a new one cannot go unchecked.
            let psql = |sql: &str| {
                let out = Command::new("psql")
                    .args([url.as_str(), "-Atc", sql])
                    .output()
                    .expect("psql");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            };
            let tables = String::from_utf8(psql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            ))
            .unwrap();
            let tables: Vec<&str> = tables.lines().filter(|t| !t.is_empty()).collect();
            assert!(
                tables.contains(&"patients") && tables.contains(&"audit_log"),
                "{tables:?}"
            );
            for table in tables {
                all.extend(psql(&format!("COPY (SELECT * FROM \"{table}\") TO STDOUT")));
            }
            assert!(all.len() > 1_000);
            all
        }
    };
    for n in needles {
        assert!(
            !contains_bytes(&dump, n.as_bytes()),
            "plaintext {n:?} found at rest"
        );
        // bytea is dumped as hex on PostgreSQL: look for that form too.
        assert!(
            !contains_bytes(&dump, hex::encode(n.as_bytes()).as_bytes()),
            "hex of {n:?} found at rest"
        );
    }
}

async fn no_phi_in_logs(b: Backend) {
    // The real binary, with verbose logs captured, serving a test database.
    let dir = std::env::temp_dir().join(format!("cg-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (vars, resources) = base_vars(b, &dir);
    resources.create().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_caregraph"))
        .envs(&vars)
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("server printed its URL").unwrap();
        if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break u.to_owned();
        }
    };
    let client = reqwest::Client::new();
    let gql = |token: Option<String>, q: &'static str, v: serde_json::Value| {
        let (client, url) = (client.clone(), url.clone());
        async move { gql_at(&client, &url, token.as_deref(), q, v).await }
    };
    let login =
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }";
    let tok = gql(None, login, json!({ "e": DOCTOR, "p": PASSWORD })).await["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    gql(None, login, json!({ "e": PATIENT, "p": "Testy-wrong" })).await;
    let list = gql(Some(tok.clone()), "{ patients { edges { node { id givenName familyName birthDate email phone mrn allergies { substance } } } } }", json!({})).await;
    assert_eq!(
        list["data"]["patients"]["edges"][0]["node"]["givenName"],
        "Testy"
    );
    // Errors carrying PHI-looking input must not log it either.
    let bad = "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }";
    gql(Some(tok.clone()), bad, json!({ "i": { "givenName": "Testy9", "familyName": "Demopatient", "birthDate": "1980-01-01", "sexAtBirth": "MALE", "genderIdentity": "MAN", "email": "patient@caregraph.dev" } })).await;
    // A value of the wrong type: async-graphql's own message would quote it.
    let wrong_type = "mutation { createPatient(input: { givenName: \"Ab\", familyName: \"Cd\", birthDate: 19800101, sexAtBirth: MALE, genderIdentity: MAN }) { id } }";
    let r = gql(Some(tok.clone()), wrong_type, json!({})).await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert!(!r.to_string().contains("19800101"), "{r}");
    let r_vars = gql(Some(tok.clone()), bad, json!({ "i": { "givenName": "Ab", "familyName": "Cd", "birthDate": 19800101, "sexAtBirth": "MALE", "genderIdentity": "MAN" } })).await;
    assert_eq!(code(&r_vars), Some("VALIDATION"), "{r_vars}");
    assert!(!r_vars.to_string().contains("19800101"), "{r_vars}");
    gql(
        Some(tok),
        "{ patient(id: \"Demopatient\") { id } }",
        json!({}),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    for l in lines.map_while(Result::ok) {
        logs.push_str(&l);
    }
    assert!(
        logs.contains("request") || logs.len() > 100,
        "logs were captured: {logs}"
    );
    for phi in SEEDED_PHI.iter().chain(&["19800101"]) {
        assert!(!logs.contains(phi), "{phi:?} appeared in the logs");
    }
    resources.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Two stateless instances on one PostgreSQL + Redis behave as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behave_as_one() {
    // A long session cache, so only the revocation messages can explain a prompt refusal.
    let a = spawn_app_with(Backend::Postgres, |v| {
        v.insert("SESSION_CACHE_MS".into(), "30000".into());
    })
    .await;
    let b = spawn_instance(&a).await;
    let post = |url: String, token: Option<String>, q: &'static str, v: serde_json::Value| {
        let client = a.client.clone();
        async move { gql_at(&client, &url, token.as_deref(), q, v).await }
    };
    let login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken } }";
    let r = post(
        a.url.clone(),
        None,
        login,
        json!({ "e": DOCTOR, "p": PASSWORD }),
    )
    .await;
    let token = r["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = r["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = a.patient_id(PATIENT).await;
    let read = "query($id: ID!) { patient(id: $id) { givenName } }";
    // Signed in on A, reading on B, interleaved: one audit chain.
    for i in 0..6 {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let r = post(url, Some(token.clone()), read, json!({ "id": pid })).await;
        assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    }
    let out = crate::audit::cli(&a, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Refresh on B, reuse of the old token on A is detected.
    let q = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }";
    let r = post(b.url.clone(), None, q, json!({ "t": refresh })).await;
    let token2 = r["data"]["refreshSession"]["accessToken"]
        .as_str()
        .expect("refreshed")
        .to_owned();
    // B has checked the session (and may answer it from memory for SESSION_CACHE_MS) ...
    let r = post(
        b.url.clone(),
        Some(token2.clone()),
        "{ me { id } }",
        json!({}),
    )
    .await;
    assert!(r["data"]["me"]["id"].is_string(), "{r}");
    let r = post(a.url.clone(), None, q, json!({ "t": refresh })).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"));
    // ... yet the revocation on A reaches it at once, not after the cache's 30 s.
    assert!(
        refused_soon(&post, &b.url, &token2).await,
        "reuse on A did not revoke the session on B"
    );
    // Logout on one instance ends the session on the other.
    let t = a.token(PATIENT).await;
    let r = post(a.url.clone(), Some(t.clone()), "{ me { id } }", json!({})).await;
    assert!(r["data"]["me"]["id"].is_string(), "{r}");
    let r = post(
        b.url.clone(),
        Some(t.clone()),
        "mutation { logout }",
        json!({}),
    )
    .await;
    assert_eq!(r["data"]["logout"], true);
    assert!(
        refused_soon(&post, &a.url, &t).await,
        "logout on B did not end the session on A"
    );
}

/// Whether `token` is refused at `url` within a second (a pub/sub message's delivery).
async fn refused_soon<F, Fut>(post: &F, url: &str, token: &str) -> bool
where
    F: Fn(String, Option<String>, &'static str, serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    for _ in 0..20 {
        let r = post(
            url.to_owned(),
            Some(token.to_owned()),
            "{ me { id } }",
            json!({}),
        )
        .await;
        if code(&r) == Some("UNAUTHENTICATED") {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Browser origins are allowed only when configured; the SQLite file is private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_and_file_permissions() {
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert(
            "CORS_ALLOWED_ORIGINS".into(),
            "http://portal.localhost:3000".into(),
        );
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, &app.url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("http://portal.localhost:3000").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://portal.localhost:3000"
    );
    let other = preflight("http://evil.localhost").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    // With no origins configured, no origin is allowed.
    let closed = spawn_app(Backend::Sqlite).await;
    let r = closed
        .client
        .request(reqwest::Method::OPTIONS, &closed.url)
        .header("origin", "http://portal.localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert!(!r.status().is_success(), "{}", r.status());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.dir.join("caregraph.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "database file is readable by others: {mode:o}"
        );
    }
}

/// An open socket does not outlive the session: logout elsewhere closes it.
async fn websocket_operations_recheck_the_session(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let mut ws = ws_connect(&app, "graphql-transport-ws").await;
    let init =
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {t}") } });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    assert!(
        matches!(next_message(&mut ws).await, Some(Message::Text(m)) if m.contains("connection_ack"))
    );
    let op = |id: &str| {
        json!({ "id": id, "type": "subscribe", "payload": { "query": "{ me { email } }" } })
            .to_string()
    };
    ws.send(Message::Text(op("1").into())).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Text(m)) => assert!(m.contains(PATIENT), "{m}"),
        other => panic!("expected a result, got {other:?}"),
    }
    // Sign out over HTTP: the socket, bound to the session, is closed with 4403 within a
    // second or two, and nothing more is answered on it.
    assert_eq!(
        app.gql(Some(&t), "mutation { logout }", json!({})).await["data"]["logout"],
        true
    );
    let ended = std::time::Instant::now();
    let _ = ws.send(Message::Text(op("2").into())).await;
    let mut code = None;
    while let Some(m) = next_message(&mut ws).await {
        match m {
            Message::Text(m) if m.contains("\"id\":\"2\"") => {
                assert!(!m.contains(PATIENT), "{m}");
                assert!(m.contains("UNAUTHENTICATED"), "{m}");
            }
            Message::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(code, Some(4403), "the socket outlived its session");
    assert!(ended.elapsed() < std::time::Duration::from_secs(3));
}

/// Every column of every table, read from the database itself: each is sealed by name
/// (`*_enc`, `*_bidx`) or declared plaintext in `caregraph::db::columns`, so a new PHI
/// column cannot land in plaintext unnoticed; the emptied legacy columns are empty.
async fn every_plaintext_column_is_declared(b: Backend) {
    use caregraph::db::columns;
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app(b).await;
    let db = &app.state.db;
    let be = db.get_database_backend();
    let sql = match app.backend {
        Backend::Sqlite => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
        }
        Backend::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY 1, 2"
        }
    };
    let rows = db.query_all(Statement::from_string(be, sql)).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut undeclared = Vec::new();
    for r in &rows {
        let t: String = r.try_get("", "t").unwrap();
        let c: String = r.try_get("", "c").unwrap();
        if !columns::allowed(&t, &c) {
            undeclared.push(format!("{t}.{c}"));
        }
        seen.insert((t, c));
    }
    assert!(rows.len() > 100, "{}", rows.len());
    assert!(
        undeclared.is_empty(),
        "columns neither sealed nor declared plaintext in db::columns: {undeclared:?}"
    );
    // Nothing declared is stale.
    for (t, cols) in columns::PLAINTEXT {
        for c in *cols {
            assert!(
                seen.contains(&(t.to_string(), c.to_string())),
                "db::columns declares {t}.{c}, which the database does not have"
            );
        }
    }
    // The emptied legacy columns hold nothing, seeded rows included.
    for (t, c) in columns::EMPTIED {
        let r = db
            .query_one(Statement::from_string(
                be,
                format!("SELECT COUNT(*) AS n FROM {t} WHERE {c} <> ''"),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = r.try_get("", "n").unwrap();
        assert_eq!(n, 0, "{t}.{c} still holds values");
    }
}

/// A row written before sex and gender identity were sealed still reads right, and the
/// start-up step seals it and empties the plaintext.
async fn legacy_plaintext_sex_and_gender_are_sealed_at_start(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    let admin = app.token(ADMIN).await;
    let q = "query($id: ID!) { patient(id: $id) { sexAtBirth genderIdentity } }";
    let before = app.gql(Some(&admin), q, json!({ "id": pid })).await;
    let sex = before["data"]["patient"]["sexAtBirth"]
        .as_str()
        .unwrap()
        .to_owned();
    let gender = before["data"]["patient"]["genderIdentity"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = &app.state.db;
    let be = db.get_database_backend();
    let id = match app.backend {
        Backend::Sqlite => format!("'{}'", pid.replace('-', "")),
        Backend::Postgres => format!("'{pid}'"),
    };
    // SQLite stores uuids as text: match either form.
    let where_id = match app.backend {
        Backend::Sqlite => format!("(id = '{pid}' OR lower(hex(id)) = {id})"),
        Backend::Postgres => format!("id = {id}"),
    };
    let n = db
        .execute(Statement::from_string(
            be,
            format!(
                "UPDATE patients SET sex_at_birth = '{sex}', gender_identity = '{gender}', \
                 sex_at_birth_enc = NULL, gender_identity_enc = NULL WHERE {where_id}"
            ),
        ))
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
    let r = app.gql(Some(&admin), q, json!({ "id": pid })).await;
    assert_eq!(r["data"], before["data"], "the legacy row still reads: {r}");
    let sealed =
        caregraph::patients::service::seal_legacy_sex_and_gender(&app.state.db, &app.state.keys)
            .await
            .unwrap();
    assert_eq!(sealed, 1);
    let left = db
        .query_one(Statement::from_string(
            be,
            "SELECT COUNT(*) AS n FROM patients WHERE sex_at_birth <> '' OR gender_identity <> '' \
             OR sex_at_birth_enc IS NULL OR gender_identity_enc IS NULL"
                .to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.try_get::<i64>("", "n").unwrap(), 0);
    let r = app.gql(Some(&admin), q, json!({ "id": pid })).await;
    assert_eq!(r["data"], before["data"], "{r}");
    assert_eq!(
        app.audit_count("action = 'patients.seal_sex_gender'").await,
        1
    );
}

/// Introspection is outside the guard table: signed-in viewers may introspect (the console
/// does), anonymous callers may not, and `__typename` anywhere below the root just works.
async fn introspection_needs_a_signed_in_viewer(b: Backend) {
    let app = spawn_app(b).await;
    let q = "{ __schema { queryType { name } } __type(name: \"Patient\") { name } }";
    let r = app.gql(None, q, json!({})).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"), "{r}");
    let t = app.token(DOCTOR).await;
    let r = app.gql(Some(&t), q, json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(r["data"]["__type"]["name"], "Patient");
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(
            Some(&t),
            "query($id: ID!) { patient(id: $id) { __typename records(first: 1) { edges { node { __typename } } } } }",
            json!({ "id": pid }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["patient"]["__typename"], "Patient");
}
