//! A local run's queue counts, kept in its directory while it goes on: its queues live in the
//! running process's memory, so `sfpipe status --dir` (and its page) read them from here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sfpipe_shared::local::LocalPipeline;
use sfpipe_shared::status::QueueStatus;

/// The file, in the run's directory.
pub const FILE: &str = "queues.json";

/// How often the counts are written while the run goes on.
const EVERY: Duration = Duration::from_millis(500);

/// Writes the pipeline's queue counts every [`EVERY`] until [`Keeper::finish`].
pub struct Keeper {
    task: tokio::task::JoinHandle<()>,
    pipeline: Arc<LocalPipeline>,
    dir: PathBuf,
}

/// Starts keeping `pipeline`'s counts in `dir`.
pub fn keep(pipeline: Arc<LocalPipeline>, dir: &Path) -> Keeper {
    let task = tokio::spawn({
        let pipeline = pipeline.clone();
        let dir = dir.to_path_buf();
        async move {
            loop {
                write(&dir, &pipeline.queue_statuses().await);
                tokio::time::sleep(EVERY).await;
            }
        }
    });
    Keeper {
        task,
        pipeline,
        dir: dir.to_path_buf(),
    }
}

impl Keeper {
    /// Stops, and writes the counts once more: the run's last word.
    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        write(&self.dir, &self.pipeline.queue_statuses().await);
    }
}

/// Replaces the file whole (written aside, then renamed), so a reader never sees half of it.
/// A failure is logged, never the run's: the counts are for looking at.
fn write(dir: &Path, queues: &[QueueStatus]) {
    let path = dir.join(FILE);
    let aside = dir.join(format!("{FILE}.writing"));
    let written = serde_json::to_vec_pretty(queues)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&aside, bytes))
        .and_then(|()| std::fs::rename(&aside, &path));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "could not keep the queue counts");
    }
}

/// The counts last kept in `dir`, if a run kept any.
pub fn read(dir: &Path) -> anyhow::Result<Vec<QueueStatus>> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not the queue counts sfpipe writes", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}
