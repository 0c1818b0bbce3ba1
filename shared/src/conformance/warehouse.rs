//! What every warehouse adapter must do: the merge semantics the pipeline's exactness rests on.
//! Each check uses its own table, so one warehouse can serve them all.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
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

/// A reconciliation's batch: the Ids of `live` rows, as the Id-only query writes them.
async fn reconcile(
    w: &WarehouseUnderTest,
    object: &str,
    run: &str,
    live: &[&str],
    until_day: u32,
) -> crate::ports::MergeReport {
    let rows: Vec<Vec<String>> = live.iter().map(|n| vec![id(n)]).collect();
    let key = write_file(
        w.blobs.as_ref(),
        &format!("conformance/warehouse/{object}/{run}-ids.csv.gz"),
        &["Id"],
        &rows,
    )
    .await;
    let ids = TableSchema {
        object: ObjectName::new(object).expect("valid object name"),
        columns: vec![column("Id", "id")],
    };
    w.warehouse.ensure_table(&ids).await.expect("ensure_table");
    w.warehouse
        .merge(&MergeBatch {
            schema: ids,
            reconcile_until: day(until_day),
            ..batch(object, run, vec![key])
        })
        .await
        .expect("reconcile")
}

/// Rows 2 and 3 vanished from Salesforce (hard-deleted); row 4 was inserted by a run that
/// merged after the reconciliation's window closed (day 5), so its Id is not in the list either:
/// only 2 and 3 are flagged, with the reconciliation's lineage, and the watermark stays.
pub async fn a_reconciliation_flags_exactly_the_rows_missing_from_salesforce(
    w: &WarehouseUnderTest,
) {
    let object = "WhPurged__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let concurrent = [("4", "Just created", "1.00", false, 6)];
    let concurrent = file(w.blobs.as_ref(), object, "concurrent", &concurrent).await;
    merge(w, object, "r2", vec![concurrent]).await;
    let report = reconcile(w, object, "r3", &["1"], 5).await;
    assert_eq!(report.rows_read, 1);
    assert_eq!(report.rows_changed, 2, "not exactly the two vanished rows");
    let flagged = [
        FIRST[0],
        ("2", FIRST[1].1, FIRST[1].2, true, 2),
        ("3", FIRST[2].1, FIRST[2].2, true, 3),
        ("4", "Just created", "1.00", false, 6),
    ];
    assert_eq!(table(w, object).await, normalized(expected(&flagged)));
    let lineage = w
        .inspector
        .rows(&schema(object), &["Id", "_SFPIPE_RUN_ID"])
        .await;
    let runs: Vec<Option<String>> = lineage.into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(
        runs,
        [
            Some("r1".into()),
            Some("r3".into()),
            Some("r3".into()),
            Some("r2".into())
        ]
    );
    assert_eq!(watermark_of(w, object).await, day(6));
    // Again: the flagged rows are deleted already, so nothing changes.
    assert_eq!(reconcile(w, object, "r4", &["1"], 5).await.rows_changed, 0);
    assert_eq!(table(w, object).await, normalized(expected(&flagged)));
}

/// With `DeletedRows::Remove`, the vanished rows are removed instead.
pub async fn a_reconciliation_removes_missing_rows_when_asked(w: &WarehouseUnderTest) {
    let object = "WhPurgedGone__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let report = reconcile(w, object, "r2", &["1", "3"], 5).await;
    assert_eq!(report.rows_changed, 1);
    assert_eq!(
        table(w, object).await,
        normalized(expected(&[FIRST[0], FIRST[2]]))
    );
}

pub async fn a_new_field_adds_a_column(w: &WarehouseUnderTest) {
    let object = "WhNewField__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let mut wider = schema(object);
    wider.columns.push(column("Region__c", "string"));
    w.warehouse
        .ensure_table(&wider)
        .await
        .expect("ensure wider table");
    w.warehouse
        .ensure_table(&wider)
        .await
        .expect("ensure is idempotent");
    let columns = w.inspector.columns(&wider.object).await;
    assert!(
        columns.iter().any(|c| c.eq_ignore_ascii_case("Region__c")),
        "no Region__c column in {columns:?}"
    );
    let mut header = COLUMNS.to_vec();
    header.push("Region__c");
    let key = write_file(
        w.blobs.as_ref(),
        &format!("conformance/warehouse/{object}/wider.csv.gz"),
        &header,
        &[vec![
            id("4"),
            "Hooli".into(),
            "3.00".into(),
            "false".into(),
            stamp(12),
            "EMEA".into(),
        ]],
    )
    .await;
    let report = w
        .warehouse
        .merge(&MergeBatch {
            schema: wider.clone(),
            ..batch(object, "r2", vec![key])
        })
        .await
        .expect("merge with the new field");
    assert_eq!(report.rows_changed, 1);
    let regions = w.inspector.rows(&wider, &["Id", "Region__c"]).await;
    assert_eq!(
        regions,
        vec![
            vec![Some(id("1")), None],
            vec![Some(id("2")), None],
            vec![Some(id("3")), None],
            vec![Some(id("4")), Some("EMEA".into())],
        ]
    );
}

pub async fn a_failure_midway_leaves_the_table_as_it_was(w: &WarehouseUnderTest) {
    let object = "WhAtomic__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let before = table(w, object).await;
    let watermark_before = w
        .warehouse
        .watermark(&ObjectName::new(object).unwrap())
        .await
        .expect("watermark");
    let good = file(
        w.blobs.as_ref(),
        object,
        "good",
        &[("1", "Changed", "9.00", false, 25)],
    )
    .await;
    let broken = format!("conformance/warehouse/{object}/broken.csv.gz");
    // A gzip stream cut short: what a truncated page or a half-written file looks like.
    w.blobs
        .put(
            &broken,
            bytes_stream(Bytes::from_static(&[0x1f, 0x8b, 0x08, 0x00, 0x00])),
        )
        .await
        .expect("put");
    let result = w
        .warehouse
        .merge(&batch(object, "r2", vec![good, broken]))
        .await;
    assert!(result.is_err(), "merging a broken file must fail");
    assert_eq!(
        table(w, object).await,
        before,
        "a failed merge changed the table"
    );
    assert_eq!(watermark_of(w, object).await, watermark_before);
}

/// CSV as Salesforce writes it at its most awkward: newlines, quotes and commas inside fields, an
/// empty field (Bulk CSV cannot tell empty from null: both load as NULL), a 100,000-character
/// field, non-ASCII text, and a byte-order mark before the header.
pub async fn awkward_csv_loads_exactly(w: &WarehouseUnderTest) {
    let object = "WhAwkward__c";
    let long = "x".repeat(100_000);
    let rows = vec![
        vec![
            id("1"),
            "line one\nline two\r\nline three".into(),
            "1.00".into(),
            "false".into(),
            stamp(1),
        ],
        vec![
            id("2"),
            "quotes \"inside\", and, commas".into(),
            "".into(),
            "false".into(),
            stamp(2),
        ],
        vec![id("3"), "".into(), "3.00".into(), "true".into(), stamp(3)],
        vec![
            id("4"),
            long.clone(),
            "4.00".into(),
            "false".into(),
            stamp(4),
        ],
        vec![
            id("5"),
            "Zürich — 東京 — emoji 🚀".into(),
            "5.00".into(),
            "false".into(),
            stamp(5),
        ],
    ];
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    header[0] = format!("\u{feff}{}", header[0]);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let key = write_file(
        w.blobs.as_ref(),
        &format!("conformance/warehouse/{object}/awkward.csv.gz"),
        &header,
        &rows,
    )
    .await;
    let report = merge(w, object, "r1", vec![key]).await;
    assert_eq!(report.rows_changed, 5);
    let got = w.inspector.rows(&schema(object), &["Id", "Name"]).await;
    let want: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| vec![Some(r[0].clone()), (!r[1].is_empty()).then(|| r[1].clone())])
        .collect();
    assert_eq!(got, want);
}

/// A file that is not UTF-8 fails the merge, naming the file, and changes nothing.
pub async fn invalid_utf8_fails_and_changes_nothing(w: &WarehouseUnderTest) {
    let object = "WhLatin1__c";
    let first = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![first]).await;
    let before = table(w, object).await;
    let mut plain = b"\"Id\",\"Name\",\"Amount\",\"IsDeleted\",\"SystemModstamp\"\n".to_vec();
    plain.extend_from_slice(format!("\"{}\",\"Z", id("1")).as_bytes());
    plain.push(0xfc); // 'ü' in Latin-1
    plain.extend_from_slice(format!("rich\",\"1.00\",\"false\",\"{}\"\n", stamp(28)).as_bytes());
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&plain).expect("gzip");
    let key = format!("conformance/warehouse/{object}/latin1.csv.gz");
    w.blobs
        .put(&key, bytes_stream(gz.finish().expect("gzip")))
        .await
        .expect("put");
    let result = w.warehouse.merge(&batch(object, "r2", vec![key])).await;
    assert!(result.is_err(), "a Latin-1 file merged: {result:?}");
    assert_eq!(table(w, object).await, before);
}

/// Salesforce writes numbers of eight or more digits in scientific notation (`1.2345678E7`) in
/// Bulk CSV; every numeric column takes them at their value.
pub async fn numbers_in_scientific_notation_load_at_their_value(w: &WarehouseUnderTest) {
    let object = "WhNumbers__c";
    let schema = TableSchema {
        object: ObjectName::new(object).expect("valid object name"),
        columns: vec![
            column("Id", "id"),
            column("Seats__c", "int"),
            column("Ratio__c", "double"),
            column("Amount", "currency"),
            column("IsDeleted", "boolean"),
            column("SystemModstamp", "datetime"),
        ],
    };
    let header = [
        "Id",
        "Seats__c",
        "Ratio__c",
        "Amount",
        "IsDeleted",
        "SystemModstamp",
    ];
    let rows = [
        ["1", "1.2345678E7", "1.2345678E7", "1.2345678E7"],
        ["2", "42", "2.5E-3", "9.99E10"],
        ["3", "12345678", "-3.0E8", "-1.5E7"],
    ];
    let csv_rows: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(day, r)| {
            let mut row = vec![id(r[0])];
            row.extend(r[1..].iter().map(|v| v.to_string()));
            row.extend(["false".to_string(), stamp(day as u32 + 1)]);
            row
        })
        .collect();
    let key = write_file(
        w.blobs.as_ref(),
        &format!("conformance/warehouse/{object}/numbers.csv.gz"),
        &header,
        &csv_rows,
    )
    .await;
    w.warehouse
        .ensure_table(&schema)
        .await
        .expect("ensure_table");
    let mut merge_batch = batch(object, "r1", vec![key]);
    merge_batch.schema = schema.clone();
    w.warehouse.merge(&merge_batch).await.expect("merge");
    let got = w
        .inspector
        .rows(&schema, &["Id", "Seats__c", "Ratio__c", "Amount"])
        .await;
    let value = |text: &Option<String>| -> f64 {
        text.as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert_eq!(got.len(), rows.len(), "{got:?}");
    for (row, want) in got.iter().zip(rows) {
        assert_eq!(row[0].as_deref(), Some(id(want[0]).as_str()));
        for (column, (text, expected)) in row[1..].iter().zip(&want[1..]).enumerate() {
            let expected: f64 = expected.parse().expect("test number");
            assert!(
                (value(text) - expected).abs() <= expected.abs() * 1e-12,
                "column {column} of row {}: {text:?}, not {expected}",
                want[0]
            );
        }
    }
}

/// A field history object has no SystemModstamp: CreatedDate orders its rows and keys its
/// watermark, so its next run is incremental too.
pub async fn a_table_without_system_modstamp_keys_its_watermark_on_created_date(
    w: &WarehouseUnderTest,
) {
    let object = "WhHistory__c";
    let schema = TableSchema {
        object: ObjectName::new(object).expect("valid object name"),
        columns: vec![
            column("Id", "id"),
            column("Field", "picklist"),
            column("IsDeleted", "boolean"),
            column("CreatedDate", "datetime"),
        ],
    };
    let header = ["Id", "Field", "IsDeleted", "CreatedDate"];
    let rows = |rows: &[(&str, &str, u32)]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|(n, field, day)| vec![id(n), field.to_string(), "false".into(), stamp(*day)])
            .collect()
    };
    let load = |name: &'static str, run: &'static str, rows: Vec<Vec<String>>| {
        let schema = schema.clone();
        async move {
            let key = write_file(
                w.blobs.as_ref(),
                &format!("conformance/warehouse/{object}/{name}.csv.gz"),
                &header,
                &rows,
            )
            .await;
            w.warehouse
                .ensure_table(&schema)
                .await
                .expect("ensure_table");
            let mut merge_batch = batch(object, run, vec![key]);
            merge_batch.schema = schema;
            w.warehouse.merge(&merge_batch).await.expect("merge")
        }
    };
    let first = load("first", "r1", rows(&[("1", "Name", 5), ("2", "Type", 3)])).await;
    assert_eq!(first.rows_changed, 2);
    let watermark = || watermark_of(w, object);
    let day5 = day(5);
    assert_eq!(
        watermark().await,
        day5,
        "no watermark from CreatedDate: every run would read the object in full"
    );
    let late = load("older", "r0", rows(&[("1", "Rating", 2)])).await;
    assert_eq!(
        late.rows_changed, 0,
        "an older CreatedDate replaced a newer row"
    );
    assert_eq!(watermark().await, day5, "the watermark moved backwards");
    let got = w.inspector.rows(&schema, &["Id", "Field"]).await;
    assert_eq!(
        got,
        vec![
            vec![Some(id("1")), Some("Name".into())],
            vec![Some(id("2")), Some("Type".into())],
        ]
    );
}

/// A formula refresh (`update_only`) writes its columns into stored rows of the same version
/// only: never an insert, never an older or newer version, never a later extraction's values,
/// never the watermark.
pub async fn a_formula_refresh_updates_only_rows_of_the_same_version(w: &WarehouseUnderTest) {
    let object = "WhFormulas__c";
    let f = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![f]).await;
    let refresh_schema = TableSchema {
        object: ObjectName::new(object).expect("valid object name"),
        columns: vec![
            column("Id", "id"),
            column("Name", "string"),
            column("SystemModstamp", "datetime"),
        ],
    };
    let refresh =
        |name: &'static str, at_day: u32, rows: Vec<(&'static str, &'static str, u32)>| {
            let schema = refresh_schema.clone();
            async move {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(n, value, day)| vec![id(n), value.to_string(), stamp(*day)])
                    .collect();
                let key = write_file(
                    w.blobs.as_ref(),
                    &format!("conformance/warehouse/{object}/{name}.csv.gz"),
                    &["Id", "Name", "SystemModstamp"],
                    &rows,
                )
                .await;
                w.warehouse
                    .merge(&MergeBatch {
                        schema,
                        run_id: RunId::new(name).expect("run id"),
                        files: vec![key],
                        extracted_at: Utc.with_ymd_and_hms(2026, 3, at_day, 0, 0, 0).unwrap(),
                        update_only: true,
                        reconcile_until: None,
                        request_id: None,
                    })
                    .await
                    .expect("refresh merge")
            }
        };
    let report = refresh(
        "refresh-1",
        10,
        vec![
            ("1", "Acme refreshed", 1),
            // Older than the stored version: stale.
            ("2", "Stale", 1),
            // A newer version: the incremental run brings all of it, not the refresh.
            ("3", "Newer", 9),
            // Not in the table: a refresh never inserts.
            ("5", "Ghost", 1),
        ],
    )
    .await;
    assert_eq!(report.rows_changed, 1, "{report:?}");
    let mut want = FIRST;
    want[0].1 = "Acme refreshed";
    assert_eq!(table(w, object).await, normalized(expected(&want)));
    let late = refresh("refresh-0", 5, vec![("1", "Read earlier", 1)]).await;
    assert_eq!(
        late.rows_changed, 0,
        "an earlier refresh replaced a later one"
    );
    assert_eq!(table(w, object).await, normalized(expected(&want)));
    assert_eq!(
        watermark_of(w, object).await,
        day(3),
        "a refresh moved the watermark"
    );
}

/// An admin widens a text field and adds digits to a number between runs: the longer value and
/// the bigger number that follow load exactly (a column frozen at the first describe's size would
/// refuse them for ever).
pub async fn a_widened_field_takes_longer_values_and_more_digits(w: &WarehouseUnderTest) {
    let object = "WhWidened__c";
    let schema_with = |length: u32, precision: u32| TableSchema {
        object: ObjectName::new(object).expect("valid object name"),
        columns: vec![
            column("Id", "id"),
            ColumnSpec {
                length,
                ..column("Name", "string")
            },
            ColumnSpec {
                precision,
                ..column("Amount", "currency")
            },
            column("IsDeleted", "boolean"),
            column("SystemModstamp", "datetime"),
        ],
    };
    let long_name = "w".repeat(150);
    let rows = [
        (
            schema_with(10, 5),
            "first",
            ("1", "short", "123.45", false, 1),
        ),
        (
            schema_with(200, 18),
            "second",
            ("2", long_name.as_str(), "1234567890123.45", false, 2),
        ),
    ];
    for (schema, name, row) in &rows {
        let key = file(w.blobs.as_ref(), object, name, &[*row]).await;
        w.warehouse
            .ensure_table(schema)
            .await
            .expect("ensure_table");
        let mut merge_batch = batch(object, name, vec![key]);
        merge_batch.schema = schema.clone();
        let report = w
            .warehouse
            .merge(&merge_batch)
            .await
            .unwrap_or_else(|e| panic!("the {name} run, after the field was widened: {e}"));
        assert_eq!(report.rows_changed, 1);
    }
    assert_eq!(
        table(w, object).await,
        normalized(expected(&[rows[0].2, rows[1].2]))
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
    w.warehouse.merge(&merge_batch).await
}

/// For adapter-specific tests: the table's rows as the suite reads them.
pub async fn table_rows(w: &WarehouseUnderTest, object: &str) -> Vec<Vec<Option<String>>> {
    table(w, object).await
}

/// A part whose header is not the run's columns in order (a column renamed, two swapped) is
/// refused as a bad file, whatever the adapter maps columns by, and the table keeps nothing of
/// the run: loaded by position it would shift values into the wrong columns, and newer rows would
/// overwrite good ones.
pub async fn a_part_whose_header_differs_is_refused(w: &WarehouseUnderTest) {
    let object = "WhHeader__c";
    let f = file(w.blobs.as_ref(), object, "first", &FIRST).await;
    merge(w, object, "r1", vec![f]).await;
    let before = table(w, object).await;
    let swapped = ["Id", "Amount", "Name", "IsDeleted", "SystemModstamp"];
    let renamed = ["Id", "Title", "Amount", "IsDeleted", "SystemModstamp"];
    for (name, header) in [("swapped", swapped), ("renamed", renamed)] {
        // Values that fit either column, so a load by position would pass silently.
        let rows = vec![vec![
            id("1"),
            "9.00".to_string(),
            "12.50".to_string(),
            "false".to_string(),
            stamp(20),
        ]];
        let key = write_file(
            w.blobs.as_ref(),
            &format!("conformance/warehouse/{object}/{name}.csv.gz"),
            &header,
            &rows,
        )
        .await;
        let error = w
            .warehouse
            .merge(&batch(object, name, vec![key]))
            .await
            .expect_err("a part with another header was merged");
        assert!(
            matches!(error, crate::ports::WarehouseError::BadFile { .. }),
            "{name}: {error:?}"
        );
        assert_eq!(table(w, object).await, before, "{name}");
    }
}

pub async fn run_all(w: &WarehouseUnderTest) {
    a_part_whose_header_differs_is_refused(w).await;
    a_widened_field_takes_longer_values_and_more_digits(w).await;
    a_formula_refresh_updates_only_rows_of_the_same_version(w).await;
    a_table_without_system_modstamp_keys_its_watermark_on_created_date(w).await;
    numbers_in_scientific_notation_load_at_their_value(w).await;
    awkward_csv_loads_exactly(w).await;
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
