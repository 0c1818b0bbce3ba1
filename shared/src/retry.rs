//! Retries of calls that may succeed later, shared by the Salesforce and Snowflake clients.

/// Retries of requests that may succeed later (5xx, SERVER_UNAVAILABLE, concurrency limits,
/// dropped connections): exponential backoff with full jitter, a bounded number of times.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: std::time::Duration,
    pub max_delay: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: std::time::Duration::from_millis(500),
            max_delay: std::time::Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A random delay up to `base × 2^attempt`, capped (full jitter spreads retries of many
    /// workers apart).
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}
