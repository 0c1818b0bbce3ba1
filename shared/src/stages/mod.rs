//! The four stages, written once against the ports. Each handler may run twice on the same message
//! (at-least-once delivery) and must leave the same result.

pub mod extract;
pub mod loader;
pub mod merge;
pub mod object_state;
mod part_header;
pub mod records;
pub mod runner;
pub mod soql;
pub mod upload;

use std::fmt;

use crate::contracts::ContractError;
use crate::ports::SalesforceError;
use crate::ports::{BlobError, QueueError, WarehouseError};
use soql::SoqlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Loader,
    Extract,
    Upload,
    Merge,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Loader => "job-loader",
            Stage::Extract => "extract",
            Stage::Upload => "upload",
            Stage::Merge => "merge",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error(transparent)]
    Soql(#[from] SoqlError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The run's own files are inconsistent (a missing part, an unreadable schema).
    #[error("{0}")]
    Inconsistent(String),
}

/// A stage's failure: which stage, which object, what went wrong, and whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[error("{stage} stage, object {object}: {cause}")]
pub struct StageError {
    pub stage: Stage,
    pub object: String,
    #[source]
    pub cause: Box<Cause>,
    /// Set when retrying cannot help, whatever the cause.
    pub permanent: bool,
}

impl StageError {
    pub fn new(stage: Stage, object: impl fmt::Display, cause: impl Into<Cause>) -> Self {
        Self {
            stage,
            object: object.to_string(),
            cause: Box::new(cause.into()),
            permanent: false,
        }
    }

    /// Marks the failure as one no retry can fix.
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// Retryable failures go back to the queue; the others go to the dead-letter queue at once.
    pub fn is_retryable(&self) -> bool {
        if self.permanent {
            return false;
        }
        match self.cause.as_ref() {
            Cause::Contract(_) | Cause::Soql(_) => false,
            Cause::Salesforce(e) => e.is_retryable(),
            Cause::Blob(BlobError::InvalidKey { .. } | BlobError::AccessDenied { .. })
            | Cause::Queue(QueueError::AccessDenied { .. }) => false,
            Cause::Blob(_) | Cause::Queue(_) => true,
            Cause::Warehouse(
                WarehouseError::BadFile { .. }
                | WarehouseError::Schema { .. }
                | WarehouseError::Rejected { .. },
            ) => false,
            Cause::Warehouse(_) => true,
            // A part may still be on its way (a late upload); let the queue try again.
            Cause::Inconsistent(_) => true,
        }
    }
}

/// Adds the stage and object to a fallible call's error.
pub(crate) trait StageResultExt<T> {
    fn at(self, stage: Stage, object: &dyn fmt::Display) -> Result<T, StageError>;
}

impl<T, E: Into<Cause>> StageResultExt<T> for Result<T, E> {
    fn at(self, stage: Stage, object: &dyn fmt::Display) -> Result<T, StageError> {
        self.map_err(|e| StageError::new(stage, object, e))
    }
}
#[cfg(test)]
mod tests;
