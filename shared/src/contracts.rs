//! The messages between stages. Every message is versioned, carries pointers (never data: SQS caps a
//! message at 256 KB) and has a deterministic id, so a re-sent message is recognisably the same work.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The contract version this build writes and understands.
pub const CONTRACT_VERSION: u32 = 1;

/// Why a message body could not be accepted. Never retryable: the same bytes fail the same way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContractError {
    #[error("message is not valid JSON for a {expected} message: {detail}")]
    Malformed {
        expected: &'static str,
        detail: String,
    },
    #[error(
        "message has contract version {found}; this build understands version {CONTRACT_VERSION}: \
         deploy matching versions of every function, then redrive the dead-letter queue"
    )]
    UnknownVersion { found: u32 },
    #[error("invalid Salesforce object name {name:?}: {why}")]
    InvalidObjectName { name: String, why: &'static str },
    #[error("invalid run id {0:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '-' and '_'")]
    InvalidRunId(String),
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// A Salesforce field API name: letters, digits, underscores; starts with a letter. Only such a
/// name reaches SOQL or SQL as an identifier.
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Salesforce object's API name, validated: letters, digits and underscores, starting with a
/// letter, at most 80 characters. Anything else (quotes, spaces, semicolons) can never reach SOQL,
/// SQL or a storage key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectName(String);

impl ObjectName {
    pub fn new(name: impl Into<String>) -> Result<Self, ContractError> {
        let name = name.into();
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 80 {
            Some("it is longer than 80 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            Some("it must start with a letter")
        } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Some("only letters, digits and underscores are allowed")
        } else if name.contains("___") || name.ends_with('_') && !name.ends_with("__c") {
            Some("it is not a Salesforce API name")
        } else {
            None
        };
        match why {
            Some(why) => Err(ContractError::InvalidObjectName { name, why }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectName {
    type Error = ContractError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ObjectName> for String {
    fn from(value: ObjectName) -> Self {
        value.0
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One run of the pipeline. Derived from the trigger (the schedule's time, the backfill's request),
/// so a re-delivered trigger produces the same run id and therefore the same storage keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    pub fn new(id: impl Into<String>) -> Result<Self, ContractError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(id))
        } else {
            Err(ContractError::InvalidRunId(id))
        }
    }

    /// The run id of a trigger at `at`, qualified by whatever distinguishes the request
    /// (mode, window, objects), so two different backfills at the same second do not collide.
    pub fn for_trigger(at: DateTime<Utc>, qualifier: &str) -> Self {
        let digest = short_hash(qualifier.as_bytes(), 8);
        Self(format!("{}-{digest}", at.format("%Y%m%dT%H%M%SZ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The run of one half of this run's window, after a split (`a` or `b`). The path of halves
    /// is one number after `_` (1 the whole window; a half of n is 2n or 2n + 1, in hex), so a
    /// window can be halved 60 times within the id's 64 characters: from 26 years to the 60 s
    /// floor takes 24. (Ids of older versions end in `-a`/`-b` per halving; their children
    /// continue in the new form.)
    pub fn child(&self, half: char) -> Result<Self, ContractError> {
        let (base, path) = self.split_path();
        let bit = match half {
            'a' => 0,
            'b' => 1,
            other => {
                return Err(ContractError::InvalidRunId(format!(
                    "{}, half {other}",
                    self.0
                )));
            }
        };
        let path = path
            .checked_mul(2)
            .and_then(|p| p.checked_add(bit))
            .filter(|p| p.leading_zeros() > 0)
            .ok_or_else(|| ContractError::InvalidRunId(format!("{} halved too often", self.0)))?;
        Self::new(format!("{base}_{path:x}"))
    }

    /// How many times the run's window was halved from its trigger's.
    pub fn split_depth(&self) -> u32 {
        63 - self.split_path().1.leading_zeros()
    }

    /// The id without its halvings, and the path of halves as a number (1: none).
    fn split_path(&self) -> (&str, u64) {
        if let Some((base, hex)) = self.0.rsplit_once('_')
            && let Ok(path) = u64::from_str_radix(hex, 16)
            && path >= 1
        {
            return (base, path);
        }
        // The older form: one `-a` or `-b` per halving.
        let mut base = self.0.as_str();
        let mut halves = Vec::new();
        while let Some(rest) = base.strip_suffix("-a").or_else(|| base.strip_suffix("-b")) {
            halves.push(base.ends_with('b'));
            base = rest;
        }
        let path = halves
            .iter()
            .rev()
            .fold(1u64, |path, b| path.saturating_mul(2) + u64::from(*b));
        (base, path)
    }
}

impl TryFrom<String> for RunId {
    type Error = ContractError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<RunId> for String {
    fn from(value: RunId) -> Self {
        value.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every row, deleted ones included, up to `until`.
    Full,
    /// Rows whose SystemModstamp lies in `[since, until)`.
    Incremental,
    /// Every row's Id, cursor and formula (calculated) fields up to `until`, merged into rows of
    /// the same version only: formulas that change without a new SystemModstamp (cross-object
    /// references, `TODAY()`) catch up. Never inserts a row, never moves the watermark.
    FormulaRefresh,
    /// Every live row's Id (`IsDeleted = false`, through queryAll), compared with the table: a
    /// stored row missing from Salesforce whose cursor is not after `until` was hard-deleted
    /// (purged from the recycle bin, or never soft-deleted) and is flagged deleted (or removed).
    /// Rows newer than `until` are a concurrent run's and are left alone. Never moves the watermark.
    Reconcile,
}

/// The SystemModstamp window a run extracts: `since <= SystemModstamp < until`.
/// `since` is absent for a full extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    pub until: DateTime<Utc>,
}

impl Window {
    pub fn validate(&self) -> Result<(), ContractError> {
        match self.since {
            Some(since) if since >= self.until => Err(ContractError::Invalid(format!(
                "window start {} is not before its end {}",
                rfc3339(since),
                rfc3339(self.until)
            ))),
            _ => Ok(()),
        }
    }
}

/// The state of the Bulk API job an extract message is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobProgress {
    pub job_id: String,
    /// How many times the job's state has been checked; drives the growing re-queue delay.
    pub polls: u32,
}

/// loader → extract: extract one object for one run. Re-queued by extract itself, with `bulk_job`
/// set, while the Bulk API job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractMessage {
    pub v: u32,
    pub run_id: RunId,
    pub object: ObjectName,
    pub mode: Mode,
    pub window: Window,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_job: Option<BulkJobProgress>,
    /// Read with the REST API instead of a Bulk job: the job-loader's probe found a change
    /// small enough that a Bulk job would cost more calls (and a daily Bulk job) than its pages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rest: bool,
}

/// extract → upload: store one result page of a finished Bulk API job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMessage {
    pub v: u32,
    pub run_id: RunId,
    pub object: ObjectName,
    pub job_id: String,
    /// 1-based part number of this page.
    pub part: u32,
    /// How many parts the run of this object has in all; 0 on the locator chain, where the count
    /// is known only at the last page (Salesforce may send pages shorter than asked for).
    pub parts: u32,
    /// The page's results path (relative to the instance URL), as Salesforce gave it.
    pub result_url: String,
    /// The run's mode and window, passed on to the merge message.
    pub mode: Mode,
    pub window: Window,
    /// Pages follow a locator chain (no `resultPages` in the org's API version): after storing
    /// this page, queue the next part with the locator Salesforce gave.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chain: bool,
    /// The records the Bulk job reported (`numberRecordsProcessed`): the run's pages must hold
    /// exactly these before its merge is requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_records: Option<u64>,
}

/// upload → merge: every part of one object's run is stored; merge them.
/// The file keys, manifests and schema are pointers derived from (object, run, parts) by
/// [`RunLayout`], so the message stays small however many parts a run has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeMessage {
    pub v: u32,
    pub run_id: RunId,
    pub object: ObjectName,
    pub parts: u32,
    pub schema_key: String,
    pub mode: Mode,
    pub window: Window,
}

/// Common behaviour of the three queue messages.
pub trait Contract: Serialize + for<'de> Deserialize<'de> {
    const KIND: &'static str;
    fn version(&self) -> u32;
    fn run_id(&self) -> &RunId;
    fn object(&self) -> &ObjectName;
    /// The parts of the message that identify the work (not its whole body): two messages with
    /// the same identity are the same work.
    fn identity(&self) -> String;
    /// Extra checks beyond the types.
    fn check(&self) -> Result<(), ContractError> {
        Ok(())
    }

    /// Deterministic id, usable as an SQS FIFO MessageDeduplicationId (≤ 128 characters).
    fn message_id(&self) -> String {
        format!(
            "{}-{}",
            Self::KIND,
            short_hash(
                format!("{}|{}|{}", self.run_id(), self.object(), self.identity()).as_bytes(),
                24
            )
        )
    }

    fn to_body(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn from_body(body: &str) -> Result<Self, ContractError> {
        #[derive(Deserialize)]
        struct Versioned {
            v: u32,
        }
        let versioned: Versioned =
            serde_json::from_str(body).map_err(|e| ContractError::Malformed {
                expected: Self::KIND,
                detail: e.to_string(),
            })?;
        if versioned.v != CONTRACT_VERSION {
            return Err(ContractError::UnknownVersion { found: versioned.v });
        }
        let message: Self = serde_json::from_str(body).map_err(|e| ContractError::Malformed {
            expected: Self::KIND,
            detail: e.to_string(),
        })?;
        message.check()?;
        Ok(message)
    }
}

impl Contract for ExtractMessage {
    const KIND: &'static str = "extract";
    fn version(&self) -> u32 {
        self.v
    }
    fn run_id(&self) -> &RunId {
        &self.run_id
    }
    fn object(&self) -> &ObjectName {
        &self.object
    }
    fn identity(&self) -> String {
        match &self.bulk_job {
            None => "start".to_string(),
            Some(job) => format!("{}#{}", job.job_id, job.polls),
        }
    }
    fn check(&self) -> Result<(), ContractError> {
        self.window.validate()?;
        if self.mode == Mode::Incremental && self.window.since.is_none() {
            return Err(ContractError::Invalid(
                "an incremental extract needs window.since".into(),
            ));
        }
        Ok(())
    }
}

impl Contract for UploadMessage {
    const KIND: &'static str = "upload";
    fn version(&self) -> u32 {
        self.v
    }
    fn run_id(&self) -> &RunId {
        &self.run_id
    }
    fn object(&self) -> &ObjectName {
        &self.object
    }
    fn identity(&self) -> String {
        format!("{}#{}/{}", self.job_id, self.part, self.parts)
    }
    fn check(&self) -> Result<(), ContractError> {
        let unknown_count = self.chain && self.parts == 0;
        if self.part == 0 || (!unknown_count && self.part > self.parts) {
            return Err(ContractError::Invalid(format!(
                "part {} is outside 1..={}",
                self.part, self.parts
            )));
        }
        if !self.result_url.starts_with("/services/data/") {
            return Err(ContractError::Invalid(format!(
                "result_url {:?} is not a Salesforce data path",
                self.result_url
            )));
        }
        Ok(())
    }
}

impl Contract for MergeMessage {
    const KIND: &'static str = "merge";
    fn version(&self) -> u32 {
        self.v
    }
    fn run_id(&self) -> &RunId {
        &self.run_id
    }
    fn object(&self) -> &ObjectName {
        &self.object
    }
    fn identity(&self) -> String {
        self.parts.to_string()
    }
    fn check(&self) -> Result<(), ContractError> {
        self.window.validate()?;
        let layout = RunLayout::new(&self.object, &self.run_id);
        if self.schema_key != layout.schema() {
            return Err(ContractError::Invalid(format!(
                "schema_key {:?} does not belong to run {} of {}",
                self.schema_key, self.run_id, self.object
            )));
        }
        Ok(())
    }
}

/// Where one object's run keeps its files in the blob store. Keys are a pure function of
/// (object, run, part), so a retried write lands on the same key.
#[derive(Debug, Clone)]
pub struct RunLayout {
    prefix: String,
}

impl RunLayout {
    pub fn new(object: &ObjectName, run: &RunId) -> Self {
        Self {
            prefix: format!("runs/{object}/{run}/"),
        }
    }
    /// Everything of this run lives under this prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn schema(&self) -> String {
        format!("{}schema.json", self.prefix)
    }
    pub fn bulk_job(&self) -> String {
        format!("{}bulk-job.json", self.prefix)
    }
    pub fn part(&self, part: u32) -> String {
        format!("{}part-{part:05}.csv.gz", self.prefix)
    }
    /// The result page links of the run's Bulk job listed so far, while the listing takes more
    /// than one extract invocation.
    pub fn result_pages(&self) -> String {
        format!("{}_result-pages.json", self.prefix)
    }
    /// A REST part's bytes, under a key of the delivery that read them ([`Self::rest_claim`]).
    pub fn rest_part(&self, part: u32, delivery: &str) -> String {
        format!("{}part-{part:05}.{delivery}.csv.gz", self.prefix)
    }
    /// Which delivery's bytes are REST part `part`, and the cursor after it: the first written.
    pub fn rest_claim(&self, part: u32) -> String {
        format!("{}part-{part:05}.claim.json", self.prefix)
    }
    pub fn manifest(&self, part: u32) -> String {
        format!("{}part-{part:05}.manifest.json", self.prefix)
    }
    /// Written once part `part`'s successor on the locator chain is queued, so a duplicate of the
    /// part does not queue it again (each duplicate would otherwise double the rest of the chain).
    pub fn chain_link(&self, part: u32) -> String {
        format!("{}part-{part:05}.next-queued", self.prefix)
    }
    pub fn manifests_prefix(&self) -> String {
        format!("{}part-", self.prefix)
    }
    /// Written once the merge message of the run has been sent.
    pub fn merge_requested(&self) -> String {
        format!("{}_merge-requested", self.prefix)
    }
    /// The Snowflake request the run's merge sent, kept until it has an outcome, so a redelivery
    /// attaches to a merge still running instead of starting another.
    pub fn merge_request(&self) -> String {
        format!("{}_merge-request.json", self.prefix)
    }
    /// Written once the run is merged.
    pub fn merged(&self) -> String {
        format!("{}_merged.json", self.prefix)
    }
    /// Written once Salesforce's job is complete and the run's parts are queued.
    pub fn extracted(&self) -> String {
        format!("{}extracted.json", self.prefix)
    }
}

/// The Salesforce job of a run, recorded when it starts, so a duplicate extract reuses it instead
/// of starting another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobRecord {
    pub job_id: String,
    pub soql: String,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub window: Option<Window>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
}

/// What a run's extraction ended with: Salesforce's own count is one third of the run's receipt
/// (with the records in the parts and the rows the merge read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedRecord {
    pub job_id: String,
    /// Records Salesforce reported for the job (`numberRecordsProcessed`); none for a REST query.
    pub salesforce_records: Option<u64>,
    /// Result pages queued; 0 when the locator chain finds them one by one.
    pub parts: u32,
    pub completed_at: DateTime<Utc>,
}

/// Where a split run's window is recorded until that run is merged: the job-loader starts an
/// object's incremental window no later than its oldest open hole, so a half that failed is read
/// again even after the other half moved the watermark past it.
pub fn hole_key(object: &ObjectName, run: &RunId) -> String {
    format!("{}{run}.json", holes_prefix(object))
}

pub fn holes_prefix(object: &ObjectName) -> String {
    format!("{HOLES_PREFIX}{object}/")
}

/// Where every object's holes are kept, one folder per object.
pub const HOLES_PREFIX: &str = "holes/";

/// When an object's formula fields were last read in full (a full run or a formula refresh): the
/// job-loader queues the next refresh once the object's refresh interval has passed since.
pub fn formula_refresh_key(object: &ObjectName) -> String {
    format!("formula-refresh/{object}.json")
}

/// When an object's Ids were last reconciled with Salesforce ([`Mode::Reconcile`]); holds a
/// [`FormulaRefreshMarker`] too (the window's end).
pub fn reconcile_key(object: &ObjectName) -> String {
    format!("reconcile/{object}.json")
}

/// What [`formula_refresh_key`] and [`reconcile_key`] hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormulaRefreshMarker {
    /// The end of the window read: formula values are current as of this instant.
    pub until: DateTime<Utc>,
}

/// What the job-loader needs of an object, kept where it can read it with one request (instead
/// of a warehouse query on every scheduled run): written after each merge, and by the stages
/// that record a formula refresh or a reconciliation. Every field is a hint that can only be
/// behind the truth (a lost update widens the next window or costs a run, never loses a row):
/// the warehouse's watermark and the markers under [`formula_refresh_key`] and
/// [`reconcile_key`] stay authoritative. To rebuild a table from scratch, delete this record
/// with the table (or run a full backfill).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectState {
    /// The newest cursor value merged, as the warehouse's watermark records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<DateTime<Utc>>,
    /// The field that orders the object's changes (SystemModstamp, LastModifiedDate or
    /// CreatedDate): what the change probe selects and bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_field: Option<String>,
    /// Row versions merged whose cursor lies within [`BOUNDARY_SPAN`] of the watermark: the rows
    /// a run's overlap reads again. A probe that finds only these has found nothing new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boundary: Vec<RowVersion>,
    /// The end of the newest window merged (full or incremental): the object was complete up to
    /// then. What the job-loader's freshness lag is measured from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_until: Option<DateTime<Utc>>,
    /// A copy of the last formula refresh's end (the marker stays the truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formulas_until: Option<DateTime<Utc>>,
    /// A copy of the last reconciliation's end (the marker stays the truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_until: Option<DateTime<Utc>>,
}

/// How far behind its watermark an object's state keeps the row versions it merged: a loader
/// overlap longer than this makes every run read the rows in between again.
pub const BOUNDARY_SPAN: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The most row versions an object's state keeps: a run's overlap that re-reads more than this
/// is not taken for an idle one (an object that busy changes on every run anyway).
pub const BOUNDARY_ROWS: usize = 2_000;

/// One version of one row: its Id and its cursor value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowVersion {
    pub id: String,
    pub cursor: DateTime<Utc>,
}

/// Where [`ObjectState`] is kept.
pub fn object_state_key(object: &ObjectName) -> String {
    format!("state/{object}.json")
}

/// What upload records beside every stored part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartManifest {
    pub object: ObjectName,
    pub run_id: RunId,
    pub part: u32,
    pub parts: u32,
    pub key: String,
    /// Records in the page, as Salesforce counted them (`Sforce-NumberOfRecords`).
    pub records: u64,
    /// Bytes stored (gzipped).
    pub bytes: u64,
    /// CRC-64/NVME of the stored bytes, as S3 writes it ([`crate::checksum`]); S3 checked the
    /// upload against it. Empty in manifests written before it replaced a SHA-256.
    #[serde(default)]
    pub crc64nvme: String,
    pub stored_at: DateTime<Utc>,
}

/// Timestamps in messages and SOQL: RFC 3339, UTC, with milliseconds.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn short_hash(bytes: &[u8], hex_chars: usize) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    digest[..hex_chars.min(digest.len())].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_window_splits_down_to_the_floor_within_the_id_length() {
        let root = RunId::new("20260101T060000Z-0a1b2c3d").unwrap();
        assert_eq!(root.split_depth(), 0);
        let a = root.child('a').unwrap();
        let ab = a.child('b').unwrap();
        assert_eq!(
            (a.as_str(), ab.as_str()),
            ("20260101T060000Z-0a1b2c3d_2", "20260101T060000Z-0a1b2c3d_5")
        );
        assert_eq!(ab.split_depth(), 2);
        assert_ne!(root.child('b').unwrap(), a);
        // 26 years down to 60 s is 24 halvings; the id has room for 60.
        let mut deepest = root.clone();
        for i in 0..60 {
            deepest = deepest.child(if i % 3 == 0 { 'b' } else { 'a' }).unwrap();
        }
        assert_eq!(deepest.split_depth(), 60);
        assert!(deepest.as_str().len() <= 64);
        assert!(
            deepest
                .child('a')
                .and_then(|d| d.child('a'))
                .and_then(|d| d.child('a'))
                .and_then(|d| d.child('a'))
                .is_err()
        );
        // An id of an older version (one `-a`/`-b` a halving) continues in the new form.
        let old = RunId::new("20260101T060000Z-0a1b2c3d-a-b").unwrap();
        assert_eq!(old.split_depth(), 2);
        assert_eq!(
            old.child('a').unwrap().as_str(),
            "20260101T060000Z-0a1b2c3d_a"
        );
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, h, 0, 0).unwrap()
    }

    fn extract() -> ExtractMessage {
        ExtractMessage {
            v: CONTRACT_VERSION,
            run_id: RunId::new("20260102T030000Z-abc").unwrap(),
            object: ObjectName::new("Account").unwrap(),
            mode: Mode::Incremental,
            window: Window {
                since: Some(at(1)),
                until: at(3),
            },
            bulk_job: None,
            rest: false,
        }
    }

    #[test]
    fn messages_round_trip_through_their_bodies() {
        let message = extract();
        let body = message.to_body();
        assert_eq!(ExtractMessage::from_body(&body).unwrap(), message);

        let upload = UploadMessage {
            v: CONTRACT_VERSION,
            run_id: message.run_id.clone(),
            object: message.object.clone(),
            job_id: "750xx".into(),
            part: 2,
            parts: 3,
            result_url: "/services/data/v62.0/jobs/query/750xx/results?locator=MQ".into(),
            mode: message.mode,
            window: message.window,
            chain: false,
            job_records: None,
        };
        assert_eq!(UploadMessage::from_body(&upload.to_body()).unwrap(), upload);
    }

    #[test]
    fn message_ids_are_deterministic_and_distinguish_work() {
        let a = extract();
        let b = extract();
        assert_eq!(a.message_id(), b.message_id());
        let mut polled = extract();
        polled.bulk_job = Some(BulkJobProgress {
            job_id: "750".into(),
            polls: 1,
        });
        assert_ne!(a.message_id(), polled.message_id());
        let mut other_object = extract();
        other_object.object = ObjectName::new("Contact").unwrap();
        assert_ne!(a.message_id(), other_object.message_id());
        assert!(a.message_id().len() <= 128);
        assert!(a.message_id().starts_with("extract-"));
    }

    #[test]
    fn unknown_versions_and_malformed_bodies_are_rejected_with_reasons() {
        let mut body: serde_json::Value = serde_json::from_str(&extract().to_body()).unwrap();
        body["v"] = 2.into();
        assert_eq!(
            ExtractMessage::from_body(&body.to_string()),
            Err(ContractError::UnknownVersion { found: 2 })
        );
        let err = ExtractMessage::from_body("{not json").unwrap_err();
        assert!(matches!(err, ContractError::Malformed { .. }), "{err}");
        let err = ExtractMessage::from_body(r#"{"v":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn hostile_object_names_are_rejected() {
        for name in [
            "",
            "Account; DROP TABLE x",
            "Acc'ount",
            "1Account",
            "Account\"",
            "Accöunt",
            "a b",
            &"A".repeat(81),
        ] {
            assert!(ObjectName::new(name).is_err(), "{name:?} was accepted");
        }
        for name in ["Account", "Invoice__c", "ns__Thing__c", "Case"] {
            assert!(ObjectName::new(name).is_ok(), "{name:?} was rejected");
        }
        let mut body: serde_json::Value = serde_json::from_str(&extract().to_body()).unwrap();
        body["object"] = "Account'--".into();
        let err = ExtractMessage::from_body(&body.to_string()).unwrap_err();
        assert!(
            err.to_string().contains("invalid Salesforce object name"),
            "{err}"
        );
    }

    #[test]
    fn windows_must_be_ordered_and_incremental_needs_a_start() {
        let mut message = extract();
        message.window.since = Some(at(4));
        assert!(ExtractMessage::from_body(&message.to_body()).is_err());
        let mut message = extract();
        message.window.since = None;
        assert!(ExtractMessage::from_body(&message.to_body()).is_err());
        message.mode = Mode::Full;
        assert!(ExtractMessage::from_body(&message.to_body()).is_ok());
    }

    #[test]
    fn upload_parts_are_bounded() {
        let upload = UploadMessage {
            v: CONTRACT_VERSION,
            run_id: RunId::new("r1").unwrap(),
            object: ObjectName::new("Account").unwrap(),
            job_id: "750".into(),
            part: 4,
            parts: 3,
            result_url: "/services/data/v62.0/jobs/query/750/results".into(),
            mode: Mode::Full,
            window: Window {
                since: None,
                until: at(1),
            },
            chain: false,
            job_records: None,
        };
        assert!(UploadMessage::from_body(&upload.to_body()).is_err());
    }

    #[test]
    fn run_ids_follow_the_trigger() {
        let a = RunId::for_trigger(at(3), "incremental|Account");
        let b = RunId::for_trigger(at(3), "incremental|Account");
        let c = RunId::for_trigger(at(3), "full|Account");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.as_str().starts_with("20260102T030000Z-"));
        assert!(RunId::new("../etc").is_err());
    }

    #[test]
    fn layout_keys_are_stable() {
        let layout = RunLayout::new(
            &ObjectName::new("Account").unwrap(),
            &RunId::new("r1").unwrap(),
        );
        assert_eq!(layout.part(7), "runs/Account/r1/part-00007.csv.gz");
        assert_eq!(
            layout.manifest(7),
            "runs/Account/r1/part-00007.manifest.json"
        );
        assert_eq!(layout.schema(), "runs/Account/r1/schema.json");
    }
}
