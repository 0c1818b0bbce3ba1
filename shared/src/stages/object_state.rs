//! An object's state as the job-loader reads it ([`ObjectState`]): kept after every merge, and
//! the change probe that decides from it, before any Bulk job, whether a run has anything to
//! read.

use std::collections::BTreeSet;
use std::io::Read;

use chrono::{DateTime, Utc};

use super::records::{read_json, to_json};
use super::soql::soql_datetime;
use crate::contracts::{
    BOUNDARY_ROWS, BOUNDARY_SPAN, ObjectName, ObjectState, RowVersion, Window, is_valid_field_name,
    object_state_key,
};
use crate::ports::salesforce::QueryPage;
use crate::ports::{BlobStore, TableSchema};

/// The object's state; `None` when none is kept (never merged, or kept by an older sfpipe).
pub(crate) async fn read_state<B: BlobStore + ?Sized>(
    blobs: &B,
    object: &ObjectName,
) -> Result<Option<ObjectState>, super::Cause> {
    read_json(blobs, &object_state_key(object)).await
}

/// Reads, changes and writes the object's state. Best effort: every field is a hint the truth
/// can only be ahead of, so a lost update costs a wider window or a run, never a row, and is
/// logged rather than failing the work that was done.
pub(crate) async fn update_state<B: BlobStore + ?Sized>(
    blobs: &B,
    object: &ObjectName,
    change: impl FnOnce(&mut ObjectState),
) {
    let key = object_state_key(object);
    let mut state = match read_json::<ObjectState, _>(blobs, &key).await {
        Ok(state) => state.unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%object, %error, "could not read the object's state; leaving it");
            return;
        }
    };
    change(&mut state);
    if let Err(error) = blobs
        .put(&key, crate::ports::bytes_stream(to_json(&state)))
        .await
    {
        tracing::warn!(%object, %error, "could not keep the object's state; the next run reads more");
    }
}

/// Folds a merge into the state: the watermark moves forward only, the row versions merged join
/// those kept, and versions older than [`BOUNDARY_SPAN`] before the watermark (or past
/// [`BOUNDARY_ROWS`], oldest first) are dropped.
pub(crate) fn fold_merge(
    state: &mut ObjectState,
    cursor_field: &str,
    newest: Option<DateTime<Utc>>,
    merged: Vec<RowVersion>,
) {
    state.watermark = state.watermark.max(newest);
    state.cursor_field = Some(cursor_field.to_string());
    let mut versions: BTreeSet<RowVersion> = std::mem::take(&mut state.boundary)
        .into_iter()
        .chain(merged)
        .collect();
    if let Some(watermark) = state.watermark {
        versions.retain(|v| v.cursor >= watermark - BOUNDARY_SPAN);
    }
    let mut versions: Vec<RowVersion> = versions.into_iter().collect();
    versions.sort_by(|a, b| b.cursor.cmp(&a.cursor).then_with(|| a.id.cmp(&b.id)));
    versions.truncate(BOUNDARY_ROWS);
    versions.sort();
    state.boundary = versions;
}

/// The Id and cursor of every row in a run's parts (gzipped CSV with a header row), for a run
/// of at most [`BOUNDARY_ROWS`] records; `None` for a larger run or one whose parts cannot be
/// read (the state then keeps fewer versions, which costs a run, never a row).
pub(crate) async fn merged_versions<B: BlobStore + ?Sized>(
    blobs: &B,
    schema: &TableSchema,
    files: &[String],
    records: u64,
) -> Option<Vec<RowVersion>> {
    let cursor = schema.cursor()?;
    if records > BOUNDARY_ROWS as u64 {
        return None;
    }
    let mut versions = Vec::new();
    for file in files {
        let bytes = blobs.get_bytes(file).await.ok()?;
        versions.extend(versions_in_part(&bytes, cursor)?);
    }
    Some(versions)
}

fn versions_in_part(gzipped: &[u8], cursor: &str) -> Option<Vec<RowVersion>> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(gzipped)
        .read_to_end(&mut text)
        .ok()?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_slice());
    let header = reader.headers().ok()?.clone();
    let position = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let (id, stamp) = (position("Id")?, position(cursor)?);
    let mut versions = Vec::new();
    for record in reader.records() {
        let record = record.ok()?;
        let at = parse_salesforce_datetime(record.get(stamp)?)?;
        versions.push(RowVersion {
            id: record.get(id)?.to_string(),
            cursor: at,
        });
    }
    Some(versions)
}

/// A datetime as Bulk CSV (`...Z`) or REST JSON (`...+0000`) writes it.
fn parse_salesforce_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What the probe found in an object's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Only row versions the last merges stored: nothing to read.
    Unchanged,
    /// Fewer rows than the REST threshold: read them with the REST API.
    Small { rows: u64 },
    /// At least the threshold: a Bulk job reads them.
    Large { rows: u64 },
}

/// The probe's query: the Id and cursor of the rows in the window, at most `limit` of them
/// (`None` for a cursor field that is not a field name).
pub fn probe_query(
    object: &ObjectName,
    cursor: &str,
    window: &Window,
    limit: u64,
) -> Option<String> {
    if !is_valid_field_name(cursor) {
        return None;
    }
    let mut soql = format!("SELECT Id, {cursor} FROM {object} WHERE ");
    if let Some(since) = window.since {
        soql.push_str(&format!("{cursor} >= {} AND ", soql_datetime(since)));
    }
    soql.push_str(&format!(
        "{cursor} < {} LIMIT {limit}",
        soql_datetime(window.until)
    ));
    Some(soql)
}

/// The rows a probe asks for at most: enough to hold every version the state keeps, and the
/// REST threshold.
pub fn probe_limit(rest_below: u64) -> u64 {
    rest_below.max(BOUNDARY_ROWS as u64)
}

/// Judges a probe's first page against the versions the state keeps. Unchanged only when the
/// page holds every row the query matched and each is a version already merged.
pub fn judge_probe(
    page: &QueryPage,
    cursor: &str,
    boundary: &[RowVersion],
    rest_below: u64,
) -> ProbeVerdict {
    let limit = probe_limit(rest_below);
    let complete = page.records.len() as u64 == page.total_size && page.total_size < limit;
    let boundary: BTreeSet<&RowVersion> = boundary.iter().collect();
    let known = |record: &serde_json::Map<String, serde_json::Value>| {
        let id = record.get("Id").and_then(|v| v.as_str());
        let at = record
            .get(cursor)
            .and_then(|v| v.as_str())
            .and_then(parse_salesforce_datetime);
        match (id, at) {
            (Some(id), Some(at)) => boundary.contains(&RowVersion {
                id: id.to_string(),
                cursor: at,
            }),
            _ => false,
        }
    };
    if complete && page.records.iter().all(known) {
        return ProbeVerdict::Unchanged;
    }
    let rows = page.total_size;
    if rows < rest_below {
        ProbeVerdict::Small { rows }
    } else {
        ProbeVerdict::Large { rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, minute, 0).unwrap()
    }

    fn version(id: &str, minute: u32) -> RowVersion {
        RowVersion {
            id: id.into(),
            cursor: at(minute),
        }
    }

    fn page(rows: &[(&str, &str)], total: u64) -> QueryPage {
        QueryPage {
            total_size: total,
            done: rows.len() as u64 == total,
            next_records_url: None,
            records: rows
                .iter()
                .map(|(id, stamp)| {
                    let mut record = serde_json::Map::new();
                    record.insert("Id".into(), (*id).into());
                    record.insert("SystemModstamp".into(), (*stamp).into());
                    record
                })
                .collect(),
        }
    }

    #[test]
    fn a_probe_of_only_merged_versions_is_unchanged_and_anything_else_is_a_change() {
        let mut state = ObjectState::default();
        fold_merge(
            &mut state,
            "SystemModstamp",
            Some(at(30)),
            vec![version("001A", 30), version("001B", 25)],
        );
        let boundary = &state.boundary;
        // REST writes +0000 where Bulk CSV writes Z: the same instant.
        let same = page(&[("001A", "2026-03-01T12:30:00.000+0000")], 1);
        assert_eq!(
            judge_probe(&same, "SystemModstamp", boundary, 2000),
            ProbeVerdict::Unchanged
        );
        assert_eq!(
            judge_probe(&page(&[], 0), "SystemModstamp", boundary, 2000),
            ProbeVerdict::Unchanged
        );
        // A late commit with the stamp of a merged row is a change: its Id is new.
        let late = page(
            &[
                ("001A", "2026-03-01T12:30:00.000Z"),
                ("001C", "2026-03-01T12:30:00.000Z"),
            ],
            2,
        );
        assert_eq!(
            judge_probe(&late, "SystemModstamp", boundary, 2000),
            ProbeVerdict::Small { rows: 2 }
        );
        // A newer version of a merged row is a change.
        let newer = page(&[("001B", "2026-03-01T12:31:00.000Z")], 1);
        assert_eq!(
            judge_probe(&newer, "SystemModstamp", boundary, 2000),
            ProbeVerdict::Small { rows: 1 }
        );
        // A page that does not hold every matched row is never taken for unchanged.
        let partial = page(&[("001A", "2026-03-01T12:30:00.000Z")], 5000);
        assert_eq!(
            judge_probe(&partial, "SystemModstamp", boundary, 2000),
            ProbeVerdict::Large { rows: 5000 }
        );
        // With REST reads off, every change is a Bulk job's.
        assert_eq!(
            judge_probe(&newer, "SystemModstamp", boundary, 0),
            ProbeVerdict::Large { rows: 1 }
        );
    }

    #[test]
    fn the_state_keeps_the_newest_watermark_and_only_recent_versions() {
        let mut state = ObjectState::default();
        let old = RowVersion {
            id: "001OLD".into(),
            cursor: at(30) - BOUNDARY_SPAN - chrono::TimeDelta::minutes(1),
        };
        fold_merge(
            &mut state,
            "SystemModstamp",
            Some(at(30)),
            vec![version("001A", 30), old],
        );
        assert_eq!(state.watermark, Some(at(30)));
        assert_eq!(state.boundary, vec![version("001A", 30)]);
        // A late merge of an older run moves nothing back and keeps what it adds.
        fold_merge(
            &mut state,
            "SystemModstamp",
            Some(at(10)),
            vec![version("001B", 10)],
        );
        assert_eq!(state.watermark, Some(at(30)));
        assert_eq!(
            state.boundary,
            vec![version("001A", 30), version("001B", 10)]
        );
        let many: Vec<RowVersion> = (0..BOUNDARY_ROWS + 10)
            .map(|i| RowVersion {
                id: format!("003{i:015}"),
                cursor: at(40) - chrono::TimeDelta::milliseconds(i as i64),
            })
            .collect();
        fold_merge(&mut state, "SystemModstamp", Some(at(40)), many);
        assert_eq!(state.boundary.len(), BOUNDARY_ROWS);
        assert!(state.boundary.iter().all(|v| v.cursor > at(30)));
    }

    #[test]
    fn the_probe_query_selects_the_id_and_cursor_of_the_window() {
        let object = ObjectName::new("Account").unwrap();
        let window = Window {
            since: Some(at(0)),
            until: at(30),
        };
        assert_eq!(
            probe_query(&object, "SystemModstamp", &window, 2000).unwrap(),
            "SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp >= \
             2026-03-01T12:00:00.000Z AND SystemModstamp < 2026-03-01T12:30:00.000Z LIMIT 2000"
        );
        assert!(probe_query(&object, "Bad Field", &window, 10).is_none());
    }

    #[test]
    fn a_part_gives_its_row_versions() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(
            b"\"Id\",\"Name\",\"SystemModstamp\"\n\"001A\",\"x\",\"2026-03-01T12:30:00.000Z\"\n",
        )
        .unwrap();
        let bytes = gzip.finish().unwrap();
        assert_eq!(
            versions_in_part(&bytes, "SystemModstamp").unwrap(),
            vec![version("001A", 30)]
        );
    }
}
