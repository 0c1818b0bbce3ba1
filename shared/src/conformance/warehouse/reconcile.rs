//! Reconciliations: hard deletes found by comparing Ids.

use crate::contracts::ObjectName;
use crate::ports::{MergeBatch, TableSchema};

use super::{
    FIRST, WarehouseUnderTest, batch, column, day, expected, file, id, merge, normalized, schema,
    table, watermark_of, write_file,
};

/// A reconciliation's batch: the Ids of `live` rows, as the Id-only query writes them.
pub(super) async fn reconcile(
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
