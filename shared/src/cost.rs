//! What runs cost in dollars, from their usage records ([`crate::usage`]) and a price table:
//! Lambda (GB-seconds and requests), SQS, S3 by request class, the Snowflake warehouse (billed
//! seconds modelled from the statements' spans: per second from each resume, 60 seconds at
//! least, until auto-suspend), and the stack's fixed monthly items (secrets, key, alarms, the
//! event sources' idle polling). Measured per scheduled trigger, projected to a day at a
//! schedule's rate, and per million changed rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::usage::{LOADER_RECEIPTS, StatementSpan, Usage, UsageRecord};

/// List prices in US dollars (AWS us-east-1, Snowflake on demand on AWS). Every field can be
/// overridden by a JSON file that names only the fields it changes. Sources: the README's cost
/// section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// Lambda on arm64, per GB-second of duration.
    pub lambda_gb_second: f64,
    /// Lambda, per request.
    pub lambda_request: f64,
    /// Each function's memory in GB (the template's `MemorySize: 256`).
    pub lambda_memory_gb: f64,
    /// SQS standard queue, per request (each 64 KiB chunk).
    pub sqs_request: f64,
    /// SQS FIFO queue, per request (the merge queue).
    pub sqs_fifo_request: f64,
    /// S3 Standard, per request, by class (`PUT` also prices COPY, POST and LIST).
    pub s3_request: BTreeMap<String, f64>,
    /// Dollars per Snowflake credit (on demand: Standard edition 2.00, Enterprise 3.00).
    pub snowflake_credit: f64,
    /// The warehouse's credits per hour (X-Small: 1).
    pub warehouse_credits_per_hour: f64,
    /// The warehouse's `AUTO_SUSPEND` in seconds.
    pub warehouse_auto_suspend_seconds: f64,
    /// Billed at least this long from each resume.
    pub warehouse_minimum_seconds: f64,
    /// What the stack costs per month whatever it does, by item.
    pub fixed_per_month: BTreeMap<String, f64>,
}

/// Lambda's event source polls a queue with long polls whatever it holds: five pollers, each a
/// receive per 20 seconds at most, so about 21,600 requests a day per queue.
const IDLE_POLLS_PER_QUEUE_PER_MONTH: f64 = 5.0 * 3.0 * 60.0 * 24.0 * 30.0;

impl Default for Prices {
    fn default() -> Self {
        let sqs_request = 0.40 / 1e6;
        Self {
            lambda_gb_second: 0.000_013_333_4,
            lambda_request: 0.20 / 1e6,
            lambda_memory_gb: 0.25,
            sqs_request,
            sqs_fifo_request: 0.50 / 1e6,
            s3_request: [
                ("PUT", 0.005 / 1e3),
                ("LIST", 0.005 / 1e3),
                ("GET", 0.0004 / 1e3),
                ("HEAD", 0.0004 / 1e3),
                ("DELETE", 0.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            snowflake_credit: 3.00,
            warehouse_credits_per_hour: 1.0,
            warehouse_auto_suspend_seconds: 60.0,
            warehouse_minimum_seconds: 60.0,
            fixed_per_month: [
                ("Secrets Manager: 2 secrets", 2.0 * 0.40),
                ("KMS: 1 customer managed key", 1.00),
                // The dead-letter and error alarms, and the freshness alarm. The dashboard is
                // free among an account's first three ($3 a month after).
                ("CloudWatch: 12 alarms", 12.0 * 0.10),
                (
                    "SQS: Lambda's idle long polls on 3 queues",
                    3.0 * IDLE_POLLS_PER_QUEUE_PER_MONTH * sqs_request,
                ),
                ("CloudWatch: 6 custom metrics (EMF)", 6.0 * 0.30),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }
}

/// The warehouse's bill for a set of statement spans.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WarehouseBill {
    /// Times the warehouse resumed from suspended.
    pub resumes: u64,
    /// Seconds the warehouse ran statements.
    pub busy_seconds: f64,
    /// Seconds billed: per resume at least the minimum, and on until auto-suspend.
    pub billed_seconds: f64,
    pub credits: f64,
    pub usd: f64,
}

/// Models a warehouse that resumes at a statement when suspended, runs until `auto_suspend`
/// seconds after its last statement ended, and bills each such session per second with a
/// minimum.
pub fn warehouse_bill(spans: &[StatementSpan], prices: &Prices) -> WarehouseBill {
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = spans
        .iter()
        .map(|s| (s.submitted_at, s.finished_at()))
        .collect();
    spans.sort();
    let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| {
        (to - from).num_milliseconds().max(0) as f64 / 1000.0
    };
    let mut bill = WarehouseBill::default();
    let suspend =
        chrono::TimeDelta::milliseconds((prices.warehouse_auto_suspend_seconds * 1e3) as i64);
    let mut session: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    let close = |bill: &mut WarehouseBill, (start, end): (DateTime<Utc>, DateTime<Utc>)| {
        bill.resumes += 1;
        bill.billed_seconds += seconds(start, end + suspend).max(prices.warehouse_minimum_seconds);
    };
    let mut busy_until: Option<DateTime<Utc>> = None;
    for (start, end) in spans {
        // Busy time counts overlapping statements once.
        let busy_from = busy_until.map_or(start, |b| b.max(start));
        bill.busy_seconds += seconds(busy_from, end);
        busy_until = Some(busy_until.map_or(end, |b| b.max(end)));
        session = match session {
            Some((s, e)) if start <= e + suspend => Some((s, e.max(end))),
            Some(done) => {
                close(&mut bill, done);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some(done) = session {
        close(&mut bill, done);
    }
    bill.credits = bill.billed_seconds / 3600.0 * prices.warehouse_credits_per_hour;
    bill.usd = bill.credits * prices.snowflake_credit;
    bill
}

/// One billed item of a cost report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    pub service: String,
    pub item: String,
    pub quantity: f64,
    pub usd: f64,
}

/// One run's share: its own requests and durations, and the warehouse bill in proportion to its
/// statements' seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCost {
    pub object: String,
    pub run_id: String,
    pub invocations: u64,
    pub rows_changed: u64,
    pub usd: f64,
}

/// What the records cost, measured and projected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    pub records: usize,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Scheduled triggers among the records (job-loader handlings; at least 1).
    pub triggers: u64,
    pub usage: Usage,
    pub invocations: u64,
    pub lambda_gb_seconds: f64,
    pub warehouse: WarehouseBill,
    /// Rows the merges changed, each run counted once.
    pub rows_changed: u64,
    pub lines: Vec<CostLine>,
    /// Every measured line.
    pub usd: f64,
    pub runs: Vec<RunCost>,
    pub projection: Projection,
}

/// One day at a schedule's rate, from the measured average per trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projection {
    pub runs_per_day: f64,
    pub api_calls_per_day: f64,
    pub api_limit: u64,
    pub bulk_jobs_per_day: f64,
    pub bulk_job_limit: u64,
    pub warehouse_resumes_per_day: f64,
    pub warehouse_billed_seconds_per_day: f64,
    pub rows_changed_per_day: f64,
    /// Measured lines per trigger times the runs a day.
    pub usage_usd_per_day: f64,
    /// The fixed monthly items over 30 days.
    pub fixed_usd_per_day: f64,
    pub usd_per_day: f64,
    /// `None` when nothing changed.
    pub usd_per_million_changed_rows: Option<f64>,
}

/// Salesforce's default for `DailyBulkV2QueryJobs`.
pub const DAILY_BULK_QUERY_JOBS: u64 = 10_000;

/// The event source's SQS requests for one handling of a queue-fed stage (a receive, and a
/// delete once handled), and whether they were on the FIFO merge queue; `None` for the
/// job-loader, which no queue feeds.
fn event_source_requests(record: &UsageRecord) -> Option<(u64, bool)> {
    matches!(record.stage.as_str(), "extract" | "upload" | "merge").then(|| {
        (
            if record.succeeded { 2 } else { 1 },
            record.stage == "merge",
        )
    })
}

impl Prices {
    /// The fixed monthly items, a day's share (a month taken as 30 days).
    pub fn fixed_usd_per_day(&self) -> f64 {
        self.fixed_per_month.values().sum::<f64>() / 30.0
    }

    /// One S3 request of `class`; a class the table lacks is priced as a PUT, the dearest.
    fn s3(&self, class: &str) -> f64 {
        self.s3_request.get(class).copied().unwrap_or(0.005 / 1e3)
    }

    /// One SQS request, on the FIFO queue or a standard one.
    fn sqs(&self, fifo: bool) -> f64 {
        if fifo {
            self.sqs_fifo_request
        } else {
            self.sqs_request
        }
    }
}

/// Prices `records` and projects a day of `runs_per_day` scheduled runs. `api_limit`: the
/// org's daily API limit when no record carries the org's own.
pub fn cost_report(
    records: &[UsageRecord],
    prices: &Prices,
    runs_per_day: f64,
    api_limit: u64,
) -> CostReport {
    let mut usage = Usage::default();
    let mut lambda_ms: u64 = 0;
    let mut event_source = (0u64, 0u64); // (standard, FIFO)
    let mut triggers = BTreeSet::new();
    let mut changed: BTreeMap<(String, String), u64> = BTreeMap::new();
    for record in records {
        usage.add(&record.usage);
        lambda_ms += record.duration_ms;
        if record.object == LOADER_RECEIPTS {
            triggers.insert(record.run_id.clone());
        }
        match event_source_requests(record) {
            Some((requests, true)) => event_source.1 += requests,
            Some((requests, false)) => event_source.0 += requests,
            None => {}
        }
        if record.stage == "merge" && record.succeeded {
            let seen = changed
                .entry((record.object.clone(), record.run_id.clone()))
                .or_default();
            *seen = (*seen).max(record.rows_changed);
        }
    }
    let invocations = records.len() as u64;
    let lambda_gb_seconds = lambda_ms as f64 / 1000.0 * prices.lambda_memory_gb;
    let warehouse = warehouse_bill(&usage.statements, prices);
    let rows_changed: u64 = changed.values().sum();

    let mut lines = vec![
        line(
            "Lambda",
            "GB-seconds",
            lambda_gb_seconds,
            prices.lambda_gb_second,
        ),
        line(
            "Lambda",
            "requests",
            invocations as f64,
            prices.lambda_request,
        ),
        line(
            "SQS",
            "requests by the handlers",
            usage.sqs_total() as f64,
            prices.sqs_request,
        ),
        line(
            "SQS",
            "event source receives and deletes (standard)",
            event_source.0 as f64,
            prices.sqs(false),
        ),
        line(
            "SQS",
            "event source receives and deletes (FIFO)",
            event_source.1 as f64,
            prices.sqs(true),
        ),
    ];
    for (class, n) in &usage.s3_requests {
        lines.push(line(
            "S3",
            &format!("{class} requests"),
            *n as f64,
            prices.s3(class),
        ));
    }
    lines.push(CostLine {
        service: "Snowflake".into(),
        item: format!(
            "warehouse credits ({} resumes, {:.0} s billed)",
            warehouse.resumes, warehouse.billed_seconds
        ),
        quantity: warehouse.credits,
        usd: warehouse.usd,
    });
    let usd: f64 = lines.iter().map(|l| l.usd).sum();

    let runs = run_costs(records, prices, &warehouse, &changed);
    let triggers = (triggers.len() as u64).max(1);
    let per_trigger = runs_per_day / triggers as f64;
    let api_limit = usage.org_api_usage.map_or(api_limit, |u| u.max);
    let fixed_usd_per_day = prices.fixed_usd_per_day();
    let usage_usd_per_day = usd * per_trigger;
    let usd_per_day = usage_usd_per_day + fixed_usd_per_day;
    let rows_changed_per_day = rows_changed as f64 * per_trigger;
    let projection = Projection {
        runs_per_day,
        api_calls_per_day: usage.salesforce_total() as f64 * per_trigger,
        api_limit,
        bulk_jobs_per_day: usage.bulk_jobs as f64 * per_trigger,
        bulk_job_limit: DAILY_BULK_QUERY_JOBS,
        warehouse_resumes_per_day: warehouse.resumes as f64 * per_trigger,
        warehouse_billed_seconds_per_day: warehouse.billed_seconds * per_trigger,
        rows_changed_per_day,
        usage_usd_per_day,
        fixed_usd_per_day,
        usd_per_day,
        usd_per_million_changed_rows: (rows_changed_per_day > 0.0)
            .then(|| usd_per_day / (rows_changed_per_day / 1e6)),
    };
    CostReport {
        records: records.len(),
        first: records.iter().map(|r| r.started_at).min(),
        last: records.iter().map(|r| r.started_at).max(),
        triggers,
        usage,
        invocations,
        lambda_gb_seconds,
        warehouse,
        rows_changed,
        lines,
        usd,
        runs,
        projection,
    }
}

fn line(service: &str, item: &str, quantity: f64, unit_price: f64) -> CostLine {
    CostLine {
        service: service.into(),
        item: item.into(),
        quantity,
        usd: quantity * unit_price,
    }
}

/// Each run's own requests and durations at list price, and its share of the warehouse bill by
/// busy seconds.
fn run_costs(
    records: &[UsageRecord],
    prices: &Prices,
    warehouse: &WarehouseBill,
    changed: &BTreeMap<(String, String), u64>,
) -> Vec<RunCost> {
    let statement_seconds: f64 = records
        .iter()
        .flat_map(|r| &r.usage.statements)
        .map(|s| s.elapsed_ms as f64 / 1000.0)
        .sum();
    let mut by_run: BTreeMap<(String, String), Vec<&UsageRecord>> = BTreeMap::new();
    for record in records {
        by_run
            .entry((record.object.clone(), record.run_id.clone()))
            .or_default()
            .push(record);
    }
    by_run
        .into_iter()
        .map(|(key, records)| {
            let mut usage = Usage::default();
            let mut usd = 0.0;
            for record in &records {
                usage.add(&record.usage);
                usd += record.duration_ms as f64 / 1000.0
                    * prices.lambda_memory_gb
                    * prices.lambda_gb_second
                    + prices.lambda_request;
                if let Some((requests, fifo)) = event_source_requests(record) {
                    usd += requests as f64 * prices.sqs(fifo);
                }
            }
            usd += usage.sqs_total() as f64 * prices.sqs(false);
            for (class, n) in &usage.s3_requests {
                usd += *n as f64 * prices.s3(class);
            }
            let busy: f64 = usage
                .statements
                .iter()
                .map(|s| s.elapsed_ms as f64 / 1000.0)
                .sum();
            if statement_seconds > 0.0 {
                usd += warehouse.usd * busy / statement_seconds;
            }
            RunCost {
                rows_changed: changed.get(&key).copied().unwrap_or(0),
                object: key.0,
                run_id: key.1,
                invocations: records.len() as u64,
                usd,
            }
        })
        .collect()
}

impl CostReport {
    /// The report for people.
    pub fn render(&self, runs: usize) -> String {
        let mut out = String::new();
        let p = &self.projection;
        out.push_str(&format!(
            "{} usage records, {} scheduled triggers, {} invocations{}\n\n",
            self.records,
            self.triggers,
            self.invocations,
            match (self.first, self.last) {
                (Some(a), Some(b)) => format!(
                    ", {} to {}",
                    crate::contracts::rfc3339(a),
                    crate::contracts::rfc3339(b)
                ),
                _ => String::new(),
            }
        ));
        out.push_str(&format!(
            "{:<10} {:<52} {:>14} {:>12}\n",
            "service", "item", "quantity", "USD"
        ));
        for line in &self.lines {
            out.push_str(&format!(
                "{:<10} {:<52} {:>14.3} {:>12.6}\n",
                line.service, line.item, line.quantity, line.usd
            ));
        }
        out.push_str(&format!(
            "{:<10} {:<52} {:>14} {:>12.6}\n\n",
            "total", "measured", "", self.usd
        ));
        out.push_str(&format!(
            "Salesforce: {} API calls, {} Bulk jobs; {} rows changed\n",
            self.usage.salesforce_total(),
            self.usage.bulk_jobs,
            self.rows_changed
        ));
        out.push_str(&format!(
            "a day of {:.0} scheduled runs at this rate: {:.0} API calls ({:.2} % of {}), {:.0} Bulk jobs ({:.2} % of {}), {:.0} warehouse resumes, {:.0} s billed\n",
            p.runs_per_day,
            p.api_calls_per_day,
            100.0 * p.api_calls_per_day / p.api_limit.max(1) as f64,
            p.api_limit,
            p.bulk_jobs_per_day,
            100.0 * p.bulk_jobs_per_day / p.bulk_job_limit.max(1) as f64,
            p.bulk_job_limit,
            p.warehouse_resumes_per_day,
            p.warehouse_billed_seconds_per_day,
        ));
        out.push_str(&format!(
            "  USD {:.4} a day: {:.4} used + {:.4} fixed (secrets, key, alarms, idle polls, metrics)\n",
            p.usd_per_day, p.usage_usd_per_day, p.fixed_usd_per_day
        ));
        match p.usd_per_million_changed_rows {
            Some(usd) => out.push_str(&format!(
                "  USD {usd:.4} per million changed rows ({:.0} rows changed a day)\n",
                p.rows_changed_per_day
            )),
            None => out.push_str("  no row changed: nothing to divide by\n"),
        }
        if runs > 0 && !self.runs.is_empty() {
            out.push_str(&format!(
                "\n{:<16} {:<34} {:>11} {:>12} {:>12}\n",
                "object", "run", "invocations", "changed", "USD"
            ));
            let skip = self.runs.len().saturating_sub(runs);
            for run in self.runs.iter().skip(skip) {
                out.push_str(&format!(
                    "{:<16} {:<34} {:>11} {:>12} {:>12.6}\n",
                    run.object, run.run_id, run.invocations, run.rows_changed, run.usd
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn span(at_seconds: i64, elapsed_ms: u64) -> StatementSpan {
        StatementSpan {
            submitted_at: Utc.timestamp_opt(1_800_000_000 + at_seconds, 0).unwrap(),
            elapsed_ms,
            count: 3,
        }
    }

    #[test]
    fn a_short_statement_bills_the_minimum_and_close_ones_share_a_resume() {
        let prices = Prices::default();
        // One 2-second merge: one resume, billed until auto-suspend, 60 s after it ended.
        let one = warehouse_bill(&[span(0, 2_000)], &prices);
        assert_eq!(one.resumes, 1);
        assert_eq!(one.billed_seconds, 62.0);
        // With no auto-suspend delay, the minimum still bills 60 s.
        let mut short_suspend = prices.clone();
        short_suspend.warehouse_auto_suspend_seconds = 0.0;
        assert_eq!(
            warehouse_bill(&[span(0, 2_000)], &short_suspend).billed_seconds,
            60.0
        );
        // Six merges within a minute of each other: one resume.
        let close: Vec<StatementSpan> = (0..6).map(|i| span(i * 10, 1_000)).collect();
        let shared = warehouse_bill(&close, &prices);
        assert_eq!(shared.resumes, 1);
        assert_eq!(shared.billed_seconds, 51.0 + 60.0);
        assert_eq!(shared.busy_seconds, 6.0);
        // The same merges 15 minutes apart: six resumes, six minimums and more.
        let apart: Vec<StatementSpan> = (0..6).map(|i| span(i * 900, 1_000)).collect();
        let separate = warehouse_bill(&apart, &prices);
        assert_eq!(separate.resumes, 6);
        assert_eq!(separate.billed_seconds, 6.0 * 61.0);
        assert!((separate.credits - 6.0 * 61.0 / 3600.0).abs() < 1e-9);
        assert!((separate.usd - separate.credits * 3.0).abs() < 1e-9);
    }

    fn record(stage: &str, object: &str, run: &str, usage: Usage, changed: u64) -> UsageRecord {
        UsageRecord {
            stage: stage.into(),
            object: object.into(),
            run_id: run.into(),
            started_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
            duration_ms: 1_000,
            succeeded: true,
            rows: changed,
            rows_changed: changed,
            freshness_lag_seconds: None,
            usage,
        }
    }

    #[test]
    fn a_report_prices_each_service_and_projects_a_day() {
        let prices = Prices::default();
        let mut loader = Usage::default();
        loader.salesforce_calls.insert("composite".into(), 2);
        loader.s3_requests.insert("GET".into(), 1000);
        let mut merge = Usage::default();
        merge.s3_requests.insert("PUT".into(), 1000);
        merge.statements.push(span(0, 4_000));
        merge.bulk_jobs = 1;
        let records = vec![
            record("job-loader", LOADER_RECEIPTS, "r1", loader, 0),
            record("merge", "Account", "r1", merge.clone(), 500),
            // A redelivered merge: billed again, its rows counted once.
            record("merge", "Account", "r1", merge, 500),
        ];
        let report = cost_report(&records, &prices, 96.0, 100_000);
        let find = |item: &str| report.lines.iter().find(|l| l.item == item).unwrap().usd;
        assert!((find("GET requests") - 1000.0 * 0.0004 / 1e3).abs() < 1e-12);
        assert!((find("PUT requests") - 2000.0 * 0.005 / 1e3).abs() < 1e-12);
        assert!((find("GB-seconds") - 3.0 * 0.25 * 0.000_013_333_4).abs() < 1e-12);
        assert!((find("event source receives and deletes (FIFO)") - 4.0 * 0.5 / 1e6).abs() < 1e-15);
        assert_eq!(report.rows_changed, 500);
        assert_eq!(report.triggers, 1);
        assert_eq!(
            report.warehouse.resumes, 1,
            "two overlapping spans, one resume"
        );
        let p = &report.projection;
        assert_eq!(p.api_calls_per_day, 192.0);
        assert_eq!(p.bulk_jobs_per_day, 192.0);
        assert_eq!(p.rows_changed_per_day, 48_000.0);
        assert!((p.usd_per_day - (report.usd * 96.0 + p.fixed_usd_per_day)).abs() < 1e-9);
        let per_million = p.usd_per_million_changed_rows.unwrap();
        assert!((per_million - p.usd_per_day / 0.048).abs() < 1e-9);
        let run_total: f64 = report.runs.iter().map(|r| r.usd).sum();
        assert!(
            (run_total - report.usd).abs() < 1e-9,
            "{run_total} vs {}",
            report.usd
        );
    }

    #[test]
    fn a_price_file_overrides_only_what_it_names() {
        let prices: Prices = serde_json::from_str(
            r#"{"snowflake_credit": 2.0, "warehouse_auto_suspend_seconds": 30}"#,
        )
        .unwrap();
        assert_eq!(prices.snowflake_credit, 2.0);
        assert_eq!(prices.warehouse_auto_suspend_seconds, 30.0);
        assert_eq!(prices.lambda_gb_second, Prices::default().lambda_gb_second);
        assert!(serde_json::from_str::<Prices>(r#"{"snowflake_credits": 2.0}"#).is_err());
    }
}
