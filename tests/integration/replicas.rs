//! PRODUCT.md's cross-replica guarantees, measured under concurrency on the deployment
//! users run: three authgate replicas sharing one Redis, a real Envoy round-robining
//! Checks over them (health-checked), the real oidc-provider, an echo upstream. Each test
//! runs in `redis` and in `hybrid` mode and prints what it measured.

use crate::support::stack::Stack;
use crate::support::{IDP_CLIENT_ID, browser_login, browser_with_jar, random_hex};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Logins (each followed by 20 requests) in the login test.
const LOGINS: usize = 200;

async fn three_replicas(mode: &str) -> Stack {
    three_replicas_on(mode, None).await
}

/// Three replicas on a Redis the test started itself (a `redis:` block for a Sentinel
/// set or a Cluster), or on a single `redis-server` of the stack's.
async fn three_replicas_on(mode: &str, redis_yaml: Option<&str>) -> Stack {
    let mut builder = Stack::builder();
    if let Some(yaml) = redis_yaml {
        builder = builder.redis_yaml(yaml);
    }
    builder.cache(mode).replicas(3).balanced().provider_keys().key("logLevel", "info").start().await
}

/// A JSON API request through Envoy with `cookie`: its status.
async fn api_status(client: &reqwest::Client, stack: &Stack, cookie: &str) -> u16 {
    match client.get(stack.url("/private")).header("accept", "application/json").header("cookie", cookie).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// 1. A session made through any replica is accepted by every replica: logins through
///    Envoy (the login's own requests land on different replicas), each followed by 20
///    requests spread over the three; any 401 would be a re-authentication.
async fn logins_are_honoured_by_every_replica(mode: &str) {
    let stack = three_replicas(mode).await;
    let logins = LOGINS;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..logins {
        let url = stack.url("/private");
        let origin = stack.url("/");
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let (browser, jar) = browser_with_jar();
            let (_, response) = browser_login(&browser, &url, &format!("user{i}")).await;
            assert_eq!(response.status(), 200, "login {i}");
            use reqwest::cookie::CookieStore;
            jar.cookies(&origin.parse().unwrap()).unwrap().to_str().unwrap().to_owned()
        });
    }
    let cookies: Vec<String> = tasks.join_all().await;
    let login_time = started.elapsed();

    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..20 {
        let requests = cookies.iter().map(|cookie| api_status(&client, &stack, cookie));
        for status in futures_util::future::join_all(requests).await {
            *statuses.entry(status).or_default() += 1;
        }
        let _ = round;
    }
    let reauthentications = statuses.iter().filter(|(s, _)| **s != 200).map(|(_, n)| n).sum::<usize>();
    println!(
        "{mode}: {logins} logins in {login_time:.1?}, then {} requests over 3 replicas in {:.1?}: {reauthentications} re-authentications ({statuses:?})",
        logins * 20,
        started.elapsed()
    );
    assert_eq!(reauthentications, 0, "{statuses:?}\n{}", stack.logs());
    // Every replica served some of them (Envoy round-robins).
    for (i, replica) in stack.replicas.iter().enumerate() {
        assert!(replica.logs().contains("decision"), "replica {i} served no Check");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_honoured_by_every_replica_in_redis_mode() {
    logins_are_honoured_by_every_replica("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_honoured_by_every_replica_in_hybrid_mode() {
    logins_are_honoured_by_every_replica("hybrid").await;
}

fn logout_token(stack: &Stack, jti: &str, sub: &str) -> String {
    let now = authgate::clock::now();
    stack.sign_as_provider(
        "key-1",
        &json!({
            "iss": stack.idp.issuer(), "aud": IDP_CLIENT_ID, "iat": now, "exp": now + 120, "jti": jti, "sub": sub,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    )
}

async fn post_logout_token(client: &reqwest::Client, replica: std::net::SocketAddr, token: &str) -> (u16, String) {
    let response = client
        .post(format!("http://{replica}/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// 2. One-time tokens across replicas: 1,000 distinct logout tokens (signed with the
///    provider's key) to random replicas are all accepted (no false replay); 200 tokens
///    each sent to two replicas at the same instant are accepted exactly once each.
async fn logout_tokens_are_accepted_exactly_once(mode: &str) {
    logout_tokens_are_accepted_exactly_once_on(three_replicas(mode).await, mode).await;
}

async fn logout_tokens_are_accepted_exactly_once_on(stack: Stack, mode: &str) {
    let client = reqwest::Client::new();
    let replicas: Vec<_> = stack.replicas.iter().map(|r| r.http).collect();
    let started = Instant::now();
    let tokens: Vec<String> = (0..1000).map(|i| logout_token(&stack, &random_hex(16), &format!("nobody{i}"))).collect();
    let mut accepted = 0;
    let mut false_replays = 0;
    for chunk in tokens.chunks(50) {
        let sends = chunk.iter().map(|t| post_logout_token(&client, replicas[fastrand::usize(..3)], t));
        for (status, body) in futures_util::future::join_all(sends).await {
            match status {
                200 => accepted += 1,
                _ if body.contains("replayed") => false_replays += 1,
                other => panic!("unexpected {other}: {body}\n{}", stack.logs()),
            }
        }
    }
    println!(
        "{mode}: 1000 distinct logout tokens over 3 replicas in {:.1?}: {accepted} accepted, {false_replays} false replays",
        started.elapsed()
    );
    assert_eq!((accepted, false_replays), (1000, 0));

    let started = Instant::now();
    let mut once = 0;
    for chunk in 0..4 {
        let pairs = (0..50).map(|i| {
            let token = logout_token(&stack, &random_hex(16), &format!("pair{chunk}-{i}"));
            let first = fastrand::usize(..3);
            let (a, b) = (replicas[first], replicas[(first + 1 + fastrand::usize(..2)) % 3]);
            let client = client.clone();
            async move {
                let (x, y) = tokio::join!(post_logout_token(&client, a, &token), post_logout_token(&client, b, &token));
                [x, y]
            }
        });
        for answers in futures_util::future::join_all(pairs).await {
            let ok = answers.iter().filter(|(s, _)| *s == 200).count();
            let replayed = answers.iter().filter(|(s, b)| *s == 400 && b.contains("replayed")).count();
            assert_eq!((ok, replayed), (1, 1), "{answers:?}");
            once += 1;
        }
    }
    println!(
        "{mode}: 200 tokens each sent to two replicas at once in {:.1?}: exactly one acceptance for {once}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_tokens_are_accepted_exactly_once_in_redis_mode() {
    logout_tokens_are_accepted_exactly_once("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_tokens_are_accepted_exactly_once_in_hybrid_mode() {
    logout_tokens_are_accepted_exactly_once("hybrid").await;
}

/// 3. Rotating refresh tokens under 50 concurrent requests spread over the replicas: the
///    provider sees each refresh token redeemed once (a second redemption of a rotated
///    token is refused and revokes the grant, which would log the user out).
async fn refreshes_redeem_each_token_once(mode: &str) {
    let stack = Stack::builder()
        .cache(mode)
        .replicas(3)
        .balanced()
        .key("logLevel", "info")
        .idp_env("IDP_ACCESS_TOKEN_TTL", "60")
        // Every request is "near expiry": each one wants a refresh.
        .key("refreshGracePeriodSeconds", "3600")
        .yaml("headers:\n  - name: X-Access-Token\n    value: '{{.AccessToken}}'")
        .start()
        .await;
    let (browser, jar) = browser_with_jar();
    let (_, response) = browser_login(&browser, &stack.url("/private"), "refresher").await;
    assert_eq!(response.status(), 200);
    let login_token =
        response.json::<serde_json::Value>().await.unwrap()["headers"]["x-access-token"].as_str().unwrap().to_owned();
    let cookie = stack.cookie(&jar);
    let client = reqwest::Client::new();
    let mut seen = BTreeSet::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _round in 0..3 {
        let requests = (0..50).map(|_| {
            let (client, url, cookie) = (client.clone(), stack.url("/private"), cookie.clone());
            async move {
                let response =
                    client.get(url).header("accept", "application/json").header("cookie", cookie).send().await.unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                (status, body["headers"]["x-access-token"].as_str().map(str::to_owned))
            }
        });
        for (status, token) in futures_util::future::join_all(requests).await {
            *statuses.entry(status).or_default() += 1;
            seen.extend(token);
        }
    }
    // The login's own last request may have refreshed already: count its token too.
    seen.insert(login_token);
    let idp = stack.idp.logs();
    let redemptions = idp.matches("refresh_token.consumed").count();
    let refused = idp.matches("grant.error").count();
    println!(
        "{mode}: 150 requests (3 × 50 concurrent) over 3 replicas: {redemptions} refresh-token redemptions, {} access tokens served, {refused} refused grants, statuses {statuses:?}",
        seen.len()
    );
    assert_eq!(statuses.get(&200), Some(&150), "0 logouts: {statuses:?}\n{}", stack.logs());
    assert_eq!(refused, 0, "no refresh token was redeemed twice:\n{idp}");
    // Each round came after the last had its answers, all wanting a refresh: at least one
    // redemption per round; and every redemption's token was served to some request (none
    // was made and thrown away by a replica that lost a race).
    assert!(redemptions >= 3, "each round refreshed");
    assert!(redemptions <= seen.len(), "{redemptions} redemptions, {} tokens served", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_redeem_each_token_once_in_redis_mode() {
    refreshes_redeem_each_token_once("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_redeem_each_token_once_in_hybrid_mode() {
    refreshes_redeem_each_token_once("hybrid").await;
}

/// Polls every replica except `except` with `cookie` until each denies it; returns how long
/// each took after `since`, and whether each one's first answer was already a denial.
async fn time_to_denial(stack: &Stack, cookie: &str, since: Instant) -> Vec<(Duration, bool)> {
    let mut figures = Vec::new();
    for replica in &stack.replicas {
        let mut first = true;
        let mut first_denied = false;
        loop {
            let status = replica.bridge("/private", cookie).await.status().as_u16();
            if status != 200 {
                assert_eq!(status, 401);
                if first {
                    first_denied = true;
                }
                break;
            }
            first = false;
            assert!(since.elapsed() < Duration::from_secs(2), "a replica kept a logged-out session\n{}", stack.logs());
        }
        figures.push((since.elapsed(), first_denied));
    }
    figures
}

/// 4. A logout on one replica, RP-initiated or back-channel, denies the session on every
///    replica at once, hybrid L1s included (each replica has read the session twice first,
///    so a hybrid L1 holds it).
async fn logout_on_one_replica_is_felt_by_all(mode: &str) {
    logout_on_one_replica_is_felt_by_all_on(three_replicas(mode).await, mode).await;
}

async fn logout_on_one_replica_is_felt_by_all_on(stack: Stack, mode: &str) {
    for how in ["rp", "backchannel"] {
        let user = format!("leaver-{how}");
        let (browser, jar) = browser_with_jar();
        let (_, response) = browser_login(&browser, &stack.url("/private"), &user).await;
        assert_eq!(response.status(), 200);
        let cookie = stack.cookie(&jar);
        for replica in &stack.replicas {
            for _ in 0..2 {
                assert_eq!(replica.bridge("/private", &cookie).await.status(), 200);
            }
        }
        let since = match how {
            "rp" => {
                let logout = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap()
                    .get(stack.url("/oauth2/logout"))
                    .header("cookie", &cookie)
                    // A browser's own navigation (logout is refused cross-site).
                    .header("sec-fetch-site", "same-origin")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(logout.status(), 302, "{}", stack.logs());
                Instant::now()
            }
            _ => {
                let token = logout_token(&stack, &random_hex(16), &user);
                let target = stack.replicas[fastrand::usize(..3)].http;
                let (status, body) = post_logout_token(&reqwest::Client::new(), target, &token).await;
                assert_eq!(status, 200, "{body}");
                Instant::now()
            }
        };
        let figures = time_to_denial(&stack, &cookie, since).await;
        println!(
            "{mode}: {how} logout on one replica; denied on replicas 0, 1, 2 after {:?}; stale window {:.1?}",
            figures.iter().map(|(t, _)| format!("{t:.1?}")).collect::<Vec<_>>(),
            figures.iter().map(|(t, _)| *t).max().unwrap()
        );
        assert!(figures.iter().all(|(_, first)| *first), "the next request on every replica is denied: {figures:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_felt_by_all_in_redis_mode() {
    logout_on_one_replica_is_felt_by_all("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_felt_by_all_in_hybrid_mode() {
    logout_on_one_replica_is_felt_by_all("hybrid").await;
}

/// The one-time claim is one `SET NX PX` on the key's shard: exactly once over a Cluster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_tokens_are_accepted_exactly_once_over_a_cluster() {
    let cluster = crate::support::RedisCluster::start();
    let yaml = format!(
        "redis:\n  enabled: true\n  cacheMode: hybrid\n  clusterMode: true\n  address: {}\n",
        cluster.address()
    );
    let stack = three_replicas_on("hybrid", Some(&yaml)).await;
    logout_tokens_are_accepted_exactly_once_on(stack, "hybrid over a 6-node cluster").await;
}

/// Invalidations and markers through a Sentinel-discovered master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_felt_by_all_over_sentinel() {
    let sentinels = crate::support::RedisSentinels::start();
    let addresses = sentinels.sentinels.iter().map(|s| format!("\"{}\"", s.address())).collect::<Vec<_>>().join(", ");
    let yaml = format!(
        "redis:\n  enabled: true\n  cacheMode: hybrid\n  sentinel:\n    masterName: {}\n    addresses: [{addresses}]\n",
        crate::support::SENTINEL_MASTER
    );
    let stack = three_replicas_on("hybrid", Some(&yaml)).await;
    logout_on_one_replica_is_felt_by_all_on(stack, "hybrid over sentinel").await;
}
