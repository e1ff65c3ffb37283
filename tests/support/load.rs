//! Steady load for the reliability tests: workers each sending one request after another
//! until stopped, every answer recorded with when it was sent, how long it took and its
//! status, so a test can compare the windows before, during and after a fault.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One answered (or failed) request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    /// The HTTP status; 0 for a transport error (connection refused, reset, timeout).
    pub status: u16,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

/// Load running in the background.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `workers` workers; worker `w` sends its `n`-th request with `request(w, n)`,
    /// which answers the HTTP status (0 for a transport error).
    pub fn start<F, Fut>(workers: usize, request: F) -> Load
    where
        F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = u16> + Send,
    {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let request = Arc::new(request);
        let workers = (0..workers)
            .map(|worker| {
                let (stop, request) = (stop.clone(), request.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let status = request(worker, n).await;
                        samples.push(Sample { at: sent - started, latency: sent.elapsed(), status });
                        n += 1;
                    }
                    samples
                })
            })
            .collect();
        Load { started, stop, workers }
    }

    /// Time since the load started (to mark when a fault begins and ends).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the workers and returns every sample, in the order they were sent.
    pub async fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.unwrap());
        }
        all.sort_by_key(|s| s.at);
        Samples(all)
    }
}

/// Figures of the requests sent in one window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub requests: usize,
    pub errors: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} errors, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            self.requests, self.errors, self.p50, self.p99, self.max
        )
    }
}

/// What a fault cost, as printed by the fault tests.
#[derive(Debug, Clone, Copy)]
pub struct FaultFigures {
    pub before: Window,
    pub during: Window,
    pub after: Window,
    /// From the end of the fault to the last failed request (zero when none failed after).
    pub recovery: Duration,
}

pub struct Samples(pub Vec<Sample>);

impl Samples {
    pub fn window(&self, from: Duration, to: Duration) -> Window {
        let mut latencies: Vec<Duration> =
            self.0.iter().filter(|s| s.at >= from && s.at < to).map(|s| s.latency).collect();
        let errors = self.0.iter().filter(|s| s.at >= from && s.at < to && !s.ok()).count();
        latencies.sort();
        let at = |q: f64| latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied();
        Window {
            requests: latencies.len(),
            errors,
            p50: at(0.5).unwrap_or_default(),
            p99: at(0.99).unwrap_or_default(),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }

    pub fn errors(&self) -> usize {
        self.0.iter().filter(|s| !s.ok()).count()
    }

    /// Statuses of the failed requests, counted (for messages).
    pub fn error_statuses(&self) -> std::collections::BTreeMap<u16, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for sample in self.0.iter().filter(|s| !s.ok()) {
            *counts.entry(sample.status).or_default() += 1;
        }
        counts
    }

    /// The figures of a fault from `start` to `end`, printed under `name`.
    pub fn fault(&self, name: &str, start: Duration, end: Duration) -> FaultFigures {
        let last = self.0.last().map_or(end, |s| s.at + Duration::from_millis(1));
        let recovery = self
            .0
            .iter()
            .filter(|s| s.at >= end && !s.ok())
            .map(|s| (s.at + s.latency).saturating_sub(end))
            .max()
            .unwrap_or_default();
        let figures = FaultFigures {
            before: self.window(Duration::ZERO, start),
            during: self.window(start, end),
            after: self.window(end, last),
            recovery,
        };
        println!(
            "FAULT {name}\n  before: {}\n  during: {}\n  after:  {}\n  recovered {:.1?} after the fault ended; error statuses {:?}",
            figures.before,
            figures.during,
            figures.after,
            figures.recovery,
            self.error_statuses()
        );
        figures
    }
}
