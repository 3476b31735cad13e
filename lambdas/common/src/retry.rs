//! When to try a failed call again, and how long to wait first.

use std::time::{Duration, Instant};

/// Capped exponential backoff with jitter that never sleeps past a deadline.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling (capped at 5 s): at most 0.2 + 0.4 + 0.8 + 1.6 = 3 s of
    /// waiting, well inside the time CloudFormation and EventBridge give a Lambda. GitLab's rate
    /// limiter says how long to wait with `Retry-After`, which is honoured instead.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempts + 1`, or `None` to give up: attempts are used
    /// up, or the wait (the server's `Retry-After` when it sent one) would end past `deadline`.
    /// The backoff is jittered between half and all of its value, so that the two projects'
    /// calls (or many Lambdas) that failed together do not come back together.
    pub fn next_delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Option<Duration> {
        if failed_attempts >= self.max_attempts {
            return None;
        }
        let backoff = self.base_delay.saturating_mul(2u32.saturating_pow(failed_attempts.saturating_sub(1)));
        let backoff = backoff.min(self.max_delay);
        let delay = retry_after.unwrap_or_else(|| backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0));
        match deadline {
            Some(deadline) if Instant::now() + delay >= deadline => None,
            _ => Some(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_then_stops() {
        let policy = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        for _ in 0..50 {
            let delays: Vec<Option<u128>> =
                (1..=6).map(|n| policy.next_delay(n, None, None).map(|d| d.as_millis())).collect();
            for (delay, cap) in delays.iter().zip([100, 200, 400, 500, 500]) {
                let delay = delay.expect("an attempt is left");
                assert!((cap / 2..=cap).contains(&delay), "{delay} ms is not within [{}, {cap}]", cap / 2);
            }
            assert_eq!(delays[5], None);
        }
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let policy = RetryPolicy::default();
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).filter_map(|_| policy.next_delay(3, None, None)).collect();
        assert!(waits.len() > 1, "twenty waits were all {waits:?}");
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.next_delay(1, Some(Duration::from_secs(2)), None), Some(Duration::from_secs(2)));
    }

    #[test]
    fn never_waits_past_the_deadline() {
        let policy = RetryPolicy::default();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(policy.next_delay(1, None, Some(soon)), None);
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(30)), Some(Instant::now() + Duration::from_secs(10))),
            None
        );
        let later = Instant::now() + Duration::from_secs(60);
        let delay = policy.next_delay(1, None, Some(later)).unwrap();
        assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&delay), "{delay:?}");
    }
}
