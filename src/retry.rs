//! One retry schedule for every loop that waits and tries again: provider discovery, the
//! hybrid cache's invalidation subscriber, the Sentinel watchers, Redis command retries and
//! the cross-replica refresh-lock poll.
//!
//! Exponential with jitter: each wait is drawn from the upper half of the current step, and
//! the step doubles up to a ceiling. The jitter keeps N replicas that lost the same
//! dependency at the same instant from retrying in lock step.

use std::time::Duration;

/// An exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles per wait, never above `max` (`min == max`: a fixed interval
    /// with jitter).
    pub const fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, step: min }
    }

    /// The next wait: uniformly in `[step/2, step]`, then the step doubles.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.min;
    }

    /// Sleeps for [`Backoff::next_wait`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_ceiling_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_wait()).collect();
        let steps = [100, 200, 400, 400, 400];
        for (wait, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(*wait >= step / 2 && *wait <= step, "{wait:?} outside [{:?}, {step:?}]", step / 2);
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(100));
    }

    #[test]
    fn waits_differ_between_replicas() {
        let draw = || Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_wait();
        let first = draw();
        assert!((0..20).any(|_| draw() != first), "jitter spreads retries");
    }
}
