//! A run read with the REST API: pages of JSON records, written as the same gzipped CSV a Bulk
//! job gives, one page in memory at a time.

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::contracts::{RunLayout, UploadMessage};
use crate::ports::salesforce::{Salesforce, SalesforceError};
use crate::ports::{BlobStore, ByteStream, Queue, TableSchema};
use crate::stages::{Cause, Stage, StageError};

use super::{UploadDeps, UploadOutcome, run_schema, store_part};

/// A run read with the REST API: pages of JSON records, written as the same gzipped CSV a Bulk
/// job gives, one page in memory at a time.
pub(super) async fn upload_rest<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    key: &str,
) -> Result<UploadOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
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
    let read_count = || counted.load(std::sync::atomic::Ordering::SeqCst);
    let (produced, stored) = tokio::join!(
        produce,
        store_part(
            deps,
            message,
            layout,
            key,
            body,
            &read_count,
            Some(message.parts),
            // The header is written here, from the schema.
            None,
        )
    );
    match produced {
        Ok(()) => stored,
        Err(RestPageError::Salesforce(error)) => Err(StageError::new(Stage::Upload, object, error)),
        // The store gave up first: its own error says why (and whether a retry can help).
        Err(RestPageError::StoreStopped) => stored.and_then(|_| {
            Err(StageError::new(
                Stage::Upload,
                object,
                Cause::Inconsistent("the part's store stopped reading without an error".into()),
            ))
        }),
    }
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

/// Reads every page of the query and sends it on, gzipped CSV with a header row, counting the
/// records.
pub(super) async fn rest_pages_as_csv<S: Salesforce + ?Sized>(
    salesforce: &S,
    first: &str,
    batch_size: u32,
    schema: &TableSchema,
    sender: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    records: &std::sync::atomic::AtomicU64,
) -> Result<(), RestPageError> {
    let closed = |_| RestPageError::StoreStopped;
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    let header: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    write_csv(
        &mut gzip,
        [header.iter().map(|h| h.to_string()).collect::<Vec<_>>()],
    )?;
    let mut next = Some(first.to_string());
    while let Some(path) = next.take() {
        let page = salesforce.query_page(&path, batch_size).await?;
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
    sender.send(Ok(Bytes::from(rest))).await.map_err(closed)
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
