//! Hostile input over HTTP POST, GET and websocket: shapes that used to overflow a worker's
//! stack or expand exponentially are refused by the limit that fires before the expensive
//! work, and the server answers normally afterwards; errors never echo input; the edges of
//! the HTTP layer (content types, body size, request ids, slow headers, HSTS) and the
//! summary of anonymous probes.
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    crash_shapes_are_refused_before_parsing,
    fragment_fan_out_is_refused_before_expansion,
    request_errors_never_echo_input,
    http_edges,
    slow_headers_are_cut_off,
    unauthenticated_probes_are_summarised,
    complexity_weighs_pages_and_the_cache_keeps_it,
);

fn nested_list(n: usize) -> String {
    format!(
        "{{ patient(id: {}\"x\"{}) {{ id }} }}",
        "[".repeat(n),
        "]".repeat(n)
    )
}

fn nested_object(n: usize) -> String {
    format!(
        "mutation {{ createPatient(input: {}1{}) {{ patient {{ id }} }} }}",
        "{a: ".repeat(n),
        "}".repeat(n)
    )
}

fn nested_default(n: usize) -> String {
    format!(
        "query($v: [Int] = {}1{}) {{ me {{ role }} }}",
        "[".repeat(n),
        "]".repeat(n)
    )
}

fn nested_selection(n: usize) -> String {
    format!("{{ {}{} }}", "me { ".repeat(n), "}".repeat(n))
}

/// Fragments F0..F`levels`, each spreading the next `fan` times: `fan^levels` fields once
/// expanded, in a few hundred bytes.
fn fan_out(levels: usize, fan: usize) -> String {
    let mut q = String::from("query { ...F0 }\n");
    for i in 0..levels {
        let spreads: String = (0..fan).map(|_| format!("...F{} ", i + 1)).collect();
        q.push_str(&format!("fragment F{i} on Query {{ {spreads} }}\n"));
    }
    q.push_str(&format!(
        "fragment F{levels} on Query {{ me {{ role }} }}\n"
    ));
    q
}

fn limit(resp: &Value) -> Option<&str> {
    resp["errors"][0]["extensions"]["limit"].as_str()
}

async fn get(app: &TestApp, params: &[(&str, &str)], token: Option<&str>) -> Value {
    let mut req = app.client.get(&app.url).query(params);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Peak resident memory of this process (the server runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn still_answers(app: &TestApp, token: &str) {
    let r = app.gql(Some(token), "{ me { role } }", json!({})).await;
    assert_eq!(r["data"]["me"]["role"], "PATIENT", "{r}");
}

async fn crash_shapes_are_refused_before_parsing(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let shapes: [fn(usize) -> String; 4] =
        [nested_list, nested_object, nested_default, nested_selection];
    for shape in shapes {
        for n in [40, 1_000, 30_000] {
            let q = shape(n);
            // Anonymous and signed in, over POST.
            for token in [None, Some(t.as_str())] {
                let r = app.gql(token, &q, json!({})).await;
                assert_eq!(code(&r), Some("VALIDATION"), "{n}: {r}");
                assert_eq!(limit(&r), Some("nesting"), "{n}: {r}");
                let message = r["errors"][0]["message"].as_str().unwrap();
                assert!(message.starts_with("the document nests too deeply (line 1, column"));
            }
            // Over GET (URLs stay under the header limit).
            if n <= 1_000 {
                let r = get(&app, &[("query", &q)], None).await;
                assert_eq!(limit(&r), Some("nesting"), "GET {n}: {r}");
            }
        }
        // Just inside the limit: parsed, and refused by the ordinary rules instead.
        let r = app.gql(Some(&t), &shape(20), json!({})).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
        assert_ne!(limit(&r), Some("nesting"), "{r}");
    }
    // Over the websocket.
    let mut ws = ws_signed_in(&app, &t).await;
    for (i, shape) in shapes.iter().enumerate() {
        let r = ws_run(&mut ws, &format!("n{i}"), &shape(30_000), json!({})).await;
        assert_eq!(limit(&r), Some("nesting"), "ws: {r}");
        assert_eq!(code(&r), Some("VALIDATION"), "ws: {r}");
    }
    // JSON variables: deeper than the limit but within what JSON parsing allows, and
    // deeper than that.
    let mut v = json!(1);
    for _ in 0..100 {
        v = json!([v]);
    }
    let q = "query($v: [Int]) { me { role } }";
    let r = app.gql(Some(&t), q, json!({ "v": v })).await;
    assert_eq!(limit(&r), Some("variable_nesting"), "{r}");
    let r = ws_run(&mut ws, "vars", q, json!({ "v": v })).await;
    assert_eq!(limit(&r), Some("variable_nesting"), "ws: {r}");
    let deep = format!(
        "{{\"query\": \"{q}\", \"variables\": {{\"v\": {}1{}}}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let r = app
        .client
        .post(&app.url)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r: Value = r.json().await.unwrap();
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let r = get(
        &app,
        &[("query", q), ("variables", &json!({ "v": v }).to_string())],
        Some(&t),
    )
    .await;
    assert_eq!(limit(&r), Some("variable_nesting"), "GET: {r}");
    // A websocket message over the body limit ends that socket and nothing else.
    let mut big = ws_signed_in(&app, &t).await;
    let huge =
        json!({ "type": "subscribe", "id": "big", "payload": { "query": "x".repeat(300 * 1024) } });
    let _ = big.send(Message::Text(huge.to_string().into())).await;
    while let Some(m) = next_message(&mut big).await {
        assert!(
            !matches!(&m, Message::Text(t) if t.contains("\"big\"")),
            "{m:?}"
        );
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
    // Still alive, on both transports.
    still_answers(&app, &t).await;
    let r = ws_run(&mut ws, "after", "{ me { role } }", json!({})).await;
    assert_eq!(r["data"]["me"]["role"], "PATIENT", "{r}");
}

async fn fragment_fan_out_is_refused_before_expansion(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let before = peak_rss_kib();
    // 2^60, 4^14 and 10^10 fields expanded, in 2.5, 0.7 and 0.9 KB of text.
    let shapes = [
        (60, 2, "spread_depth"),
        (14, 4, "fields"),
        (10, 10, "fields"),
    ];
    for (levels, fan, expected) in shapes {
        let q = fan_out(levels, fan);
        assert!(q.len() < 4_096, "{}", q.len());
        for token in [None, Some(t.as_str())] {
            let r = app.gql(token, &q, json!({})).await;
            assert_eq!(limit(&r), Some(expected), "{levels}x{fan}: {r}");
            assert_eq!(code(&r), Some("VALIDATION"));
        }
        let r = get(&app, &[("query", &q)], None).await;
        assert_eq!(limit(&r), Some(expected), "GET {levels}x{fan}: {r}");
    }
    // Cycles, which async-graphql's own depth check would walk before validation.
    let cycle = "{ ...A } fragment A on Query { ...B ...B ...B } fragment B on Query { ...A ...A }";
    let r = app.gql(None, cycle, json!({})).await;
    assert_eq!(limit(&r), Some("fragment_cycle"), "{r}");
    // An unused fragment costs as much as a used one.
    let unused = fan_out(14, 4).replacen("query { ...F0 }", "query { me { role } }", 1);
    let r = app.gql(Some(&t), &unused, json!({})).await;
    assert_eq!(limit(&r), Some("fields"), "{r}");
    let mut ws = ws_signed_in(&app, &t).await;
    let r = ws_run(&mut ws, "fan", &fan_out(14, 4), json!({})).await;
    assert_eq!(limit(&r), Some("fields"), "ws: {r}");
    let r = ws_run(&mut ws, "cycle", cycle, json!({})).await;
    assert_eq!(limit(&r), Some("fragment_cycle"), "ws: {r}");
    // A small fan-out that fits still runs.
    let r = app.gql(Some(&t), &fan_out(3, 2), json!({})).await;
    assert_eq!(r["data"]["me"]["role"], "PATIENT", "{r}");
    still_answers(&app, &t).await;
    // The peak did not move by more than noise (each unchecked shape took gigabytes).
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "peak RSS grew by {grown} KiB");
}

/// Every error's message, lower-cased.
fn messages(r: &Value) -> String {
    r["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["message"].as_str().unwrap_or_default().to_lowercase())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

async fn request_errors_never_echo_input(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    // Each carries "secret" where async-graphql would quote the request back.
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "syntax error",
            "mutation { createPatient(input: { givenName: \"Secretta\", familyName: \"Secretson\", birthDate: \"1970-01-01\", ssn: \"123-45-6789\" } { patient { id } } }",
            json!({}),
        ),
        (
            "argument has the wrong type",
            "mutation($id: ID!) { recordAllergy(patientId: $id, input: { substance: \"x\", severity: SECRETLEVEL }) { id } }",
            json!({ "id": pid }),
        ),
        ("unknown field", "{ me { secretfield } }", json!({})),
        (
            "unknown argument",
            "{ me(secretarg: 1) { role } }",
            json!({}),
        ),
        (
            "unknown type",
            "query($x: SecretType) { me { role } }",
            json!({}),
        ),
        ("unknown fragment", "{ ...SecretFragment }", json!({})),
        (
            "unknown directive",
            "{ me @secretdirective { role } }",
            json!({}),
        ),
        (
            "variable",
            "query($secretvar: Int) { me { role } }",
            json!({}),
        ),
        (
            "argument has the wrong type",
            "query($n: Int) { patients(first: $n) { totalCount } }",
            json!({ "n": "secret" }),
        ),
    ];
    let mut ws = ws_signed_in(&app, &t).await;
    for (i, (kind, q, vars)) in cases.iter().enumerate() {
        for token in [None, Some(t.as_str())] {
            let r = app.gql(token, q, vars.clone()).await;
            let m = messages(&r);
            assert_eq!(code(&r), Some("VALIDATION"), "{kind}: {r}");
            assert!(m.contains(kind), "{kind}: {m}");
            assert!(m.contains("(line 1, column"), "{kind}: {m}");
            for leak in ["secret", "6789", "did you mean"] {
                assert!(!m.contains(leak), "{kind}: {leak} in {m}");
            }
        }
        let r = ws_run(&mut ws, &format!("e{i}"), q, vars.clone()).await;
        let m = messages(&r);
        assert_eq!(code(&r), Some("VALIDATION"), "ws {kind}: {r}");
        assert!(
            !m.contains("secret") && !m.contains("6789"),
            "ws {kind}: {m}"
        );
    }
    // An unknown operationName is not quoted back either.
    let r = app
        .client
        .post(&app.url)
        .json(&json!({ "query": "query A { me { role } }", "operationName": "SecretOp" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert!(!messages(&r).contains("secret"), "{r}");
    // Over GET too, the syntax error says where and not what.
    let r = get(&app, &[("query", cases[0].1)], Some(&t)).await;
    assert!(messages(&r).starts_with("syntax error (line 1"), "{r}");
    assert!(!messages(&r).contains("secret"), "{r}");
    // Suggestions: signed-in callers outside production get the schema's names; anonymous
    // callers never.
    let r = app.gql(Some(&t), "{ me { rolee } }", json!({})).await;
    assert!(messages(&r).contains("did you mean \"role\""), "{r}");
    let r = app.gql(None, "{ me { rolee } }", json!({})).await;
    assert!(!messages(&r).contains("did you mean"), "{r}");
}

async fn http_edges(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let read = "query($id: ID!) { patient(id: $id) { id } }";
    // Request ids: a long or malformed one is replaced, a well-formed one kept.
    for bad in ["x".repeat(5_000), "has spaces".into(), "semi;colon".into()] {
        let r = app
            .client
            .post(&app.url)
            .bearer_auth(&t)
            .header("x-request-id", &bad)
            .json(&json!({ "query": read, "variables": { "id": pid } }))
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let r = app
        .client
        .post(&app.url)
        .bearer_auth(&t)
        .header("x-request-id", "portal-7f3a.2_b")
        .json(&json!({ "query": read, "variables": { "id": pid } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "portal-7f3a.2_b");
    assert_eq!(
        app.audit_count("request_id = 'portal-7f3a.2_b'").await,
        1,
        "the well-formed id reaches the audit row"
    );
    assert_eq!(app.audit_count("LENGTH(request_id) > 64").await, 0);
    // Only JSON bodies run: no text/plain, form or missing content type, so a cross-site
    // form cannot spend the sign-in budget.
    let logins = app.audit_count("action = 'auth.login'").await;
    let login = json!({ "query": "mutation { login(email: \"patient@caregraph.dev\", password: \"wrong\") { accessToken } }" }).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        None,
    ] {
        let mut req = app.client.post(&app.url).body(login.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{content_type:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(code(&body), Some("VALIDATION"));
    }
    assert_eq!(app.audit_count("action = 'auth.login'").await, logins);
    let r = app
        .client
        .post(&app.url)
        .header("content-type", "application/json; charset=utf-8")
        .bearer_auth(&t)
        .body(json!({ "query": "{ me { role } }" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // GET honours operationName, for queries and for the mutation check.
    let doc = "query A { me { role } } query B { me { email } } mutation C { logout }";
    let r = get(&app, &[("query", doc), ("operationName", "B")], Some(&t)).await;
    assert_eq!(r["data"]["me"]["email"], PATIENT, "{r}");
    assert!(r["data"]["me"]["role"].is_null(), "{r}");
    let r = app
        .client
        .get(&app.url)
        .query(&[("query", doc), ("operationName", "C")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(app.me(&t).await["email"], PATIENT, "the GET mutation ran");
    // An oversized body: 413 in the GraphQL error shape, with the usual headers.
    let r = app
        .client
        .post(&app.url)
        .json(&json!({ "query": "x".repeat(300 * 1024) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(!r.headers().contains_key("strict-transport-security"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), Some("VALIDATION"), "{body}");
    // HSTS once PUBLIC_URL says https.
    let tls = spawn_app_with(b, |v| {
        v.insert(
            "PUBLIC_URL".into(),
            "https://portal-api.example.test".into(),
        );
    })
    .await;
    let r = tls
        .client
        .get(format!("http://{}/healthz", tls.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

async fn slow_headers_are_cut_off(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("HEADER_READ_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: caregraph\r\nX-Slow: ")
        .await
        .unwrap();
    // The server gives up on the headers and closes; without the bound this read would
    // wait forever.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    // Complete requests on other connections are unaffected.
    let r = app
        .client
        .get(format!("http://{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn unauthenticated_probes_are_summarised(b: Backend) {
    let app = spawn_app(b).await;
    app.state.audit.flush_security_events().await.unwrap();
    let before = app.audit_count("action = 'security.unauthenticated'").await;
    // Three anonymous reads of patient data (one with two root fields), one forged token,
    // one expired-looking garbage token over the websocket; sign-in is public and not counted.
    let q = "{ patients { totalCount } }";
    app.gql(None, q, json!({})).await;
    app.gql(None, q, json!({})).await;
    app.gql(
        None,
        "{ a: patients { totalCount } b: patients { totalCount } }",
        json!({}),
    )
    .await;
    let r = app.gql(Some("forged.token.here"), q, json!({})).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"));
    let r = app.login_raw(PATIENT, "wrong password").await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"));
    assert_eq!(
        r["errors"][0]["message"],
        "sign-in failed: check the e-mail address and the password"
    );
    app.state.audit.flush_security_events().await.unwrap();
    assert_eq!(
        app.audit_count("action = 'security.unauthenticated'").await,
        before + 1,
        "one row per address and minute"
    );
    assert_eq!(
        app.audit_count(
            "action = 'security.unauthenticated' AND outcome = 'DENIED' AND ip = '127.0.0.1' AND detail LIKE '%\"count\":4%'"
        )
        .await,
        1
    );
    // Nothing pending: a second flush writes nothing.
    app.state.audit.flush_security_events().await.unwrap();
    assert_eq!(
        app.audit_count("action = 'security.unauthenticated'").await,
        before + 1
    );
}

async fn complexity_weighs_pages_and_the_cache_keeps_it(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("QUERY_COMPLEXITY_LIMIT".into(), "200".into());
    })
    .await;
    let t = app.token(ADMIN).await;
    // One patient costs 6 here (edges, node, four fields): a page of 10 costs 61, of 50 301.
    let q = "query($n: Int!) { patients(first: $n) { edges { node { id givenName familyName birthDate } } } }";
    let ok = |r: &Value| r["data"]["patients"]["edges"].is_array();
    let r = app.gql(Some(&t), q, json!({ "n": 10 })).await;
    assert!(ok(&r), "{r}");
    // The plan validated for 10 is kept; it must not let 50 through.
    for _ in 0..2 {
        let r = app.gql(Some(&t), q, json!({ "n": 50 })).await;
        assert_eq!(limit(&r), Some("complexity"), "{r}");
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
        let r = app.gql(Some(&t), q, json!({ "n": 10 })).await;
        assert!(ok(&r), "{r}");
    }
    // The same with `first` in the text, and on accessHistory.
    let literal = q.replace("query($n: Int!) ", "").replace("$n", "50");
    let r = app.gql(Some(&t), &literal, json!({})).await;
    assert_eq!(limit(&r), Some("complexity"), "{r}");
    let pid = app.patient_id(PATIENT).await;
    let h = "query($id: ID!, $n: Int!) { accessHistory(patientId: $id, first: $n) { edges { cursor node { occurredAt action actorRole } } } }";
    let r = app.gql(Some(&t), h, json!({ "id": pid, "n": 5 })).await;
    assert!(r["data"]["accessHistory"]["edges"].is_array(), "{r}");
    let r = app.gql(Some(&t), h, json!({ "id": pid, "n": 100 })).await;
    assert_eq!(limit(&r), Some("complexity"), "{r}");
}
