//! sfpipe's common crate: everything the four Lambda functions, the CLI and the tests share.
//!
//! Where to start reading: [`ports`] (what the stages need from the world), then
//! [`stages`] (`extract`, `upload`, `merge`, `loader`, and [`stages::runner`], how a received
//! message reaches them), then one adapter of a port ([`salesforce::SalesforceClient`]).
//! [`contracts`] holds the messages between them.
//!
//! - [`contracts`]: the messages between stages, the storage layout of a run, name validation.
//! - [`ports`]: the queue, blob store, warehouse, secrets and Salesforce traits the stages are
//!   written against, and the values they exchange. Imports no adapter.
//! - [`stages`]: the job-loader, extract, upload and merge handlers; their SOQL; one runner.
//! - [`salesforce`]: the Salesforce REST and Bulk API 2.0 client (the Salesforce port's adapter).
//! - [`snowflake`]: the Snowflake SQL API client and warehouse adapter.
//! - [`checksum`]: CRC-64/NVME, the parts' checksum, as S3 verifies it.
//! - [`status`]: what the pipeline has done, read from what it stores (`sfpipe status`).
//! - [`usage`]: what each handling cost, counted by the adapters, kept as receipts.
//! - [`metrics`]: the receipts' numbers as CloudWatch Embedded Metric Format lines.
//! - [`cost`]: receipts priced: per run, per day at a schedule's rate, per million changed rows.
//! - [`deadline`]: the invocation's deadline handlers stop before, and the functions' limits.
//! - [`retry`], [`worker`]: backoff, and settling a received message by its handler's outcome.
//! - [`local`] (feature `local`): adapters for one machine, and the one-machine pipeline.
//! - [`conformance`] (feature `conformance`): the suites every adapter must pass.
//! - `fake` (tests, feature `conformance`): in-memory doubles of the ports that inject faults.
//! - [`aws`] (feature `aws`): the S3, SQS and Secrets Manager adapters.
//! - [`lambda`], [`runtime`] (features `lambda`, `runtime`): what the four Lambda mains share.

pub mod checksum;
pub mod contracts;
pub mod cost;
pub mod dead_letters;
pub mod deadline;
pub mod metrics;
pub mod ports;
pub mod retry;
pub mod salesforce;
pub mod snowflake;
pub mod stages;
pub mod status;
pub mod usage;
pub mod worker;

#[cfg(feature = "local")]
pub mod local;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(any(test, feature = "conformance"))]
pub mod fake;

#[cfg(feature = "aws")]
pub mod aws;

#[cfg(any(feature = "redis", feature = "rabbitmq"))]
pub mod brokers;

#[cfg(feature = "lambda")]
pub mod lambda;

#[cfg(feature = "runtime")]
pub mod runtime;
