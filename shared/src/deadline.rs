//! An invocation's deadline, and the time limits the template gives each function.
//!
//! Lambda kills a function at its timeout, whatever it is doing, and a killed invocation's
//! messages come back only after their visibility timeout. So every handler that can run long
//! (paging a REST query, waiting for a Snowflake statement, queuing hundreds of objects) asks the
//! deadline before each step and stops with a margin: it hands the rest of its work on (a
//! continuation message, a release with delay) instead of being killed halfway.
//!
//! The deadline is task-local, set by whoever runs the handler: [`crate::lambda`] from Lambda's
//! `Context::deadline`, the local pipeline from [`FunctionLimits`] (scaled). Code run without
//! one (a unit test, a CLI command) has no deadline and is never cut short.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Deadline;
}

/// When the current invocation will be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    started: Instant,
    at: Instant,
}

impl Deadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            at: started + limit,
        }
    }

    /// Lambda's `Context::deadline` (milliseconds since the epoch); `None` when it is not in
    /// the future. Lambda hands an invocation its event before its deadline, so a deadline
    /// already past comes from an emulator that has none to give (`cargo lambda watch` sends
    /// 600,000 ms: 1970), and the invocation runs as if it had no deadline.
    pub fn at_epoch_millis(deadline_ms: u64) -> Option<Self> {
        let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        let left = deadline
            .duration_since(std::time::SystemTime::now())
            .ok()
            .filter(|left| !left.is_zero());
        if left.is_none() {
            tracing::warn!(
                deadline_ms,
                "the invocation's deadline is already past: running without one"
            );
        }
        left.map(Self::after)
    }

    pub fn time_left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The whole invocation's time, from when the deadline was set.
    pub fn limit(&self) -> Duration {
        self.at - self.started
    }

    /// What every step leaves for finishing up (storing a manifest, sending the continuation,
    /// settling the message): a fifth of the invocation.
    pub fn reserve(&self) -> Duration {
        self.limit() / 5
    }

    /// Whether a step expected to take `step` still ends before the reserve.
    pub fn allows(&self, step: Duration) -> bool {
        self.time_left() > step + self.reserve()
    }

    /// How long a step may take at most and still end before the reserve.
    pub fn budget(&self) -> Duration {
        self.time_left().saturating_sub(self.reserve())
    }
}

/// Runs `work` under `deadline` (readable with [`current`] inside it).
pub async fn within<F: Future>(deadline: Deadline, work: F) -> F::Output {
    CURRENT.scope(deadline, work).await
}

/// Runs `work` under `deadline`, if there is one.
pub async fn within_any<F: Future>(deadline: Option<Deadline>, work: F) -> F::Output {
    match deadline {
        Some(deadline) => within(deadline, work).await,
        None => work.await,
    }
}

/// The current invocation's deadline, if it has one.
pub fn current() -> Option<Deadline> {
    CURRENT.try_with(|deadline| *deadline).ok()
}

/// Whether a step expected to take `step` fits before the current deadline's reserve; always
/// true without a deadline.
pub fn allows(step: Duration) -> bool {
    current().is_none_or(|deadline| deadline.allows(step))
}

/// `limit`, or less if the current deadline leaves less before its reserve.
pub fn bounded(limit: Duration) -> Duration {
    current().map_or(limit, |deadline| deadline.budget().min(limit))
}

/// A function's time limit and its queue's visibility timeout, as the template sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionLimits {
    /// The function's `Timeout`.
    pub timeout: Duration,
    /// The visibility timeout of the queue it consumes (none for the job-loader): six times the
    /// timeout, as AWS advises for an SQS event source, plus its batching window. It matters
    /// only when an invocation dies without settling its messages; every handler stops itself
    /// before its timeout.
    pub visibility_timeout: Option<Duration>,
}

impl FunctionLimits {
    const fn new(timeout_s: u64, visibility_s: Option<u64>) -> Self {
        Self {
            timeout: Duration::from_secs(timeout_s),
            visibility_timeout: match visibility_s {
                Some(s) => Some(Duration::from_secs(s)),
                None => None,
            },
        }
    }

    /// Both limits times `factor` (for tests that want a short deadline), never below 1 ms.
    pub fn scaled(self, factor: f64) -> Self {
        let scale = |d: Duration| d.mul_f64(factor).max(Duration::from_millis(1));
        Self {
            timeout: scale(self.timeout),
            visibility_timeout: self.visibility_timeout.map(scale),
        }
    }
}

/// The limits of the four functions, as `template.yaml` deploys them (a test holds the
/// template to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageLimits {
    pub job_loader: FunctionLimits,
    pub extract: FunctionLimits,
    pub upload: FunctionLimits,
    pub merge: FunctionLimits,
}

impl StageLimits {
    pub const TEMPLATE: Self = Self {
        job_loader: FunctionLimits::new(60, None),
        // 6 × 120 s + extract's 1 s batching window, rounded up.
        extract: FunctionLimits::new(120, Some(750)),
        upload: FunctionLimits::new(300, Some(1800)),
        merge: FunctionLimits::new(900, Some(5400)),
    };

    /// The limits of the function that runs `stage`.
    pub fn of(&self, stage: crate::stages::Stage) -> FunctionLimits {
        use crate::stages::Stage;
        match stage {
            Stage::Loader => self.job_loader,
            Stage::Extract => self.extract,
            Stage::Upload => self.upload,
            Stage::Merge => self.merge,
        }
    }

    pub fn scaled(self, factor: f64) -> Self {
        Self {
            job_loader: self.job_loader.scaled(factor),
            extract: self.extract.scaled(factor),
            upload: self.upload.scaled(factor),
            merge: self.merge.scaled(factor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_is_read_inside_its_scope_only() {
        assert_eq!(current(), None);
        assert!(allows(Duration::from_secs(1_000_000)));
        let deadline = Deadline::after(Duration::from_secs(100));
        within(deadline, async {
            assert_eq!(current(), Some(deadline));
            assert!(allows(Duration::from_secs(10)));
            // 100 s less a fifth kept for finishing up.
            assert!(!allows(Duration::from_secs(81)));
            assert!(bounded(Duration::from_secs(1000)) <= Duration::from_secs(80));
            assert_eq!(bounded(Duration::from_secs(5)), Duration::from_secs(5));
        })
        .await;
        assert_eq!(current(), None);
    }

    #[test]
    fn a_lambda_deadline_already_past_is_no_deadline() {
        // What `cargo lambda watch` sends.
        assert_eq!(Deadline::at_epoch_millis(600_000), None);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let deadline = Deadline::at_epoch_millis(now_ms + 60_000).expect("a minute ahead");
        assert!(deadline.time_left() > Duration::from_secs(50));
    }

    #[test]
    fn template_limits_scale_together() {
        let small = StageLimits::TEMPLATE.scaled(0.01);
        assert_eq!(small.upload.timeout, Duration::from_secs(3));
        assert_eq!(
            small.merge.visibility_timeout,
            Some(Duration::from_secs(54))
        );
        assert_eq!(small.job_loader.visibility_timeout, None);
    }
}
