//! `sfpipe trace`: where a warehouse row came from: its run and window, the Salesforce job, the
//! part file and the record in it, and when it was extracted and merged.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use serde::Serialize;
use sfpipe_shared::contracts::{Mode, ObjectName, RunId, RunLayout, Window, rfc3339};
use sfpipe_shared::local::{FsBlobStore, SqliteWarehouse};
use sfpipe_shared::ports::{BlobError, BlobStore, Warehouse};
use sfpipe_shared::status::StoredRun;

#[derive(Debug, Clone, clap::Args)]
pub struct TraceOptions {
    #[arg(long)]
    pub object: String,
    /// The row's Salesforce Id.
    #[arg(long)]
    pub id: String,
    /// A local directory, as `sfpipe run` and `sfpipe demo` write it.
    #[arg(long, default_value = ".sfpipe-run")]
    pub dir: PathBuf,
    /// JSON for machines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where a row came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    pub object: String,
    pub id: String,
    pub is_deleted: Option<bool>,
    pub run_id: Option<String>,
    pub mode: Option<Mode>,
    pub window: Option<Window>,
    pub job_id: Option<String>,
    /// The part the row was merged from; none for a row a reconciliation flagged deleted.
    pub file: Option<String>,
    /// The row's record number in the part (1 is the first after the header), and the line it
    /// starts on (a record with line breaks in its values spans several).
    pub record: Option<u64>,
    pub line: Option<u64>,
    pub extracted_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
}

impl Trace {
    pub fn render(&self) -> String {
        let or = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        let at = |value: Option<DateTime<Utc>>| or(value.map(rfc3339));
        let state = match self.is_deleted {
            Some(true) => "deleted (IsDeleted = true)",
            Some(false) => "live",
            None => "?",
        };
        let window = self.window.map(|w| match w.since {
            Some(since) => format!("{} to {}", rfc3339(since), rfc3339(w.until)),
            None => format!("everything to {}", rfc3339(w.until)),
        });
        let part = match (&self.file, self.record, self.line) {
            (Some(file), Some(record), Some(line)) => {
                format!("{file}, record {record} (line {line})")
            }
            (Some(file), _, _) => format!("{file} (the row is no longer in it)"),
            (None, _, _) => "none: flagged deleted by a reconciliation of Ids".into(),
        };
        format!(
            "{} {}: {state}\n  run        {} ({})\n  window     {}\n  job        {}\n  part       {part}\n  extracted  {}\n  merged     {}\n",
            self.object,
            self.id,
            or(self.run_id.clone()),
            self.mode
                .map_or("?".into(), |m| format!("{m:?}").to_lowercase()),
            or(window),
            or(self.job_id.clone()),
            at(self.extracted_at),
            at(self.merged_at),
        )
    }
}

/// The record (and the line it starts on) holding `id` in a gzipped CSV part: streamed, so a part
/// of any size costs the same memory.
fn find_record(part: impl Read, id: &str) -> anyhow::Result<Option<(u64, u64)>> {
    let mut csv = csv::Reader::from_reader(MultiGzDecoder::new(part));
    let id_column = csv
        .headers()?
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case("Id"))
        .context("the part has no Id column")?;
    let mut record = csv::StringRecord::new();
    let mut number = 0;
    while csv.read_record(&mut record)? {
        number += 1;
        if record.get(id_column) == Some(id) {
            let line = record.position().map_or(0, |p| p.line());
            return Ok(Some((number, line)));
        }
    }
    Ok(None)
}

pub async fn trace(options: &TraceOptions) -> anyhow::Result<Trace> {
    let object = ObjectName::new(&options.object)?;
    let blobs: Arc<dyn BlobStore> = Arc::new(
        FsBlobStore::new(options.dir.join("blobs"))
            .with_context(|| format!("opening {}", options.dir.display()))?,
    );
    let path = options.dir.join("warehouse.sqlite");
    anyhow::ensure!(path.exists(), "{} has no warehouse", options.dir.display());
    let warehouse = SqliteWarehouse::open(&path, blobs.clone())?;
    trace_in(blobs.as_ref(), &warehouse, &object, &options.id).await
}

/// The blob key of the part a warehouse names. The local warehouse stores the key; Snowflake's
/// METADATA$FILENAME is the file's full path in the stage's location, which may add the
/// location's own path (the deployment's prefix) or more before the key: the first of the name
/// and its tails after each `/` that is a blob is the part.
async fn part_key(blobs: &dyn BlobStore, named: &str) -> anyhow::Result<Option<String>> {
    let tails =
        std::iter::once(named).chain(named.match_indices('/').map(|(at, _)| &named[at + 1..]));
    for tail in tails {
        match blobs.head(tail).await {
            Ok(Some(_)) => return Ok(Some(tail.to_string())),
            // A head of the name ("s3:", "/bucket/...") is no key at all.
            Ok(None) | Err(BlobError::InvalidKey { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("looking for the part {named}")),
        }
    }
    Ok(None)
}

/// Traces a row through any blob store and warehouse.
pub async fn trace_in(
    blobs: &dyn BlobStore,
    warehouse: &dyn Warehouse,
    object: &ObjectName,
    id: &str,
) -> anyhow::Result<Trace> {
    let lineage = warehouse.lineage(object, id).await?.with_context(|| {
        format!("{object} {id} is not in the warehouse (check the object's spelling and the Id)")
    })?;
    let run = lineage.run_id.as_deref().and_then(|r| RunId::new(r).ok());
    let stored = match &run {
        Some(run) => StoredRun::read(blobs, &RunLayout::new(object, run)).await?,
        None => StoredRun::default(),
    };
    let mut located = None;
    let mut file = lineage.file.clone();
    if let Some(named) = &lineage.file {
        let key = part_key(blobs, named).await?.with_context(|| {
            format!("the part {named} that {object} {id} came from is not in the blob store (parts expire after the bucket's retention)")
        })?;
        let bytes = blobs
            .get_bytes(&key)
            .await
            .with_context(|| format!("reading the part {key}"))?;
        located = find_record(bytes.as_ref(), id)?;
        file = Some(key);
    }
    Ok(Trace {
        object: object.to_string(),
        id: id.to_string(),
        is_deleted: lineage.is_deleted,
        run_id: lineage.run_id.clone(),
        mode: stored.mode(),
        window: stored.window(),
        job_id: stored.job_id(),
        file,
        record: located.map(|(record, _)| record),
        line: located.map(|(_, line)| line),
        extracted_at: lineage.extracted_at,
        merged_at: lineage.loaded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever a warehouse puts before the key (Snowflake's stage path, a whole URL), the part
    /// is the blob it names.
    #[tokio::test]
    async fn a_part_is_found_under_any_path_the_warehouse_names() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = FsBlobStore::new(dir.path()).expect("store");
        let key = "runs/Account/r1/part-00001.csv.gz";
        blobs
            .put_if_absent(key, b"x".to_vec().into())
            .await
            .expect("put");
        for named in [
            key.to_string(),
            format!("sfpipe/{key}"),
            format!("s3://bucket/sfpipe/{key}"),
        ] {
            assert_eq!(
                part_key(&blobs, &named).await.expect("look-up").as_deref(),
                Some(key),
                "{named}"
            );
        }
        assert_eq!(
            part_key(&blobs, "sfpipe/runs/Account/r1/part-00002.csv.gz")
                .await
                .expect("look-up"),
            None
        );
    }
}
