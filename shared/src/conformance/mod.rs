//! The conformance suites: one per port, run against every adapter of that port (as `object_store`
//! does in its `integration.rs`). They panic on failure, like any test.

pub mod blob;
pub mod queue;
pub mod secrets;
pub mod warehouse;
