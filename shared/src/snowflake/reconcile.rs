//! The SQL of a reconciliation ([`MergeBatch::reconcile_until`]) in Snowflake: the live Ids into
//! the session's load table, then one UPDATE (or DELETE) of the stored rows missing from them, in
//! the same rollback block as a merge.

use chrono::{DateTime, Utc};

use super::sql::{
    ExistingColumn, LINEAGE_COLUMNS, LOAD_TABLE, MergePlan, NEWEST_MS, ROWS_CHANGED, ROWS_READ,
    ident, literal, load_plan, table_name,
};
use crate::contracts::rfc3339;
use crate::ports::{CURSOR_FIELDS, DeletedRows, MergeBatch};

/// `existing`: the table's columns (its cursor and IsDeleted are not in the batch's schema,
/// which is the Id alone). A table without IsDeleted cannot say a row is deleted: nothing changes.
pub fn reconcile_plan(
    batch: &MergeBatch,
    stage: &str,
    loaded_at: DateTime<Utc>,
    deleted: DeletedRows,
    until: DateTime<Utc>,
    existing: &[ExistingColumn],
) -> MergePlan {
    let has = |name: &str| existing.iter().any(|c| c.name.eq_ignore_ascii_case(name));
    let cursor = CURSOR_FIELDS.iter().copied().find(|c| has(c));
    let table = table_name(&batch.schema.object);
    let load = ident(LOAD_TABLE);
    let id = ident("Id");
    let mut plan = load_plan(batch, stage);
    if has("IsDeleted") {
        let mut conditions = vec![format!(
            "NOT EXISTS (SELECT 1 FROM {load} AS l WHERE l.{id} = t.{id})"
        )];
        let timestamp =
            |at: DateTime<Utc>| format!("CAST({} AS TIMESTAMP_TZ)", literal(&rfc3339(at)));
        if let Some(cursor) = cursor {
            let cursor = ident(cursor);
            conditions.push(format!(
                "(t.{cursor} IS NULL OR t.{cursor} <= {})",
                timestamp(until)
            ));
        }
        plan.transaction.push(match deleted {
            DeletedRows::Remove => format!(
                "DELETE FROM {table} AS t WHERE {}",
                conditions.join(" AND ")
            ),
            DeletedRows::Flag => {
                conditions.push(format!("t.{} IS DISTINCT FROM TRUE", ident("IsDeleted")));
                let [run, extracted, file, loaded] = LINEAGE_COLUMNS.map(|(n, _)| ident(n));
                format!(
                    "UPDATE {table} AS t SET {} = TRUE, {run} = {}, {extracted} = {}, \
                     {file} = NULL, {loaded} = {} WHERE {}",
                    ident("IsDeleted"),
                    literal(batch.run_id.as_str()),
                    timestamp(batch.extracted_at),
                    timestamp(loaded_at),
                    conditions.join(" AND ")
                )
            }
        });
        plan.transaction.push("rows_changed := SQLROWCOUNT".into());
    }
    plan.transaction.push(format!(
        "summary := (SELECT COUNT(*) AS \"{ROWS_READ}\", :rows_changed AS \"{ROWS_CHANGED}\", \
         CAST(NULL AS NUMBER) AS \"{NEWEST_MS}\" FROM {load})"
    ));
    plan
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::contracts::{ObjectName, RunId};
    use crate::ports::{ColumnSpec, TableSchema};

    fn column(name: &str) -> ExistingColumn {
        ExistingColumn {
            name: name.to_ascii_uppercase(),
            data_type: "TEXT".into(),
            length: None,
            precision: None,
            scale: None,
        }
    }

    #[test]
    fn a_reconciliation_flags_missing_rows_not_newer_than_its_window() {
        let batch = MergeBatch {
            schema: TableSchema {
                object: ObjectName::new("Account").unwrap(),
                columns: vec![ColumnSpec {
                    name: "Id".into(),
                    sf_type: "id".into(),
                    length: 18,
                    precision: 0,
                    scale: 0,
                }],
            },
            update_only: false,
            reconcile_until: None,
            request_id: None,
            loaded_at: None,
            run_id: RunId::new("r-1").unwrap(),
            files: vec!["runs/Account/r-1/part-00001.csv.gz".into()],
            extracted_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        };
        let until = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let existing = [column("Id"), column("IsDeleted"), column("SystemModstamp")];
        let plan = reconcile_plan(&batch, "S", until, DeletedRows::Flag, until, &existing);
        let update = plan
            .transaction
            .iter()
            .find(|s| s.starts_with("UPDATE"))
            .expect("the update");
        assert!(
            update.contains(
                "NOT EXISTS (SELECT 1 FROM \"_SFPIPE_LOAD\" AS l WHERE l.\"ID\" = t.\"ID\")"
            ),
            "{update}"
        );
        assert!(
            update.contains(
                "t.\"SYSTEMMODSTAMP\" <= CAST('2026-01-02T00:00:00.000Z' AS TIMESTAMP_TZ)"
            ),
            "{update}"
        );
        assert!(
            update.contains("t.\"ISDELETED\" IS DISTINCT FROM TRUE"),
            "{update}"
        );
        assert!(plan.block().contains("rows_changed := SQLROWCOUNT"));
        let removing = reconcile_plan(&batch, "S", until, DeletedRows::Remove, until, &existing);
        assert!(
            removing
                .transaction
                .iter()
                .any(|s| s.starts_with("DELETE FROM \"ACCOUNT\" AS t WHERE NOT EXISTS"))
        );
        // No IsDeleted: the Ids are read, nothing changes.
        let bare = reconcile_plan(
            &batch,
            "S",
            until,
            DeletedRows::Flag,
            until,
            &[column("Id")],
        );
        assert!(
            !bare
                .transaction
                .iter()
                .any(|s| s.starts_with("UPDATE") || s.starts_with("DELETE FROM \"ACCOUNT\""))
        );
    }
}
