//! Secrets from AWS Secrets Manager, cached for a warm container with a time to live.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::ports::{Secrets, SecretsError};

pub struct SecretsManagerSecrets {
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, SecretString)>>,
}

impl std::fmt::Debug for SecretsManagerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerSecrets")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerSecrets {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Secrets for SecretsManagerSecrets {
    /// `name` is the secret's name or ARN.
    async fn get(&self, name: &str) -> Result<SecretString, SecretsError> {
        let mut cache = self.cache.lock().await;
        if let Some((fetched, value)) = cache.get(name)
            && fetched.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let result = self.client.get_secret_value().secret_id(name).send().await;
        let output = match result {
            Ok(output) => output,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Err(SecretsError::NotFound {
                    name: name.to_string(),
                });
            }
            Err(error) => {
                return Err(SecretsError::Service {
                    name: name.to_string(),
                    // The SDK's error text names the secret and the failure, never its value.
                    message: format!("{error:?}").chars().take(500).collect(),
                });
            }
        };
        let value = output
            .secret_string()
            .map(|s| SecretString::from(s.to_string()))
            .ok_or_else(|| SecretsError::Service {
                name: name.to_string(),
                message: "the secret has no string value (binary secrets are not supported)".into(),
            })?;
        cache.insert(name.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }
}
