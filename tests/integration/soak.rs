//! The soak (not in the default run: `scripts/soak.sh`, or `cargo nextest run
//! --run-ignored only -E 'test(soak)'`): mixed traffic over three replicas behind a
//! balanced Envoy in hybrid mode for `AUTHGATE_SOAK_MINUTES` (default 15), with a Redis
//! fault every two minutes (alternately a 5 s pause and a kill with an empty restart).
//! Prints, per minute, requests, errors, p99 and each replica's RSS; asserts that RSS after
//! warm-up does not grow beyond what the cache bounds allow.

use crate::support::load::{Load, Samples};
use crate::support::stack::Stack;
use crate::support::{browser_login, browser_with_jar};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 15-minute soak; run by scripts/soak.sh"]
async fn soak() {
    let minutes: u64 = std::env::var("AUTHGATE_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(15);
    let mut stack = Stack::builder()
        .cache("hybrid")
        .replicas(3)
        .balanced()
        .key("logLevel", "info")
        .key("userIdentifierClaim", "sub")
        .start()
        .await;
    let bearer = stack.idp.client_credentials_token().await;
    // Sessions the workers use; a worker whose session was lost (Redis restarted empty)
    // logs in again, as a user would.
    let sessions: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    for i in 0..40 {
        let (browser, jar) = browser_with_jar();
        let (_, response) = browser_login(&browser, &stack.url("/private"), &format!("soak{i}")).await;
        assert_eq!(response.status(), 200);
        sessions.lock().unwrap().push(stack.cookie(&jar));
    }
    let (url, api, origin) = (stack.url("/private"), stack.url("/api"), stack.url("/"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let logins = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (sessions, logins) = (sessions.clone(), logins.clone());
        Load::start(8, move |worker, n| {
            let (client, sessions, logins) = (client.clone(), sessions.clone(), logins.clone());
            let (url, api, origin, bearer) = (url.clone(), api.clone(), origin.clone(), bearer.clone());
            async move {
                match worker {
                    // A user who logs in, browses, logs out.
                    0 => {
                        let (browser, jar) = browser_with_jar();
                        let user = format!("visitor{}", logins.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                        let (_, response) = browser_login(&browser, &url, &user).await;
                        let status = response.status().as_u16();
                        use reqwest::cookie::CookieStore;
                        if let Some(cookie) = jar.cookies(&origin.parse().unwrap()) {
                            let cookie = cookie.to_str().unwrap().to_owned();
                            for _ in 0..5 {
                                let _ = client
                                    .get(&url)
                                    .header("accept", "application/json")
                                    .header("cookie", &cookie)
                                    .send()
                                    .await;
                            }
                        }
                        let _ = browser
                            .get(format!("{origin}oauth2/logout"))
                            .header("sec-fetch-site", "same-origin")
                            .send()
                            .await;
                        status
                    }
                    // An API client with a bearer token.
                    1 => client
                        .get(&api)
                        .header("authorization", format!("Bearer {bearer}"))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16()),
                    // Browsers with sessions.
                    _ => {
                        let index = (worker * 13 + n as usize) % 40;
                        let cookie = sessions.lock().unwrap()[index].clone();
                        let status = client
                            .get(&url)
                            .header("accept", "application/json")
                            .header("cookie", &cookie)
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16());
                        if status == 401 {
                            let (browser, jar) = browser_with_jar();
                            let (_, response) = browser_login(&browser, &url, &format!("soak{index}")).await;
                            if response.status() == 200 {
                                use reqwest::cookie::CookieStore;
                                if let Some(cookie) = jar.cookies(&origin.parse().unwrap()) {
                                    sessions.lock().unwrap()[index] = cookie.to_str().unwrap().to_owned();
                                }
                            }
                        }
                        status
                    }
                }
            }
        })
    };
    let mut rss: Vec<Vec<u64>> = Vec::new();
    let mut faults = Vec::new();
    for minute in 0..minutes {
        for half in 0..2 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            // A fault every two minutes, in the second half of odd minutes.
            if minute % 2 == 1 && half == 0 {
                let redis = stack.redis.as_mut().unwrap();
                let start = load.now();
                if minute % 4 == 1 {
                    redis.signal("STOP");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    redis.signal("CONT");
                    faults.push(("pause 5 s", start, load.now()));
                } else {
                    redis.kill();
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    redis.restart();
                    faults.push(("kill 3 s, restart empty", start, load.now()));
                }
            }
        }
        rss.push(stack.replicas.iter().map(|r| r.rss_kb()).collect());
        println!(
            "minute {:>2}: RSS per replica {:?} MB",
            minute + 1,
            rss.last().unwrap().iter().map(|kb| kb / 1024).collect::<Vec<_>>()
        );
    }
    let samples: Samples = load.finish().await;
    println!(
        "SOAK {minutes} min, hybrid mode, 3 replicas, {} logins by the visiting worker",
        logins.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("minute | requests | errors | p50 | p99 | RSS MB (replicas 0, 1, 2)");
    for minute in 0..minutes {
        let window = samples.window(Duration::from_secs(minute * 60), Duration::from_secs((minute + 1) * 60));
        let mb: Vec<u64> = rss[minute as usize].iter().map(|kb| kb / 1024).collect();
        println!(
            "{:>6} | {:>8} | {:>6} | {:>5.1?} | {:>5.1?} | {mb:?}",
            minute + 1,
            window.requests,
            window.errors,
            window.p50,
            window.p99
        );
    }
    for (name, start, end) in faults {
        samples.fault(&format!("soak: redis {name}"), start, end);
    }
    // After warm-up (minute 3), RSS stays within the cache bounds: the L1 (64 MB), the
    // fallback (256 MB) are far above this traffic, so growth means a leak. Allow 25%.
    let warm = &rss[2.min(rss.len() - 1)];
    let last = rss.last().unwrap();
    for (replica, (w, l)) in warm.iter().zip(last).enumerate() {
        assert!(*l <= w + w / 4 + 4096, "replica {replica} grew from {w} kB to {l} kB");
    }
}
