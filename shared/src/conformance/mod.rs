//! The conformance suites: one per port, run against every adapter of that port (as `object_store`
//! does in its `integration.rs`). They panic on failure, like any test.

// Test code compiled into the library (behind the `conformance` feature): a panic is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod blob;
pub mod notify;
pub mod queue;
pub mod salesforce;
pub mod secrets;
pub mod warehouse;
