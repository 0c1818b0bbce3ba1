//! Adapters for one machine: an in-process queue, a filesystem blob store, an embedded SQLite
//! warehouse, in-memory or environment secrets and notices in a file.

pub mod blob;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod secrets;
pub mod warehouse;

pub use blob::FsBlobStore;
pub use notify::FileNotifier;
pub use pipeline::{
    LocalPipeline, LocalPipelineConfig, NoEvents, PipelineEvent, PipelineEvents, StagePorts,
    directory_stores,
};
pub use queue::{LocalQueue, LocalQueueConfig, QueueDepth};
pub use secrets::{EnvSecrets, StaticSecrets};
pub use warehouse::SqliteWarehouse;
