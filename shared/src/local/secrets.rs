//! Secrets for one machine: from memory (the demo, tests) or from environment variables.

use std::collections::HashMap;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::ports::{Secrets, SecretsError};

/// Secrets held in memory. `Debug` shows the names only.
#[derive(Default)]
pub struct StaticSecrets {
    values: HashMap<String, SecretString>,
}

impl std::fmt::Debug for StaticSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("StaticSecrets")
            .field("names", &names)
            .finish()
    }
}

impl StaticSecrets {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.values
            .insert(name.into(), SecretString::from(value.into()));
        self
    }
}

#[async_trait]
impl Secrets for StaticSecrets {
    async fn get(&self, name: &str) -> Result<SecretString, SecretsError> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| SecretsError::NotFound {
                name: name.to_string(),
            })
    }
}

/// Secrets from environment variables: the secret `salesforce` is read from
/// `SFPIPE_SECRET_SALESFORCE`.
#[derive(Debug, Default)]
pub struct EnvSecrets;

impl EnvSecrets {
    pub fn variable_for(name: &str) -> String {
        let upper: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("SFPIPE_SECRET_{upper}")
    }
}

#[async_trait]
impl Secrets for EnvSecrets {
    async fn get(&self, name: &str) -> Result<SecretString, SecretsError> {
        std::env::var(Self::variable_for(name))
            .map(SecretString::from)
            .map_err(|_| SecretsError::NotFound {
                name: name.to_string(),
            })
    }
}
