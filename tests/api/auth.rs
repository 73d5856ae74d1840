//! Sign-in, sessions, refresh rotation, MFA and throttling.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    login_and_me,
    wrong_password_and_unknown_email_answer_alike,
    logout_ends_the_session_at_once,
    refresh_rotates_and_reuse_revokes_the_family,
    access_token_expiry,
    inactivity_ends_the_session,
    failed_logins_are_throttled,
    parallel_sign_ins_never_inflate_the_address_count,
    alias_batched_logins_count_one_by_one,
    mfa_enrolment_and_sign_in,
    mfa_required_roles_restrict_the_session,
);

async fn login_and_me(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.login_raw(DOCTOR, PASSWORD).await;
    let login = &r["data"]["login"];
    assert_eq!(login["mfaRequired"], false);
    assert!(login["refreshToken"].as_str().unwrap().len() >= 43);
    let token = login["accessToken"].as_str().unwrap();
    // Three dot-separated parts, EdDSA with a kid.
    let header: serde_json::Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    let me = app.me(token).await;
    assert_eq!(me["email"], DOCTOR);
    assert_eq!(me["role"], "PROVIDER");
    assert!(me["providerId"].is_string());
    assert!(me["patientId"].is_null());
    assert_eq!(
        app.audit_count("action = 'auth.login' AND outcome = 'SUCCESS'")
            .await,
        1
    );
}

async fn wrong_password_and_unknown_email_answer_alike(b: Backend) {
    let app = spawn_app(b).await;
    let wrong = app.login_raw(DOCTOR, "not-the-password").await;
    let unknown = app
        .login_raw("nobody@caregraph.dev", "not-the-password")
        .await;
    assert_eq!(code(&wrong), Some("UNAUTHENTICATED"));
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    assert_eq!(code(&unknown), Some("UNAUTHENTICATED"));
    // The message names neither the address nor which part was wrong.
    let msg = wrong["errors"][0]["message"].as_str().unwrap();
    assert!(!msg.contains("doctor") && !msg.contains("password is"));
    assert_eq!(
        app.audit_count("action = 'auth.login' AND outcome = 'FAILURE'")
            .await,
        2
    );
}

async fn logout_ends_the_session_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    assert_eq!(app.me(&t).await["email"], PATIENT);
    let r = app.gql(Some(&t), "mutation { logout }", json!({})).await;
    assert_eq!(r["data"]["logout"], true);
    let r = app.gql(Some(&t), "{ me { id } }", json!({})).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"));
}

async fn refresh_rotates_and_reuse_revokes_the_family(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.login_raw(PATIENT, PASSWORD).await;
    let rt1 = r["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let q =
        "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";
    let r2 = app.gql(None, q, json!({ "t": rt1 })).await;
    let rt2 = r2["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .expect("rotated")
        .to_owned();
    let at2 = r2["data"]["refreshSession"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(app.me(&at2).await["email"], PATIENT);
    // The rotated-out token is refused, and its reuse revokes the session and family.
    let reuse = app.gql(None, q, json!({ "t": rt1 })).await;
    assert_eq!(code(&reuse), Some("UNAUTHENTICATED"));
    let r = app.gql(Some(&at2), "{ me { id } }", json!({})).await;
    assert_eq!(
        code(&r),
        Some("UNAUTHENTICATED"),
        "access token of a revoked session still works"
    );
    let r = app.gql(None, q, json!({ "t": rt2 })).await;
    assert_eq!(
        code(&r),
        Some("UNAUTHENTICATED"),
        "newest refresh token of a revoked family still works"
    );
    assert_eq!(
        app.audit_count("action = 'auth.refresh' AND outcome = 'DENIED'")
            .await,
        1
    );
}

async fn access_token_expiry(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("ACCESS_TOKEN_TTL_SECS".into(), "1".into());
    })
    .await;
    let t = app.token(PATIENT).await;
    assert_eq!(app.me(&t).await["email"], PATIENT);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = app.gql(Some(&t), "{ me { id } }", json!({})).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"));
}

async fn inactivity_ends_the_session(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("SESSION_IDLE_TIMEOUT_SECS".into(), "3".into());
    })
    .await;
    let t = app.token(PATIENT).await;
    // Activity slides the deadline: three requests 1.5 s apart keep it alive past 3 s
    // (half the timeout to spare, for a loaded machine).
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(app.me(&t).await["email"], PATIENT);
    }
    // Past the timeout and the session cache's 0.75 s.
    tokio::time::sleep(std::time::Duration::from_millis(4200)).await;
    let r = app.gql(Some(&t), "{ me { id } }", json!({})).await;
    assert_eq!(
        code(&r),
        Some("UNAUTHENTICATED"),
        "idle session still alive: {r}"
    );
}

async fn failed_logins_are_throttled(b: Backend) {
    let app = spawn_app(b).await;
    for _ in 0..5 {
        let r = app.login_raw(PATIENT2, "wrong-password").await;
        assert_eq!(code(&r), Some("UNAUTHENTICATED"));
    }
    // Even the right password is refused while the account is throttled.
    let r = app.login_raw(PATIENT2, PASSWORD).await;
    assert_eq!(code(&r), Some("RATE_LIMITED"), "{r}");
    assert!(r["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() > 0);
    // Another account from the same address is not affected by the per-account limit.
    assert!(app.login_raw(PATIENT, PASSWORD).await["data"]["login"]["accessToken"].is_string());
}

async fn alias_batched_logins_count_one_by_one(b: Backend) {
    let app = spawn_app(b).await;
    let attempts: String = (0..8)
        .map(|i| {
            format!(
                "a{i}: login(email: \"{PATIENT2}\", password: \"guess-{i}\") {{ accessToken }} "
            )
        })
        .collect();
    let r = app
        .gql(None, &format!("mutation {{ {attempts} }}"), json!({}))
        .await;
    let c = codes(&r);
    assert_eq!(
        c.iter().filter(|c| *c == "UNAUTHENTICATED").count(),
        5,
        "{r}"
    );
    assert_eq!(c.iter().filter(|c| *c == "RATE_LIMITED").count(), 3, "{r}");
}

fn totp_now(secret_b32: &str) -> String {
    totp_at(secret_b32, 0)
}

/// The code for the time step `steps` away from now (the server accepts one step of skew).
fn totp_at(secret_b32: &str, steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .unwrap();
    let totp =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "t".into()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp.generate((now + steps * 30) as u64)
}

async fn mfa_enrolment_and_sign_in(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(DOCTOR).await;
    let r = app
        .gql(
            Some(&t),
            "mutation { enrollMfa { secret otpauthUrl } }",
            json!({}),
        )
        .await;
    let secret = r["data"]["enrollMfa"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(
        r["data"]["enrollMfa"]["otpauthUrl"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let bad = app
        .gql(
            Some(&t),
            "mutation { confirmMfa(code: \"000000\") }",
            json!({}),
        )
        .await;
    assert!(code(&bad).is_some());
    let r = app
        .gql(
            Some(&t),
            "mutation($c: String!) { confirmMfa(code: $c) }",
            json!({ "c": totp_now(&secret) }),
        )
        .await;
    assert_eq!(r["data"]["confirmMfa"], true, "{r}");
    assert_eq!(app.me(&t).await["mfaEnrolled"], true);

    // Now a password alone yields only an MFA challenge.
    let r = app.login_raw(DOCTOR, PASSWORD).await;
    let login = &r["data"]["login"];
    assert_eq!(login["mfaRequired"], true);
    assert!(login["accessToken"].is_null() && login["refreshToken"].is_null());
    let mfa_token = login["mfaToken"].as_str().unwrap().to_owned();
    let q =
        "mutation($m: String!, $c: String!) { verifyMfa(mfaToken: $m, code: $c) { accessToken } }";
    let wrong = app
        .gql(None, q, json!({ "m": mfa_token, "c": "123456" }))
        .await;
    assert_eq!(code(&wrong), Some("UNAUTHENTICATED"));
    // The challenge was one-time: a fresh login is needed after a wrong code.
    let again = app
        .gql(None, q, json!({ "m": mfa_token, "c": totp_now(&secret) }))
        .await;
    assert_eq!(code(&again), Some("UNAUTHENTICATED"));
    let m2 = app.login_raw(DOCTOR, PASSWORD).await["data"]["login"]["mfaToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // The code used for confirmMfa cannot be replayed: its time step is spent.
    let replay = app
        .gql(None, q, json!({ "m": m2, "c": totp_now(&secret) }))
        .await;
    assert_eq!(code(&replay), Some("UNAUTHENTICATED"), "{replay}");
    let m3 = app.login_raw(DOCTOR, PASSWORD).await["data"]["login"]["mfaToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = app
        .gql(None, q, json!({ "m": m3, "c": totp_at(&secret, 1) }))
        .await;
    let at = ok["data"]["verifyMfa"]["accessToken"]
        .as_str()
        .expect("signed in with TOTP");
    assert_eq!(app.me(at).await["email"], DOCTOR);
    // Guessing codes is throttled per user, whatever the number of fresh challenges.
    let mut last = json!(null);
    for _ in 0..6 {
        let m = app.login_raw(DOCTOR, PASSWORD).await["data"]["login"]["mfaToken"].clone();
        if m.is_null() {
            break;
        }
        last = app.gql(None, q, json!({ "m": m, "c": "000000" })).await;
    }
    let limited = code(&last) == Some("RATE_LIMITED")
        || code(&app.login_raw(DOCTOR, PASSWORD).await) == Some("RATE_LIMITED");
    assert!(limited, "TOTP guessing was not throttled: {last}");
}

async fn mfa_required_roles_restrict_the_session(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("MFA_REQUIRED_ROLES".into(), "PROVIDER,ADMIN".into());
    })
    .await;
    let t = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(
            Some(&t),
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"));
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("enrollMfa")
    );
    // me and enrolment still work.
    assert_eq!(app.me(&t).await["mfaEnrolled"], false);
    let r = app
        .gql(Some(&t), "mutation { enrollMfa { secret } }", json!({}))
        .await;
    let secret = r["data"]["enrollMfa"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .gql(
            Some(&t),
            "mutation($c: String!) { confirmMfa(code: $c) }",
            json!({ "c": totp_now(&secret) }),
        )
        .await;
    assert_eq!(r["data"]["confirmMfa"], true);
    // After enrolment the same session is no longer restricted.
    let r = app
        .gql(
            Some(&t),
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    // Patients are not in MFA_REQUIRED_ROLES.
    let pt = app.token(PATIENT).await;
    let r = app
        .gql(
            Some(&pt),
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy");
}

/// Sign-ins from one address, many at once and on every instance, each counted as it starts
/// and taken back when it succeeds: the count never exceeds what is in flight. (A decrement
/// and a delete sent as two Redis commands once left negative counts behind, read back as
/// about 2^64: every sign-in from that address refused for the window.)
async fn parallel_sign_ins_never_inflate_the_address_count(b: Backend) {
    let app = spawn_app(b).await;
    let limits = app.state.stores.limits.clone();
    let window = std::time::Duration::from_secs(60);
    // Few at once, so the count often falls to zero, where an undo's delete can meet
    // another sign-in's start.
    const AT_ONCE: u64 = 6;
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let limits = limits.clone();
            tokio::spawn(async move {
                let mut worst = 0;
                for j in 0..400u64 {
                    let (n, _) = limits.hit("login:ip:203.0.113.9", window).await.unwrap();
                    worst = worst.max(n);
                    limits.undo("login:ip:203.0.113.9").await.unwrap();
                    if (i + j) % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                worst
            })
        })
        .collect();
    let mut worst = 0;
    for t in tasks {
        worst = worst.max(t.await.unwrap());
    }
    assert!(
        worst <= AT_ONCE,
        "{b:?}: a count of {worst} with at most {AT_ONCE} in flight"
    );
    // All taken back: the next one is the first.
    let (n, _) = limits.hit("login:ip:203.0.113.9", window).await.unwrap();
    assert_eq!(n, 1, "{b:?}");
}
