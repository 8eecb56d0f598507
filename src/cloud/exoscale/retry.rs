//! When and how long to wait before trying a request again.

use std::time::{Duration, SystemTime};

/// Bounded in attempts and in time; exponential with jitter so that many clients hit by
/// the same outage do not come back in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 0), or `None` to give up.
    /// A server's `Retry-After` wins over our own schedule, but not over our time budget.
    pub fn delay(
        &self,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt + 1 >= self.max_attempts {
            return None;
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        // "Equal jitter": half fixed, half random, so the wait still grows.
        let half = exp / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        let wait = match retry_after {
            Some(ra) => ra.max(jittered.min(ra + half)),
            None => jittered,
        };
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }
}

/// Whether an HTTP status is worth another try: throttling and server faults, except
/// 501, which will not get better.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status) && status != 501
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 403, 404, 409, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn delays_grow_stay_bounded_and_stop() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            max_elapsed: Duration::from_secs(10),
        };
        for attempt in 0..4 {
            let exp = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_millis(400));
            for _ in 0..50 {
                let d = p.delay(attempt, Duration::ZERO, None).unwrap();
                assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(
            p.delay(4, Duration::ZERO, None),
            None,
            "attempts are bounded"
        );
        assert_eq!(
            p.delay(0, Duration::from_secs(10), None),
            None,
            "time is bounded"
        );
    }

    #[test]
    fn retry_after_is_honoured_within_the_budget() {
        let p = RetryPolicy::default();
        let d = p
            .delay(0, Duration::ZERO, Some(Duration::from_secs(7)))
            .unwrap();
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_millis(7250),
            "{d:?}"
        );
        assert_eq!(
            p.delay(0, Duration::ZERO, Some(Duration::from_secs(600))),
            None
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
