//! The Snowflake warehouse adapter: the [`Warehouse`] port over the SQL API.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SnowflakeError;
use super::client::{ResultSet, SqlApiClient};
use super::sql;
use crate::contracts::ObjectName;
use crate::ports::{
    DeletedRows, MergeBatch, MergeReport, RowLineage, TableSchema, Warehouse, WarehouseError,
};

#[derive(Debug)]
pub struct SnowflakeWarehouse {
    client: SqlApiClient,
    stage: String,
    deleted: DeletedRows,
}

/// Maps a client error to the port's: SQL errors and refusals are permanent (a retry runs the same
/// SQL on the same files) unless Snowflake names a passing condition (a timeout, a lock wait);
/// the rest may pass.
fn warehouse_error(object: &ObjectName, error: SnowflakeError) -> WarehouseError {
    let object = object.to_string();
    match error {
        SnowflakeError::Sql { .. } if error.is_transient() => {
            WarehouseError::Service(format!("table {object}: {error}"))
        }
        SnowflakeError::Sql { .. } if error.is_data_error() => WarehouseError::BadFile {
            object,
            file: "one of the run's files".into(),
            detail: error.to_string(),
        },
        SnowflakeError::Sql { .. }
        | SnowflakeError::Unauthorized { .. }
        | SnowflakeError::Config(_) => WarehouseError::Rejected {
            object,
            detail: error.to_string(),
        },
        SnowflakeError::Http { .. }
        | SnowflakeError::Transport(_)
        | SnowflakeError::Protocol(_)
        | SnowflakeError::StillRunning { .. } => {
            WarehouseError::Service(format!("table {object}: {error}"))
        }
    }
}

fn epoch_millis(
    object: &ObjectName,
    text: Option<&str>,
) -> Result<Option<DateTime<Utc>>, WarehouseError> {
    let Some(text) = text else { return Ok(None) };
    // DATE_PART answers an integer; some drivers render it as a decimal.
    let millis = text
        .split('.')
        .next()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| {
            WarehouseError::Service(format!(
                "table {object}: {text:?} is not epoch milliseconds"
            ))
        })?;
    Ok(DateTime::from_timestamp_millis(millis))
}

fn count(text: Option<&str>) -> u64 {
    text.and_then(|t| t.split('.').next()?.parse().ok())
        .unwrap_or(0)
}

impl SnowflakeWarehouse {
    /// `stage`: the external stage whose location is the blob store's root (the bucket and the
    /// deployment's prefix), so that blob keys are paths in the stage.
    pub fn new(client: SqlApiClient, stage: &str) -> Self {
        Self {
            client,
            stage: stage.to_string(),
            deleted: DeletedRows::Flag,
        }
    }

    pub fn with_deleted_rows(mut self, deleted: DeletedRows) -> Self {
        self.deleted = deleted;
        self
    }

    pub fn client(&self) -> &SqlApiClient {
        &self.client
    }

    /// The external stage the merge loads from.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    async fn run(
        &self,
        object: &ObjectName,
        statements: &[String],
    ) -> Result<Vec<ResultSet>, WarehouseError> {
        self.client
            .execute(&statements.join(";\n"), statements.len())
            .await
            .map_err(|e| warehouse_error(object, e))
    }

    pub async fn existing_columns(
        &self,
        object: &ObjectName,
    ) -> Result<Vec<sql::ExistingColumn>, WarehouseError> {
        let results = self
            .run(object, &[sql::existing_columns_sql(object)])
            .await?;
        let number = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| t.split('.').next())
                .and_then(|t| t.parse::<u64>().ok())
        };
        Ok(results
            .into_iter()
            .next()
            .unwrap_or_default()
            .rows
            .into_iter()
            .filter_map(|row| {
                let cell = |i: usize| row.get(i).cloned().flatten();
                Some(sql::ExistingColumn {
                    name: cell(0)?,
                    data_type: cell(1).unwrap_or_default(),
                    length: number(&cell(2)),
                    precision: number(&cell(3)).map(|p| p as u32),
                    scale: number(&cell(4)).map(|s| s as u32),
                })
            })
            .collect())
    }
}

#[async_trait]
impl Warehouse for SnowflakeWarehouse {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError> {
        schema.validate()?;
        let existing = self.existing_columns(&schema.object).await?;
        let statements = sql::ensure_table_statements(schema, &existing).map_err(|detail| {
            WarehouseError::Schema {
                object: schema.object.to_string(),
                detail,
            }
        })?;
        for altered in statements.iter().filter(|s| s.starts_with("ALTER")) {
            tracing::info!(object = %schema.object, statement = %altered, "altering the table");
        }
        self.run(&schema.object, &statements).await?;
        Ok(())
    }

    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError> {
        batch.schema.validate()?;
        let object = &batch.schema.object;
        let loaded_at = batch.loaded_at.unwrap_or_else(Utc::now);
        let plan = match batch.reconcile_until {
            Some(until) => {
                let existing = self.existing_columns(object).await?;
                super::reconcile::reconcile_plan(
                    batch,
                    &self.stage,
                    loaded_at,
                    self.deleted,
                    until,
                    &existing,
                )
            }
            None => sql::merge_plan(batch, &self.stage, loaded_at, self.deleted),
        };
        let statements = plan.statements();
        let results = self
            .client
            .execute_request(
                &statements.join(";\n"),
                statements.len(),
                batch.request_id.as_deref(),
            )
            .await
            .map_err(|e| warehouse_error(object, e))?;
        // The block's result: one row of rows read, rows changed and the newest cursor value.
        let summary = results.get(statements.len() - 1).ok_or_else(|| {
            WarehouseError::Service(format!(
                "table {object}: Snowflake returned {} results for {} statements",
                results.len(),
                statements.len()
            ))
        })?;
        Ok(MergeReport {
            rows_read: count(summary.first(sql::ROWS_READ)),
            rows_changed: count(summary.first(sql::ROWS_CHANGED)),
            max_modstamp: epoch_millis(object, summary.first(sql::NEWEST_MS))?,
        })
    }

    async fn lineage(
        &self,
        object: &ObjectName,
        id: &str,
    ) -> Result<Option<RowLineage>, WarehouseError> {
        if self.existing_columns(object).await?.is_empty() {
            return Ok(None);
        }
        let results = self.run(object, &[sql::lineage_sql(object, id)]).await?;
        let Some(result) = results.into_iter().next() else {
            return Ok(None);
        };
        let Some(row) = result.rows.first() else {
            return Ok(None);
        };
        let cell = |i: usize| row.get(i).cloned().flatten();
        Ok(Some(RowLineage {
            run_id: cell(0),
            file: cell(1),
            extracted_at: epoch_millis(object, cell(2).as_deref())?,
            loaded_at: epoch_millis(object, cell(3).as_deref())?,
            is_deleted: cell(4).map(|d| matches!(d.to_ascii_lowercase().as_str(), "true" | "1")),
        }))
    }

    async fn watermark(
        &self,
        object: &ObjectName,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        let results = self.run(object, &sql::watermark_statements(object)).await?;
        epoch_millis(object, results.last().and_then(|r| r.first("WATERMARK_MS")))
    }
}

#[cfg(feature = "conformance")]
#[allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure
mod inspect {
    use async_trait::async_trait;

    use super::{SnowflakeWarehouse, sql};
    use crate::conformance::warehouse::WarehouseInspector;
    use crate::contracts::{ObjectName, rfc3339};
    use crate::ports::TableSchema;

    #[async_trait]
    impl WarehouseInspector for SnowflakeWarehouse {
        async fn rows(&self, schema: &TableSchema, columns: &[&str]) -> Vec<Vec<Option<String>>> {
            let select: Vec<String> = columns
                .iter()
                .map(|c| match schema.column(c).map(|c| c.sf_type.as_str()) {
                    Some("datetime") => format!("DATE_PART(EPOCH_MILLISECOND, {})", sql::ident(c)),
                    _ => sql::ident(c),
                })
                .collect();
            let statement = format!(
                "SELECT {} FROM {} ORDER BY \"ID\"",
                select.join(", "),
                sql::table_name(&schema.object)
            );
            let result = self.client.execute(&statement, 1).await.expect("select");
            let result = result.into_iter().next().unwrap_or_default();
            result
                .rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .zip(columns)
                        .map(|(value, column)| {
                            let sf_type = schema.column(column).map(|c| c.sf_type.as_str());
                            match (sf_type, value) {
                                (Some("datetime"), Some(ms)) => Some(rfc3339(
                                    chrono::DateTime::from_timestamp_millis(
                                        ms.split('.')
                                            .next()
                                            .and_then(|m| m.parse().ok())
                                            .expect("millis"),
                                    )
                                    .expect("timestamp"),
                                )),
                                (Some("boolean"), Some(b)) => Some(
                                    matches!(b.to_ascii_lowercase().as_str(), "true" | "1")
                                        .to_string(),
                                ),
                                (_, value) => value,
                            }
                        })
                        .collect()
                })
                .collect()
        }

        async fn columns(&self, object: &ObjectName) -> Vec<String> {
            self.existing_columns(object)
                .await
                .expect("columns")
                .into_iter()
                .map(|c| c.name)
                .collect()
        }
    }
}
