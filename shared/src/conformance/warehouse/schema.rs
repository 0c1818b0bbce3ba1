//! Schema changes and cursors: new and widened fields, an object without SystemModstamp, a
//! formula refresh.

use chrono::{TimeZone, Utc};

use crate::contracts::{ObjectName, RunId};
use crate::ports::{ColumnSpec, MergeBatch, TableSchema};

use super::{
    COLUMNS, FIRST, WarehouseUnderTest, batch, column, day, expected, file, id, merge, normalized,
    schema, stamp, table, watermark_of, write_file,
};

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
                        loaded_at: None,
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
