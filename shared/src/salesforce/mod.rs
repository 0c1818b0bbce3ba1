//! The Salesforce client: auth, describe, SOQL, Bulk API 2.0, errors.

pub mod auth;
pub mod client;
pub mod describe;
pub mod errors;
pub mod soql;

pub use auth::Credentials;
pub use client::{ApiUsage, JobInfo, JobState, ResultPage, SalesforceClient, SalesforceConfig};
pub use describe::{FieldDescribe, GlobalDescribe, ObjectDescribe};
pub use errors::SalesforceError;
