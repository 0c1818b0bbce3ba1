//! A run read with the REST API: pages of JSON records, written as the same gzipped CSV a Bulk
//! job gives, one page in memory at a time, in as many parts as the upload's deadline needs.

use bytes::Bytes;
use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::contracts::{PartManifest, RunLayout, UploadMessage};
use crate::ports::salesforce::{Salesforce, SalesforceError};
use crate::ports::{BlobStore, ByteStream, Queue, TableSchema};
use crate::stages::records::{first_written, read_json, to_json};
use crate::stages::{Cause, Stage, StageError, StageResultExt};

use super::complete::request_merge_if_complete;
use super::{UploadDeps, UploadOutcome, queue_next_part, run_schema};

/// One part of a run read with the REST API: pages of JSON records from `result_url` (the query,
/// or the cursor the part before stopped at), written as the same gzipped CSV a Bulk job gives,
/// one page in memory at a time, for as long as the invocation's deadline allows. A part that
/// stops before the query's last page queues the next part at its cursor, as the Bulk locator
/// chain does; the last part requests the merge.
///
/// Where a part stops depends on time, so two deliveries of one part could stop at different
/// pages. Each stores its bytes under a key of its own, then claims the part
/// ([`RunLayout::rest_claim`]) with its manifest and cursor; the first claim is the part, a
/// later one deletes its bytes and goes on from the claim. Whatever crashes after the claim,
/// a redelivery finishes from it.
pub(super) async fn upload_rest<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
) -> Result<UploadOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let claim_key = layout.rest_claim(message.part);
    if let Some(claim) = read_json::<RestClaim, _>(deps.blobs, &claim_key)
        .await
        .at(Stage::Upload, object)?
    {
        return finish_from_claim(deps, message, layout, claim).await;
    }
    let key = layout.rest_part(message.part, &uuid::Uuid::new_v4().simple().to_string());
    let schema = run_schema(deps.blobs, layout, object).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let body: ByteStream = Box::pin(futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|item| (item, receiver))
    }));
    let counted = std::sync::atomic::AtomicU64::new(0);
    let produce = async {
        let result = rest_pages_as_csv(
            deps.salesforce,
            &message.result_url,
            deps.rest_batch_size,
            &schema,
            &sender,
            &counted,
        )
        .await;
        if let Err(RestPageError::Salesforce(error)) = &result {
            // The store sees the error and keeps nothing; the message is retried.
            let _ = sender
                .send(Err(std::io::Error::other(error.to_string())))
                .await;
        }
        // Closing the channel ends the body.
        drop(sender);
        result
    };
    let (produced, stored) = tokio::join!(produce, deps.blobs.put(&key, body));
    let next = match produced {
        Ok(next) => next,
        Err(RestPageError::Salesforce(error)) => {
            return Err(StageError::new(Stage::Upload, object, error));
        }
        // The store gave up first: its own error says why (and whether a retry can help).
        Err(RestPageError::StoreStopped) => {
            stored.at(Stage::Upload, object)?;
            return Err(StageError::new(
                Stage::Upload,
                object,
                Cause::Inconsistent("the part's store stopped reading without an error".into()),
            ));
        }
    };
    let stored = stored.at(Stage::Upload, object)?;
    let claim = RestClaim {
        manifest: PartManifest {
            object: object.clone(),
            run_id: message.run_id.clone(),
            part: message.part,
            parts: message.parts,
            key: key.clone(),
            records: counted.load(std::sync::atomic::Ordering::SeqCst),
            bytes: stored.bytes,
            crc64nvme: stored.crc64nvme,
            stored_at: Utc::now(),
        },
        next,
    };
    let claimed = first_written(deps.blobs, &claim_key, claim, Stage::Upload, object).await?;
    if claimed.manifest.key != key {
        // Another delivery of this part claimed it first: its bytes are the part.
        let _ = deps.blobs.delete(&key).await;
    }
    finish_from_claim(deps, message, layout, claimed).await
}

/// Which bytes are a REST part, and where the query goes on after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RestClaim {
    manifest: PartManifest,
    /// The cursor (`nextRecordsUrl`) the next part starts at; `None`: the query's last part.
    next: Option<String>,
}

/// What a claimed part still needs, each step safe to repeat: its manifest, then the next part
/// queued (and marked queued, so later duplicates stop there) or, for the last part, the merge
/// requested.
async fn finish_from_claim<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    claim: RestClaim,
) -> Result<UploadOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let manifest = claim.manifest;
    deps.blobs
        .put(
            &layout.manifest(message.part),
            crate::ports::bytes_stream(to_json(&manifest)),
        )
        .await
        .at(Stage::Upload, object)?;
    tracing::info!(run_id = %message.run_id, %object, part = message.part, records = manifest.records, bytes = manifest.bytes, more = claim.next.is_some(), "stored REST part");
    let requested_merge = match claim.next {
        None => request_merge_if_complete(deps, message, layout, message.part).await?,
        Some(cursor) => {
            queue_next_part(deps, message, layout, cursor).await?;
            false
        }
    };
    Ok(UploadOutcome {
        manifest,
        requested_merge,
    })
}

/// Why paging a REST query into a part stopped.
pub(super) enum RestPageError {
    Salesforce(SalesforceError),
    /// The store stopped reading the part (it failed; its error is the cause).
    StoreStopped,
}

impl From<SalesforceError> for RestPageError {
    fn from(error: SalesforceError) -> Self {
        Self::Salesforce(error)
    }
}

/// Reads pages of the query from `first` and sends them on, gzipped CSV with a header row,
/// counting the records: every page, or (at least one page) as many as the invocation's
/// deadline leaves time for. Returns the cursor of the first page not read, if any.
pub(super) async fn rest_pages_as_csv<S: Salesforce + ?Sized>(
    salesforce: &S,
    first: &str,
    batch_size: u32,
    schema: &TableSchema,
    sender: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    records: &std::sync::atomic::AtomicU64,
) -> Result<Option<String>, RestPageError> {
    let closed = |_| RestPageError::StoreStopped;
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    let header: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    write_csv(
        &mut gzip,
        [header.iter().map(|h| h.to_string()).collect::<Vec<_>>()],
    )?;
    let mut next = Some(first.to_string());
    // The slowest page so far: the next one may take as long, twice over to be safe.
    let mut slowest = std::time::Duration::ZERO;
    let mut read_any = false;
    while let Some(path) = next.take() {
        if read_any && !crate::deadline::allows(slowest * 2) {
            next = Some(path);
            break;
        }
        let asked = std::time::Instant::now();
        let page = salesforce.query_page(&path, batch_size).await?;
        slowest = slowest.max(asked.elapsed());
        read_any = true;
        records.fetch_add(
            page.records.len() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
        let rows = page.records.iter().map(|record| {
            schema
                .columns
                .iter()
                .map(|c| csv_value(&c.sf_type, record.get(&c.name)))
                .collect::<Vec<_>>()
        });
        write_csv(&mut gzip, rows)?;
        let chunk = std::mem::take(gzip.get_mut());
        if !chunk.is_empty() {
            sender.send(Ok(Bytes::from(chunk))).await.map_err(closed)?;
        }
        if !page.done {
            next = page.next_records_url;
        }
    }
    let rest = gzip
        .finish()
        .map_err(|e| SalesforceError::Config(format!("gzip: {e}")))?;
    sender.send(Ok(Bytes::from(rest))).await.map_err(closed)?;
    Ok(next)
}

pub(super) fn write_csv(
    out: &mut GzEncoder<Vec<u8>>,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<(), SalesforceError> {
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(out);
    for row in rows {
        writer
            .write_record(&row)
            .map_err(|e| SalesforceError::Config(format!("CSV: {e}")))?;
    }
    writer
        .flush()
        .map_err(|e| SalesforceError::Config(format!("CSV: {e}")))
}

/// A REST JSON value as Bulk CSV text: booleans `true`/`false`, numbers as written, datetimes in
/// UTC with `Z` (REST says `+0000`), null as empty.
pub(super) fn csv_value(sf_type: &str, value: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if sf_type == "datetime" => s
            .strip_suffix("+0000")
            .map_or_else(|| s.clone(), |t| format!("{t}Z")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
