//! A load generator for ext_authz `Check`: many RPCs in flight over a few HTTP/2
//! connections for a fixed time after a warm-up; prints throughput, latency percentiles
//! and, given the server's PID, its CPU time per 1,000 Checks. Used by
//! `scripts/bench-check.sh`; built with `--features bench-tools`.
//!
//!     authgate-checkload --target 127.0.0.1:9001 --scenario session --header 'cookie: …' \
//!         [--path /private] [--connections 2] [--concurrency 64] [--warmup 2] [--duration 8] \
//!         [--pid PID] [--label text]
//!
//! `--scenario` only names the line; the request is `GET --path` with the `--header`s given
//! (repeatable) plus `host` and `accept`. Prints one line:
//! `label  checks/s  p50  p90  p99  p99.9  cpu-ms/1k  ok%`.

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    target: String,
    label: String,
    path: String,
    headers: Vec<(String, String)>,
    connections: usize,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    pid: Option<u32>,
}

fn parse() -> Args {
    let mut args = Args {
        target: "127.0.0.1:9001".into(),
        label: "check".into(),
        path: "/".into(),
        headers: Vec::new(),
        connections: 2,
        concurrency: 64,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(8),
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => args.target = value(),
            "--scenario" | "--label" => args.label = value(),
            "--path" => args.path = value(),
            "--header" => {
                let header = value();
                let (name, v) = header.split_once(':').expect("--header 'name: value'");
                args.headers.push((name.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            "--connections" => args.connections = value().parse().expect("a number"),
            "--concurrency" => args.concurrency = value().parse().expect("a number"),
            "--warmup" => args.warmup = Duration::from_secs_f64(value().parse().expect("seconds")),
            "--duration" => args.duration = Duration::from_secs_f64(value().parse().expect("seconds")),
            "--pid" => args.pid = Some(value().parse().expect("a pid")),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// utime + stime of a process, in seconds (Linux `/proc/<pid>/stat`, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (1-based); after the name, 12 and 13 (0-based, state first).
    (ticks(11) + ticks(12)) / 100.0
}

fn request(args: &Args) -> CheckRequest {
    let mut headers: HashMap<String, String> = HashMap::new();
    headers.insert(":authority".into(), "app.example.com".into());
    headers.insert(":method".into(), "GET".into());
    headers.insert(":path".into(), args.path.clone());
    headers.insert("user-agent".into(), "authgate-checkload".into());
    for (name, value) in &args.headers {
        headers.insert(name.clone(), value.clone());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id: "1".into(),
                    method: "GET".into(),
                    headers,
                    path: args.path.clone(),
                    host: "app.example.com".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse());
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        // One channel is one HTTP/2 connection.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.target))
            .expect("target")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        clients.push(AuthorizationClient::new(channel));
    }
    let template = request(&args);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 0..args.concurrency {
        let mut client = clients[i % clients.len()].clone();
        let (template, measuring, stop, ok) = (template.clone(), measuring.clone(), stop.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = client.check(template.clone()).await;
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed().as_nanos() as u64);
                    if answer.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(args.warmup).await;
    let cpu_before = args.pid.map(cpu_seconds);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = args.pid.map(cpu_seconds);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all.sort_unstable();
    let n = all.len();
    let at = |q: f64| Duration::from_nanos(all[((n as f64 * q) as usize).min(n.saturating_sub(1))]);
    let rate = n as f64 / elapsed.as_secs_f64();
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if n > 0 => format!("{:.3}", (a - b) * 1000.0 / (n as f64 / 1000.0)),
        _ => "-".into(),
    };
    println!(
        "{:<28} {:>9.0}/s  p50 {:>7.1?}  p90 {:>7.1?}  p99 {:>7.1?}  p99.9 {:>7.1?}  cpu {cpu} ms/1k  ok {:.1}%",
        args.label,
        rate,
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        100.0 * ok.load(Ordering::Relaxed) as f64 / n.max(1) as f64
    );
}
