//! The forward-auth bridge over plain HTTP, as Traefik, Caddy or nginx call it.

use crate::support::Authgate;

#[tokio::test]
async fn the_bridge_gives_the_same_decisions_as_check() {
    let authgate = Authgate::builder().key("excludedURLs", "[/public]").start().await;
    let client = reqwest::Client::new();
    let auth = format!("http://{}/auth", authgate.http);

    let allowed = client
        .get(&auth)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "app.example")
        .header("X-Forwarded-Uri", "/public/logo.png")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);

    let denied = client.get(&auth).header("X-Forwarded-Uri", "/private").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(denied.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));

    // nginx's convention.
    let nginx = client.get(&auth).header("X-Original-URI", "/public/x").send().await.unwrap();
    assert_eq!(nginx.status(), 200);
}
