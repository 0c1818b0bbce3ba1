//! What every secrets adapter must do. The adapter under test holds the secret
//! `sfpipe-conformance` with the value `s3cr3t-value`.

use crate::ports::{Secrets, SecretsError};
use secrecy::ExposeSecret;

pub const NAME: &str = "sfpipe-conformance";
pub const VALUE: &str = "s3cr3t-value";

pub async fn reads_a_secret(secrets: &dyn Secrets) {
    let value = secrets.get(NAME).await.expect("get");
    assert_eq!(value.expose_secret(), VALUE);
    assert!(
        !format!("{value:?}").contains(VALUE),
        "a secret showed in Debug output"
    );
}

pub async fn a_missing_secret_is_named(secrets: &dyn Secrets) {
    match secrets.get("sfpipe-no-such-secret").await {
        Err(SecretsError::NotFound { name }) => assert_eq!(name, "sfpipe-no-such-secret"),
        other => panic!("expected NotFound, got {:?}", other.map(|_| "a value")),
    }
}

pub async fn run_all(secrets: &dyn Secrets) {
    reads_a_secret(secrets).await;
    a_missing_secret_is_named(secrets).await;
}
