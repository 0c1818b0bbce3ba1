//! The Salesforce port's conformance suite against its adapters: sfpipe's HTTP client on the
//! simulator, and the in-memory fake the stage tests use.

use serde_json::json;
use sfpipe_shared::conformance::salesforce;
use sfpipe_shared::fake::FakeSalesforce;
use sfpipe_simulator::SimConfig;
use sfpipe_tests::{client_for, simulator};

#[tokio::test]
async fn the_http_client_on_the_simulator_conforms() {
    let sim = simulator(SimConfig {
        rows: 7,
        result_page_rows: 3,
        bulk_polls_to_complete: 2,
        ..SimConfig::default()
    })
    .await;
    salesforce::run_all(&client_for(&sim), "Account").await;
}

#[tokio::test]
async fn the_fake_conforms() {
    let fake = FakeSalesforce::new();
    fake.polls_to_complete(2);
    fake.page_rows(3);
    let rows = (1..=7)
        .map(|n| {
            json!({"Id": format!("001FAKE{n:011}"), "IsDeleted": n == 5,
                   "SystemModstamp": format!("2026-01-0{n}T00:00:00.000Z")})
        })
        .collect();
    fake.add_object(
        "Account",
        &[
            ("Id", "id"),
            ("IsDeleted", "boolean"),
            ("SystemModstamp", "datetime"),
        ],
        rows,
    );
    salesforce::run_all(&fake, "Account").await;
}
