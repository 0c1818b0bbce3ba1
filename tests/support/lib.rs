//! Helpers shared by the integration tests: a simulator on a free port and sfpipe's client for it
//! (here), the whole pipeline on one machine with its checks ([`harness`]), faults to inject
//! ([`faults`]), moto ([`moto`]) and the Snowflake SQL API harness ([`snowflake`]).

use sfpipe_shared::salesforce::client::RetryPolicy;
use sfpipe_shared::salesforce::{Credentials, SalesforceClient, SalesforceConfig};
use sfpipe_simulator::{SimConfig, Simulator};

/// A simulator on a free port of 127.0.0.1; it stops when dropped.
pub async fn simulator(config: SimConfig) -> Simulator {
    Simulator::start_local(config)
        .await
        .expect("start the simulator")
}

/// sfpipe's client, logged in with the given credentials.
pub fn client_with(sim: &Simulator, credentials: Credentials) -> SalesforceClient {
    SalesforceClient::new(
        SalesforceConfig {
            retry: RetryPolicy {
                base_delay: std::time::Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            ..SalesforceConfig::new(sim.url())
        },
        credentials,
    )
    .expect("client")
}

/// sfpipe's client with the simulator's client credentials.
pub fn client_for(sim: &Simulator) -> SalesforceClient {
    let config = sim.config();
    client_with(
        sim,
        Credentials::ClientCredentials {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone().into(),
        },
    )
}

/// The simulator's client credentials as the Salesforce secret file `sfpipe run` reads, written
/// at `path`.
pub fn client_credentials_file(sim: &Simulator, path: &std::path::Path) -> std::path::PathBuf {
    let config = sim.config();
    std::fs::write(
        path,
        serde_json::json!({"flow": "client_credentials", "client_id": config.client_id,
                           "client_secret": config.client_secret})
        .to_string(),
    )
    .expect("write the Salesforce secret file");
    path.to_path_buf()
}

/// The Python interpreter of the venv `scripts/tools` makes.
pub fn venv_python() -> String {
    std::env::var("SFPIPE_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sfpipe/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

pub mod broker_queues;
pub mod counting;
pub mod faults;
pub mod harness;
pub mod moto;
pub mod rabbitmq;
pub mod redis;
pub mod snowflake;
