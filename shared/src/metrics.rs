//! CloudWatch metrics from each handling's usage record, as Embedded Metric Format (EMF) log
//! lines: a JSON object on a line of its own on standard output, which Lambda sends to
//! CloudWatch Logs and CloudWatch Logs turns into metrics, with no API call and no permission.
//!
//! Six metrics under the namespace `sfpipe`, with the stack as their one dimension: each
//! combination of a metric's dimensions is a custom metric billed per month, so the stage,
//! the object and the run are properties of the line (searchable in Logs Insights), not
//! dimensions.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::usage::UsageRecord;

pub const NAMESPACE: &str = "sfpipe";

/// The dimension every metric has: the stack's name.
pub const STACK_DIMENSION: &str = "Stack";

/// Metric names and units, in the template's dashboard and alarm too.
pub const METRICS: [(&str, &str); 6] = [
    ("RowsChanged", "Count"),
    ("SalesforceApiCalls", "Count"),
    ("BulkJobs", "Count"),
    ("SnowflakeStatements", "Count"),
    ("S3Requests", "Count"),
    ("FreshnessLagSeconds", "Seconds"),
];

static STACK: OnceLock<String> = OnceLock::new();

/// Makes every usage record kept from now on also print its EMF line (on Lambda, at start-up).
pub fn enable(stack: impl Into<String>) {
    let _ = STACK.set(stack.into());
}

/// Prints the record's EMF line when [`enable`]d.
pub(crate) fn emit(record: &UsageRecord) {
    if let Some(stack) = STACK.get() {
        println!("{}", emf_line(record, stack));
    }
}

/// The record as one EMF document.
pub fn emf_line(record: &UsageRecord, stack: &str) -> Value {
    let usage = &record.usage;
    let mut values: Vec<(&str, Value)> = vec![
        ("RowsChanged", json!(record.rows_changed)),
        ("SalesforceApiCalls", json!(usage.salesforce_total())),
        ("BulkJobs", json!(usage.bulk_jobs)),
        ("SnowflakeStatements", json!(usage.statement_total())),
        ("S3Requests", json!(usage.s3_total())),
    ];
    if let Some(lag) = record.freshness_lag_seconds {
        values.push(("FreshnessLagSeconds", json!(lag)));
    }
    let metrics: Vec<Value> = values
        .iter()
        .map(|(name, _)| {
            let unit = METRICS
                .iter()
                .find(|(n, _)| n == name)
                .map_or("None", |(_, u)| *u);
            json!({"Name": name, "Unit": unit})
        })
        .collect();
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": record.started_at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[STACK_DIMENSION]],
                "Metrics": metrics,
            }],
        }),
    );
    document.insert(STACK_DIMENSION.into(), json!(stack));
    for (name, value) in values {
        document.insert(name.into(), value);
    }
    // Properties, not metrics: for Logs Insights.
    document.insert("stage".into(), json!(record.stage));
    document.insert("object".into(), json!(record.object));
    document.insert("run_id".into(), json!(record.run_id));
    document.insert("duration_ms".into(), json!(record.duration_ms));
    document.insert("succeeded".into(), json!(record.succeeded));
    document.insert("rows".into(), json!(record.rows));
    document.insert("usage".into(), json!(usage));
    Value::Object(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{StatementSpan, Usage};
    use chrono::{TimeZone, Utc};

    /// The rules of CloudWatch's "Specification: Embedded metric format", checked on a document
    /// as CloudWatch Logs would before extracting metrics from it.
    fn check_against_the_specification(document: &Value) -> Result<(), String> {
        const UNITS: [&str; 27] = [
            "Seconds",
            "Microseconds",
            "Milliseconds",
            "Bytes",
            "Kilobytes",
            "Megabytes",
            "Gigabytes",
            "Terabytes",
            "Bits",
            "Kilobits",
            "Megabits",
            "Gigabits",
            "Terabits",
            "Percent",
            "Count",
            "Bytes/Second",
            "Kilobytes/Second",
            "Megabytes/Second",
            "Gigabytes/Second",
            "Terabytes/Second",
            "Bits/Second",
            "Kilobits/Second",
            "Megabits/Second",
            "Gigabits/Second",
            "Terabits/Second",
            "Count/Second",
            "None",
        ];
        let root = document.as_object().ok_or("the root is not an object")?;
        let aws = root
            .get("_aws")
            .and_then(Value::as_object)
            .ok_or("no _aws object")?;
        let timestamp = aws.get("Timestamp").ok_or("no _aws.Timestamp")?;
        if !(timestamp.is_u64() || timestamp.is_i64()) {
            return Err("_aws.Timestamp is not whole milliseconds since the epoch".into());
        }
        let directives = aws
            .get("CloudWatchMetrics")
            .and_then(Value::as_array)
            .ok_or("no _aws.CloudWatchMetrics array")?;
        for directive in directives {
            let namespace = directive["Namespace"].as_str().ok_or("no Namespace")?;
            if namespace.is_empty() || namespace.len() > 255 {
                return Err(format!(
                    "Namespace {namespace:?} is not 1 to 255 characters"
                ));
            }
            let sets = directive["Dimensions"]
                .as_array()
                .ok_or("no Dimensions array")?;
            for set in sets {
                let set = set.as_array().ok_or("a dimension set is not an array")?;
                if set.len() > 30 {
                    return Err("more than 30 dimensions in a set".into());
                }
                for key in set {
                    let key = key.as_str().ok_or("a dimension key is not a string")?;
                    if !root.get(key).is_some_and(Value::is_string) {
                        return Err(format!(
                            "dimension {key} is not a string member of the root"
                        ));
                    }
                }
            }
            let metrics = directive["Metrics"].as_array().ok_or("no Metrics array")?;
            if metrics.len() > 100 {
                return Err("more than 100 metrics in a directive".into());
            }
            for metric in metrics {
                let name = metric["Name"].as_str().ok_or("a metric without a Name")?;
                if name.is_empty() || name.len() > 255 {
                    return Err(format!("metric name {name:?} is not 1 to 255 characters"));
                }
                if let Some(unit) = metric.get("Unit") {
                    let unit = unit.as_str().ok_or("a Unit that is not a string")?;
                    if !UNITS.contains(&unit) {
                        return Err(format!("{name}: {unit} is not a CloudWatch unit"));
                    }
                }
                match root.get(name) {
                    Some(Value::Number(_)) => {}
                    Some(Value::Array(values))
                        if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                    _ => return Err(format!("metric {name} has no number at the root")),
                }
            }
        }
        Ok(())
    }

    fn record(freshness: Option<f64>) -> UsageRecord {
        let mut usage = Usage::default();
        usage.salesforce_calls.insert("composite".into(), 2);
        usage.s3_requests.insert("GET".into(), 6);
        usage.statements.push(StatementSpan {
            submitted_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
            elapsed_ms: 1_500,
            count: 3,
        });
        UsageRecord {
            stage: "merge".into(),
            object: "Account".into(),
            run_id: "20270115T080000Z-0a1b2c3d".into(),
            started_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
            duration_ms: 2_000,
            succeeded: true,
            rows: 40,
            rows_changed: 12,
            freshness_lag_seconds: freshness,
            usage,
        }
    }

    #[test]
    fn each_line_is_an_emf_document_with_the_receipts_numbers() {
        let line = emf_line(&record(None), "sfpipe-prod");
        check_against_the_specification(&line).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_800_000_000_000u64);
        assert_eq!(line["Stack"], "sfpipe-prod");
        assert_eq!(line["RowsChanged"], 12);
        assert_eq!(line["SalesforceApiCalls"], 2);
        assert_eq!(line["SnowflakeStatements"], 3);
        assert_eq!(line["S3Requests"], 6);
        assert_eq!(line["object"], "Account", "a property, not a dimension");
        assert!(line.get("FreshnessLagSeconds").is_none());
        // One line: what CloudWatch Logs reads as one log event.
        assert!(!line.to_string().contains('\n'));

        let loader = emf_line(&record(Some(5400.0)), "sfpipe-prod");
        check_against_the_specification(&loader).unwrap();
        assert_eq!(loader["FreshnessLagSeconds"], 5400.0);
        let names: Vec<&str> = loader["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, METRICS.map(|(n, _)| n));
    }

    #[test]
    fn the_checker_refuses_what_cloudwatch_would_not_extract() {
        let mut line = emf_line(&record(None), "s");
        line["RowsChanged"] = json!("12");
        assert!(check_against_the_specification(&line).is_err());
        let mut line = emf_line(&record(None), "s");
        line.as_object_mut().unwrap().remove("Stack");
        assert!(check_against_the_specification(&line).is_err());
        let mut line = emf_line(&record(None), "s");
        line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Rows");
        assert!(check_against_the_specification(&line).is_err());
    }
}
