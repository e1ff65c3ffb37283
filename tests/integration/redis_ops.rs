//! Redis commands per Check, counted by Redis itself (`INFO commandstats`), for each kind
//! of request in `redis` and `hybrid` mode: the figure that sizes Redis for a deployment
//! (BENCHMARKS.md, "Past one machine"), and a guard on the fast paths: a warm hybrid
//! session request and a cached bearer token cost no Redis round trip at all.

use crate::decisions::{fixture, log_in, navigation, request};
use crate::security::access_token;
use crate::support::RedisServer;
use std::collections::BTreeMap;

/// Calls per command since the last reset, without the background's (health PING, the
/// replicas' roll call) and the statistics commands themselves.
fn command_calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    let background = [
        "ping",
        "info",
        "config|resetstat",
        "config",
        "hset",
        "pexpire",
        "hgetall",
        "client|setinfo",
        "hello",
        "subscribe",
    ];
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            (!background.contains(&name)).then(|| (name.to_owned(), calls))
        })
        .collect()
}

async fn per_check(redis: &RedisServer, checks: u64, run: impl AsyncFn()) -> (f64, BTreeMap<String, u64>) {
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..checks {
        run().await;
    }
    let calls = command_calls(redis);
    (calls.values().sum::<u64>() as f64 / checks as f64, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_per_check_in_each_mode() {
    use authgate::authz::decision::Outcome;
    let mut table = Vec::new();
    for mode in ["redis", "hybrid"] {
        let redis = RedisServer::start();
        let f =
            fixture(&format!("redis:\n  enabled: true\n  address: {}\n  cacheMode: {mode}\n", redis.address())).await;
        let session = log_in(&f, "alice").await;
        let cookie = [("cookie", session.as_str())];
        let token = access_token(&f, serde_json::json!({}));
        let bearer = format!("Bearer {token}");
        let authorization = [("authorization", bearer.as_str())];
        // Warm: the first request of each fills caches (and, in hybrid mode, the L1).
        assert_eq!(f.authorizer.decide(&request("GET", "/api", &cookie)).await.outcome, Outcome::Allow);
        assert_eq!(f.authorizer.decide(&request("GET", "/api", &authorization)).await.outcome, Outcome::Allow);

        let checks = 200;
        let (excluded, _) = per_check(&redis, checks, async || {
            f.authorizer.decide(&request("GET", "/public/x", &[])).await;
        })
        .await;
        let (anonymous, _) = per_check(&redis, checks, async || {
            f.authorizer.decide(&navigation("/private", "")).await;
        })
        .await;
        let (session_hit, session_calls) = per_check(&redis, checks, async || {
            assert_eq!(f.authorizer.decide(&request("GET", "/api", &cookie)).await.outcome, Outcome::Allow);
        })
        .await;
        let (bearer_hit, bearer_calls) = per_check(&redis, checks, async || {
            assert_eq!(f.authorizer.decide(&request("GET", "/api", &authorization)).await.outcome, Outcome::Allow);
        })
        .await;
        println!(
            "{mode}: Redis commands per Check: excluded {excluded:.2}, anonymous browser {anonymous:.2}, session hit {session_hit:.2} {session_calls:?}, cached bearer {bearer_hit:.2} {bearer_calls:?}"
        );
        table.push((mode, excluded, anonymous, session_hit, bearer_hit));
        assert_eq!(excluded, 0.0, "an excluded path never touches Redis");
        assert_eq!(anonymous, 0.0, "a login redirect keeps its state in a sealed cookie, not in Redis");
        if mode == "hybrid" {
            assert_eq!(session_hit, 0.0, "a warm hybrid session: record and marker absences from the L1");
            assert_eq!(bearer_hit, 0.0, "a cached bearer token comes from the L1");
        } else {
            // The record and the two logout markers (sid, sub): three reads.
            assert!(session_hit <= 3.0, "{session_hit} {session_calls:?}");
            assert!(bearer_hit <= 1.0, "{bearer_hit} {bearer_calls:?}");
        }
    }
    println!("mode   | excluded | anonymous | session hit | cached bearer");
    for (mode, excluded, anonymous, session, bearer) in table {
        println!("{mode:<6} | {excluded:>8.2} | {anonymous:>9.2} | {session:>11.2} | {bearer:>13.2}");
    }
}
