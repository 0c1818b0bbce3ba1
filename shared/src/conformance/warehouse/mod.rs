//! What every warehouse adapter must do: the merge semantics the pipeline's exactness rests on.
//! Each check uses its own table, so one warehouse can serve them all.

mod files;
mod reconcile;
mod schema;

pub use files::*;
pub use reconcile::*;
pub use schema::*;

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::contracts::{ObjectName, RunId};
use crate::ports::{BlobStore, ColumnSpec, MergeBatch, TableSchema, Warehouse, bytes_stream};

/// Reads a table back, for checking. Values as text: booleans `true`/`false`, datetimes RFC 3339
/// UTC with milliseconds and `Z`, numbers in decimal; NULL as `None`. Rows in Id order.
#[async_trait]
pub trait WarehouseInspector: Send + Sync {
    async fn rows(&self, schema: &TableSchema, columns: &[&str]) -> Vec<Vec<Option<String>>>;
    async fn columns(&self, object: &ObjectName) -> Vec<String>;
}

/// A warehouse adapter with the blob store its files are read from, and a way to look inside.
#[derive(Clone)]
pub struct WarehouseUnderTest {
    pub warehouse: Arc<dyn Warehouse>,
    pub blobs: Arc<dyn BlobStore>,
    pub inspector: Arc<dyn WarehouseInspector>,
}

fn column(name: &str, sf_type: &str) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        sf_type: sf_type.into(),
        length: if sf_type == "id" { 18 } else { 255 },
        precision: if sf_type == "currency" { 18 } else { 0 },
        scale: if sf_type == "currency" { 2 } else { 0 },
    }
}

fn schema(object: &str) -> TableSchema {
    TableSchema {
        object: ObjectName::new(object).expect("valid object name"),
        columns: vec![
            column("Id", "id"),
            column("Name", "string"),
            column("Amount", "currency"),
            column("IsDeleted", "boolean"),
            column("SystemModstamp", "datetime"),
        ],
    }
}

const COLUMNS: [&str; 5] = ["Id", "Name", "Amount", "IsDeleted", "SystemModstamp"];

/// One row: (id, name, amount, deleted, modstamp day in January 2026).
type Row<'a> = (&'a str, &'a str, &'a str, bool, u32);

/// Midnight of `day` in January 2026, as a watermark.
fn day(day: u32) -> Option<chrono::DateTime<Utc>> {
    Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).single()
}

fn stamp(day: u32) -> String {
    format!("2026-01-{day:02}T00:00:00.000Z")
}

fn id(n: &str) -> String {
    format!("001{n:0>15}")
}

fn expected(rows: &[Row<'_>]) -> Vec<Vec<Option<String>>> {
    let mut out: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|(n, name, amount, deleted, day)| {
            vec![
                Some(id(n)),
                (!name.is_empty()).then(|| name.to_string()),
                (!amount.is_empty()).then(|| amount.to_string()),
                Some(deleted.to_string()),
                Some(stamp(*day)),
            ]
        })
        .collect();
    out.sort();
    out
}

/// Numbers compare by value (one warehouse says 12.5, another 12.50).
fn normalized(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .enumerate()
                .map(|(i, v)| match (i, v) {
                    (2, Some(n)) => Some(n.parse::<f64>().map_or(n, |x| format!("{x:.2}"))),
                    (_, v) => v,
                })
                .collect()
        })
        .collect()
}

async fn write_file(
    blobs: &dyn BlobStore,
    key: &str,
    header: &[&str],
    rows: &[Vec<String>],
) -> String {
    let mut csv = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    csv.write_record(header).expect("csv");
    for row in rows {
        csv.write_record(row).expect("csv");
    }
    let plain = csv.into_inner().expect("csv");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&plain).expect("gzip");
    blobs
        .put(key, bytes_stream(gz.finish().expect("gzip")))
        .await
        .expect("put file");
    key.to_string()
}

async fn file(blobs: &dyn BlobStore, object: &str, name: &str, rows: &[Row<'_>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(n, name, amount, deleted, day)| {
            vec![
                id(n),
                name.to_string(),
                amount.to_string(),
                deleted.to_string(),
                stamp(*day),
            ]
        })
        .collect();
    write_file(
        blobs,
        &format!("conformance/warehouse/{object}/{name}.csv.gz"),
        &COLUMNS,
        &rows,
    )
    .await
}

fn batch(object: &str, run: &str, files: Vec<String>) -> MergeBatch {
    MergeBatch {
        schema: schema(object),
        update_only: false,
        reconcile_until: None,
        request_id: None,
        loaded_at: None,
        run_id: RunId::new(run).expect("run id"),
        files,
        extracted_at: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
    }
}

async fn merge(
    w: &WarehouseUnderTest,
    object: &str,
    run: &str,
    files: Vec<String>,
) -> crate::ports::MergeReport {
    w.warehouse
        .ensure_table(&schema(object))
        .await
        .expect("ensure_table");
    w.warehouse
        .merge(&batch(object, run, files))
        .await
        .expect("merge")
}

async fn watermark_of(w: &WarehouseUnderTest, object: &str) -> Option<chrono::DateTime<Utc>> {
    w.warehouse
        .watermark(&ObjectName::new(object).expect("valid object name"))
        .await
        .expect("watermark")
}

async fn table(w: &WarehouseUnderTest, object: &str) -> Vec<Vec<Option<String>>> {
    normalized(w.inspector.rows(&schema(object), &COLUMNS).await)
}

const FIRST: [Row<'static>; 3] = [
    ("1", "Acme", "100.50", false, 1),
    ("2", "Globex, \"the\" company", "", false, 2),
    ("3", "Line one\nline two", "7.00", false, 3),
];

pub async fn first_load_creates_the_table(w: &WarehouseUnderTest) {
    let object = "WhFirst__c";
    let f = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    let report = merge(w, object, "r1", vec![f]).await;
    assert_eq!(report.rows_read, 3);
    assert_eq!(report.rows_changed, 3);
    assert_eq!(table(w, object).await, normalized(expected(&FIRST)));
    assert_eq!(watermark_of(w, object).await, day(3));
}

/// A stored row says where it came from: its run, its part, when it was extracted and loaded.
pub async fn a_row_says_where_it_came_from(w: &WarehouseUnderTest) {
    let object = "WhLineage__c";
    let name = ObjectName::new(object).expect("valid object name");
    assert_eq!(
        w.warehouse.lineage(&name, &id("1")).await.expect("lineage"),
        None,
        "a table that does not exist has no rows"
    );
    let f = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![f.clone()]).await;
    let lineage = w
        .warehouse
        .lineage(&name, &id("2"))
        .await
        .expect("lineage")
        .expect("the row");
    assert_eq!(lineage.run_id.as_deref(), Some("r1"));
    assert!(
        lineage
            .file
            .as_deref()
            .is_some_and(|file| file.ends_with(&f)),
        "{lineage:?}"
    );
    assert_eq!(
        lineage.extracted_at,
        Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).single()
    );
    assert!(lineage.loaded_at.is_some(), "{lineage:?}");
    assert_eq!(lineage.is_deleted, Some(false));
    assert_eq!(
        w.warehouse.lineage(&name, &id("9")).await.expect("lineage"),
        None
    );
}

pub async fn newer_rows_update_and_new_rows_insert(w: &WarehouseUnderTest) {
    let object = "WhNewer__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let changes = [
        ("2", "Globex Corp", "5.00", false, 10),
        ("4", "Initech", "1.00", false, 11),
    ];
    let second = file(w.blobs.as_ref(), object, "second", &changes).await;
    let report = merge(w, object, "r2", vec![second]).await;
    assert_eq!(report.rows_changed, 2);
    assert_eq!(
        table(w, object).await,
        normalized(expected(&[FIRST[0], FIRST[2], changes[0], changes[1]]))
    );
}

pub async fn the_same_file_twice_changes_nothing(w: &WarehouseUnderTest) {
    let object = "WhTwice__c";
    let f = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![f.clone()]).await;
    let before = table(w, object).await;
    let again = merge(w, object, "r1", vec![f]).await;
    assert_eq!(again.rows_changed, 0, "a duplicate merge changed rows");
    assert_eq!(table(w, object).await, before);
}

pub async fn an_older_file_after_a_newer_one_changes_nothing(w: &WarehouseUnderTest) {
    let object = "WhLate__c";
    let newer = [("1", "New name", "2.00", false, 20)];
    let older = [("1", "Old name", "1.00", false, 5)];
    let newer_file = file(w.blobs.as_ref(), object, "newer", &newer).await;
    let older_file = file(w.blobs.as_ref(), object, "older", &older).await;
    merge(w, object, "r2", vec![newer_file]).await;
    let late = merge(w, object, "r1", vec![older_file]).await;
    assert_eq!(late.rows_changed, 0);
    assert_eq!(table(w, object).await, normalized(expected(&newer)));
    assert_eq!(
        watermark_of(w, object).await,
        day(20),
        "the watermark moved backwards"
    );
}

pub async fn the_newest_version_in_one_batch_wins_in_any_order(w: &WarehouseUnderTest) {
    for (object, order) in [("WhDupA__c", [0usize, 1]), ("WhDupB__c", [1, 0])] {
        let versions = [
            file(
                w.blobs.as_ref(),
                object,
                "v1",
                &[("1", "Version one", "1.00", false, 1)],
            )
            .await,
            file(
                w.blobs.as_ref(),
                object,
                "v2",
                &[("1", "Version two", "2.00", false, 2)],
            )
            .await,
        ];
        let files = order.iter().map(|&i| versions[i].clone()).collect();
        merge(w, object, "r1", files).await;
        assert_eq!(
            table(w, object).await,
            normalized(expected(&[("1", "Version two", "2.00", false, 2)])),
            "order {order:?}"
        );
    }
}

pub async fn deleted_rows_are_flagged(w: &WarehouseUnderTest) {
    let object = "WhDeleted__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let deletion = [("3", "Line one\nline two", "7.00", true, 9)];
    let second = file(w.blobs.as_ref(), object, "deleted", &deletion).await;
    merge(w, object, "r2", vec![second]).await;
    assert_eq!(
        table(w, object).await,
        normalized(expected(&[FIRST[0], FIRST[1], deletion[0]]))
    );
}

/// For an adapter set to remove deleted rows ([`crate::ports::DeletedRows::Remove`]); not part of
/// [`run_all`].
pub async fn deleted_rows_are_removed_when_asked(w: &WarehouseUnderTest) {
    let object = "WhRemoved__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let older = [("2", "Globex", "", true, 1)];
    let older = file(w.blobs.as_ref(), object, "older-deletion", &older).await;
    let report = merge(w, object, "r2", vec![older]).await;
    assert_eq!(
        report.rows_changed, 0,
        "an older deletion removed a newer row"
    );
    let deletions = [
        ("3", "Line one\nline two", "7.00", true, 9),
        ("5", "Never seen", "1.00", true, 9),
    ];
    let deletions = file(w.blobs.as_ref(), object, "deletions", &deletions).await;
    let report = merge(w, object, "r3", vec![deletions]).await;
    assert_eq!(
        report.rows_changed, 1,
        "one stored row removed, none inserted"
    );
    assert_eq!(
        table(w, object).await,
        normalized(expected(&[FIRST[0], FIRST[1]]))
    );
}

/// For adapter-specific tests: merges the suite's first three rows into `object` as run `run`,
/// returning the warehouse's answer instead of failing on it.
pub async fn try_merge_first_rows(
    w: &WarehouseUnderTest,
    object: &str,
    run: &str,
) -> Result<crate::ports::MergeReport, crate::ports::WarehouseError> {
    try_merge_first_rows_as(w, object, run, None).await
}

/// [`try_merge_first_rows`] under a merge request id of the caller's.
pub async fn try_merge_first_rows_as(
    w: &WarehouseUnderTest,
    object: &str,
    run: &str,
    request_id: Option<&str>,
) -> Result<crate::ports::MergeReport, crate::ports::WarehouseError> {
    let f = file(w.blobs.as_ref(), object, run, &FIRST).await;
    w.warehouse.ensure_table(&schema(object)).await?;
    let mut merge_batch = batch(object, run, vec![f]);
    merge_batch.request_id = request_id.map(str::to_string);
    // A resubmission is the same request: the same batch, its load time included.
    merge_batch.loaded_at = request_id.map(|_| Utc.with_ymd_and_hms(2026, 2, 1, 1, 0, 0).unwrap());
    w.warehouse.merge(&merge_batch).await
}

/// For adapter-specific tests: the table's rows as the suite reads them.
pub async fn table_rows(w: &WarehouseUnderTest, object: &str) -> Vec<Vec<Option<String>>> {
    table(w, object).await
}

pub async fn run_all(w: &WarehouseUnderTest) {
    a_part_whose_header_differs_is_refused(w).await;
    a_widened_field_takes_longer_values_and_more_digits(w).await;
    a_formula_refresh_updates_only_rows_of_the_same_version(w).await;
    a_table_without_system_modstamp_keys_its_watermark_on_created_date(w).await;
    numbers_in_scientific_notation_load_at_their_value(w).await;
    awkward_csv_loads_exactly(w).await;
    nul_characters_are_removed_from_text(w).await;
    invalid_utf8_fails_and_changes_nothing(w).await;
    first_load_creates_the_table(w).await;
    a_row_says_where_it_came_from(w).await;
    newer_rows_update_and_new_rows_insert(w).await;
    the_same_file_twice_changes_nothing(w).await;
    an_older_file_after_a_newer_one_changes_nothing(w).await;
    the_newest_version_in_one_batch_wins_in_any_order(w).await;
    deleted_rows_are_flagged(w).await;
    a_reconciliation_flags_exactly_the_rows_missing_from_salesforce(w).await;
    a_new_field_adds_a_column(w).await;
    a_failure_midway_leaves_the_table_as_it_was(w).await;
}
