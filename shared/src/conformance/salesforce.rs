//! What every adapter of the Salesforce port must do: the HTTP client against the simulator, and
//! the in-memory fake the stage tests use (so a stage test on the fake holds the stage to the
//! port's contract, not to the fake's whims).
//!
//! The org must have `object`, queryable, with Id, IsDeleted and SystemModstamp, and at least
//! three rows, and its Bulk jobs must report InProgress at least once before they complete. Nothing else about its data is assumed: counts are cross-checked between REST,
//! the Bulk job's count, `resultPages` and the locator chain.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use futures::StreamExt;

use crate::ports::salesforce::{
    JobState, ResultPage, Salesforce, SalesforceError, all_result_pages,
};

/// Runs every case.
pub async fn run_all(salesforce: &dyn Salesforce, object: &str) {
    describes_the_org_and_refuses_an_unknown_object(salesforce, object).await;
    let ids = a_rest_query_pages_through_every_row(salesforce, object).await;
    first_pages_of_many_queries_come_back_in_order_each_with_its_own_answer(
        salesforce, object, &ids,
    )
    .await;
    a_bulk_job_completes_and_its_pages_hold_every_row_once(salesforce, object, &ids).await;
    an_empty_result_has_one_header_only_page(salesforce, object).await;
    a_bad_query_is_refused_for_good(salesforce, object).await;
    a_deleted_job_is_gone_and_deleting_it_again_is_fine(salesforce, object).await;
    a_running_job_can_be_aborted_not_deleted_and_a_finished_one_not_aborted(salesforce, object)
        .await;
}

pub async fn describes_the_org_and_refuses_an_unknown_object(
    salesforce: &dyn Salesforce,
    object: &str,
) {
    salesforce
        .check_budget()
        .expect("a fresh org is within budget");
    let global = salesforce.describe_global().await.unwrap();
    assert!(
        global
            .sobjects
            .iter()
            .any(|o| o.name == object && o.queryable),
        "{object} is listed, queryable"
    );
    let describe = salesforce.describe(object).await.unwrap();
    assert_eq!(describe.name, object);
    assert!(
        describe.queryable,
        "{object}'s own describe says it is queryable"
    );
    for field in ["Id", "IsDeleted", "SystemModstamp"] {
        assert!(describe.field(field).is_some(), "{object} has {field}");
    }
    assert_eq!(describe.cursor_field(), Some("SystemModstamp"));
    match salesforce.describe("NoSuchThing__c").await {
        Err(SalesforceError::UnknownObject { object }) => assert_eq!(object, "NoSuchThing__c"),
        other => panic!("an unknown object is UnknownObject, not {other:?}"),
    }
}

/// Seven queries (more than one composite request holds), one of them bad: seven answers in
/// order, the bad one refused on its own, each good one with every row the query matches.
pub async fn first_pages_of_many_queries_come_back_in_order_each_with_its_own_answer(
    salesforce: &dyn Salesforce,
    object: &str,
    ids: &BTreeSet<String>,
) {
    let all = format!("SELECT Id, SystemModstamp FROM {object}");
    let limited = |n: usize| format!("{all} LIMIT {n}");
    let soqls = vec![
        limited(1),
        limited(2),
        all.clone(),
        format!("SELECT Id, NoSuchField__c FROM {object}"),
        limited(3),
        all.clone(),
        limited(1),
    ];
    let pages = salesforce.first_query_pages(&soqls).await;
    assert_eq!(pages.len(), soqls.len(), "one answer per query");
    let every = ids.len() as u64;
    let expected = [1, 2, every, 0, 3, every, 1];
    for (index, (page, want)) in pages.iter().zip(expected).enumerate() {
        if index == 3 {
            match page {
                Err(SalesforceError::Api { code, .. }) => assert_eq!(code, "INVALID_FIELD"),
                other => panic!("a bad query among good ones is refused alone: {other:?}"),
            }
            continue;
        }
        let page = page
            .as_ref()
            .unwrap_or_else(|e| panic!("query {index}: {e}"));
        assert_eq!(page.total_size, want, "query {index}: {}", soqls[index]);
        assert_eq!(
            page.records.len() as u64,
            want.min(2000),
            "query {index}: the first page holds up to 2,000 records"
        );
        for record in &page.records {
            let id = record["Id"].as_str().expect("every record has its Id");
            assert!(ids.contains(id), "{id} is a row of {object}");
            assert!(
                record["SystemModstamp"].is_string(),
                "every record has its cursor"
            );
        }
    }
}

/// Every Id of the object, read through REST pages of at most 200.
pub async fn a_rest_query_pages_through_every_row(
    salesforce: &dyn Salesforce,
    object: &str,
) -> BTreeSet<String> {
    let mut next =
        Some(salesforce.query_all_path(&format!("SELECT Id, SystemModstamp FROM {object}")));
    let mut ids = BTreeSet::new();
    let mut total = None;
    while let Some(path) = next.take() {
        let page = salesforce.query_page(&path, 200).await.unwrap();
        assert!(
            page.records.len() <= 2000,
            "a page holds at most 2,000 records"
        );
        assert_eq!(*total.get_or_insert(page.total_size), page.total_size);
        for record in &page.records {
            let id = record["Id"].as_str().expect("every record has its Id");
            assert!(ids.insert(id.to_string()), "{id} comes once");
        }
        if !page.done {
            next = Some(
                page.next_records_url
                    .expect("a page not done links the next"),
            );
        }
    }
    assert_eq!(
        Some(ids.len() as u64),
        total,
        "totalSize is what the pages hold"
    );
    assert!(ids.len() >= 3, "the org has rows of {object}");
    let unknown = salesforce
        .query_page("/services/data/v62.0/query/01gNOSUCHCURSOR-200", 200)
        .await
        .expect_err("a cursor that does not exist");
    assert_eq!(unknown.code(), Some("INVALID_QUERY_LOCATOR"), "{unknown}");
    ids
}

/// Starts a job and polls it until it is final.
async fn finished_job(
    salesforce: &dyn Salesforce,
    soql: &str,
) -> crate::ports::salesforce::JobInfo {
    let created = salesforce.create_query_job(soql, true).await.unwrap();
    assert!(!created.id.is_empty());
    assert!(
        matches!(
            created.state,
            JobState::UploadComplete | JobState::InProgress | JobState::JobComplete
        ),
        "a new query job is queued or running, not {:?}",
        created.state
    );
    for _ in 0..500 {
        let job = salesforce.query_job(&created.id).await.unwrap();
        assert_eq!(job.id, created.id);
        if job.state.is_final() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {} never finished", created.id);
}

/// A page's rows: its header, and each data record's first field (the Id).
async fn read_page(page: ResultPage) -> (Vec<String>, Vec<String>) {
    let mut body = Vec::new();
    let mut stream = page.body;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let body = if page.gzipped {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .unwrap();
        plain
    } else {
        body
    };
    let mut reader = csv::Reader::from_reader(&body[..]);
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let ids = reader
        .records()
        .map(|r| r.unwrap().get(0).unwrap_or_default().to_string())
        .collect::<Vec<_>>();
    if let Some(records) = page.records {
        assert_eq!(
            records,
            ids.len() as u64,
            "Sforce-NumberOfRecords counts the page"
        );
    }
    (header, ids)
}

pub async fn a_bulk_job_completes_and_its_pages_hold_every_row_once(
    salesforce: &dyn Salesforce,
    object: &str,
    rest_ids: &BTreeSet<String>,
) {
    let job = finished_job(
        salesforce,
        &format!("SELECT Id, SystemModstamp FROM {object}"),
    )
    .await;
    assert_eq!(job.state, JobState::JobComplete);
    assert_eq!(job.number_records_processed, Some(rest_ids.len() as u64));

    // resultPages: every row once, whatever the page size Salesforce chose.
    let mut ids = BTreeSet::new();
    let links = all_result_pages(salesforce, &job.id).await.unwrap();
    assert!(!links.is_empty());
    for link in &links {
        let (header, page_ids) = read_page(salesforce.download_results(link).await.unwrap()).await;
        assert_eq!(header, ["Id", "SystemModstamp"]);
        for id in page_ids {
            assert!(ids.insert(id.clone()), "{id} is on one page only");
        }
    }
    assert_eq!(&ids, rest_ids, "the job's pages hold what REST reads");

    // The locator chain: pages of at most two, until no locator.
    let mut chained = BTreeSet::new();
    let mut next = Some(salesforce.results_path(&job.id, None, 2));
    let mut pages = 0;
    while let Some(link) = next.take() {
        let page = salesforce.download_results(&link).await.unwrap();
        let locator = page.next_locator.clone();
        let (_, page_ids) = read_page(page).await;
        assert!(page_ids.len() <= 2, "a page holds no more than maxRecords");
        chained.extend(page_ids);
        pages += 1;
        assert!(pages <= rest_ids.len() + 1, "the chain ends");
        next = locator.map(|l| salesforce.results_path(&job.id, Some(&l), 2));
    }
    assert_eq!(&chained, rest_ids, "the locator chain holds every row");
    salesforce.delete_job(&job.id).await.unwrap();
}

pub async fn an_empty_result_has_one_header_only_page(salesforce: &dyn Salesforce, object: &str) {
    let soql = format!("SELECT Id FROM {object} WHERE SystemModstamp >= 2999-01-01T00:00:00Z");
    let job = finished_job(salesforce, &soql).await;
    assert_eq!(job.state, JobState::JobComplete);
    assert_eq!(job.number_records_processed, Some(0));
    let links = all_result_pages(salesforce, &job.id).await.unwrap();
    assert_eq!(links.len(), 1, "an empty result still has one page");
    let page = salesforce.download_results(&links[0]).await.unwrap();
    assert_eq!(page.next_locator, None);
    let (header, ids) = read_page(page).await;
    assert_eq!((header, ids.len()), (vec!["Id".to_string()], 0));
    let rest = salesforce
        .query_page(&salesforce.query_all_path(&soql), 200)
        .await
        .unwrap();
    assert_eq!((rest.total_size, rest.done), (0, true));
    salesforce.delete_job(&job.id).await.unwrap();
}

pub async fn a_bad_query_is_refused_for_good(salesforce: &dyn Salesforce, object: &str) {
    let soql = format!("SELECT Id, NoSuchField__c FROM {object}");
    for error in [
        salesforce.create_query_job(&soql, true).await.map(|_| ()),
        salesforce
            .query_page(&salesforce.query_all_path(&soql), 200)
            .await
            .map(|_| ()),
    ] {
        let error = error.expect_err("an unknown field is refused");
        assert_eq!(error.code(), Some("INVALID_FIELD"), "{error}");
        assert!(!error.is_retryable(), "{error}");
    }
}

pub async fn a_deleted_job_is_gone_and_deleting_it_again_is_fine(
    salesforce: &dyn Salesforce,
    object: &str,
) {
    let job = finished_job(salesforce, &format!("SELECT Id FROM {object}")).await;
    let link = salesforce.results_path(&job.id, None, 10);
    salesforce.delete_job(&job.id).await.unwrap();
    salesforce
        .delete_job(&job.id)
        .await
        .expect("a job already gone counts as deleted");
    let gone = |result: Result<(), SalesforceError>| match result {
        Err(SalesforceError::Api { status: 404, .. }) => {}
        other => panic!("a deleted job answers 404, not {other:?}"),
    };
    gone(salesforce.query_job(&job.id).await.map(|_| ()));
    gone(salesforce.result_pages(&job.id, None).await.map(|_| ()));
    gone(salesforce.download_results(&link).await.map(|_| ()));
}

pub async fn a_running_job_can_be_aborted_not_deleted_and_a_finished_one_not_aborted(
    salesforce: &dyn Salesforce,
    object: &str,
) {
    let created = salesforce
        .create_query_job(&format!("SELECT Id FROM {object}"), true)
        .await
        .unwrap();
    // Salesforce deletes only a job that is over.
    let running = salesforce
        .delete_job(&created.id)
        .await
        .expect_err("a running job cannot be deleted");
    assert!(!running.is_retryable(), "{running}");
    salesforce.abort_job(&created.id).await.unwrap();
    let job = salesforce.query_job(&created.id).await.unwrap();
    assert_eq!(job.state, JobState::Aborted);
    let not_complete = salesforce
        .result_pages(&created.id, None)
        .await
        .expect_err("an aborted job has no results");
    assert!(!not_complete.is_retryable(), "{not_complete}");
    let again = salesforce
        .abort_job(&created.id)
        .await
        .expect_err("a job that is over cannot be aborted");
    assert_eq!(again.code(), Some("INVALIDJOBSTATE"), "{again}");
    assert!(!again.is_retryable(), "{again}");
    salesforce.delete_job(&created.id).await.unwrap();
}
