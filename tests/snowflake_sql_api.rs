//! The Snowflake adapter and its SQL API client against the SQL API v2 harness (fakesnow behind
//! Snowflake's HTTP API), with the run's files in S3 on moto.

use std::sync::Arc;

use secrecy::SecretString;
use sfpipe_shared::aws::S3BlobStore;
use sfpipe_shared::conformance::warehouse;
use sfpipe_shared::ports::{BlobStore, DeletedRows, Warehouse};
use sfpipe_shared::snowflake::{KeyPairJwt, SnowflakeAuth, SnowflakeError, SqlApiClient};
use sfpipe_tests::moto::Moto;
use sfpipe_tests::snowflake::{HarnessOptions, SnowflakeHarness, USER};

const BUCKET: &str = "sfpipe-snowflake-test";
const PREFIX: &str = "sfpipe";

struct Setup {
    // Field order is drop order: the harness goes before the moto it reads from.
    harness: SnowflakeHarness,
    blobs: Arc<S3BlobStore>,
    moto: Moto,
}

async fn setup(options: HarnessOptions) -> Setup {
    let moto = Moto::start().await;
    let s3 = moto.s3().await;
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    let blobs = Arc::new(S3BlobStore::new(s3, BUCKET, PREFIX));
    let harness = SnowflakeHarness::start(&moto, BUCKET, PREFIX, options).await;
    Setup {
        harness,
        blobs,
        moto,
    }
}

fn under_test(setup: &Setup) -> warehouse::WarehouseUnderTest {
    let snowflake = Arc::new(setup.harness.warehouse());
    warehouse::WarehouseUnderTest {
        warehouse: snowflake.clone(),
        blobs: setup.blobs.clone() as Arc<dyn BlobStore>,
        inspector: snowflake,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflake_warehouse_conforms() {
    let setup = setup(HarnessOptions::default()).await;
    warehouse::run_all(&under_test(&setup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflake_warehouse_removes_deleted_rows_when_asked() {
    let setup = setup(HarnessOptions::default()).await;
    let snowflake = Arc::new(
        setup
            .harness
            .warehouse()
            .with_deleted_rows(DeletedRows::Remove),
    );
    warehouse::deleted_rows_are_removed_when_asked(&warehouse::WarehouseUnderTest {
        warehouse: snowflake.clone(),
        blobs: setup.blobs.clone() as Arc<dyn BlobStore>,
        inspector: snowflake.clone(),
    })
    .await;
    warehouse::a_reconciliation_removes_missing_rows_when_asked(&warehouse::WarehouseUnderTest {
        warehouse: snowflake.clone(),
        blobs: setup.blobs.clone() as Arc<dyn BlobStore>,
        inspector: snowflake,
    })
    .await;
}

/// What the merge sends: the load table before the transaction, then one Snowflake Scripting
/// block with COPY, the header check, MERGE, the watermark and the summary inside its
/// transaction, no DDL (which would commit early) in between, and a handler that rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_is_one_transaction_of_copy_merge_and_watermark() {
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    warehouse::first_load_creates_the_table(&w).await;
    let statements = setup.harness.statements().await;
    let block = statements
        .iter()
        .position(|s| s.starts_with("EXECUTE IMMEDIATE $$"))
        .expect("the block");
    assert!(
        statements[block].contains("EXCEPTION\n  WHEN OTHER THEN\n    ROLLBACK;\n    RAISE;"),
        "{}",
        statements[block]
    );
    assert!(
        statements[block - 1].starts_with("CREATE OR REPLACE TEMPORARY TABLE \"_SFPIPE_LOAD\""),
        "{statements:#?}"
    );
    // The harness logs what the block ran, statement by statement.
    let begin = block + 1;
    assert_eq!(statements[begin], "BEGIN TRANSACTION");
    let commit = statements
        .iter()
        .position(|s| s == "COMMIT")
        .expect("COMMIT");
    let inside: Vec<String> = statements[begin + 1..commit]
        .iter()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        inside,
        [
            "COPY INTO \"_SFPIPE_LOAD\"",
            "SELECT CAST('the header",
            "DELETE FROM \"_SFPIPE_LOAD\"",
            "MERGE INTO \"WHFIRST__C\"",
            "MERGE INTO \"_SFPIPE_STATE\"",
            "SELECT COUNT(*) AS",
        ]
    );
}

/// The response to a MERGE is lost after Snowflake ran it: the client sends the request again with
/// the same requestId, and the harness, like Snowflake, answers without running it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_not_executed_twice() {
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    setup
        .harness
        .inject(serde_json::json!([
            {"kind": "lose_response", "match": "MERGE INTO \"WHFIRST__C\"", "times": 1},
            {"kind": "status", "match": "INFORMATION_SCHEMA", "status": 429, "times": 2},
        ]))
        .await;
    warehouse::first_load_creates_the_table(&w).await;
    let log = setup.harness.log().await;
    let executions = log["executions"].as_object().expect("executions");
    assert!(
        executions.values().all(|n| n == 1),
        "a request ran twice: {executions:?}"
    );
    let merges = log["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| {
            s["sql"]
                .as_str()
                .is_some_and(|s| s.starts_with("MERGE INTO \"WHFIRST__C\""))
        })
        .count();
    assert_eq!(merges, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_carry_their_sql_state_and_are_permanent() {
    let setup = setup(HarnessOptions::default()).await;
    let error = setup
        .harness
        .client()
        .execute("SELECT * FROM NO_SUCH_TABLE", 1)
        .await
        .expect_err("no such table");
    match &error {
        SnowflakeError::Sql {
            sql_state, message, ..
        } => {
            assert!(!sql_state.is_empty(), "{error}");
            assert!(message.contains("NO_SUCH_TABLE"), "{error}");
        }
        other => panic!("not a SQL error: {other}"),
    }
    // A statement count that does not match is refused before anything runs.
    let error = setup
        .harness
        .client()
        .execute("SELECT 1; SELECT 2", 1)
        .await
        .expect_err("count mismatch");
    assert!(error.to_string().contains("statement count"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_and_an_oauth_token_works() {
    let setup = setup(HarnessOptions {
        oauth_token: Some("test-oauth-token".into()),
        ..HarnessOptions::default()
    })
    .await;
    let oauth = SqlApiClient::new(
        setup.harness.config(),
        SnowflakeAuth::OAuth(SecretString::from("test-oauth-token")),
    )
    .expect("client");
    let result = oauth.execute("SELECT 1 AS ONE", 1).await.expect("oauth");
    assert_eq!(result[0].first("ONE"), Some("1"));

    let wrong_user = SqlApiClient::new(
        setup.harness.config(),
        SnowflakeAuth::KeyPair(
            KeyPairJwt::new(
                sfpipe_tests::snowflake::ACCOUNT,
                "someone_else",
                &SecretString::from(sfpipe_tests::snowflake::PRIVATE_KEY),
            )
            .expect("key"),
        ),
    )
    .expect("client");
    let error = wrong_user
        .execute("SELECT 1", 1)
        .await
        .expect_err("refused");
    assert!(
        matches!(error, SnowflakeError::Unauthorized { status: 401, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("RSA_PUBLIC_KEY"), "{error}");
    let _ = USER;
}

/// Results larger than one partition are fetched partition by partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_partition_results_are_read_whole() {
    let setup = setup(HarnessOptions {
        partition_rows: 3,
        ..HarnessOptions::default()
    })
    .await;
    let result = setup
        .harness
        .client()
        .execute(
            "SELECT * FROM (VALUES (1), (2), (3), (4), (5), (6), (7)) AS t(N) ORDER BY N",
            1,
        )
        .await
        .expect("select");
    let values: Vec<Option<String>> = result[0].rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        values,
        (1..=7).map(|n| Some(n.to_string())).collect::<Vec<_>>()
    );
    // The warehouse port's watermark read goes through the same path.
    let object = sfpipe_shared::contracts::ObjectName::new("Nothing__c").unwrap();
    assert_eq!(
        setup
            .harness
            .warehouse()
            .watermark(&object)
            .await
            .expect("watermark"),
        None
    );
}

/// A statement that fails inside the merge's transaction (here the watermark's MERGE, after the
/// target's): the merge's own exception handler rolls the transaction back at once. Snowflake
/// would otherwise keep it open, detached, its tables locked until it is aborted (up to 4 hours),
/// and every later merge of the object would fail on the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_failing_inside_the_transaction_is_rolled_back_at_once() {
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    setup
        .harness
        .inject(serde_json::json!([
            {"kind": "sql_error", "match": "MERGE INTO \"_SFPIPE_STATE\"", "times": 1,
             "code": "100000", "sql_state": "XX000", "message": "injected failure after the target's MERGE"},
        ]))
        .await;
    let failed = warehouse::try_merge_first_rows(&w, "WhHalf__c", "r1").await;
    match &failed {
        Err(sfpipe_shared::ports::WarehouseError::Rejected { detail, .. }) => assert!(
            detail.contains("injected failure after the target's MERGE"),
            "the handler re-raises the error it caught: {detail}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        warehouse::table_rows(&w, "WhHalf__c").await,
        Vec::<Vec<Option<String>>>::new(),
        "the target's MERGE was published though its transaction failed"
    );
    let statements = setup.harness.statements().await;
    let failed_at = statements
        .iter()
        .position(|s| s.starts_with("MERGE INTO \"_SFPIPE_STATE\""))
        .expect("the failed statement");
    assert_eq!(
        statements.get(failed_at + 1).map(String::as_str),
        Some("ROLLBACK"),
        "no explicit ROLLBACK after the failure: {statements:#?}"
    );
    assert!(
        !statements.iter().any(|s| s.contains("detached")),
        "{statements:#?}"
    );
    // Redelivered, the run merges whole: nothing holds the table.
    let report = warehouse::try_merge_first_rows(&w, "WhHalf__c", "r1")
        .await
        .expect("the retry");
    assert_eq!(report.rows_changed, 3);
}

/// A statement timeout (HTTP 408, 000630) or a lock wait timeout (000625) is transient: the merge
/// is retried, not dead-lettered as a rejected run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_and_lock_timeouts_are_retryable() {
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    for (code, http, message) in [
        (
            "000630",
            408,
            "Statement reached its statement or warehouse timeout of 900 second(s) and was canceled.",
        ),
        (
            "000625",
            422,
            "Statement '01b2' has locked table 'WHTIMEOUT__C' in transaction 1700 and this lock has not yet been released.",
        ),
    ] {
        setup
            .harness
            .inject(serde_json::json!([
                {"kind": "sql_error", "match": "MERGE INTO \"WHTIMEOUT__C\"", "times": 1,
                 "code": code, "sql_state": "57014", "http": http, "message": message},
            ]))
            .await;
        let error = warehouse::try_merge_first_rows(&w, "WhTimeout__c", "r1")
            .await
            .expect_err("injected timeout");
        assert!(
            matches!(error, sfpipe_shared::ports::WarehouseError::Service(_)),
            "{code}: not retryable: {error:?}"
        );
    }
    let report = warehouse::try_merge_first_rows(&w, "WhTimeout__c", "r1")
        .await
        .expect("after the timeouts");
    assert_eq!(report.rows_changed, 3);
}

/// The SQL API takes `database`, `schema`, `warehouse` and `role` as written, where SQL upper-cases
/// unquoted names: settings written in lower case, as people write them, still name the objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_in_lower_case_name_the_upper_case_objects() {
    let setup = setup(HarnessOptions::default()).await;
    let secret = SecretString::from(
        serde_json::json!({
            "account": sfpipe_tests::snowflake::ACCOUNT, "user": USER,
            "private_key": sfpipe_tests::snowflake::PRIVATE_KEY,
            "database": "sfpipe", "schema": "raw", "warehouse": "loading",
            "stage": sfpipe_tests::snowflake::STAGE, "url": setup.harness.url,
        })
        .to_string(),
    );
    let settings = sfpipe_shared::snowflake::SnowflakeSettings::from_secret_json(&secret, |_| None)
        .expect("settings");
    let result = settings
        .client()
        .expect("client")
        .execute("SELECT CURRENT_DATABASE() AS DB", 1)
        .await
        .expect("lower-case settings name the upper-case database");
    assert_eq!(
        result[0]
            .first("DB")
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("SFPIPE")
    );
}

/// An account whose default input formats are not AUTO: the merge's casts of Salesforce's ISO
/// timestamps and dates still work, as its request sets the formats it needs for its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merge_sets_the_input_formats_it_needs_whatever_the_account_default() {
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    setup
        .harness
        .client()
        .execute(
            "ALTER ACCOUNT SET TIMESTAMP_INPUT_FORMAT = 'DD/MM/YYYY HH24:MI:SS', DATE_INPUT_FORMAT = 'DD/MM/YYYY'",
            1,
        )
        .await
        .expect("account formats");
    let report = warehouse::try_merge_first_rows(&w, "WhFormats__c", "r1")
        .await
        .expect("a merge under other account formats");
    assert_eq!(report.rows_changed, 3);
}

/// A merge longer than its caller may wait (the merge function's 15 minutes): the client leaves
/// it running and says so (retryable); the redelivery sends the same request id with
/// `retry=true`, attaches to the statement still running, and gets its result. The COPY and the
/// MERGE run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_left_running_is_attached_to_by_its_redelivery_and_runs_once() {
    let setup = setup(HarnessOptions::default()).await;
    let impatient = sfpipe_shared::snowflake::SqlApiConfig {
        wait_limit: Some(std::time::Duration::from_millis(30)),
        ..setup.harness.config()
    };
    let snowflake = Arc::new(sfpipe_shared::snowflake::SnowflakeWarehouse::new(
        SqlApiClient::new(
            impatient,
            sfpipe_tests::snowflake::SnowflakeHarness::key_pair(),
        )
        .expect("client"),
        sfpipe_tests::snowflake::STAGE,
    ));
    let w = warehouse::WarehouseUnderTest {
        warehouse: snowflake.clone(),
        blobs: setup.blobs.clone() as Arc<dyn BlobStore>,
        inspector: snowflake,
    };
    setup
        .harness
        .inject(serde_json::json!([
            {"kind": "slow", "match": "MERGE INTO \"WHSLOW__C\"", "times": 1, "polls": 30},
        ]))
        .await;
    let request = "6f1c1a52-8d0e-4a51-9d53-2f0e6f6b7a10";
    let first = warehouse::try_merge_first_rows_as(&w, "WhSlow__c", "r1", Some(request)).await;
    match &first {
        Err(sfpipe_shared::ports::WarehouseError::Service(detail)) => {
            assert!(detail.contains("still runs"), "{detail}")
        }
        other => panic!("not left running: {other:?}"),
    }
    let mut report = None;
    for _ in 0..20 {
        match warehouse::try_merge_first_rows_as(&w, "WhSlow__c", "r1", Some(request)).await {
            Ok(done) => {
                report = Some(done);
                break;
            }
            Err(sfpipe_shared::ports::WarehouseError::Service(_)) => continue,
            Err(other) => panic!("{other:?}"),
        }
    }
    let report = report.expect("the redeliveries attached and got the result");
    assert_eq!(report.rows_changed, 3);
    let merges = setup
        .harness
        .statements()
        .await
        .into_iter()
        .filter(|s| s.starts_with("MERGE INTO \"WHSLOW__C\""))
        .count();
    assert_eq!(merges, 1, "the merge ran again on redelivery");
    let log = setup.harness.log().await;
    assert_eq!(
        log["changed_resubmissions"],
        serde_json::json!([]),
        "every resubmission is the same request"
    );
}

/// With no wait limit configured, the invocation's deadline alone bounds the wait: a merge that
/// outlasts it is left running (retryable) before the function would be killed, and its
/// redelivery attaches to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_longer_than_the_invocation_is_left_running_before_the_deadline() {
    use sfpipe_shared::deadline::{Deadline, within};
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    setup
        .harness
        .inject(serde_json::json!([
            {"kind": "slow", "match": "MERGE INTO \"WHDEADLINE__C\"", "times": 1, "polls": 1000},
        ]))
        .await;
    let request = "0b8e1f4e-5d7a-4d33-9a55-3c1f6c0e2b71";
    // As Lambda: the invocation is dropped where it stands at its timeout.
    let timeout = std::time::Duration::from_secs(3);
    let first = tokio::time::timeout(
        timeout,
        within(
            Deadline::after(timeout),
            warehouse::try_merge_first_rows_as(&w, "WhDeadline__c", "r1", Some(request)),
        ),
    )
    .await
    .expect("the merge stopped waiting before the invocation's timeout");
    match &first {
        Err(sfpipe_shared::ports::WarehouseError::Service(detail)) => {
            assert!(detail.contains("still runs"), "{detail}")
        }
        other => panic!("not left running: {other:?}"),
    }
    let merges = setup
        .harness
        .statements()
        .await
        .into_iter()
        .filter(|s| s.starts_with("MERGE INTO \"WHDEADLINE__C\""))
        .count();
    assert_eq!(merges, 1, "submitted once, and left running");
}

/// `sfpipe trace` on Snowflake: the row's lineage from the table, its part read from S3, and the
/// record found in it (a record with a line break in a value spans two lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_is_traced_to_its_part_and_record_through_snowflake_and_s3() {
    let setup = setup(HarnessOptions::default()).await;
    let w = under_test(&setup);
    warehouse::try_merge_first_rows(&w, "WhTraced__c", "r1")
        .await
        .expect("merge");
    let object = sfpipe_shared::contracts::ObjectName::new("WhTraced__c").unwrap();
    let snowflake = setup.harness.warehouse();
    let trace = sfpipe_cli::trace::trace_in(
        setup.blobs.as_ref(),
        &snowflake,
        &object,
        "001000000000000003",
    )
    .await
    .expect("trace");
    assert_eq!(trace.run_id.as_deref(), Some("r1"));
    assert_eq!(
        trace.file.as_deref(),
        Some("conformance/warehouse/WhTraced__c/r1.csv.gz")
    );
    assert_eq!((trace.record, trace.line), (Some(3), Some(4)), "{trace:?}");
    assert_eq!(trace.is_deleted, Some(false));
    let missing = sfpipe_cli::trace::trace_in(
        setup.blobs.as_ref(),
        &snowflake,
        &object,
        "001000000000000009",
    )
    .await
    .expect_err("no such row");
    assert!(
        missing.to_string().contains("not in the warehouse"),
        "{missing}"
    );
}

/// `sfpipe run` into Snowflake from one machine, as a user tries their setup before deploying:
/// the parts go to S3 (moto) and the harness merges them from its stage. `sfpipe check` passes
/// each of its lines there, and names the stage as what to fix when the parts are not where the
/// stage reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfpipe_run_loads_into_snowflake_and_check_passes_then_names_a_wrong_stage() {
    let setup = setup(HarnessOptions::default()).await;
    let sim = sfpipe_tests::simulator(sfpipe_simulator::SimConfig {
        rows: 40,
        ..sfpipe_simulator::SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let salesforce =
        sfpipe_tests::client_credentials_file(&sim, &dir.path().join("salesforce.json"));
    let snowflake_secret = dir.path().join("snowflake.json");
    std::fs::write(
        &snowflake_secret,
        serde_json::json!({
            "account": sfpipe_tests::snowflake::ACCOUNT, "user": USER,
            "private_key": sfpipe_tests::snowflake::PRIVATE_KEY, "url": setup.harness.url,
            "database": "SFPIPE", "schema": "RAW", "stage": sfpipe_tests::snowflake::STAGE,
            "warehouse": "LOADING",
        })
        .to_string(),
    )
    .unwrap();
    let aws = setup.moto.sdk_config().await;
    let mut options = sfpipe_cli::run::RunOptions::sqlite(
        sim.url(),
        salesforce.clone(),
        "Account,Contact",
        dir.path().join("unused"),
    );
    options.snowflake = sfpipe_cli::run::SnowflakeDestination {
        snowflake_credentials: Some(snowflake_secret.clone()),
        bucket: Some(BUCKET.into()),
        prefix: PREFIX.into(),
    };
    let outcome = sfpipe_cli::run::run_window(&options, None, None, Some(aws.clone()))
        .await
        .expect("run into Snowflake");
    assert!(outcome.failures.is_empty(), "{}", outcome.summary);
    assert!(
        outcome.summary.contains("into Snowflake"),
        "{}",
        outcome.summary
    );
    for (object, table) in [("Account", "ACCOUNT"), ("Contact", "CONTACT")] {
        let live = sim.with_org(|org| org.live_count(org.object(object).unwrap().0));
        let result = setup
            .harness
            .client()
            .execute(
                &format!("SELECT COUNT(*) AS \"LIVE\" FROM \"{table}\" WHERE NOT \"ISDELETED\""),
                1,
            )
            .await
            .expect("count");
        assert_eq!(result[0].first("LIVE"), Some(live.to_string().as_str()));
    }
    assert!(!std::path::Path::new(&dir.path().join("unused")).exists());

    // The warehouse the harness says it ran is the one `sfpipe cost` models from the run's
    // receipts in S3: one resume for the whole run (it took well under the 60-s auto-suspend),
    // billed from the first statement to 60 s after the last.
    let billed = setup.harness.log().await["warehouse"].clone();
    let cost_options = sfpipe_cli::cost::CostOptions::for_bucket(BUCKET, PREFIX);
    let cost = sfpipe_cli::cost::cost_with(&cost_options, Some(aws.clone()))
        .await
        .expect("cost");
    assert_eq!(billed["resumes"], 1, "{billed}");
    assert_eq!(cost.warehouse.resumes, 1, "{}", cost.render(0));
    let harness_seconds = billed["billed_seconds"].as_f64().unwrap();
    assert!(harness_seconds >= 60.0, "{billed}");
    assert!(
        (cost.warehouse.billed_seconds - harness_seconds).abs() < 5.0,
        "receipts {} s, harness {harness_seconds} s",
        cost.warehouse.billed_seconds
    );
    assert_eq!(cost.rows_changed, 80, "{}", cost.render(0));

    // Nothing changed since: the next run reads each object's state from S3 and probes
    // Salesforce, and sends Snowflake nothing at all (no warehouse resumed).
    let statements = setup.harness.statements().await.len();
    let (calls, jobs) = (sim.api_calls(), sim.bulk_jobs_created());
    let idle = sfpipe_cli::run::run_window(&options, None, None, Some(aws.clone()))
        .await
        .expect("an idle run into Snowflake");
    assert!(idle.failures.is_empty(), "{}", idle.summary);
    assert_eq!(
        idle.summary
            .matches("unchanged since its last merge")
            .count(),
        2,
        "{}",
        idle.summary
    );
    assert_eq!(setup.harness.statements().await.len(), statements);
    assert_eq!(setup.harness.log().await["warehouse"], billed, "no resume");
    let idle_cost = sfpipe_cli::cost::cost_with(&cost_options, Some(aws.clone()))
        .await
        .expect("cost");
    assert_eq!(idle_cost.triggers, 2);
    assert_eq!(
        idle_cost.warehouse, cost.warehouse,
        "the idle run billed no warehouse"
    );
    assert_eq!(sim.bulk_jobs_created(), jobs);
    assert_eq!(
        sim.api_calls(),
        calls + 2,
        "the CLI's global describe (object names in the org's spelling), then one composite \
         probe for both objects"
    );

    // `sfpipe backfill` of a window into Snowflake: the rows changed since are read again, and
    // merging them again changes nothing.
    sim.mutate(chrono::Utc::now() - chrono::Duration::milliseconds(1));
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let until = chrono::Utc::now() + chrono::Duration::minutes(1);
    let backfill = sfpipe_cli::replay::BackfillOptions {
        objects: "Account".into(),
        since,
        until: Some(until),
        print_event: false,
        login_url: Some(sim.url().to_string()),
        credentials: Some(salesforce.clone()),
        dir: dir.path().join("unused"),
        ca_cert: None,
        snowflake: options.snowflake.clone(),
    };
    let backfilled = sfpipe_cli::run::run_window(
        &backfill.run_options().expect("options"),
        Some(since),
        Some(until),
        Some(aws.clone()),
    )
    .await
    .expect("backfill into Snowflake");
    assert!(backfilled.failures.is_empty(), "{}", backfilled.summary);
    assert!(
        backfilled.summary.contains(&format!(
            "since {}",
            sfpipe_shared::contracts::rfc3339(since)
        )),
        "{}",
        backfilled.summary
    );
    let live = sim.with_org(|org| org.live_count(org.object("Account").unwrap().0));
    let result = setup
        .harness
        .client()
        .execute(
            "SELECT COUNT(*) AS \"LIVE\" FROM \"ACCOUNT\" WHERE NOT \"ISDELETED\"",
            1,
        )
        .await
        .expect("count");
    assert_eq!(result[0].first("LIVE"), Some(live.to_string().as_str()));

    let mut check = sfpipe_cli::check::CheckOptions {
        login_url: sim.url().to_string(),
        credentials: salesforce,
        ca_cert: None,
        snowflake: options.snowflake.clone(),
    };
    let lines = sfpipe_cli::check::check(&check, Some(aws.clone()))
        .await
        .expect("check");
    let rendered = sfpipe_cli::check::render(&lines);
    assert_eq!(
        lines.iter().map(|l| (l.what, l.passed)).collect::<Vec<_>>(),
        [
            ("Salesforce login", true),
            ("S3 access", true),
            ("Snowflake login", true),
            ("Snowflake stage", true),
            ("Snowflake grants", true),
        ],
        "{rendered}"
    );
    // The check's table is gone again.
    let tables = setup
        .harness
        .client()
        .execute(
            "SELECT COUNT(*) AS \"N\" FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME = 'SFPIPECHECK__C'",
            1,
        )
        .await
        .expect("tables");
    assert_eq!(tables[0].first("N"), Some("0"), "{rendered}");

    // Parts written under another prefix than the stage reads: the stage line fails, with the fix.
    check.snowflake.prefix = "elsewhere".into();
    let lines = sfpipe_cli::check::check(&check, Some(aws))
        .await
        .expect("check");
    let stage = lines
        .iter()
        .find(|l| l.what == "Snowflake stage")
        .expect("a stage line");
    assert!(
        !stage.passed && stage.detail.contains("s3://<bucket>/<prefix>/"),
        "{}",
        sfpipe_cli::check::render(&lines)
    );

    // A secret without a warehouse: every merge would fail with 000606; check says so first.
    let mut secret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&snowflake_secret).unwrap()).unwrap();
    secret.as_object_mut().unwrap().remove("warehouse");
    std::fs::write(&snowflake_secret, secret.to_string()).unwrap();
    check.snowflake.prefix = PREFIX.into();
    let lines = sfpipe_cli::check::check(&check, Some(setup.moto.sdk_config().await))
        .await
        .expect("check");
    let login = lines
        .iter()
        .find(|l| l.what == "Snowflake login")
        .expect("a login line");
    assert!(
        !login.passed && login.detail.contains("lack `warehouse`"),
        "{}",
        sfpipe_cli::check::render(&lines)
    );
}
