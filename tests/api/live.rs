//! Subscriptions over graphql-transport-ws, on both backends (PostgreSQL with Redis
//! pub/sub, SQLite in-process): live messages reach their subscribers and nobody else,
//! MESSAGES consent withdrawn stops delivery at the next event, sockets follow their
//! session (logout, refresh-token reuse, inactivity, token expiry: 4403), replay after a
//! cursor, two instances on one PostgreSQL + Redis, unread counts and appointments live,
//! and every protocol close code.
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::messages::{Conversation, SEND, consent_only, conversation, patient_thread, send};
use crate::on_both_backends;

on_both_backends!(
    messages_arrive_live_and_only_where_they_belong,
    a_send_whose_client_went_away_is_still_delivered,
    withdrawn_consent_stops_delivery_at_the_next_event,
    a_cursor_replays_what_was_missed_then_goes_live,
    unread_counts_and_appointments_are_live,
    sockets_follow_their_session,
    the_protocol_is_kept,
    events_long_after_the_subscription_began_still_resolve,
    a_subscription_that_falls_behind_ends_with_resync,
    a_message_announced_late_is_delivered_once,
);

const RECEIVED: &str = "subscription($t: ID, $after: String) { messageReceived(threadId: $t, after: $after) { id threadId body cursor sender { role } } }";

async fn subscribe(ws: &mut Ws, id: &str, query: &str, variables: Value) {
    ws.send(Message::Text(
        json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
}

/// The next `next` payload for operation `id` within `wait`, or None. An `error` for it
/// panics; other operations' frames are skipped.
async fn next_for(ws: &mut Ws, id: &str, wait: Duration) -> Option<Value> {
    let until = Instant::now() + wait;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        let m = tokio::time::timeout(left, ws.next()).await.ok()??.ok()?;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["id"] != id {
            continue;
        }
        match v["type"].as_str() {
            Some("next") => return Some(v["payload"].clone()),
            Some("error") => panic!("operation {id} failed: {v}"),
            _ => return None,
        }
    }
}

/// The first `next` payload of each of `ids`, however their frames interleave.
async fn next_each(
    ws: &mut Ws,
    ids: &[&str],
    wait: Duration,
) -> std::collections::HashMap<String, Value> {
    let until = Instant::now() + wait;
    let mut got = std::collections::HashMap::new();
    while got.len() < ids.len() {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(left, ws.next()).await else {
            break;
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] == "next"
            && let Some(id) = v["id"].as_str()
            && ids.contains(&id)
        {
            got.entry(id.to_owned()).or_insert(v["payload"].clone());
        }
    }
    got
}

/// A subscription has started once the server has it registered; there is no frame for
/// that, so give it a moment.
/// Drop every Redis pub/sub connection (the instance's among them); it resubscribes after
/// a second, so what is published meanwhile reaches nobody.
async fn drop_pubsub_connections() {
    redis_int(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
}

/// The doctor's free slots over the next two weeks, as `token` sees them.
async fn free_slots(app: &TestApp, token: &str, doctor: &str) -> Value {
    app.gql(
        Some(token),
        "query($d: ID!, $from: DateTime!, $to: DateTime!) { providerAvailability(providerId: $d, from: $from, to: $to) { startsAt } }",
        json!({
            "d": doctor,
            "from": (chrono::Utc::now() + chrono::TimeDelta::days(1)).to_rfc3339(),
            "to": (chrono::Utc::now() + chrono::TimeDelta::days(15)).to_rfc3339(),
        }),
    )
    .await
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn messages_arrive_live_and_only_where_they_belong(b: Backend) {
    let app = spawn_app(b).await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let mut patient = ws_signed_in(&app, &pat).await;
    subscribe(&mut patient, "all", RECEIVED, json!({})).await;
    subscribe(&mut patient, "one", RECEIVED, json!({ "t": thread })).await;
    // Another patient, and a provider off the care team, listening to everything theirs.
    let mut others = Vec::new();
    for who in [PATIENT2, DOCTOR2] {
        let t = app.token(who).await;
        let mut ws = ws_signed_in(&app, &t).await;
        subscribe(&mut ws, "all", RECEIVED, json!({})).await;
        others.push(ws);
    }
    // Subscribing to a thread one may not read is refused at once.
    let mut p2 = ws_signed_in(&app, &app.token(PATIENT2).await).await;
    let r = ws_run(&mut p2, "x", RECEIVED, json!({ "t": thread })).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND", "{r}");
    settle().await;
    let sent = send(&app, &doc, &thread, "Demo live answer").await;
    let got = next_each(&mut patient, &["all", "one"], Duration::from_secs(5)).await;
    for id in ["all", "one"] {
        let got = got
            .get(id)
            .unwrap_or_else(|| panic!("{id}: nothing delivered"));
        let m = &got["data"]["messageReceived"];
        assert_eq!(m["id"], sent["id"], "{got}");
        assert_eq!(m["body"], "Demo live answer");
        assert_eq!(m["sender"]["role"], "PROVIDER");
        assert_eq!(m["cursor"], sent["cursor"]);
    }
    for ws in &mut others {
        assert!(
            next_for(ws, "all", Duration::from_secs(1)).await.is_none(),
            "delivered to someone it does not belong to"
        );
    }
    // Each delivery is a read in the audit log.
    assert!(
        app.audit_count("action = 'message.read' AND detail LIKE '%subscription%'")
            .await
            >= 2
    );
}

async fn withdrawn_consent_stops_delivery_at_the_next_event(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let doctor = app.provider_id(DOCTOR).await;
    let thread = patient_thread(&app, &pat, &pid).await;
    let mut ws = ws_signed_in(&app, &doc).await;
    subscribe(&mut ws, "1", RECEIVED, json!({ "t": thread })).await;
    settle().await;
    send(&app, &pat, &thread, "Demo before").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(5)).await;
    assert_eq!(
        got.unwrap()["data"]["messageReceived"]["body"],
        "Demo before"
    );
    // The patient withdraws MESSAGES (keeping the rest): the very next message is not
    // delivered, and the refusal is audited.
    consent_only(
        &app,
        &pat,
        &pid,
        &doctor,
        &[
            "RECORDS",
            "MEDICATIONS",
            "ALLERGIES",
            "IMMUNIZATIONS",
            "DOCUMENTS",
        ],
    )
    .await;
    let denied = app
        .audit_count("action = 'message.read' AND outcome = 'DENIED'")
        .await;
    send(&app, &pat, &thread, "Demo after").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(2)).await;
    assert!(
        got.is_none(),
        "delivered after consent was withdrawn: {got:?}"
    );
    assert_eq!(
        app.audit_count("action = 'message.read' AND outcome = 'DENIED'")
            .await,
        denied + 1
    );
    // Consent back: the next one arrives again (on the same subscription).
    consent_only(&app, &pat, &pid, &doctor, &["MESSAGES"]).await;
    send(&app, &pat, &thread, "Demo again").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(5)).await;
    assert_eq!(
        got.unwrap()["data"]["messageReceived"]["body"],
        "Demo again"
    );
}

async fn a_cursor_replays_what_was_missed_then_goes_live(b: Backend) {
    let app = spawn_app(b).await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let first = send(&app, &doc, &thread, "Demo one").await;
    // While the patient is away: two more.
    send(&app, &doc, &thread, "Demo two").await;
    send(&app, &doc, &thread, "Demo three").await;
    let mut ws = ws_signed_in(&app, &pat).await;
    subscribe(
        &mut ws,
        "1",
        RECEIVED,
        json!({ "t": thread, "after": first["cursor"] }),
    )
    .await;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let got = next_for(&mut ws, "1", Duration::from_secs(5))
            .await
            .expect("replayed");
        bodies.push(got["data"]["messageReceived"]["body"].clone());
    }
    assert_eq!(bodies, [json!("Demo two"), json!("Demo three")]);
    send(&app, &doc, &thread, "Demo four").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(5)).await;
    assert_eq!(got.unwrap()["data"]["messageReceived"]["body"], "Demo four");
    // Across all threads too (the demo thread's messages are older than the cursor).
    let mut all = ws_signed_in(&app, &pat).await;
    subscribe(&mut all, "2", RECEIVED, json!({ "after": first["cursor"] })).await;
    let got = next_for(&mut all, "2", Duration::from_secs(5)).await;
    assert_eq!(got.unwrap()["data"]["messageReceived"]["body"], "Demo two");
    // A cursor that is not one is VALIDATION, not a silent replay of everything.
    let r = ws_run(&mut all, "3", RECEIVED, json!({ "after": "bogus" })).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "VALIDATION", "{r}");
}

async fn unread_counts_and_appointments_are_live(b: Backend) {
    let app = spawn_app(b).await;
    let Conversation {
        pat,
        doc,
        pid,
        thread,
    } = conversation(&app).await;
    let mut ws = ws_signed_in(&app, &pat).await;
    subscribe(
        &mut ws,
        "u",
        "subscription { unreadCountChanged }",
        json!({}),
    )
    .await;
    let start = next_for(&mut ws, "u", Duration::from_secs(5))
        .await
        .unwrap()["data"]["unreadCountChanged"]
        .as_i64()
        .unwrap();
    let m = send(&app, &doc, &thread, "Demo unread").await;
    let got = next_for(&mut ws, "u", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got["data"]["unreadCountChanged"], start + 1);
    let r = app
        .gql(
            Some(&pat),
            "mutation($t: ID!, $m: ID!) { markThreadRead(threadId: $t, upTo: $m) { id } }",
            json!({ "t": thread, "m": m["id"] }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let got = next_for(&mut ws, "u", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got["data"]["unreadCountChanged"], start);
    // The doctor's schedule follows a booking live; another patient hears nothing of it.
    let mut docws = ws_signed_in(&app, &doc).await;
    let changed = "subscription($p: ID) { appointmentChanged(patientId: $p) { id status patient { givenName } } }";
    subscribe(&mut docws, "a", changed, json!({})).await;
    let mut p2 = ws_signed_in(&app, &app.token(PATIENT2).await).await;
    subscribe(&mut p2, "a", changed, json!({})).await;
    let r = ws_run(&mut p2, "b", changed, json!({ "p": pid })).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND", "{r}");
    settle().await;
    let doctor = app.provider_id(DOCTOR).await;
    let slots = free_slots(&app, &pat, &doctor).await;
    let at = slots["data"]["providerAvailability"][0]["startsAt"].clone();
    let r = app
        .gql(
            Some(&pat),
            "mutation($p: ID!, $d: ID!, $at: DateTime!) { scheduleAppointment(input: { patientId: $p, providerId: $d, startsAt: $at, durationMinutes: 30, reason: \"Demo live booking\" }) { id } }",
            json!({ "p": pid, "d": doctor, "at": at }),
        )
        .await;
    let booked = r["data"]["scheduleAppointment"]["id"].clone();
    assert!(booked.is_string(), "{r}");
    let got = next_for(&mut docws, "a", Duration::from_secs(5))
        .await
        .expect("the doctor's schedule did not update");
    assert_eq!(got["data"]["appointmentChanged"]["id"], booked);
    assert_eq!(got["data"]["appointmentChanged"]["status"], "SCHEDULED");
    assert_eq!(
        got["data"]["appointmentChanged"]["patient"]["givenName"],
        "Testy"
    );
    assert!(
        next_for(&mut p2, "a", Duration::from_secs(1))
            .await
            .is_none()
    );
}

/// The close code the server ends the socket with within `wait` (other frames skipped).
async fn closed_within(ws: &mut Ws, wait: Duration) -> Option<u16> {
    let until = Instant::now() + wait;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await.ok()?? {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

async fn sockets_follow_their_session(b: Backend) {
    // Refresh-token reuse revokes the session: its socket is closed.
    let app = spawn_app(b).await;
    let login = app.login_raw(PATIENT, PASSWORD).await;
    let access = login["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = login["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = ws_signed_in(&app, &access).await;
    let rotate = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }";
    let r = app.gql(None, rotate, json!({ "t": refresh })).await;
    assert!(
        r["data"]["refreshSession"]["accessToken"].is_string(),
        "{r}"
    );
    // A rotation alone leaves the socket open...
    assert_eq!(
        closed_within(&mut ws, Duration::from_millis(500)).await,
        None
    );
    // ...the reuse of the old token ends the session, and the socket with it.
    let r = app.gql(None, rotate, json!({ "t": refresh })).await;
    assert!(r["errors"].is_array(), "{r}");
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(3)).await,
        Some(4403)
    );

    // Inactivity: an open socket (pinging) is not activity, so an idle tab times out; a
    // token past its exp closes the socket too.
    for (idle, ttl) in [("2", "60"), ("60", "2")] {
        let app = spawn_app_with(b, |v| {
            v.insert("SESSION_IDLE_TIMEOUT_SECS".into(), idle.into());
            v.insert("ACCESS_TOKEN_TTL_SECS".into(), ttl.into());
            v.insert("SESSION_CACHE_MS".into(), "0".into());
        })
        .await;
        let t = app.token(PATIENT).await;
        let mut ws = ws_signed_in(&app, &t).await;
        let opened = Instant::now();
        let mut code = None;
        while opened.elapsed() < Duration::from_secs(6) {
            ws.send(Message::Text(json!({ "type": "ping" }).to_string().into()))
                .await
                .ok();
            if let Some(c) = closed_within(&mut ws, Duration::from_millis(500)).await {
                code = Some(c);
                break;
            }
        }
        assert_eq!(code, Some(4403), "idle {idle} s, token {ttl} s");
        let took = opened.elapsed();
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
    }
}

async fn the_protocol_is_kept(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let init =
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {t}") } })
            .to_string();
    // A subscribe before connection_init: 4401.
    let mut ws = ws_connect(&app, "graphql-transport-ws").await;
    subscribe(&mut ws, "1", "{ me { role } }", json!({})).await;
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(3)).await,
        Some(4401)
    );
    // Not a message of the protocol: 4400.
    let mut ws = ws_connect(&app, "graphql-transport-ws").await;
    ws.send(Message::Text("{ not json".into())).await.unwrap();
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(3)).await,
        Some(4400)
    );
    let mut ws = ws_signed_in(&app, &t).await;
    ws.send(Message::Text(
        json!({ "type": "nonsense" }).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(3)).await,
        Some(4400)
    );
    // A second connection_init: 4429.
    let mut ws = ws_signed_in(&app, &t).await;
    ws.send(Message::Text(init.clone().into())).await.unwrap();
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(3)).await,
        Some(4429)
    );
    // A ping is answered with a pong; an operation id already running: 4409.
    let mut ws = ws_signed_in(&app, &t).await;
    ws.send(Message::Text(json!({ "type": "ping" }).to_string().into()))
        .await
        .unwrap();
    match next_message(&mut ws).await {
        Some(Message::Text(m)) => assert!(m.contains("pong"), "{m}"),
        other => panic!("expected a pong, got {other:?}"),
    }
    subscribe(
        &mut ws,
        "dup",
        "subscription { unreadCountChanged }",
        json!({}),
    )
    .await;
    assert!(
        next_for(&mut ws, "dup", Duration::from_secs(5))
            .await
            .is_some()
    );
    subscribe(
        &mut ws,
        "dup",
        "subscription { unreadCountChanged }",
        json!({}),
    )
    .await;
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(3)).await,
        Some(4409)
    );
    // `complete` stops an operation; its id may then be used again.
    let mut ws = ws_signed_in(&app, &t).await;
    subscribe(
        &mut ws,
        "c",
        "subscription { unreadCountChanged }",
        json!({}),
    )
    .await;
    assert!(
        next_for(&mut ws, "c", Duration::from_secs(5))
            .await
            .is_some()
    );
    ws.send(Message::Text(
        json!({ "type": "complete", "id": "c" }).to_string().into(),
    ))
    .await
    .unwrap();
    settle().await;
    subscribe(
        &mut ws,
        "c",
        "subscription { unreadCountChanged }",
        json!({}),
    )
    .await;
    assert!(
        next_for(&mut ws, "c", Duration::from_secs(5))
            .await
            .is_some()
    );
    // No connection_init within 10 s: 4408.
    let mut ws = ws_connect(&app, "graphql-transport-ws").await;
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(12)).await,
        Some(4408)
    );
}

/// Two instances on one PostgreSQL and Redis: a message sent through A reaches its
/// subscriber on B, and nobody else there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_on_one_instance_reaches_its_subscriber_on_another() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_instance(&a).await;
    let pat = a.token(PATIENT).await;
    let doc = a.token(DOCTOR).await;
    let pid = a.patient_id(PATIENT).await;
    let thread = patient_thread(&a, &pat, &pid).await;
    let on_b = |token: String| {
        let addr = b
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/graphql")
            .to_owned();
        async move { ws_signed_in_at(&addr, &token).await }
    };
    let mut patient = on_b(pat.clone()).await;
    subscribe(&mut patient, "1", RECEIVED, json!({})).await;
    let mut other = on_b(a.token(PATIENT2).await).await;
    subscribe(&mut other, "1", RECEIVED, json!({})).await;
    settle().await;
    let sent = send(&a, &doc, &thread, "Demo across instances").await;
    let got = next_for(&mut patient, "1", Duration::from_secs(5))
        .await
        .expect("not delivered on the other instance");
    assert_eq!(got["data"]["messageReceived"]["id"], sent["id"]);
    assert!(
        next_for(&mut other, "1", Duration::from_secs(1))
            .await
            .is_none()
    );
    // Logout on A closes the socket on B.
    let r = a.gql(Some(&pat), "mutation { logout }", json!({})).await;
    assert_eq!(r["data"]["logout"], true);
    assert_eq!(
        closed_within(&mut patient, Duration::from_secs(3)).await,
        Some(4403)
    );
}

/// Redis pub/sub drops what is published while an instance is not subscribed: when its
/// subscription comes back, its live subscriptions replay what was committed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_published_while_redis_was_away_is_replayed() {
    let app = spawn_app(Backend::Postgres).await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let mut ws = ws_signed_in(&app, &pat).await;
    subscribe(&mut ws, "1", RECEIVED, json!({ "t": thread })).await;
    settle().await;
    send(&app, &doc, &thread, "Demo before the loss").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(5)).await;
    assert_eq!(
        got.unwrap()["data"]["messageReceived"]["body"],
        "Demo before the loss"
    );
    // Drop every pub/sub connection (ours among them); the instance resubscribes after a
    // second, so what is sent right now is published to nobody.
    drop_pubsub_connections().await;
    let missed = send(&app, &doc, &thread, "Demo while away").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(6))
        .await
        .expect("what was sent while Redis was away was lost");
    assert_eq!(got["data"]["messageReceived"]["id"], missed["id"]);
    // And live again afterwards, without repeats.
    send(&app, &doc, &thread, "Demo after").await;
    let got = next_for(&mut ws, "1", Duration::from_secs(5)).await;
    assert_eq!(
        got.unwrap()["data"]["messageReceived"]["body"],
        "Demo after"
    );
}

/// Appointment changes announced while the instance was off Redis are replayed as well:
/// the doctor's live schedule gets the booking made meanwhile, once, and then goes on live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appointment_changes_while_redis_was_away_are_replayed() {
    let app = spawn_app(Backend::Postgres).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let doctor = app.provider_id(DOCTOR).await;
    let changed = "subscription { appointmentChanged { id status version } }";
    let mut docws = ws_signed_in(&app, &doc).await;
    subscribe(&mut docws, "a", changed, json!({})).await;
    settle().await;
    let slots = free_slots(&app, &pat, &doctor).await;
    let book = |at: Value| {
        app.gql(
            Some(&pat),
            "mutation($p: ID!, $d: ID!, $at: DateTime!) { scheduleAppointment(input: { patientId: $p, providerId: $d, startsAt: $at, durationMinutes: 30, reason: \"Demo replayed booking\" }) { id } }",
            json!({ "p": pid, "d": doctor, "at": at }),
        )
    };
    // One booking live, before the loss.
    let r = book(slots["data"]["providerAvailability"][0]["startsAt"].clone()).await;
    let before = r["data"]["scheduleAppointment"]["id"].clone();
    assert!(before.is_string(), "{r}");
    let got = next_for(&mut docws, "a", Duration::from_secs(5))
        .await
        .expect("delivered live");
    assert_eq!(got["data"]["appointmentChanged"]["id"], before);
    // Drop every pub/sub connection; the instance resubscribes after a second, so this
    // booking is announced to nobody.
    drop_pubsub_connections().await;
    let r = book(slots["data"]["providerAvailability"][4]["startsAt"].clone()).await;
    let missed = r["data"]["scheduleAppointment"]["id"].clone();
    assert!(missed.is_string(), "{r}");
    let got = next_for(&mut docws, "a", Duration::from_secs(6))
        .await
        .expect("the booking made while Redis was away was lost");
    assert_eq!(got["data"]["appointmentChanged"]["id"], missed, "{got}");
    // The replay's margin reaches back past the first booking: it is not shown again.
    // Live afterwards: the cancellation arrives, and nothing else before it.
    let r = app
        .gql(
            Some(&pat),
            "mutation($id: ID!) { cancelAppointment(id: $id, reason: \"Demo, cannot come\") { id status } }",
            json!({ "id": missed }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let got = next_for(&mut docws, "a", Duration::from_secs(5))
        .await
        .expect("live again");
    assert_eq!(got["data"]["appointmentChanged"]["id"], missed, "{got}");
    assert_eq!(got["data"]["appointmentChanged"]["status"], "CANCELLED");
    assert!(
        next_for(&mut docws, "a", Duration::from_millis(800))
            .await
            .is_none(),
        "a change was shown twice"
    );
}

/// The time limit bounds each event, not the subscription's life: an event that arrives
/// after the limit has passed since the subscription began resolves in full (it was refused
/// as "took too long" once, so every socket went deaf ten seconds after it subscribed).
async fn events_long_after_the_subscription_began_still_resolve(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("REQUEST_TIME_LIMIT_MS".into(), "700".into());
    })
    .await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let mut patient = ws_signed_in(&app, &pat).await;
    subscribe(&mut patient, "one", RECEIVED, json!({ "t": thread })).await;
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let sent = send(
            &app,
            &doc,
            &thread,
            &format!("Demo, a while later ({round})"),
        )
        .await;
        let got = next_for(&mut patient, "one", Duration::from_secs(5))
            .await
            .expect("delivered");
        assert!(got["errors"].is_null(), "{b:?}: {got}");
        assert_eq!(got["data"]["messageReceived"]["id"], sent["id"], "{got}");
    }
}

/// A subscription whose queue overflows (here `LIVE_QUEUE=2` and a burst of 200 events)
/// is ended on the socket with RESYNC, and one subscribing again `after` its cursor gets
/// what it missed.
async fn a_subscription_that_falls_behind_ends_with_resync(b: Backend) {
    use caregraph::stores::bus::Event;
    let app = spawn_app_with(b, |v| {
        v.insert("LIVE_QUEUE".into(), "2".into());
    })
    .await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let mut patient = ws_signed_in(&app, &pat).await;
    subscribe(&mut patient, "one", RECEIVED, json!({ "t": thread })).await;
    settle().await;
    let first = send(&app, &doc, &thread, "Demo, before the burst").await;
    let got = next_for(&mut patient, "one", Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(got["data"]["messageReceived"]["id"], first["id"], "{got}");
    // Ids only, as a burst of sends would publish them, faster than any feed delivers.
    let thread_id: uuid::Uuid = thread.parse().unwrap();
    for seq in 0..200 {
        app.state
            .stores
            .bus
            .publish(Event::Message {
                id: uuid::Uuid::new_v4(),
                thread: thread_id,
                seq: 1_000_000 + seq,
                to: Vec::new(),
            })
            .await;
    }
    let until = Instant::now() + Duration::from_secs(10);
    let code = loop {
        let left = until
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("{b:?}: no RESYNC within 10 s"));
        let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(left, patient.next()).await
        else {
            panic!("{b:?}: the socket ended without RESYNC");
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["id"] != "one" {
            continue;
        }
        let errors = if v["type"] == "error" {
            v["payload"].clone()
        } else {
            v["payload"]["errors"].clone()
        };
        if let Some(code) = errors[0]["extensions"]["code"].as_str() {
            break code.to_owned();
        }
    };
    assert_eq!(code, "RESYNC", "{b:?}");
    // Subscribing again after the last cursor seen: what was sent since arrives.
    let missed = send(&app, &doc, &thread, "Demo, after the burst").await;
    subscribe(
        &mut patient,
        "again",
        RECEIVED,
        json!({ "t": thread, "after": first["cursor"] }),
    )
    .await;
    let got = next_for(&mut patient, "again", Duration::from_secs(5))
        .await
        .expect("replayed");
    assert_eq!(
        got["data"]["messageReceived"]["id"], missed["id"],
        "{b:?}: {got}"
    );
}

/// A send, once queued, is written and announced even if its client stops waiting (a
/// phone losing its network): the subscriber gets it live, not only on its next replay.
async fn a_send_whose_client_went_away_is_still_delivered(b: Backend) {
    let app = spawn_app(b).await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let mut patient = ws_signed_in(&app, &pat).await;
    subscribe(&mut patient, "one", RECEIVED, json!({ "t": thread })).await;
    settle().await;
    // The audit head is busy, so the send waits to commit; its client gives up meanwhile.
    let held = caregraph::audit::WriteTxn::begin(&app.state.db)
        .await
        .unwrap();
    let gone = tokio::time::timeout(
        Duration::from_millis(300),
        app.gql(
            Some(&doc),
            SEND,
            json!({ "t": thread, "b": "Demo: sent as the client went away" }),
        ),
    )
    .await;
    assert!(gone.is_err(), "the send answered while the head was held");
    held.commit().await.unwrap();
    let m = next_for(&mut patient, "one", Duration::from_secs(5))
        .await
        .expect("the message was not delivered");
    assert_eq!(
        m["data"]["messageReceived"]["body"],
        "Demo: sent as the client went away"
    );
}

/// Announcements may arrive out of commit order: instances announce their own sends, each
/// when it has committed. A message announced after a later one is still delivered, and a
/// message announced twice is delivered once. The other instance here has a bus of its own
/// (in-process on SQLite, another Redis prefix on PostgreSQL), so what it sends is announced
/// to this one only by hand, late.
async fn a_message_announced_late_is_delivered_once(b: Backend) {
    use caregraph::stores::bus::Event;
    let app = spawn_app(b).await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let apart = spawn_instance_with(&app, |v| {
        if let Some(p) = v.get("REDIS_KEY_PREFIX").cloned() {
            v.insert("REDIS_KEY_PREFIX".into(), format!("{p}apart:"));
        }
    })
    .await;
    let client = reqwest::Client::new();
    let login = gql_at(
        &client,
        &apart.url,
        None,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
        json!({ "e": DOCTOR, "p": PASSWORD }),
    )
    .await;
    let doc_apart = login["data"]["login"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{b:?}: {login}"))
        .to_owned();
    let mut patient = ws_signed_in(&app, &pat).await;
    subscribe(&mut patient, "one", RECEIVED, json!({ "t": thread })).await;
    settle().await;
    let r = gql_at(
        &client,
        &apart.url,
        Some(&doc_apart),
        SEND,
        json!({ "t": thread, "b": "Demo: sent first, announced last" }),
    )
    .await;
    assert!(r["errors"].is_null(), "{b:?}: {r}");
    let early = r["data"]["sendMessage"].clone();
    assert!(
        next_for(&mut patient, "one", Duration::from_millis(500))
            .await
            .is_none(),
        "{b:?}: the other instance's announcement reached this one"
    );
    let later = send(&app, &doc, &thread, "Demo: sent second").await;
    let got = next_for(&mut patient, "one", Duration::from_secs(5))
        .await
        .expect("the later message");
    assert_eq!(
        got["data"]["messageReceived"]["id"], later["id"],
        "{b:?}: {got}"
    );
    let event = |m: &Value| Event::Message {
        id: m["id"].as_str().unwrap().parse().unwrap(),
        thread: thread.parse().unwrap(),
        seq: caregraph::messages::graphql::cursor_seq(m["cursor"].as_str().unwrap()).unwrap(),
        to: Vec::new(),
    };
    // The first message's announcement arrives now, after the later one's.
    app.state.stores.bus.publish(event(&early)).await;
    let got = next_for(&mut patient, "one", Duration::from_secs(5))
        .await
        .expect("the message announced late");
    assert_eq!(
        got["data"]["messageReceived"]["id"], early["id"],
        "{b:?}: {got}"
    );
    assert_eq!(
        got["data"]["messageReceived"]["body"], "Demo: sent first, announced last",
        "{b:?}: {got}"
    );
    // Both announced again: neither is delivered twice.
    app.state.stores.bus.publish(event(&early)).await;
    app.state.stores.bus.publish(event(&later)).await;
    assert!(
        next_for(&mut patient, "one", Duration::from_millis(700))
            .await
            .is_none(),
        "{b:?}: a message was delivered twice"
    );
}
