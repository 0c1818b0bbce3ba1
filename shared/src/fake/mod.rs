//! In-memory doubles of the ports, for tests that drive a stage down one branch at a time and
//! inject the faults a real service can answer with. They prove nothing about an adapter: the
//! conformance suites and the simulator do that. [`FakeSalesforce`] itself passes the Salesforce
//! port's conformance suite, so a stage test on it tests the stage against the port's contract.

mod blob;
mod queue;
mod salesforce;

pub use blob::MemoryBlobs;
pub use queue::RecordingQueue;
pub use salesforce::{Call, FakeSalesforce};
