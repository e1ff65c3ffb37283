//! A load generator for ext_authz `Check`: many RPCs in flight over a few HTTP/2
//! connections for a fixed time after a warm-up; prints throughput, latency percentiles
//! and, given the server's PID, its CPU time per 1,000 Checks. Used by
//! `scripts/bench-check.sh`; built with `--features bench-tools`.
//!
//!     authgate-checkload --target 127.0.0.1:9001 --scenario session --header 'cookie: …' \
//!         [--path /private] [--connections 2] [--concurrency 64] [--warmup 2] [--duration 8] \
//!         [--pid PID] [--label text] [--mint N --mint-from TOKEN --mint-key PEM] \
//!         [--backchannel URL]
//!
//! `--scenario` only names the line; the request is `GET --path` with the `--header`s given
//! (repeatable) plus `host` and `accept`. Prints one line:
//! `label  checks/s  p50  p90  p99  p99.9  cpu-ms/1k  allowed%` (Checks answered OK, or
//! back-channel logouts answered 2xx).
//!
//! Requests that must never repeat a token (nothing cached helps them):
//! - `--mint N --mint-from TOKEN --mint-key PEM`: before the run, signs N copies of the
//!   access token TOKEN (same claims and key id, a fresh `jti` each) with the provider's
//!   private key, and sends each Check with the next one as `Authorization: Bearer`: every
//!   Check verifies a signature (bearer, cold). The line says when the pool ran out.
//! - with `--backchannel URL` too: POSTs back-channel logout tokens (issuer and audience of
//!   TOKEN, a fresh `jti` and a random `sid` each, so no real session ends) to URL instead of
//!   sending Checks: every request is a verified token, an atomic replay claim and a marker
//!   write.

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    mint: usize,
    mint_from: Option<String>,
    mint_key: Option<String>,
    backchannel: Option<String>,
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
        mint: 0,
        mint_from: None,
        mint_key: None,
        backchannel: None,
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
            "--mint" => args.mint = value().parse().expect("a number"),
            "--mint-from" => args.mint_from = Some(value()),
            "--mint-key" => args.mint_key = Some(value()),
            "--backchannel" => args.backchannel = Some(value()),
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

const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Signs `args.mint` tokens on every core: copies of `--mint-from` with a fresh `jti`, or
/// back-channel logout tokens of its issuer and audience with `--backchannel`.
fn mint(args: &Args) -> Vec<String> {
    use base64::Engine;
    let sample = args.mint_from.as_deref().expect("--mint needs --mint-from TOKEN");
    let pem = std::fs::read(args.mint_key.as_deref().expect("--mint needs --mint-key PEM")).expect("read --mint-key");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("an RSA private key in PEM");
    let kid = jsonwebtoken::decode_header(sample).expect("--mint-from is a JWT").kid;
    let payload = sample.split('.').nth(1).expect("a JWT has a payload");
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"),
    )
    .expect("JSON claims");
    let logout = args.backchannel.is_some();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = args.mint.div_ceil(threads);
    let started = Instant::now();
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (key, kid, claims) = (&key, &kid, &claims);
                scope.spawn(move || {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                    header.kid = kid.clone();
                    if logout {
                        header.typ = Some("logout+jwt".into());
                    }
                    (0..per_thread)
                        .map(|_| {
                            let jti = format!("{:032x}", fastrand::u128(..));
                            let body = if logout {
                                serde_json::json!({
                                    "iss": claims["iss"], "aud": claims["aud"], "iat": now, "exp": now + 300,
                                    "jti": jti, "sid": format!("{:016x}", fastrand::u64(..)),
                                    "events": { LOGOUT_EVENT: {} },
                                })
                            } else {
                                let mut copy = claims.clone();
                                copy.insert("jti".into(), jti.into());
                                serde_json::Value::Object(copy)
                            };
                            jsonwebtoken::encode(&header, &body, key).expect("sign")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    eprintln!("minted {} tokens in {:.1?}", tokens.len(), started.elapsed());
    tokens
}

/// The pool of never-repeated tokens, handed out in order.
struct Pool {
    tokens: Vec<String>,
    next: AtomicUsize,
}

impl Pool {
    fn take(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.tokens[i % self.tokens.len()]
    }

    fn ran_out(&self) -> bool {
        self.next.load(Ordering::Relaxed) > self.tokens.len()
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse());
    // reqwest (back-channel mode) uses rustls without a built-in provider, like authgate.
    authgate::tls::install_crypto_provider();
    let pool = (args.mint > 0).then(|| Arc::new(Pool { tokens: mint(&args), next: AtomicUsize::new(0) }));
    if let Some(url) = args.backchannel.clone() {
        let tokens = pool.clone().expect("--backchannel needs --mint");
        // One client: its connections are kept alive and shared, as a provider's would be.
        let client = reqwest::Client::new();
        return run(&args, pool, move || {
            let (client, url, pool) = (client.clone(), url.clone(), tokens.clone());
            async move {
                let token = pool.take().to_owned();
                client.post(&url).form(&[("logout_token", token)]).send().await.is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }
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
    let next = Arc::new(AtomicUsize::new(0));
    let tokens = pool.clone();
    run(&args, pool, move || {
        let mut client = clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()].clone();
        let mut request = template.clone();
        let tokens = tokens.clone();
        async move {
            if let Some(tokens) = tokens {
                let http = request.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
                http.headers.insert("authorization".into(), format!("Bearer {}", tokens.take()));
            }
            // Allowed: the RPC succeeded and its status is OK.
            client.check(request).await.is_ok_and(|r| r.get_ref().status.as_ref().is_none_or(|s| s.code == 0))
        }
    })
    .await;
}

/// Runs `args.concurrency` workers, each sending `request()` in a loop (a new future per
/// request), measures after the warm-up and prints the line (saying whether `pool`, the
/// minted tokens if any, ran out).
async fn run<F, Fut>(args: &Args, pool: Option<Arc<Pool>>, request: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (request, measuring, stop, ok) = (request.clone(), measuring.clone(), stop.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = request().await;
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed().as_nanos() as u64);
                    if answered {
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
    let reused = if pool.is_some_and(|pool| pool.ran_out()) { "  (token pool ran out: some repeated)" } else { "" };
    println!(
        "{:<28} {:>9.0}/s  p50 {:>7.1?}  p90 {:>7.1?}  p99 {:>7.1?}  p99.9 {:>7.1?}  cpu {cpu} ms/1k  allowed {:.1}%{reused}",
        args.label,
        rate,
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        100.0 * ok.load(Ordering::Relaxed) as f64 / n.max(1) as f64
    );
}
