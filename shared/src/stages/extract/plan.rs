//! Planning a run: describe the object, choose its fields, fix its schema and SOQL.

use serde::{Deserialize, Serialize};

use crate::contracts::{ExtractMessage, Mode, RunLayout};
use crate::ports::salesforce::{FieldDescribe, ObjectDescribe, Salesforce, SalesforceError};
use crate::ports::{BlobStore, Queue, TableSchema};
use crate::stages::records::{read_json, to_json};
use crate::stages::soql::{extraction_query, reconciliation_query};
use crate::stages::{Cause, Stage, StageError, StageResultExt};

use super::ExtractDeps;

/// Which fields of an object to extract. Id, SystemModstamp and IsDeleted are always kept: the
/// merge needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSelection {
    /// Only these fields (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never these fields.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Fields the merge relies on, kept whatever a selection says, with the object's cursor field
/// (SystemModstamp, or CreatedDate on a history object).
pub(super) const REQUIRED_FIELDS: [&str; 2] = ["Id", "IsDeleted"];

impl FieldSelection {
    /// The selected fields of `describe`, in describe order; an unknown name is an error.
    pub fn apply<'d>(
        &self,
        describe: &'d ObjectDescribe,
    ) -> Result<Vec<&'d FieldDescribe>, String> {
        // Salesforce's names match in any case, and so do the list's.
        let named =
            |list: &[String], field: &str| list.iter().any(|n| n.eq_ignore_ascii_case(field));
        if let Some(unknown) = self
            .include
            .iter()
            .chain(&self.exclude)
            .find(|name| describe.field(name).is_none())
        {
            return Err(format!(
                "field {unknown} in the configured field list is not a field of {}: fix the list",
                describe.name
            ));
        }
        let cursor = describe.cursor_field();
        Ok(describe
            .bulk_fields()
            .into_iter()
            .filter(|f| {
                let required =
                    REQUIRED_FIELDS.contains(&f.name.as_str()) || cursor == Some(f.name.as_str());
                required
                    || ((self.include.is_empty() || named(&self.include, &f.name))
                        && !named(&self.exclude, &f.name))
            })
            .collect())
    }
}

/// The longest request URI Salesforce accepts; its URI and headers together may not pass it
/// either (431).
pub const MAX_REST_URI_BYTES: usize = 16_384;

/// Room kept in [`MAX_REST_URI_BYTES`] for the request's headers (the session's bearer token,
/// `Sforce-Query-Options`, `Accept`, ...: a few hundred bytes), as other clients keep a margin.
pub const REST_HEADER_ROOM: usize = 2_048;

/// A REST query carries its SOQL in the URI, which Salesforce caps at 16,384 bytes: a wide
/// object's query would fail on every run. Refused at once, with the fix, rather than split over
/// several queries joined on Id: objects read over REST are the ones Bulk refuses (or configured
/// so), small by nature, and a join of pages would have to hold rows until their partners come.
pub(super) fn check_rest_uri<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    object: &crate::contracts::ObjectName,
    soql: &str,
    fields: usize,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let length = deps.salesforce.query_all_path(soql).len();
    if length + REST_HEADER_ROOM <= MAX_REST_URI_BYTES {
        return Ok(());
    }
    Err(StageError::new(
        Stage::Extract,
        object,
        Cause::Inconsistent(format!(
            "the REST query of {object} selects {fields} fields: a {length}-byte request URI, \
             which with its headers ({REST_HEADER_ROOM} bytes kept for them) passes \
             Salesforce's {MAX_REST_URI_BYTES}-byte limit. Exclude fields with SFPIPE_FIELDS \
             (e.g. {{\"{object}\": {{\"exclude\": [...]}}}}) until it fits, or read it with \
             the Bulk API (remove it from SFPIPE_REST_OBJECTS) if Bulk supports it"
        )),
    )
    .permanent())
}

/// Describes the object and fixes the run's schema (first writer wins, so every retry of the run
/// extracts the same columns) and its SOQL. `None`: a formula refresh of an object without
/// formula fields.
pub(super) async fn plan<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    layout: &RunLayout,
) -> Result<Option<(TableSchema, String)>, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    // The object's own describe says whether it exists (404 otherwise) and is queryable: a
    // global describe besides would cost every changed object a second API call a run.
    let describe = deps
        .salesforce
        .describe(object.as_str())
        .await
        .at(Stage::Extract, object)?;
    if !describe.queryable {
        return Err(StageError::new(
            Stage::Extract,
            object,
            SalesforceError::UnknownObject {
                object: object.to_string(),
            },
        ));
    }
    if describe.field("Id").is_none() {
        return Err(StageError::new(
            Stage::Extract,
            object,
            Cause::Inconsistent(format!(
                "{object} has no Id field, so its rows cannot be merged"
            )),
        ));
    }
    let selected = deps
        .config
        .fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(object.as_str()))
        .map(|(_, selection)| selection.clone())
        .unwrap_or_default()
        .apply(&describe)
        .map_err(|why| {
            StageError::new(Stage::Extract, object, Cause::Inconsistent(why)).permanent()
        })?;
    let selected = if message.mode == Mode::Reconcile {
        // Ids only; an object without IsDeleted cannot say which rows are live.
        if describe.field("IsDeleted").is_none() {
            return Ok(None);
        }
        selected.into_iter().filter(|f| f.name == "Id").collect()
    } else if message.mode == Mode::FormulaRefresh {
        // Only what identifies a row's version, and its formulas.
        let cursor = describe.cursor_field();
        let keep: Vec<_> = selected
            .into_iter()
            .filter(|f| f.calculated || f.name == "Id" || cursor == Some(f.name.as_str()))
            .collect();
        if !keep.iter().any(|f| f.calculated) {
            return Ok(None);
        }
        keep
    } else {
        selected
    };
    let described = TableSchema {
        object: object.clone(),
        columns: selected.iter().map(|f| f.column()).collect(),
    };
    deps.blobs
        .put_if_absent(&layout.schema(), to_json(&described))
        .await
        .at(Stage::Extract, object)?;
    let schema: TableSchema = read_json(deps.blobs, &layout.schema())
        .await
        .at(Stage::Extract, object)?
        .ok_or_else(|| {
            StageError::new(
                Stage::Extract,
                object,
                Cause::Inconsistent("schema vanished".into()),
            )
        })?;
    let fields: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let soql = if message.mode == Mode::Reconcile {
        reconciliation_query(object)
    } else {
        extraction_query(object, &fields, describe.cursor_field(), &message.window)
            .at(Stage::Extract, object)?
    };
    Ok(Some((schema, soql)))
}
