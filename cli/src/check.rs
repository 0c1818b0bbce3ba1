//! `sfpipe check`: before a first load or a deploy, whether each thing sfpipe needs works, with a
//! pass or fail line for each and what to fix: the Salesforce login, S3 access, the Snowflake
//! login, its stage reading the bucket, and the grants a merge needs (it runs a real one, on a
//! table of its own that it drops again).

use std::io::Write;
use std::path::PathBuf;

use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use sfpipe_shared::contracts::{ObjectName, RunId};
use sfpipe_shared::ports::{ColumnSpec, MergeBatch, TableSchema, Warehouse, bytes_stream};

#[derive(Debug, Clone, clap::Args)]
pub struct CheckOptions {
    /// Where to log in, e.g. https://login.salesforce.com.
    #[arg(long)]
    pub login_url: String,
    /// The Salesforce secret as a JSON file.
    #[arg(long)]
    pub credentials: PathBuf,
    /// An extra CA certificate to trust (PEM).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The bucket to check (S3 access), and the Snowflake secret (login, stage, grants).
    #[command(flatten)]
    pub snowflake: crate::run::SnowflakeDestination,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub what: &'static str,
    pub passed: bool,
    /// What was found, or what failed and how to fix it.
    pub detail: String,
}

impl CheckLine {
    fn pass(what: &'static str, detail: impl Into<String>) -> Self {
        Self {
            what,
            passed: true,
            detail: detail.into(),
        }
    }
    fn fail(what: &'static str, error: impl std::fmt::Display, fix: &str) -> Self {
        Self {
            what,
            passed: false,
            detail: format!("{error}. {fix}"),
        }
    }
}

pub fn render(lines: &[CheckLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {:<18} {}\n",
                if l.passed { "pass" } else { "FAIL" },
                l.what,
                l.detail
            )
        })
        .collect()
}

/// The table a check merges into, and drops.
const CHECK_OBJECT: &str = "SfpipeCheck__c";

fn probe_part() -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    // The shape of a Bulk result page: a header, then one record.
    let _ = gz.write_all(
        b"\"Id\",\"IsDeleted\",\"SystemModstamp\"\n\"a00000000000001AAA\",\"false\",\"2026-01-01T00:00:00.000Z\"\n",
    );
    gz.finish().unwrap_or_default()
}

fn probe_schema() -> anyhow::Result<TableSchema> {
    let column = |name: &str, sf_type: &str| ColumnSpec {
        name: name.into(),
        sf_type: sf_type.into(),
        length: if sf_type == "id" { 18 } else { 0 },
        precision: 0,
        scale: 0,
    };
    Ok(TableSchema {
        object: ObjectName::new(CHECK_OBJECT)?,
        columns: vec![
            column("Id", "id"),
            column("IsDeleted", "boolean"),
            column("SystemModstamp", "datetime"),
        ],
    })
}

pub async fn check(
    options: &CheckOptions,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<Vec<CheckLine>> {
    let mut lines = Vec::new();
    let run = crate::run::RunOptions {
        ca_cert: options.ca_cert.clone(),
        ..crate::run::RunOptions::sqlite(
            &options.login_url,
            options.credentials.clone(),
            "",
            PathBuf::new(),
        )
    };
    lines.push(match run.salesforce() {
        Ok(client) => match client.describe_global().await {
            Ok(global) => CheckLine::pass(
                "Salesforce login",
                format!(
                    "logged in at {}; {} objects visible",
                    options.login_url,
                    global.sobjects.len()
                ),
            ),
            Err(error) => CheckLine::fail(
                "Salesforce login",
                error,
                "Check the credentials file's flow and values, and that the login URL is the one the flow needs (README: the Salesforce secret)",
            ),
        },
        Err(error) => CheckLine::fail(
            "Salesforce login",
            error,
            "Fix the credentials file (README: the Salesforce secret)",
        ),
    });
    let destination = &options.snowflake;
    let Some(bucket) = &destination.bucket else {
        return Ok(lines);
    };
    let secret = destination.snowflake_credentials.clone();
    let (blobs, warehouse) = match &secret {
        Some(secret) => {
            match crate::run::snowflake_ports(secret, bucket, &destination.prefix, aws.clone())
                .await
            {
                Ok((blobs, warehouse)) => (blobs, Some(warehouse)),
                Err(error) => {
                    lines.push(CheckLine::fail(
                        "Snowflake login",
                        error,
                        "Fix the Snowflake secret file (README: the Snowflake secret)",
                    ));
                    return Ok(lines);
                }
            }
        }
        None => {
            let aws = crate::stack::aws_config(aws).await;
            (
                crate::stack::s3_blobs(&aws, bucket, &destination.prefix),
                None,
            )
        }
    };
    let key = format!(
        "check/{}/part-00001.csv.gz",
        Utc::now().format("%Y%m%dT%H%M%S")
    );
    let s3 = async {
        blobs.put(&key, bytes_stream(probe_part())).await?;
        blobs.get_bytes(&key).await
    }
    .await;
    match s3 {
        Ok(read) if read.as_ref() == probe_part().as_slice() => lines.push(CheckLine::pass(
            "S3 access",
            format!(
                "wrote and read back s3://{bucket}/{}/{key}",
                destination.prefix
            ),
        )),
        Ok(_) => lines.push(CheckLine::fail(
            "S3 access",
            "the object read back differs from the one written",
            "Check what sits in front of the bucket (a proxy, a lifecycle rule)",
        )),
        Err(error) => {
            lines.push(CheckLine::fail(
                "S3 access",
                error,
                "Check the bucket's name and region, and that your AWS credentials may put, get and delete objects under the prefix",
            ));
            return Ok(lines);
        }
    }
    if let Some(warehouse) = warehouse {
        let login = warehouse
            .client()
            .execute(
                "SELECT CURRENT_USER() AS \"USER\", CURRENT_ROLE() AS \"ROLE\"",
                1,
            )
            .await;
        match login {
            Ok(result) => lines.push(CheckLine::pass(
                "Snowflake login",
                format!(
                    "as {} with role {}",
                    result.first().and_then(|r| r.first("USER")).unwrap_or("?"),
                    result.first().and_then(|r| r.first("ROLE")).unwrap_or("?")
                ),
            )),
            Err(error) => {
                lines.push(CheckLine::fail(
                    "Snowflake login",
                    error,
                    "Check the account, user and key (README: deploy step for Snowflake's key pair)",
                ));
                let _ = blobs.delete(&key).await;
                return Ok(lines);
            }
        }
        // A real merge of the probe part: the stage reads the bucket, the role may create, load
        // and merge into a table and keep the watermark table.
        let schema = probe_schema()?;
        let merged = async {
            warehouse.ensure_table(&schema).await?;
            warehouse
                .merge(&MergeBatch {
                    schema: schema.clone(),
                    run_id: RunId::new("check")?,
                    files: vec![key.clone()],
                    extracted_at: Utc::now(),
                    update_only: false,
                    reconcile_until: None,
                    request_id: None,
                    loaded_at: None,
                })
                .await
                .map_err(anyhow::Error::from)
        }
        .await;
        match merged {
            Ok(report) if report.rows_read == 1 => lines.push(CheckLine::pass(
                "Snowflake stage",
                format!(
                    "{} read the probe part from s3://{bucket}/{}/",
                    warehouse.stage(),
                    destination.prefix
                ),
            )),
            Ok(report) => lines.push(CheckLine::fail(
                "Snowflake stage",
                format!("the merge read {} rows of the probe's 1", report.rows_read),
                "The stage's URL must be the bucket and prefix sfpipe writes to",
            )),
            Err(error) => lines.push(CheckLine::fail(
                "Snowflake stage",
                error,
                "Check that the stage's URL is s3://<bucket>/<prefix>/, that its storage integration's role may read the bucket, and that the role has USAGE on the stage and CREATE TABLE on the schema (README: deploy step for Snowflake)",
            )),
        }
        let cleanup = warehouse
            .client()
            .execute(
                &format!(
                    "DROP TABLE IF EXISTS {}; DELETE FROM \"_SFPIPE_STATE\" WHERE \"OBJECT_NAME\" = '{CHECK_OBJECT}'",
                    sfpipe_shared::snowflake::sql::table_name(&schema.object)
                ),
                2,
            )
            .await;
        match cleanup {
            Ok(_) => lines.push(CheckLine::pass(
                "Snowflake grants",
                format!("created, merged into and dropped {CHECK_OBJECT}"),
            )),
            Err(error) => lines.push(CheckLine::fail(
                "Snowflake grants",
                error,
                &format!(
                    "The role could merge but not clean up: grant it OWNERSHIP of the tables it creates (or drop {CHECK_OBJECT} by hand)"
                ),
            )),
        }
    }
    if let Err(error) = blobs.delete(&key).await {
        lines.push(CheckLine::fail(
            "S3 clean-up",
            error,
            "Your credentials may not delete objects; the functions' roles do not need to",
        ));
    }
    Ok(lines)
}
