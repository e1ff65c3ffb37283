//! The circuit breaker around Redis, and the store decorator that uses it.
//!
//! ```text
//!            failures >= threshold              timeout elapsed
//!   Closed ─────────────────────────▶ Open ─────────────────────▶ HalfOpen
//!     ▲                                ▲                            │  │
//!     │            trial fails         └────────────────────────────┘  │
//!     └────────────────────────────────────────────────────────────────┘
//!                              trial succeeds
//! ```
//!
//! Only failures that say something about Redis's health count
//! ([`CacheError::counts_as_failure`]): a timeout does, a missing key or a rejected
//! command does not. While the breaker is not closed, [`BreakerStore`] serves every
//! operation from its memory fallback without trying Redis, except for the single trial
//! request of the half-open state. A periodic health check goes through the breaker too,
//! so it opens without traffic and closes by itself once Redis is back.
//!
//! Reads the primary can answer from its own memory ([`Store::fetch_local`], the hybrid
//! L1) bypass the breaker entirely: they neither reset its failure count (which would keep
//! it from ever opening while L1 hits hide a Redis outage) nor get refused while it is
//! open (which would trade a warm L1 for an empty fallback).

use super::memory::MemoryStore;
use super::{CacheError, Store, Tier};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The three states of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Normal operation: every request goes to Redis; consecutive failures are counted.
    Closed,
    /// Redis is considered down: nothing is sent to it until the timeout has passed.
    Open,
    /// The timeout has passed: one trial request goes to Redis, the rest wait it out.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }

    /// The value of the `authgate_circuit_breaker_state` gauge.
    pub fn gauge_value(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

/// Called on every state change, with the old and the new state.
pub type TransitionHook = Arc<dyn Fn(CircuitState, CircuitState) + Send + Sync>;

struct Inner {
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: Instant,
    trial_in_flight: bool,
    transitions: u64,
}

/// The state machine. Time comes from `tokio::time`, so tests can pause it.
pub struct CircuitBreaker {
    threshold: u32,
    timeout: Duration,
    /// Lock-free fast path: true while closed with no failure counted, the state of nearly
    /// every request; everything else takes the lock.
    quiet: std::sync::atomic::AtomicBool,
    /// Whether requests are served from memory while open (only changes what is logged).
    memory_fallback: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
    on_transition: Mutex<Vec<TransitionHook>>,
    /// The cause of the last counted failure, named in the log lines of state changes.
    last_cause: Mutex<String>,
}

/// Whether a request may go to Redis, and if so whether it is the half-open trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Allowed,
    Trial,
    Rejected,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, timeout: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            timeout,
            quiet: std::sync::atomic::AtomicBool::new(true),
            memory_fallback: std::sync::atomic::AtomicBool::new(true),
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
                trial_in_flight: false,
                transitions: 0,
            }),
            on_transition: Mutex::new(Vec::new()),
            last_cause: Mutex::new(String::new()),
        }
    }

    /// Says whether the store serves from memory while the breaker is open.
    pub fn set_memory_fallback(&self, enabled: bool) {
        self.memory_fallback.store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Registers a hook called (outside the lock) on every state change.
    pub fn on_transition(&self, hook: TransitionHook) {
        self.on_transition.lock().expect("breaker hooks lock").push(hook);
    }

    pub fn state(&self) -> CircuitState {
        self.inner.lock().expect("breaker lock").state
    }

    /// Consecutive failures counted so far (reset by a success).
    pub fn failures(&self) -> u32 {
        self.inner.lock().expect("breaker lock").consecutive_failures
    }

    /// State changes since start.
    pub fn transitions(&self) -> u64 {
        self.inner.lock().expect("breaker lock").transitions
    }

    /// Asks to send one request to Redis.
    pub fn permit(&self) -> Permit {
        if self.quiet.load(std::sync::atomic::Ordering::Acquire) {
            return Permit::Allowed;
        }
        let mut changed = None;
        let permit = {
            let mut inner = self.inner.lock().expect("breaker lock");
            match inner.state {
                CircuitState::Closed => Permit::Allowed,
                CircuitState::Open if inner.opened_at.elapsed() >= self.timeout => {
                    changed = Some(Self::set(&mut inner, CircuitState::HalfOpen));
                    inner.trial_in_flight = true;
                    Permit::Trial
                }
                CircuitState::Open => Permit::Rejected,
                CircuitState::HalfOpen if !inner.trial_in_flight => {
                    inner.trial_in_flight = true;
                    Permit::Trial
                }
                CircuitState::HalfOpen => Permit::Rejected,
            }
        };
        self.notify(changed);
        permit
    }

    /// Lets the next request be the half-open trial without waiting out the rest of the
    /// timeout: the health check saw Redis answer while the breaker was open.
    pub fn try_soon(&self) {
        let mut inner = self.inner.lock().expect("breaker lock");
        if inner.state == CircuitState::Open {
            inner.opened_at = Instant::now().checked_sub(self.timeout).unwrap_or(inner.opened_at);
        }
    }

    /// Asks to send one request to Redis, with a guard that reports the outcome even when
    /// the request is cancelled midway (a Check the proxy gave up on): dropped unreported,
    /// it counts as a failure, so a half-open trial always resolves and a Redis that makes
    /// callers give up still opens the breaker.
    pub fn attempt(&self) -> Attempt<'_> {
        Attempt { breaker: self, permit: self.permit(), reported: false }
    }

    /// Reports the outcome of a permitted request. `failed` is true only for failures
    /// that count ([`CacheError::counts_as_failure`]).
    pub fn record(&self, permit: Permit, failed: bool) {
        if !failed && permit == Permit::Allowed && self.quiet.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut changed = None;
        {
            let mut inner = self.inner.lock().expect("breaker lock");
            if permit == Permit::Trial {
                inner.trial_in_flight = false;
            }
            if failed {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                let reopen = inner.state == CircuitState::HalfOpen && permit == Permit::Trial;
                let trip = inner.state == CircuitState::Closed && inner.consecutive_failures >= self.threshold;
                if reopen || trip {
                    inner.opened_at = Instant::now();
                    changed = Some(Self::set(&mut inner, CircuitState::Open));
                }
            } else if permit != Permit::Rejected {
                inner.consecutive_failures = 0;
                if inner.state == CircuitState::HalfOpen && permit == Permit::Trial {
                    changed = Some(Self::set(&mut inner, CircuitState::Closed));
                }
            }
            self.quiet.store(
                inner.state == CircuitState::Closed && inner.consecutive_failures == 0,
                std::sync::atomic::Ordering::Release,
            );
        }
        self.notify(changed);
    }

    fn set(inner: &mut Inner, to: CircuitState) -> (CircuitState, CircuitState) {
        let from = inner.state;
        inner.state = to;
        inner.transitions += 1;
        (from, to)
    }

    /// Remembers why the last failure counted, for the log lines of state changes.
    fn note_cause(&self, cause: String) {
        *self.last_cause.lock().expect("breaker cause lock") = cause;
    }

    fn notify(&self, changed: Option<(CircuitState, CircuitState)>) {
        let Some((from, to)) = changed else { return };
        match to {
            CircuitState::Open => {
                let cause = self.last_cause.lock().expect("breaker cause lock").clone();
                tracing::error!(from = from.as_str(), error = %cause, "Circuit breaker opened");
                if from == CircuitState::Closed {
                    if self.memory_fallback.load(std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!("Falling back to memory cache");
                    } else {
                        tracing::error!(
                            "no memory fallback (redis.memoryFallback: false): cache requests fail until redis is back"
                        );
                    }
                }
            }
            CircuitState::HalfOpen => tracing::info!("Circuit breaker half-open: trying redis again"),
            CircuitState::Closed => tracing::info!("Redis connection restored"),
        }
        let hooks = self.on_transition.lock().expect("breaker hooks lock").clone();
        for hook in hooks {
            hook(from, to);
        }
    }
}

/// One permitted (or rejected) request; see [`CircuitBreaker::attempt`].
pub struct Attempt<'a> {
    breaker: &'a CircuitBreaker,
    permit: Permit,
    reported: bool,
}

impl Attempt<'_> {
    pub fn permit(&self) -> Permit {
        self.permit
    }

    /// Reports the outcome (`failed`: a failure that counts).
    pub fn finish(mut self, failed: bool) {
        self.reported = true;
        self.breaker.record(self.permit, failed);
    }

    /// Reports the outcome of `result`; returns whether it counted as a failure.
    pub fn finish_with<T>(self, result: &Result<T, CacheError>) -> bool {
        let failed = match result {
            Err(error) if error.counts_as_failure() => {
                self.breaker.note_cause(error.to_string());
                true
            }
            _ => false,
        };
        self.finish(failed);
        failed
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.reported && self.permit != Permit::Rejected {
            self.breaker.note_cause(
                "cancelled before redis answered (the caller gave up, e.g. the proxy's ext_authz timeout)".into(),
            );
            self.breaker.record(self.permit, true);
        }
    }
}

/// A store that sends operations to `primary` (Redis or hybrid) through the breaker and
/// serves them from `fallback` (memory) when the breaker is not closed or the primary fails
/// — unless there is no fallback, in which case the caller gets the error.
pub struct BreakerStore {
    primary: Arc<dyn Store>,
    fallback: Option<MemoryStore>,
    breaker: Arc<CircuitBreaker>,
}

impl BreakerStore {
    pub fn new(primary: Arc<dyn Store>, fallback: Option<MemoryStore>, breaker: Arc<CircuitBreaker>) -> Self {
        BreakerStore { primary, fallback, breaker }
    }

    /// Checks the primary's health through the breaker every `interval`: a failure counts
    /// like a failed request (so the breaker opens without traffic), and while open the
    /// check is the half-open trial (so it closes by itself once Redis is back). Ends when
    /// the store is dropped.
    pub fn spawn_health_checks(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let attempt = store.breaker.attempt();
                if attempt.permit() == Permit::Rejected {
                    // Still look, without counting: `/healthz` and the error log must
                    // follow Redis while the breaker waits out its timeout. A Redis that
                    // answers again cuts the wait short: the next check is the trial.
                    if store.primary.health().await.is_ok() {
                        store.breaker.try_soon();
                    }
                    continue;
                }
                let result = store.primary.health().await;
                attempt.finish_with(&result);
            }
        });
    }
}

/// Runs `$op` on the primary through the breaker, or on the fallback.
macro_rules! guarded {
    ($self:ident, $store:ident => $op:expr) => {{
        let attempt = $self.breaker.attempt();
        if attempt.permit() != Permit::Rejected {
            let $store: &dyn Store = &*$self.primary;
            let result = $op.await;
            let failed = attempt.finish_with(&result);
            if !failed {
                return result;
            }
            if $self.fallback.is_none() {
                return result;
            }
        }
        match &$self.fallback {
            Some(fallback) => {
                let $store: &dyn Store = fallback;
                $op.await
            }
            None => Err(CacheError::BreakerOpen),
        }
    }};
}

#[async_trait]
impl Store for BreakerStore {
    fn tier(&self) -> Tier {
        self.primary.tier()
    }

    fn fetch_local(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.primary.fetch_local(key)
    }

    /// The primary's (the hybrid L1's): like its local answers, no Redis round trip.
    fn absence_epoch(&self) -> Option<super::AbsenceEpoch> {
        self.primary.absence_epoch()
    }

    async fn fetch(&self, key: &str) -> Result<Option<(Vec<u8>, Tier)>, CacheError> {
        // An answer from the primary's own memory (the hybrid L1) involves no Redis round
        // trip: it is not Redis's success to count, nor refused while the breaker is open.
        if let Some(known) = self.primary.fetch_local(key) {
            return Ok(known.map(|value| (value, Tier::Memory)));
        }
        guarded!(self, store => store.fetch(key))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.fetch(key).await?.map(|(value, _)| value))
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        guarded!(self, store => store.get_with_ttl(key))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        guarded!(self, store => store.set(key, value, ttl))
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        guarded!(self, store => store.set_if_absent(key, value, ttl))
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        guarded!(self, store => store.delete(key))
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        guarded!(self, store => store.exists(key))
    }

    async fn compare_and_delete(&self, key: &str, expected: &[u8]) -> Result<bool, CacheError> {
        guarded!(self, store => store.compare_and_delete(key, expected))
    }

    async fn compare_and_expire(&self, key: &str, expected: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        guarded!(self, store => store.compare_and_expire(key, expected, ttl))
    }

    async fn clear(&self) -> Result<(), CacheError> {
        if let Some(fallback) = &self.fallback {
            fallback.clear().await?;
        }
        guarded!(self, store => store.clear())
    }

    async fn health(&self) -> Result<(), CacheError> {
        // Health reports the primary's own state, never the fallback's.
        self.primary.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(3, Duration::from_secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let b = breaker();
        for _ in 0..2 {
            let p = b.permit();
            b.record(p, true);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        let p = b.permit();
        b.record(p, true);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.permit(), Permit::Rejected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let b = breaker();
        for failed in [true, true, false, true, true] {
            let p = b.permit();
            b.record(p, failed);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.failures(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_timeout_allows_one_trial() {
        let b = breaker();
        for _ in 0..3 {
            let p = b.permit();
            b.record(p, true);
        }
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(b.permit(), Permit::Rejected);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.permit(), Permit::Trial);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.permit(), Permit::Rejected, "only one trial at a time");
        b.record(Permit::Trial, false);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.permit(), Permit::Allowed);
    }

    /// A half-open trial whose request is cancelled (the proxy gave up on the Check) still
    /// resolves: the breaker does not stay half-open with nobody allowed to try.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_resolves_and_the_next_one_can_close_the_breaker() {
        let b = breaker();
        for _ in 0..3 {
            b.attempt().finish(true);
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        let trial = b.attempt();
        assert_eq!(trial.permit(), Permit::Trial);
        drop(trial); // cancelled, never reported
        assert_eq!(b.state(), CircuitState::Open, "a cancelled trial counts as a failed one");
        tokio::time::advance(Duration::from_secs(60)).await;
        let next = b.attempt();
        assert_eq!(next.permit(), Permit::Trial, "another trial is possible");
        next.finish(false);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_for_another_timeout() {
        let b = breaker();
        for _ in 0..3 {
            let p = b.permit();
            b.record(p, true);
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        let trial = b.permit();
        b.record(trial, true);
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.permit(), Permit::Rejected);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.permit(), Permit::Trial);
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_reported_once_each() {
        let b = breaker();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        b.on_transition(Arc::new(move |from, to| sink.lock().unwrap().push((from, to))));
        for _ in 0..5 {
            let p = b.permit();
            b.record(p, true);
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        let trial = b.permit();
        b.record(trial, false);
        use CircuitState::*;
        assert_eq!(*seen.lock().unwrap(), vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
        assert_eq!(b.transitions(), 3);
    }
}
