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
    /// Clients for the other regions ARNs have named, made once each.
    regional: Mutex<HashMap<String, Client>>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, SecretString)>>,
}

/// The region an ARN names (`arn:aws:secretsmanager:<region>:<account>:secret:<name>`); `None`
/// for a name.
fn arn_region(name: &str) -> Option<&str> {
    let mut parts = name.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_partition), Some("secretsmanager"), Some(region))
            if !region.is_empty() =>
        {
            Some(region)
        }
        _ => None,
    }
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
            regional: Mutex::new(HashMap::new()),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client for the secret: a secret lives in one region, and an ARN names it, whatever
    /// the stack's region (a secret created without `--region` lands in the CLI's default).
    async fn client_for(&self, name: &str) -> Client {
        let Some(region) = arn_region(name) else {
            return self.client.clone();
        };
        if self
            .client
            .config()
            .region()
            .is_some_and(|r| r.as_ref() == region)
        {
            return self.client.clone();
        }
        self.regional
            .lock()
            .await
            .entry(region.to_string())
            .or_insert_with(|| {
                Client::from_conf(
                    self.client
                        .config()
                        .to_builder()
                        .region(aws_sdk_secretsmanager::config::Region::new(
                            region.to_string(),
                        ))
                        .build(),
                )
            })
            .clone()
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
        let client = self.client_for(name).await;
        let result = client.get_secret_value().secret_id(name).send().await;
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

#[cfg(test)]
mod tests {
    use super::arn_region;

    #[test]
    fn the_region_of_an_arn_and_none_of_a_name() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:sfpipe/sf-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x"),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("sfpipe/salesforce"), None);
        assert_eq!(arn_region("arn:aws:s3:::bucket"), None);
    }
}
