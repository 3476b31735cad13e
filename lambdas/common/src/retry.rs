//! When to try a failed call again, and how long to wait first.

use std::time::{Duration, Instant};

/// Capped exponential backoff that never sleeps past a deadline.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling to 5 s: about 10 s of waiting, well inside the time
    /// CloudFormation and EventBridge give a Lambda, and long enough for GitLab's rate limiter.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempts + 1`, or `None` to give up: attempts are used
    /// up, or the wait (the server's `Retry-After` when it sent one) would end past `deadline`.
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
        let delay = retry_after.unwrap_or(backoff.min(self.max_delay));
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
        let delays: Vec<Option<u128>> =
            (1..=6).map(|n| policy.next_delay(n, None, None).map(|d| d.as_millis())).collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), Some(500), Some(500), None]);
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
        assert_eq!(policy.next_delay(1, None, Some(later)), Some(Duration::from_millis(200)));
    }
}
