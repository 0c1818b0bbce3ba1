//! The Salesforce simulator, driven over HTTP by sfpipe's client and by plain requests.

use std::collections::BTreeSet;
use std::io::Read;

use futures::TryStreamExt;
use serde_json::Value;
use sfpipe_shared::salesforce::{
    Credentials, JobState, SalesforceClient, SalesforceConfig, SalesforceError,
};
use sfpipe_simulator::{Fault, SimConfig, Simulator};
use sfpipe_tests::{client_for, simulator};

async fn token(sim: &Simulator) -> String {
    token_with(&reqwest::Client::new(), sim).await
}

/// A session from the simulator's token endpoint (client credentials).
async fn token_with(http: &reqwest::Client, sim: &Simulator) -> String {
    let config = sim.config();
    let response: Value = http
        .post(format!("{}/services/oauth2/token", sim.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["access_token"].as_str().unwrap().to_string()
}

async fn get(sim: &Simulator, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", sim.url()))
        .bearer_auth(token)
        .header("Sforce-Query-Options", "batchSize=200")
        .send()
        .await
        .unwrap()
}

fn secret_json(value: serde_json::Value) -> Credentials {
    Credentials::from_secret_json(&value.to_string().into()).unwrap()
}

#[tokio::test]
async fn every_login_flow_works_and_bad_credentials_fail() {
    // A password with XML and form metacharacters, so escaping is exercised.
    let sim = simulator(SimConfig {
        rows: 10,
        password: "p&ss<w>rd\"'%+=TOKEN".into(),
        soap_login: true,
        ..SimConfig::default()
    })
    .await;
    let c = sim.config().clone();
    let good = [
        secret_json(serde_json::json!({
            "flow": "jwt_bearer", "client_id": c.client_id, "username": c.username,
            "private_key": sfpipe_simulator::DEMO_PRIVATE_KEY_PEM,
        })),
        secret_json(serde_json::json!({
            "flow": "client_credentials", "client_id": c.client_id, "client_secret": c.client_secret,
        })),
        secret_json(serde_json::json!({
            "flow": "refresh_token", "client_id": c.client_id, "client_secret": c.client_secret,
            "refresh_token": c.refresh_token,
        })),
        secret_json(serde_json::json!({
            "flow": "password", "client_id": c.client_id, "client_secret": c.client_secret,
            "username": c.username, "password": "p&ss<w>rd\"'%+=", "security_token": "TOKEN",
        })),
        secret_json(serde_json::json!({
            "flow": "soap", "username": c.username, "password": "p&ss<w>rd\"'%+=", "security_token": "TOKEN",
        })),
    ];
    for credentials in good {
        let flow = credentials.flow_name();
        let client = sfpipe_tests::client_with(&sim, credentials);
        let global = client.describe_global().await;
        assert!(global.is_ok(), "{flow}: {:?}", global.err());
    }
    let bad = [
        secret_json(serde_json::json!({
            "flow": "jwt_bearer", "client_id": c.client_id, "username": "someone.else@example.com",
            "private_key": sfpipe_simulator::DEMO_PRIVATE_KEY_PEM,
        })),
        secret_json(serde_json::json!({
            "flow": "client_credentials", "client_id": c.client_id, "client_secret": "wrong",
        })),
        secret_json(serde_json::json!({
            "flow": "refresh_token", "client_id": c.client_id, "client_secret": c.client_secret,
            "refresh_token": "expired",
        })),
        secret_json(serde_json::json!({
            "flow": "password", "client_id": c.client_id, "client_secret": c.client_secret,
            "username": c.username, "password": "wrong",
        })),
        secret_json(
            serde_json::json!({"flow": "soap", "username": c.username, "password": "wrong"}),
        ),
    ];
    for credentials in bad {
        let flow = credentials.flow_name();
        let err = sfpipe_tests::client_with(&sim, credentials)
            .describe_global()
            .await
            .unwrap_err();
        assert!(matches!(err, SalesforceError::Auth { .. }), "{flow}: {err}");
        assert!(!err.is_retryable(), "{flow}");
        let expected = if flow == "soap" {
            "INVALID_LOGIN"
        } else {
            "invalid_grant"
        };
        assert!(err.to_string().contains(expected), "{flow}: {err}");
    }
}

/// SOAP `login()` is disabled in orgs created from Winter '26 on (the simulator's default) and
/// gone from API 65.0: Salesforce refuses it with INVALID_OPERATION, and sfpipe's error says which
/// flow to use instead.
#[tokio::test]
async fn soap_login_refused_by_the_org_or_the_api_version_says_which_flow_to_use() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let c = sim.config().clone();
    let credentials = secret_json(serde_json::json!({
        "flow": "soap", "username": c.username, "password": c.password,
    }));
    let err = sfpipe_tests::client_with(&sim, credentials)
        .describe_global()
        .await
        .expect_err("SOAP login is disabled in the org");
    assert!(matches!(err, SalesforceError::Auth { .. }), "{err}");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("INVALID_OPERATION"), "{text}");
    assert!(text.contains("jwt_bearer"), "no advice: {text}");

    // Enabled in the org, it still is not there in API 65.0.
    let enabled = simulator(SimConfig {
        rows: 10,
        soap_login: true,
        ..SimConfig::default()
    })
    .await;
    let envelope = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><env:Body><urn:login><urn:username>{}</urn:username><urn:password>{}</urn:password></urn:login></env:Body></env:Envelope>"#,
        c.username, c.password
    );
    for (version, works) in [("64.0", true), ("65.0", false), ("66.0", false)] {
        let response = reqwest::Client::new()
            .post(format!("{}/services/Soap/u/{version}", enabled.url()))
            .header("Content-Type", "text/xml; charset=UTF-8")
            .header("SOAPAction", "login")
            .body(envelope.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().is_success(), works, "{version}");
        let body = response.text().await.expect("body");
        if !works {
            assert!(
                body.contains("sf:INVALID_OPERATION")
                    && body.contains(&format!(
                        "not available in the API version specified ({version})"
                    )),
                "{version}: {body}"
            );
        }
    }
}

/// Salesforce answers every SOAP login fault with HTTP 500; none of them goes away by trying
/// again, and retrying a refused login can lock the user out.
#[tokio::test]
async fn every_soap_login_fault_is_permanent_and_tried_once() {
    let sim = simulator(SimConfig {
        rows: 10,
        soap_login: true,
        ..SimConfig::default()
    })
    .await;
    let c = sim.config().clone();
    for code in [
        "LOGIN_MUST_USE_SECURITY_TOKEN",
        "API_DISABLED_FOR_ORG",
        "PASSWORD_EXPIRED",
        "INVALID_LOGIN",
    ] {
        // One fault only: a client that tried again would log in the second time.
        sim.inject(vec![Fault {
            path_contains: "/services/Soap/u/".into(),
            drop_mid_body: false,
            status: 500,
            error_code: code.into(),
            message: "refused by the test".into(),
            remaining: 1,
        }]);
        let credentials = secret_json(serde_json::json!({
            "flow": "soap", "username": c.username, "password": c.password,
        }));
        let err = sfpipe_tests::client_with(&sim, credentials)
            .describe_global()
            .await
            .expect_err(code);
        assert!(matches!(err, SalesforceError::Auth { .. }), "{code}: {err}");
        assert!(!err.is_retryable(), "{code}: {err}");
        assert!(err.to_string().contains(code), "{code}: {err}");
    }
}

#[tokio::test]
async fn client_credentials_work_on_my_domain_only_and_jwt_on_either_host() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let c = sim.config().clone();
    let on = |login_url: String, credentials: Credentials| {
        SalesforceClient::new(SalesforceConfig::new(login_url), credentials).unwrap()
    };
    let client_credentials = || {
        secret_json(serde_json::json!({
            "flow": "client_credentials", "client_id": c.client_id, "client_secret": c.client_secret,
        }))
    };
    let refused = on(sim.login_host_url(), client_credentials())
        .describe_global()
        .await
        .unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert!(refused.to_string().contains("My Domain"), "{refused}");
    on(sim.url().to_string(), client_credentials())
        .describe_global()
        .await
        .unwrap();
    let jwt = secret_json(serde_json::json!({
        "flow": "jwt_bearer", "client_id": c.client_id, "username": c.username,
        "private_key": sfpipe_simulator::DEMO_PRIVATE_KEY_PEM,
    }));
    on(sim.login_host_url(), jwt)
        .describe_global()
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_a_job_still_running_is_a_plain_api_error() {
    let sim = simulator(SimConfig {
        rows: 10,
        bulk_polls_to_complete: u32::MAX,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    let job = client
        .create_query_job("SELECT Id FROM Account", false)
        .await
        .unwrap();
    match client.delete_job(&job.id).await {
        Err(SalesforceError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "API_ERROR"));
        }
        other => panic!("deleting a running job: {other:?}"),
    }
    client.abort_job(&job.id).await.unwrap();
    client.delete_job(&job.id).await.unwrap();
}

#[tokio::test]
async fn describe_lists_objects_and_fields_with_their_types() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    let global = client.describe_global().await.unwrap();
    let names: BTreeSet<&str> = global
        .sobjects
        .iter()
        .filter(|o| o.queryable)
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Account",
            "Case",
            "Contact",
            "Invoice__c",
            "Lead",
            "Opportunity"
        ]
        .into()
    );
    let account = client.describe("Account").await.unwrap();
    let billing = account.field("BillingAddress").unwrap();
    assert_eq!(billing.field_type, "address");
    assert_eq!(
        account
            .field("BillingCity")
            .unwrap()
            .compound_field_name
            .as_deref(),
        Some("BillingAddress")
    );
    let bulk: Vec<&str> = account
        .bulk_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(bulk.contains(&"BillingCity") && !bulk.contains(&"BillingAddress"));
    let invoice = client.describe("Invoice__c").await.unwrap();
    assert_eq!(invoice.field("Scan__c").unwrap().field_type, "base64");
    assert!(!invoice.bulk_fields().iter().any(|f| f.name == "Scan__c"));
    let types: BTreeSet<String> = sim.with_org(|org| {
        org.objects
            .iter()
            .flat_map(|o| o.fields.iter().map(|f| f.sf_type.to_string()))
            .collect()
    });
    for t in [
        "id",
        "reference",
        "string",
        "textarea",
        "picklist",
        "currency",
        "percent",
        "int",
        "double",
        "boolean",
        "date",
        "datetime",
        "address",
        "base64",
        "email",
        "phone",
        "url",
    ] {
        assert!(types.contains(t), "no {t} field in the demo org");
    }
    assert!(
        client
            .describe("Nope__c")
            .await
            .is_err_and(|e| matches!(e, SalesforceError::UnknownObject { .. }))
    );
}

#[tokio::test]
async fn rest_query_pages_through_next_records_url_and_query_all_adds_deleted_rows() {
    let sim = simulator(SimConfig {
        rows: 700,
        ..SimConfig::default()
    })
    .await;
    let token = token(&sim).await;
    let live = sim.with_org(|org| org.live_count(0));
    for (endpoint, expected) in [("query", live), ("queryAll", 700)] {
        let mut path = format!(
            "/services/data/v62.0/{endpoint}?q=SELECT+Id,+Name,+IsDeleted,+BillingAddress+FROM+Account"
        );
        let mut ids = BTreeSet::new();
        let mut pages = 0;
        loop {
            let response = get(&sim, &token, &path).await;
            assert!(response.headers().contains_key("Sforce-Limit-Info"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["totalSize"], expected);
            pages += 1;
            for record in body["records"].as_array().unwrap() {
                assert_eq!(record["attributes"]["type"], "Account");
                assert!(record["IsDeleted"].is_boolean());
                ids.insert(record["Id"].as_str().unwrap().to_string());
            }
            if body["done"] == true {
                assert!(body.get("nextRecordsUrl").is_none());
                break;
            }
            path = body["nextRecordsUrl"].as_str().unwrap().to_string();
            assert!(path.starts_with("/services/data/v62.0/query/"), "{path}");
        }
        assert_eq!(ids.len() as u64, expected, "{endpoint}");
        assert!(pages >= 3, "{endpoint}: only {pages} pages");
    }
}

#[tokio::test]
async fn refused_queries_get_salesforce_errors() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let token = token(&sim).await;
    for (soql, status, code) in [
        ("SELECT FIELDS(ALL) FROM Account", 400, "MALFORMED_QUERY"),
        ("SELECT Id, Nope__c FROM Account", 400, "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", 400, "INVALID_TYPE"),
    ] {
        let response = get(
            &sim,
            &token,
            &format!("/services/data/v62.0/query?q={}", soql.replace(' ', "+")),
        )
        .await;
        assert_eq!(response.status().as_u16(), status, "{soql}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body[0]["errorCode"], code, "{soql}");
    }
    let response = get(&sim, "not-a-token", "/services/data/v62.0/sobjects/").await;
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");

    let client = client_for(&sim);
    let err = client
        .create_query_job("SELECT Id, BillingAddress FROM Account", false)
        .await
        .unwrap_err();
    // Word for word: other clients compare the message for equality.
    match &err {
        sfpipe_shared::salesforce::SalesforceError::Api { code, message, .. } => {
            assert_eq!(code, "API_ERROR");
            assert_eq!(
                message,
                "Selecting compound data not supported in Bulk Query"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = client
        .create_query_job("SELECT Id, Scan__c FROM Invoice__c", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Base64"), "{err}");
}

/// The status line and headers of a GET of `url` on the simulator, as the bytes on the wire say.
async fn raw_response_head(sim: &Simulator, url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let token = token(sim).await;
    // Result page links are paths on the instance.
    let path = url.trim_start_matches(sim.url()).to_string();
    let host = sim.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.expect("response");
    let text = String::from_utf8_lossy(&bytes);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn a_bulk_job_runs_to_completion_and_its_pages_download_in_parallel() {
    let sim = simulator(SimConfig {
        rows: 1000,
        bulk_polls_to_complete: 2,
        result_page_rows: 100,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    let job = client
        .create_query_job(
            "SELECT Id, Name, Description, SystemModstamp FROM Account",
            true,
        )
        .await
        .unwrap();
    assert_eq!(job.state, JobState::UploadComplete);
    let early = client.result_pages(&job.id, None).await.unwrap_err();
    assert!(
        matches!(early, SalesforceError::Api { status: 412, ref code, .. } if code == "JOB_NOT_COMPLETE"),
        "{early}"
    );
    let mut states = Vec::new();
    loop {
        let info = client.query_job(&job.id).await.unwrap();
        states.push(info.state);
        if info.state.is_final() {
            assert_eq!(info.number_records_processed, Some(1000));
            break;
        }
    }
    assert_eq!(
        states,
        [
            JobState::InProgress,
            JobState::InProgress,
            JobState::JobComplete
        ]
    );

    // resultPages answers five links at a time, as documented: the results resource and a
    // locator, no maxRecords (the resource takes none; Salesforce sized the pages).
    let first = client.result_pages(&job.id, None).await.unwrap();
    assert_eq!(first.links.len(), 5, "{first:?}");
    let next = first.next.clone().expect("more links");
    assert!(next.contains("/resultPages?locator="), "{next}");
    let pages = sfpipe_shared::ports::salesforce::all_result_pages(&client, &job.id)
        .await
        .unwrap();
    assert_eq!(pages.len(), 10, "{pages:?}");
    assert!(
        pages
            .iter()
            .chain([&next])
            .all(|url| !url.contains("maxRecords")),
        "{pages:?}"
    );
    assert!(pages[0].ends_with("/results"), "{pages:?}");
    assert!(pages[1].contains("/results?locator="), "{pages:?}");
    let downloads = pages.iter().map(|url| {
        let client = &client;
        async move {
            let page = client.download_results(url).await.unwrap();
            assert!(page.gzipped);
            let bytes: Vec<u8> = page.body.map_ok(|b| b.to_vec()).try_concat().await.unwrap();
            (page.records, page.next_locator, gunzip(&bytes))
        }
    });
    let results = futures::future::join_all(downloads).await;
    let mut ids = BTreeSet::new();
    for (index, (records, locator, csv)) in results.iter().enumerate() {
        assert_eq!(*records, Some(100));
        assert_eq!(
            locator.is_none(),
            index == 9,
            "page {index}: locator {locator:?}"
        );
        let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
        assert_eq!(
            reader.headers().unwrap(),
            vec!["Id", "Name", "Description", "SystemModstamp"]
        );
        for record in reader.records() {
            ids.insert(record.unwrap()[0].to_string());
        }
    }
    assert_eq!(ids.len(), 1000, "pages overlap or miss rows");

    // Header names as Salesforce writes them on HTTP/1.1, not in hyper's lower case: clients
    // that index a plain dict by "Sforce-Locator" (an unmodified Airbyte source) depend on it.
    let head = raw_response_head(&sim, &pages[1]).await;
    for name in [
        "\r\nSforce-Locator: ",
        "\r\nSforce-NumberOfRecords: ",
        "\r\nContent-Type: ",
        "\r\nSforce-Limit-Info: ",
    ] {
        assert!(head.contains(name), "{name:?} not in {head:?}");
    }
    client.delete_job(&job.id).await.unwrap();
    assert!(matches!(
        client.query_job(&job.id).await,
        Err(SalesforceError::Api { status: 404, .. })
    ));
}

/// Under the bandwidth model the simulator keeps each page it renders, as a real org stores a
/// job's results; a later job of the same query gets the same file, and a changed org a new one.
#[tokio::test]
async fn under_the_bandwidth_model_pages_are_stored_and_never_served_stale() {
    let sim = simulator(SimConfig {
        rows: 300,
        result_page_rows: 100,
        bandwidth: sfpipe_simulator::bandwidth::Bandwidth {
            megabits_per_second: Some(1000.0),
            first_byte: std::time::Duration::from_millis(5),
        },
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    let soql = "SELECT Id, Name, SystemModstamp FROM Account";
    let read_all = || async {
        let job = client.create_query_job(soql, false).await.unwrap();
        while !client.query_job(&job.id).await.unwrap().state.is_final() {}
        let mut pages = Vec::new();
        for url in sfpipe_shared::ports::salesforce::all_result_pages(&client, &job.id)
            .await
            .unwrap()
        {
            let page = client.download_results(&url).await.unwrap();
            let bytes: Vec<u8> = page.body.map_ok(|b| b.to_vec()).try_concat().await.unwrap();
            pages.push(gunzip(&bytes));
        }
        pages
    };
    let first = read_all().await;
    assert_eq!(first.len(), 3);
    assert_eq!(
        read_all().await,
        first,
        "a stored page differs from the first rendering"
    );
    sim.mutate(chrono::Utc::now());
    let after = read_all().await;
    for (page, (before, now)) in first.iter().zip(&after).enumerate() {
        assert_ne!(
            now, before,
            "page {page} from before the org changed was served"
        );
    }
    // A change outside the mutation rounds: rows hard-deleted from the first page.
    let purged = sim.hard_delete("Account", 5);
    assert_eq!(purged.len(), 5);
    let purged_page = read_all().await;
    assert_ne!(
        purged_page[0], after[0],
        "a page from before the hard delete was served"
    );
}

#[tokio::test]
async fn the_locator_chain_reaches_every_row_without_gzip() {
    let sim = simulator(SimConfig {
        rows: 250,
        bulk_polls_to_complete: 0,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    let job = client
        .create_query_job("SELECT Id FROM Contact", false)
        .await
        .unwrap();
    assert_eq!(
        client.query_job(&job.id).await.unwrap().state,
        JobState::JobComplete
    );
    let token = token(&sim).await;
    let mut locator: Option<String> = None;
    let mut rows = 0;
    loop {
        let path = match &locator {
            None => format!(
                "/services/data/v62.0/jobs/query/{}/results?maxRecords=100",
                job.id
            ),
            Some(l) => format!(
                "/services/data/v62.0/jobs/query/{}/results?maxRecords=100&locator={l}",
                job.id
            ),
        };
        let response = get(&sim, &token, &path).await;
        assert!(response.headers().get("content-encoding").is_none());
        let next = response.headers()["Sforce-Locator"]
            .to_str()
            .unwrap()
            .to_string();
        let text = response.text().await.unwrap();
        rows += text.lines().count() - 1;
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!(rows as u64, sim.with_org(|org| org.live_count(1)));
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_and_the_call_goes_on() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    client.describe_global().await.unwrap();
    sim.expire_sessions();
    client.describe("Account").await.unwrap();
    let usage = client.api_usage().unwrap();
    assert!(usage.used >= 2 && usage.max == 100_000, "{usage:?}");
}

fn fault(path: &str, status: u16, code: &str, message: &str, remaining: u32) -> Fault {
    Fault {
        path_contains: path.into(),
        drop_mid_body: false,
        status,
        error_code: code.into(),
        message: message.into(),
        remaining,
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    client.describe_global().await.unwrap();

    // Fewer failures than attempts: the call succeeds, after one request per failure.
    for (object, status, code, message) in [
        ("Account", 503, "SERVER_UNAVAILABLE", "try later"),
        ("Lead", 500, "UNKNOWN_EXCEPTION", "boom"),
        (
            "Case",
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded",
        ),
    ] {
        sim.inject(vec![fault(
            &format!("/sobjects/{object}/describe"),
            status,
            code,
            message,
            2,
        )]);
        let before = sim.api_calls();
        assert!(
            client.describe(object).await.is_ok(),
            "{code} was not retried"
        );
        assert_eq!(
            sim.api_calls() - before,
            3,
            "{code}: expected two failures and one success"
        );
    }

    // More failures than attempts: the error surfaces, still marked retryable for the queue.
    sim.inject(vec![fault(
        "/sobjects/Opportunity/describe",
        503,
        "SERVER_UNAVAILABLE",
        "down",
        10,
    )]);
    let before = sim.api_calls();
    let err = client.describe("Opportunity").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        sim.api_calls() - before,
        4,
        "the retry policy allows four attempts"
    );

    // Permanent errors are not retried.
    for (code, message) in [
        ("API_DISABLED_FOR_ORG", "API is disabled"),
        ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    ] {
        sim.inject(vec![fault(
            "/sobjects/Contact/describe",
            403,
            code,
            message,
            1,
        )]);
        let before = sim.api_calls();
        let err = client.describe("Contact").await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(sim.api_calls() - before, 1, "{code} was retried");
    }
}

#[tokio::test]
async fn the_api_budget_stops_new_work_with_a_message_that_says_so() {
    let sim = simulator(SimConfig {
        rows: 10,
        daily_api_limit: 10,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    client.describe_global().await.unwrap();
    assert!(client.check_budget().is_ok());
    while client.api_usage().unwrap().used < 8 {
        client.describe("Account").await.unwrap();
    }
    let err = client.check_budget().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("8 of 10") && text.contains("budget 80%"),
        "{text}"
    );
    assert!(!err.is_retryable());
}

/// Rows of a finished Bulk job, through sfpipe's client, as maps of field to text.
async fn sfpipe_rows(
    client: &sfpipe_shared::salesforce::SalesforceClient,
    soql: &str,
    include_deleted: bool,
) -> Vec<std::collections::BTreeMap<String, String>> {
    let job = client
        .create_query_job(soql, include_deleted)
        .await
        .unwrap();
    while !client.query_job(&job.id).await.unwrap().state.is_final() {}
    let mut rows: Vec<std::collections::BTreeMap<String, String>> = Vec::new();
    for url in sfpipe_shared::ports::salesforce::all_result_pages(client, &job.id)
        .await
        .unwrap()
    {
        let page = client.download_results(&url).await.unwrap();
        let bytes: Vec<u8> = page.body.map_ok(|b| b.to_vec()).try_concat().await.unwrap();
        let text = if page.gzipped {
            gunzip(&bytes)
        } else {
            String::from_utf8(bytes).unwrap()
        };
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let header = reader.headers().unwrap().clone();
        for record in reader.records() {
            let record = record.unwrap();
            rows.push(
                header
                    .iter()
                    .map(str::to_string)
                    .zip(record.iter().map(str::to_string))
                    .collect(),
            );
        }
    }
    rows.sort_by(|a, b| a["Id"].cmp(&b["Id"]));
    rows
}

/// The simulator speaks Salesforce, not just sfpipe's dialect: the unmodified Python client reads
/// the same rows over HTTPS.
/// Runs `tests/simple_salesforce_peer.py` with `args`, trusting the simulator's `certificate`,
/// and returns what it printed.
async fn simple_salesforce(args: &[&str], certificate: &std::path::Path) -> Value {
    let script = format!("{}/simple_salesforce_peer.py", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(sfpipe_tests::venv_python())
        .arg(&script)
        .args(args)
        .env("REQUESTS_CA_BUNDLE", certificate)
        .output()
        .await
        .expect("run python: ./scripts/tools installs it (or set SFPIPE_PYTHON)");
    assert!(
        output.status.success(),
        "simple-salesforce {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The simulator over HTTPS, its self-signed certificate written to `certificate`.
async fn tls_simulator(rows: u64, certificate: &std::path::Path) -> Simulator {
    Simulator::start_tls(
        SimConfig {
            rows,
            ..SimConfig::default()
        },
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        certificate,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn simple_salesforce_reads_the_same_rows_sfpipe_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = dir.path().join("sim-cert.pem");
    let sim = tls_simulator(250, &certificate).await;
    assert!(sim.url().starts_with("https://"));
    let config = sim.config().clone();
    let client = sfpipe_shared::salesforce::SalesforceClient::new(
        sfpipe_shared::salesforce::SalesforceConfig {
            extra_ca_pem: Some(std::fs::read(&certificate).unwrap()),
            ..sfpipe_shared::salesforce::SalesforceConfig::new(sim.url())
        },
        Credentials::ClientCredentials {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone().into(),
        },
    )
    .unwrap();
    let fields = "Id,Name,Description,AnnualRevenue,Active__c,SystemModstamp,BillingCity";
    let soql = format!("SELECT {} FROM Account", fields.replace(',', ", "));
    let ours = sfpipe_rows(&client, &soql, false).await;
    let ours_all: Vec<String> = sfpipe_rows(&client, &soql, true)
        .await
        .into_iter()
        .map(|r| r["Id"].clone())
        .collect();

    // A session from the token endpoint, as a Salesforce user of simple-salesforce would have.
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&certificate).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let token = token_with(&https, &sim).await;
    let theirs = simple_salesforce(
        &[sim.url(), token.as_str(), "Account", fields],
        &certificate,
    )
    .await;

    let mut their_rows: Vec<std::collections::BTreeMap<String, String>> =
        serde_json::from_value(theirs["bulk2_rows"].clone()).unwrap();
    their_rows.sort_by(|a, b| a["Id"].cmp(&b["Id"]));
    assert_eq!(
        their_rows.len() as u64,
        sim.with_org(|org| org.live_count(0))
    );
    // simple-salesforce strips NUL characters as it reads; sfpipe's parts keep Salesforce's
    // bytes and its merge removes them. The org has some, so this compares what both load.
    assert!(
        ours.iter()
            .any(|row| row.values().any(|v| v.contains('\0'))),
        "the org served no NUL character"
    );
    let ours: Vec<std::collections::BTreeMap<String, String>> = ours
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(k, v)| (k, v.replace('\0', "")))
                .collect()
        })
        .collect();
    assert_eq!(
        their_rows, ours,
        "bulk2 download and sfpipe's extraction differ"
    );
    assert_eq!(
        theirs["bulk2_files"], 3,
        "250 rows at 100 per page are 3 files"
    );
    let their_all: Vec<String> = serde_json::from_value(theirs["query_all_ids"].clone()).unwrap();
    assert_eq!(
        their_all, ours_all,
        "query_all and sfpipe's queryAll job differ"
    );
    assert_eq!(their_all.len(), 250);
}

#[tokio::test]
async fn simple_salesforce_logs_in_with_the_jwt_bearer_flow_at_the_login_host() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = dir.path().join("sim-cert.pem");
    let key_file = dir.path().join("connected-app.key.pem");
    std::fs::write(&key_file, sfpipe_simulator::DEMO_PRIVATE_KEY_PEM).unwrap();
    let sim = tls_simulator(40, &certificate).await;
    let config = sim.config().clone();
    let theirs = simple_salesforce(
        &[
            "--jwt",
            sim.login_host_url().as_str(),
            config.username.as_str(),
            config.client_id.as_str(),
            key_file.to_str().unwrap(),
            "Account",
        ],
        &certificate,
    )
    .await;
    assert_eq!(
        theirs["instance"].as_str(),
        sim.url().strip_prefix("https://"),
        "{theirs}"
    );
    assert_eq!(
        theirs["total"].as_u64(),
        Some(sim.with_org(|org| org.live_count(0)))
    );
}

#[tokio::test]
async fn a_composite_request_of_up_to_five_queries_is_one_api_call_and_a_sixth_query_is_refused() {
    let sim = simulator(SimConfig {
        rows: 10,
        ..SimConfig::default()
    })
    .await;
    let token = token(&sim).await;
    let subrequests = |queries: usize| -> Value {
        let list: Vec<Value> = (0..queries)
            .map(|i| {
                serde_json::json!({
                    "method": "GET",
                    "url": format!(
                        "/services/data/v62.0/queryAll/?q=SELECT+Id+FROM+Account+LIMIT+{}",
                        i + 1
                    ),
                    "referenceId": format!("r{i}"),
                })
            })
            .collect();
        serde_json::json!({ "compositeRequest": list })
    };
    let post = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/services/data/v62.0/composite", sim.url()))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let before = sim.api_calls();
    let response = post(subrequests(5)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sim.api_calls(), before + 1, "the whole request is one call");
    let body: Value = response.json().await.unwrap();
    let answers = body["compositeResponse"].as_array().unwrap();
    assert_eq!(answers.len(), 5);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["referenceId"], format!("r{i}"));
        assert_eq!(answer["httpStatusCode"], 200);
        assert_eq!(answer["body"]["totalSize"], i as u64 + 1);
        assert_eq!(answer["body"]["done"], true);
    }
    let refused = post(subrequests(6)).await.unwrap();
    assert_eq!(refused.status(), 400);
    let errors: Value = refused.json().await.unwrap();
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 5 query")),
        "{errors}"
    );
    let limits: Value = get(&sim, &token, "/services/data/v62.0/limits/")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["DailyBulkV2QueryJobs"]["Max"], 10_000);
    assert_eq!(limits["DailyBulkV2QueryJobs"]["Remaining"], 10_000);
}

#[tokio::test]
async fn past_the_daily_bulk_job_limit_the_org_refuses_a_new_job() {
    let sim = simulator(SimConfig {
        rows: 10,
        daily_bulk_query_jobs: 2,
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim);
    for _ in 0..2 {
        client
            .create_query_job("SELECT Id FROM Account", true)
            .await
            .unwrap();
    }
    assert_eq!(sim.bulk_jobs_created(), 2);
    match client
        .create_query_job("SELECT Id FROM Account", true)
        .await
    {
        Err(error @ SalesforceError::Api { status: 403, .. }) => {
            assert_eq!(error.code(), Some("REQUEST_LIMIT_EXCEEDED"));
            assert!(
                !error.is_retryable(),
                "a daily limit is not retried: {error}"
            );
        }
        other => panic!("the third job is refused: {other:?}"),
    }
    assert_eq!(sim.bulk_jobs_created(), 2);
}

/// Salesforce's front end refuses a URI past 16,384 bytes (414), and a request whose URI and
/// headers together pass it (431), before the API sees either.
#[tokio::test]
async fn a_request_too_large_with_its_headers_is_refused_431() {
    let sim = sfpipe_tests::simulator(SimConfig::default()).await;
    let http = reqwest::Client::new();
    let uri = |bytes: usize| {
        let base = format!("{}/services/data/v62.0/sobjects?pad=", sim.url());
        let path_bytes = base.len() - sim.url().len();
        format!("{base}{}", "x".repeat(bytes - path_bytes))
    };
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("an answer").status().as_u16()
    };
    // Fits with its few headers: past the front end (and refused by the API, unauthenticated).
    assert_eq!(status(http.get(uri(15_000))).await, 401);
    assert_eq!(
        status(http.get(uri(15_000)).header("X-Padding", "y".repeat(2_000))).await,
        431
    );
    assert_eq!(status(http.get(uri(16_385))).await, 414);
}
