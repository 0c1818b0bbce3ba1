//! Authentication to the SQL API: a key-pair JWT (RS256, with the public key's fingerprint in `iss`),
//! renewed before it expires, or an OAuth access token.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::SnowflakeError;

/// Snowflake accepts key-pair JWTs for at most an hour.
const TOKEN_LIFETIME: Duration = Duration::from_secs(59 * 60);
/// A token with less than this left is replaced before use.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

pub enum SnowflakeAuth {
    KeyPair(KeyPairJwt),
    OAuth(SecretString),
}

impl std::fmt::Debug for SnowflakeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyPair(jwt) => f
                .debug_struct("KeyPair")
                .field("qualified_user", &jwt.qualified_user)
                .field("fingerprint", &jwt.fingerprint)
                .finish_non_exhaustive(),
            Self::OAuth(_) => f.write_str("OAuth(<redacted>)"),
        }
    }
}

impl SnowflakeAuth {
    /// The `Authorization` bearer token and its `X-Snowflake-Authorization-Token-Type`.
    pub fn token(&self) -> Result<(SecretString, &'static str), SnowflakeError> {
        match self {
            Self::KeyPair(jwt) => Ok((jwt.token()?, "KEYPAIR_JWT")),
            Self::OAuth(token) => Ok((token.clone(), "OAUTH")),
        }
    }

    /// Forget a cached token the server refused, so the next call signs a new one.
    pub fn invalidate(&self) {
        if let Self::KeyPair(jwt) = self {
            *jwt.lock() = None;
        }
    }
}

/// Signs key-pair JWTs for one user and caches the current one.
pub struct KeyPairJwt {
    /// `ACCOUNT.USER`, upper case: the JWT's `sub`.
    qualified_user: String,
    /// `SHA256:<base64 of the SHA-256 of the DER public key>`, as `DESC USER` shows it.
    fingerprint: String,
    key: jsonwebtoken::EncodingKey,
    cached: Mutex<Option<(SecretString, SystemTime)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// The account part of a JWT: upper case, without a region or cloud suffix (`xy12345.eu-west-1`
/// becomes `XY12345`); an organization-account name keeps its hyphen and underscores
/// (`MYORG-DATA_LAKE`); a global URL's identifier (`xy12345-abc123.global`) is its locator, the
/// part before the first hyphen, as Snowflake's own connectors take it.
pub fn jwt_account(account: &str) -> String {
    let host = account.trim().trim_end_matches(".snowflakecomputing.com");
    let account = if host.to_ascii_lowercase().contains(".global") {
        host.split('-').next()
    } else {
        host.split('.').next()
    }
    .unwrap_or_default();
    account.to_ascii_uppercase()
}

impl KeyPairJwt {
    /// `private_key_pem`: an unencrypted RSA key, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`).
    pub fn new(
        account: &str,
        user: &str,
        private_key_pem: &SecretString,
    ) -> Result<Self, SnowflakeError> {
        let bad_key = |detail: &str| {
            SnowflakeError::Config(format!(
                "the Snowflake private key is not usable ({detail}): store an unencrypted RSA key in PEM \
                 (openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt) and register its public key with \
                 ALTER USER ... SET RSA_PUBLIC_KEY"
            ))
        };
        let pem = pem::parse(private_key_pem.expose_secret().trim().as_bytes())
            .map_err(|_| bad_key("not PEM"))?;
        let pair = match pem.tag() {
            "PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_pkcs8(pem.contents()),
            "RSA PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_der(pem.contents()),
            "ENCRYPTED PRIVATE KEY" => return Err(bad_key("it is encrypted")),
            _ => return Err(bad_key("not an RSA private key")),
        }
        .map_err(|_| bad_key("not an RSA private key"))?;
        let public = pair
            .public_key()
            .as_der()
            .map_err(|_| bad_key("its public key cannot be encoded"))?;
        let digest = Sha256::digest(public.as_ref());
        let fingerprint = format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
                .map_err(|_| bad_key("not an RSA private key"))?;
        let (account, user) = (jwt_account(account), user.trim().to_ascii_uppercase());
        if account.is_empty() || user.is_empty() {
            return Err(SnowflakeError::Config(
                "the Snowflake account and user must not be empty".into(),
            ));
        }
        Ok(Self {
            qualified_user: format!("{account}.{user}"),
            fingerprint,
            key,
            cached: Mutex::new(None),
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(SecretString, SystemTime)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached token, or a new one when it has less than five minutes left.
    pub fn token(&self) -> Result<SecretString, SnowflakeError> {
        let now = SystemTime::now();
        let mut cached = self.lock();
        if let Some((token, expires)) = cached.as_ref()
            && expires.duration_since(now).unwrap_or_default() > RENEW_BEFORE
        {
            return Ok(token.clone());
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|e| SnowflakeError::Config(format!("system clock: {e}")))?
            .as_secs();
        let issuer = format!("{}.{}", self.qualified_user, self.fingerprint);
        let claims = Claims {
            iss: &issuer,
            sub: &self.qualified_user,
            iat,
            exp: iat + TOKEN_LIFETIME.as_secs(),
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| SnowflakeError::Config(format!("signing the Snowflake JWT: {e}")))?;
        let token = SecretString::from(token);
        *cached = Some((token.clone(), now + TOKEN_LIFETIME));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../simulator/keys/demo-connected-app.key.pem");

    #[test]
    fn account_loses_region_and_gains_upper_case() {
        assert_eq!(jwt_account("xy12345.eu-west-1"), "XY12345");
        assert_eq!(jwt_account("myorg-analytics"), "MYORG-ANALYTICS");
        assert_eq!(
            jwt_account("myorg-analytics.snowflakecomputing.com"),
            "MYORG-ANALYTICS"
        );
        assert_eq!(jwt_account("myorg-data_lake"), "MYORG-DATA_LAKE");
        assert_eq!(jwt_account("xy12345.us-east-2.aws"), "XY12345");
        assert_eq!(jwt_account("xy12345-abc123.global"), "XY12345");
    }

    #[test]
    fn token_claims_name_the_user_and_the_key_and_are_reused() {
        let jwt = KeyPairJwt::new("xy12345.eu-west-1", "loader", &SecretString::from(KEY))
            .expect("demo key");
        assert!(jwt.fingerprint().starts_with("SHA256:"));
        let token = jwt.token().expect("token");
        let again = jwt.token().expect("token");
        assert_eq!(
            token.expose_secret(),
            again.expose_secret(),
            "renewed too early"
        );
        let payload = token.expose_secret().split('.').nth(1).expect("payload");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("base64"),
        )
        .expect("json");
        assert_eq!(claims["sub"], "XY12345.LOADER");
        assert_eq!(
            claims["iss"],
            format!("XY12345.LOADER.{}", jwt.fingerprint())
        );
        assert_eq!(
            claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
            TOKEN_LIFETIME.as_secs()
        );
    }

    #[test]
    fn unusable_keys_say_how_to_make_one_and_never_echo_the_key() {
        for key in [
            "not a key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
        ] {
            let error = KeyPairJwt::new("a", "u", &SecretString::from(key))
                .err()
                .expect("rejected")
                .to_string();
            assert!(error.contains("openssl genrsa"), "{error}");
            assert!(!error.contains("AAAA"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let auth = SnowflakeAuth::OAuth(SecretString::from("very-secret-token"));
        assert!(!format!("{auth:?}").contains("very-secret-token"));
    }
}
