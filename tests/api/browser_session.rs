//! The browser's session: the refresh token in an HttpOnly cookie (`login(refreshTokenIn:
//! COOKIE)`, `POST /auth/refresh`, `POST /auth/logout`), refused to other sites; and the
//! built portal at `/portal/` under its CSP.
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    cookie_sign_in_refresh_rotation_and_reuse,
    cookie_refresh_answers_only_this_site,
    cookie_logout_ends_the_session,
);

const COOKIE_LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p, refreshTokenIn: COOKIE) { accessToken refreshToken expiresAt idleTimeoutSeconds } }";

/// The `__Host-cg_refresh=…` pair a response sets, and the whole `Set-Cookie` line.
fn set_cookie(headers: &HeaderMap) -> (String, String) {
    let line = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-cg_refresh="))
        .expect("a __Host-cg_refresh cookie");
    let pair = line.split(';').next().unwrap().to_owned();
    (pair, line)
}

async fn cookie_sign_in(app: &TestApp, email: &str) -> (Value, String) {
    let r = app
        .client
        .post(&app.url)
        .json(&json!({ "query": COOKIE_LOGIN, "variables": { "e": email, "p": PASSWORD } }))
        .send()
        .await
        .unwrap();
    let (pair, line) = set_cookie(r.headers());
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/;"] {
        assert!(line.contains(attr), "cookie without {attr}: {line}");
    }
    let body: Value = r.json().await.unwrap();
    (body["data"]["login"].clone(), pair)
}

fn auth_url(app: &TestApp, what: &str) -> String {
    format!("http://{}/auth/{what}", app.addr)
}

async fn post_auth(
    app: &TestApp,
    what: &str,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> Response {
    let mut req = app.client.post(auth_url(app, what));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

const OWN: &[(&str, &str)] = &[
    ("x-caregraph-refresh", "1"),
    ("sec-fetch-site", "same-origin"),
];

async fn error_code(r: Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn cookie_sign_in_refresh_rotation_and_reuse(b: Backend) {
    let app = spawn_app(b).await;
    let (login, c1) = cookie_sign_in(&app, PATIENT).await;
    assert!(
        login["refreshToken"].is_null(),
        "the token is in the body too: {login}"
    );
    assert_eq!(login["idleTimeoutSeconds"], 900);
    assert_eq!(
        app.me(login["accessToken"].as_str().unwrap()).await["email"],
        PATIENT
    );

    let r = post_auth(&app, "refresh", Some(&c1), OWN).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (c2, _) = set_cookie(r.headers());
    assert_ne!(c1, c2, "the cookie was not rotated");
    let body: Value = r.json().await.unwrap();
    let at2 = body["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(body["idleTimeoutSeconds"], 900);
    assert!(
        body["expiresAt"].as_str().is_some_and(|t| t.contains('T')),
        "{body}"
    );
    assert!(body.get("refreshToken").is_none());
    assert_eq!(app.me(&at2).await["email"], PATIENT);

    // The rotated-out cookie again: refused, the cookie cleared, the whole session gone.
    let r = post_auth(&app, "refresh", Some(&c1), OWN).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (cleared, line) = set_cookie(r.headers());
    assert_eq!(cleared, "__Host-cg_refresh=");
    assert!(line.contains("Max-Age=0"), "{line}");
    assert_eq!(error_code(r).await, "UNAUTHENTICATED");
    assert_eq!(
        code(&app.gql(Some(&at2), "{ me { id } }", json!({})).await),
        Some("UNAUTHENTICATED")
    );
    let r = post_auth(&app, "refresh", Some(&c2), OWN).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the newest cookie of a revoked session still works"
    );
    assert_eq!(
        app.audit_count("action = 'auth.refresh' AND outcome = 'DENIED'")
            .await,
        1
    );

    // No cookie at all.
    let r = post_auth(&app, "refresh", None, OWN).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The body delivery stays as it was, and says the idle timeout too.
    let r = app.login_raw(PATIENT, PASSWORD).await;
    assert!(r["data"]["login"]["refreshToken"].as_str().is_some());

    // A websocket message cannot set a cookie: refused before anything is spent.
    let t = app.token(DOCTOR).await;
    let mut ws = ws_signed_in(&app, &t).await;
    let r = ws_run(
        &mut ws,
        "1",
        COOKIE_LOGIN,
        json!({ "e": PATIENT, "p": PASSWORD }),
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
}

async fn cookie_refresh_answers_only_this_site(b: Backend) {
    let app = spawn_app(b).await;
    let (_, c) = cookie_sign_in(&app, PATIENT).await;
    let host = app.addr.to_string();
    let own_origin = format!("http://{host}");
    let refused: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "no header (an HTML form)",
            vec![("sec-fetch-site", "same-origin")],
        ),
        (
            "another site",
            vec![
                ("x-caregraph-refresh", "1"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
        (
            "a sibling subdomain",
            vec![
                ("x-caregraph-refresh", "1"),
                ("sec-fetch-site", "same-site"),
            ],
        ),
        (
            "another origin",
            vec![
                ("x-caregraph-refresh", "1"),
                ("origin", "http://evil.example"),
            ],
        ),
    ];
    for (what, headers) in refused {
        let r = post_auth(&app, "refresh", Some(&c), &headers).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        assert_eq!(error_code(r).await, "FORBIDDEN", "{what}");
    }
    let r = post_auth(
        &app,
        "logout",
        Some(&c),
        &[
            ("sec-fetch-site", "cross-site"),
            ("x-caregraph-refresh", "1"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // None of that spent the cookie: this origin's own request still refreshes.
    let r = post_auth(
        &app,
        "refresh",
        Some(&c),
        &[("x-caregraph-refresh", "1"), ("origin", &own_origin)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn cookie_logout_ends_the_session(b: Backend) {
    let app = spawn_app(b).await;
    let (login, c) = cookie_sign_in(&app, PATIENT).await;
    let at = login["accessToken"].as_str().unwrap().to_owned();
    let r = post_auth(&app, "logout", Some(&c), OWN).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(set_cookie(r.headers()).0, "__Host-cg_refresh=");
    assert_eq!(
        code(&app.gql(Some(&at), "{ me { id } }", json!({})).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        post_auth(&app, "refresh", Some(&c), OWN).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.audit_count("action = 'auth.logout'").await, 1);
    // Twice, or with no cookie: nothing to end, no error.
    assert_eq!(
        post_auth(&app, "logout", Some(&c), OWN).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post_auth(&app, "logout", None, OWN).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.audit_count("action = 'auth.logout'").await, 1);

    // A sign-out that raced a refresh still carries the cookie the refresh replaced: it
    // ends the session all the same, so the new cookie does not keep it alive.
    let (_, c1) = cookie_sign_in(&app, PATIENT).await;
    let r = post_auth(&app, "refresh", Some(&c1), OWN).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (c2, _) = set_cookie(r.headers());
    let r = post_auth(&app, "logout", Some(&c1), OWN).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        post_auth(&app, "refresh", Some(&c2), OWN).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.audit_count("action = 'auth.logout'").await, 2);
}

/// Behind a proxy that rewrites `Host`, the origin to match is `PUBLIC_URL`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_refresh_checks_the_public_origin_when_there_is_one() {
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert("PUBLIC_URL".into(), "https://portal.example.org/".into());
    })
    .await;
    let (_, c) = cookie_sign_in(&app, PATIENT).await;
    let own_host = format!("http://{}", app.addr);
    let r = post_auth(
        &app,
        "refresh",
        Some(&c),
        &[("x-caregraph-refresh", "1"), ("origin", &own_host)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_auth(
        &app,
        "refresh",
        Some(&c),
        &[
            ("x-caregraph-refresh", "1"),
            ("origin", "https://portal.example.org"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_portal_is_served_under_its_csp() {
    let root = tempfile_dir();
    // A file beside the portal's folder, which no path under /portal/ may reach.
    std::fs::write(root.join("secret.txt"), "TOP-SECRET").unwrap();
    let portal = root.join("dist");
    std::fs::create_dir_all(portal.join("assets")).unwrap();
    std::fs::write(
        portal.join("index.html"),
        "<!doctype html><title>portal</title>",
    )
    .unwrap();
    std::fs::write(portal.join("assets/app-1a2b.js"), "console.log(1)").unwrap();
    let dir = portal.to_str().unwrap().to_owned();
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert("PORTAL_DIR".into(), dir);
    })
    .await;
    let get = |path: &str| app.client.get(format!("http://{}{path}", app.addr)).send();
    for path in ["/portal/", "/portal/appointments", "/portal/messages/42"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        assert!(
            r.text().await.unwrap().contains("<title>portal</title>"),
            "{path}"
        );
    }
    let r = get("/portal/assets/app-1a2b.js").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        get("/portal/assets/gone-9z.js").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Nothing outside the folder, however the way out is spelled.
    for path in [
        "/portal/..%2fsecret.txt",
        "/portal/%2e%2e/secret.txt",
        "/portal/%2e%2e%2fsecret.txt",
        "/portal/assets/..%2f..%2fsecret.txt",
        "/portal/assets/%2e%2e/%2e%2e/secret.txt",
        "/portal/..%5csecret.txt",
    ] {
        let r = get(path).await.unwrap();
        assert!(!r.text().await.unwrap().contains("TOP-SECRET"), "{path}");
    }
    drop(app);

    // No built portal, no route.
    let missing = portal.join("missing").to_str().unwrap().to_owned();
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert("PORTAL_DIR".into(), missing);
    })
    .await;
    let r = app
        .client
        .get(format!("http://{}/portal/", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    std::fs::remove_dir_all(&root).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "caregraph-portal-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
