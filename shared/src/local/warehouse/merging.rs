//! Writing a merge into SQLite: each file's rows, newest cursor wins, in one transaction with
//! the watermark; and a reconciliation's flags.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use rusqlite::types::Value;

use crate::contracts::rfc3339;
use crate::ports::{BlobStore, ColumnSpec, DeletedRows, MergeBatch, MergeReport, WarehouseError};

use super::parts::{PartReader, open_part};
use super::{LINEAGE_COLUMNS, STATE_TABLE, existing_columns, quote, service};

pub(super) struct FileMerge<'a> {
    pub(super) table: &'a str,
    pub(super) columns: Vec<&'a ColumnSpec>,
    /// The run's cursor column, when this file has it.
    pub(super) cursor: Option<&'a str>,
}

impl FileMerge<'_> {
    /// Removes a deleted row when the deletion is not older than the stored version.
    pub(super) fn remove_sql(&self) -> String {
        let table = quote(self.table);
        if let Some(cursor) = self.cursor {
            let cursor = quote(cursor);
            format!(
                "DELETE FROM {table} WHERE \"Id\" = ?1 AND ({cursor} IS NULL OR {cursor} <= ?2)"
            )
        } else {
            format!("DELETE FROM {table} WHERE \"Id\" = ?1")
        }
    }

    /// The formula refresh's statement: the file's columns into the stored row of the same
    /// version, when something differs and the stored row was not extracted later. Parameters
    /// as for [`Self::upsert_sql`]: the file's columns, then the lineage columns.
    pub(super) fn update_sql(&self) -> String {
        let table = quote(self.table);
        let lineage = LINEAGE_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, name)| (quote(name), self.columns.len() + i + 1));
        let mut sets = Vec::new();
        let mut differs = Vec::new();
        let mut conditions = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            let (n, p) = (quote(&column.name), i + 1);
            if column.name == "Id" || Some(column.name.as_str()) == self.cursor {
                conditions.push(format!("{n} = ?{p}"));
            } else {
                sets.push(format!("{n} = ?{p}"));
                differs.push(format!("{n} IS NOT ?{p}"));
            }
        }
        let extracted = quote(LINEAGE_COLUMNS[1]);
        for (n, p) in lineage {
            if n == extracted {
                conditions.push(format!("({n} IS NULL OR {n} <= ?{p})"));
            }
            sets.push(format!("{n} = ?{p}"));
        }
        if differs.is_empty() {
            differs.push("0".into());
        }
        format!(
            "UPDATE {table} SET {} WHERE {} AND ({})",
            sets.join(", "),
            conditions.join(" AND "),
            differs.join(" OR ")
        )
    }

    pub(super) fn upsert_sql(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .chain(LINEAGE_COLUMNS.iter().map(|c| quote(c)))
            .collect();
        let placeholders = vec!["?"; names.len()].join(", ");
        let table = quote(self.table);
        let updates: Vec<String> = names
            .iter()
            .filter(|n| n.as_str() != "\"Id\"")
            .map(|n| format!("{n} = excluded.{n}"))
            .collect();
        let differs: Vec<String> = self
            .columns
            .iter()
            .filter(|c| c.name != "Id")
            .map(|c| {
                let n = quote(&c.name);
                format!("excluded.{n} IS NOT {table}.{n}")
            })
            .collect();
        let differs = if differs.is_empty() {
            "0".to_string()
        } else {
            differs.join(" OR ")
        };
        let condition = if let Some(cursor) = self.cursor {
            let cursor = quote(cursor);
            format!(
                "{table}.{cursor} IS NULL OR excluded.{cursor} > {table}.{cursor} \
                 OR (excluded.{cursor} = {table}.{cursor} AND ({differs}))"
            )
        } else {
            differs
        };
        format!(
            "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT(\"Id\") DO UPDATE SET {} WHERE {condition}",
            names.join(", "),
            updates.join(", ")
        )
    }
}

/// A reconciliation ([`MergeBatch::reconcile_until`]): the live Ids into a temporary table (on
/// disk, so 10 million cost no more memory than ten), then one statement flags or removes the
/// stored rows missing from it, in one transaction.
pub(super) fn reconcile_blocking(
    connection: &mut Connection,
    blobs: &Arc<dyn BlobStore>,
    runtime: &tokio::runtime::Handle,
    batch: &MergeBatch,
    until: DateTime<Utc>,
    deleted: DeletedRows,
) -> Result<MergeReport, WarehouseError> {
    let table = batch.schema.object.as_str();
    let stored = existing_columns(connection, table).map_err(service)?;
    let has = |name: &str| stored.iter().any(|c| c.eq_ignore_ascii_case(name));
    let cursor = crate::ports::CURSOR_FIELDS.iter().copied().find(|c| has(c));
    let transaction = connection.transaction().map_err(service)?;
    transaction
        .execute_batch(
            "DROP TABLE IF EXISTS temp._sfpipe_live_ids;
             CREATE TEMP TABLE _sfpipe_live_ids (\"Id\" TEXT PRIMARY KEY);",
        )
        .map_err(service)?;
    let mut report = MergeReport::default();
    {
        let mut insert = transaction
            .prepare("INSERT OR IGNORE INTO temp._sfpipe_live_ids (\"Id\") VALUES (?1)")
            .map_err(service)?;
        for file in &batch.files {
            let csv = open_part(blobs, runtime, &batch.schema, file)?;
            let reader = PartReader::new(&batch.schema, file, false)?;
            let id = reader.id_index;
            let (read, _) = reader.feed(csv, |record| insert.execute([record.text(id)]))?;
            report.rows_read += read.rows;
        }
    }
    if has("IsDeleted") {
        let quoted = quote(table);
        let mut conditions = vec![format!(
            "NOT EXISTS (SELECT 1 FROM temp._sfpipe_live_ids AS l WHERE l.\"Id\" = {quoted}.\"Id\")"
        )];
        if let Some(cursor) = cursor {
            let cursor = quote(cursor);
            conditions.push(format!("({cursor} IS NULL OR {cursor} <= ?1)"));
        } else {
            conditions.push("?1 IS NOT NULL".into());
        }
        let statement = match deleted {
            DeletedRows::Remove => {
                format!("DELETE FROM {quoted} WHERE {}", conditions.join(" AND "))
            }
            DeletedRows::Flag => {
                conditions.push("\"IsDeleted\" IS NOT 1".into());
                format!(
                    "UPDATE {quoted} SET \"IsDeleted\" = 1, {} = ?2, {} = ?3, {} = NULL, {} = ?4 WHERE {}",
                    quote(LINEAGE_COLUMNS[0]),
                    quote(LINEAGE_COLUMNS[1]),
                    quote(LINEAGE_COLUMNS[2]),
                    quote(LINEAGE_COLUMNS[3]),
                    conditions.join(" AND ")
                )
            }
        };
        let until = rfc3339(until);
        let changed = match deleted {
            DeletedRows::Remove => transaction.execute(&statement, [until]),
            DeletedRows::Flag => transaction.execute(
                &statement,
                rusqlite::params![
                    until,
                    batch.run_id.as_str(),
                    rfc3339(batch.extracted_at),
                    rfc3339(batch.loaded_at.unwrap_or_else(Utc::now))
                ],
            ),
        };
        report.rows_changed = changed.map_err(service)? as u64;
    }
    transaction
        .execute_batch("DROP TABLE temp._sfpipe_live_ids")
        .map_err(service)?;
    transaction.commit().map_err(service)?;
    Ok(report)
}

pub(super) fn merge_blocking(
    connection: &mut Connection,
    blobs: &Arc<dyn BlobStore>,
    runtime: &tokio::runtime::Handle,
    batch: &MergeBatch,
    deleted: DeletedRows,
) -> Result<MergeReport, WarehouseError> {
    if let Some(until) = batch.reconcile_until {
        return reconcile_blocking(connection, blobs, runtime, batch, until, deleted);
    }
    let table = batch.schema.object.as_str();
    let loaded_at = rfc3339(batch.loaded_at.unwrap_or_else(Utc::now));
    let extracted_at = rfc3339(batch.extracted_at);
    let transaction = connection.transaction().map_err(service)?;
    let mut report = MergeReport::default();
    for file in &batch.files {
        let csv = open_part(blobs, runtime, &batch.schema, file)?;
        let reader = PartReader::new(
            &batch.schema,
            file,
            deleted == DeletedRows::Remove && !batch.update_only,
        )?;
        let merge = FileMerge {
            table,
            columns: batch.schema.columns.iter().collect(),
            cursor: reader.cursor_index.and(reader.cursor.as_deref()),
        };
        let write = if batch.update_only {
            merge.update_sql()
        } else {
            merge.upsert_sql()
        };
        let mut statement = transaction.prepare(&write).map_err(service)?;
        let mut remove = transaction.prepare(&merge.remove_sql()).map_err(service)?;
        let lineage = [
            Value::Text(batch.run_id.to_string()),
            Value::Text(extracted_at.clone()),
            Value::Text(file.clone()),
            Value::Text(loaded_at.clone()),
        ];
        // The lineage parameters follow the file's columns and are the same for every row.
        for (i, value) in lineage.iter().enumerate() {
            statement
                .raw_bind_parameter(batch.schema.columns.len() + i + 1, value)
                .map_err(service)?;
        }
        let (id, cursor) = (reader.id_index, reader.cursor_index);
        let (read, changed) = reader.feed(csv, |record| match (record.removal, cursor) {
            (true, Some(cursor)) => {
                remove.execute(rusqlite::params![record.text(id), record.text(cursor)])
            }
            (true, None) => remove.execute([record.text(id)]),
            (false, _) => {
                record.bind(&mut statement)?;
                statement.raw_execute()
            }
        })?;
        report.rows_changed += changed;
        report.rows_read += read.rows;
        report.max_modstamp = match (report.max_modstamp, read.newest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(watermark) = report.max_modstamp.filter(|_| !batch.update_only) {
        transaction
            .execute(
                &format!(
                    "INSERT INTO {STATE_TABLE} (object, watermark, run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(object) DO UPDATE SET
                         watermark = excluded.watermark, run_id = excluded.run_id, updated_at = excluded.updated_at
                     WHERE excluded.watermark > {STATE_TABLE}.watermark"
                ),
                rusqlite::params![table, rfc3339(watermark), batch.run_id.as_str(), loaded_at],
            )
            .map_err(service)?;
    }
    transaction.commit().map_err(service)?;
    Ok(report)
}
