//! The Salesforce adapter: the HTTP client of the REST and Bulk API 2.0 ([`SalesforceClient`],
//! which implements [`crate::ports::Salesforce`]), and its logins ([`auth`]). What it speaks (jobs,
//! describes, errors) is the port's, re-exported here for the client's callers.

pub mod auth;
pub mod client;
mod errors;

pub use crate::ports::salesforce::{
    ApiUsage, FieldDescribe, GlobalDescribe, JobInfo, JobState, ObjectDescribe, QueryPage,
    ResultPage, SalesforceError,
};
pub use auth::Credentials;
pub use client::{SalesforceClient, SalesforceConfig};
