//! Notices for one machine: appended as JSON lines to a file (`notices.jsonl` in a local run's
//! directory), where `sfpipe status` and a person can read them.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::ports::{Notice, Notifier, NotifyError};

#[derive(Debug, Clone)]
pub struct FileNotifier {
    path: PathBuf,
    target: String,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoticeLine {
    pub subject: String,
    pub message: String,
    pub sent_at: chrono::DateTime<chrono::Utc>,
}

impl FileNotifier {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            target: path.display().to_string(),
            path,
        }
    }

    /// Every notice the file holds, oldest first.
    pub fn read(path: &Path) -> std::io::Result<Vec<NoticeLine>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }
}

#[async_trait]
impl Notifier for FileNotifier {
    fn target(&self) -> &str {
        &self.target
    }

    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let notice = Notice::new(&notice.subject, &notice.message);
        let line = NoticeLine {
            subject: notice.subject,
            message: notice.message,
            sent_at: chrono::Utc::now(),
        };
        let mut text = serde_json::to_string(&line).map_err(|e| NotifyError::Service {
            target: self.target.clone(),
            message: e.to_string(),
        })?;
        text.push('\n');
        let path = self.path.clone();
        let service = |e: std::io::Error| NotifyError::Service {
            target: self.target.clone(),
            message: e.to_string(),
        };
        // One write of a whole line in append mode: concurrent notices never interleave.
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?
                .write_all(text.as_bytes())
        })
        .await
        .map_err(|e| service(std::io::Error::other(e)))?
        .map_err(service)
    }
}
