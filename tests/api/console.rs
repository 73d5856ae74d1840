//! The provider console: its page, CSP and embedded assets, and none of it in production
//! (GRAPHIQL=false). The console in a browser: scripts/browser-test.sh.
use crate::helpers::*;

/// The `?v=` asset paths the page names.
fn asset_paths(page: &str) -> Vec<String> {
    page.split(['"', '\''])
        .filter(|s| s.starts_with("/graphql/console/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_page_and_assets() {
    let app = spawn_app(Backend::Sqlite).await;
    let base = format!("http://{}", app.addr);
    let r = app
        .client
        .get(&app.url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap()
        .to_owned();
    let page = r.text().await.unwrap();
    assert!(page.contains(&format!("nonce=\"{nonce}\"")), "{page}");
    let assets = asset_paths(&page);
    assert_eq!(assets.len(), 2, "{page}");
    for path in &assets {
        let r = app
            .client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let want = if path.contains(".js?") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(ct.starts_with(want), "{path}: {ct}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(r.bytes().await.unwrap().len() > 10_000, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_console_without_graphiql() {
    let app = spawn_app_with(Backend::Sqlite, |v| {
        v.insert("GRAPHIQL".into(), "false".into());
    })
    .await;
    let base = format!("http://{}", app.addr);
    let r = app
        .client
        .get(&app.url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!r.headers().contains_key("content-security-policy"));
    for path in [
        "/graphql/console/console.js",
        "/graphql/console/console.css",
    ] {
        let r = app
            .client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}
