//! sfpipe's common crate: everything the four Lambda functions, the CLI and the tests share.
//!
//! - [`contracts`]: the messages between stages and the storage layout of a run.
//! - [`ports`]: the queue, blob store, warehouse and secrets traits the stages are written against.
//! - [`stages`]: the job-loader, extract, upload and merge handlers.
//! - [`salesforce`]: the Salesforce REST and Bulk API 2.0 client.
//! - [`local`] (feature `local`): adapters for one machine.
//! - [`conformance`] (feature `conformance`): the suites every adapter must pass.

pub mod contracts;
pub mod ports;
pub mod retry;
pub mod salesforce;
pub mod snowflake;
pub mod stages;
pub mod worker;

#[cfg(feature = "local")]
pub mod local;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(feature = "aws")]
pub mod aws;

#[cfg(feature = "lambda")]
pub mod lambda;

#[cfg(feature = "runtime")]
pub mod runtime;
