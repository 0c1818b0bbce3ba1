//! The secrets port.

use async_trait::async_trait;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {name} does not exist: create it, or fix the name in the configuration")]
    NotFound { name: String },
    #[error("secret {name}: {message}")]
    Service { name: String, message: String },
}

#[async_trait]
pub trait Secrets: Send + Sync {
    async fn get(&self, name: &str) -> Result<SecretString, SecretsError>;
}
