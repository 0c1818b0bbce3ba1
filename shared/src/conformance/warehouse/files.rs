//! What a file can hold: awkward CSV, invalid UTF-8, scientific notation, a wrong header, a
//! failure midway.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::contracts::ObjectName;
use crate::ports::{TableSchema, bytes_stream};

use super::{
    COLUMNS, FIRST, WarehouseUnderTest, batch, column, file, id, merge, schema, stamp, table,
    watermark_of, write_file,
};

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

/// NUL characters (U+0000) occur in real orgs' text (pasted in, then served by the Bulk API as
/// bytes and by REST as `\u0000`). Every warehouse removes them as it loads, as other Salesforce
/// clients do, so SQLite and Snowflake hold the same text: a value of NULs alone is NULL. The
/// part keeps Salesforce's bytes.
pub async fn nul_characters_are_removed_from_text(w: &WarehouseUnderTest) {
    let object = "WhNul__c";
    let rows = vec![
        vec![
            id("1"),
            "pasted\0 text\0".into(),
            "1.00".into(),
            "false".into(),
            stamp(1),
        ],
        vec![
            id("2"),
            "\0\0".into(),
            "2.00".into(),
            "false".into(),
            stamp(2),
        ],
        vec![
            id("3"),
            "clean".into(),
            "3.00".into(),
            "false".into(),
            stamp(3),
        ],
    ];
    let key = write_file(
        w.blobs.as_ref(),
        &format!("conformance/warehouse/{object}/nul.csv.gz"),
        &COLUMNS,
        &rows,
    )
    .await;
    let report = merge(w, object, "r1", vec![key]).await;
    assert_eq!(report.rows_changed, 3);
    assert_eq!(
        w.inspector.rows(&schema(object), &["Id", "Name"]).await,
        vec![
            vec![Some(id("1")), Some("pasted text".to_string())],
            vec![Some(id("2")), None],
            vec![Some(id("3")), Some("clean".to_string())],
        ]
    );
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
