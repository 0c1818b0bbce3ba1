//! `sfpipe bench --cost`: what a day of scheduled runs costs, from compressed runs of the demo
//! org on one machine. The six demo objects are loaded once, then run every 15 minutes of
//! simulated time: first with nothing changing, then with a steady trickle of changed rows in
//! every object. Each trigger's usage records are priced on their own (its statements' spans
//! make its warehouse session: runs compressed into seconds would otherwise share one), then
//! averaged, scaled to the org size asked (linearly per object: the probe's five objects per
//! call make a larger org cheaper per object than this), and projected to a day.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sfpipe_shared::contracts::{Mode, ObjectName};
use sfpipe_shared::cost::{DAILY_BULK_QUERY_JOBS, Prices, cost_report};
use sfpipe_shared::local::pipeline::LocalPipelineConfig;
use sfpipe_shared::local::{LocalPipeline, NoEvents};
use sfpipe_shared::stages::loader::LoadRequest;
use sfpipe_shared::usage::{RECEIPTS_PREFIX, UsageRecord, kept_usage};
use sfpipe_simulator::{SimConfig, Simulator};

/// What the cost scenario runs.
#[derive(Debug, Clone)]
pub struct CostScenario {
    /// Rows per demo object before the scheduled runs.
    pub rows: u64,
    /// Scheduled runs per phase (idle, then trickle).
    pub runs: u32,
    /// Rows changed in each object before each run of the trickle phase.
    pub trickle: u64,
    /// Objects the projection is scaled to.
    pub objects: u32,
    pub runs_per_day: f64,
    pub api_limit: u64,
}

/// One phase's day, projected.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseCost {
    pub phase: String,
    pub objects: u32,
    pub api_calls_per_day: f64,
    pub api_calls_by_kind_per_day: BTreeMap<String, f64>,
    pub bulk_jobs_per_day: f64,
    pub s3_requests_per_day: f64,
    pub sqs_requests_per_day: f64,
    pub warehouse_resumes_per_day: f64,
    pub warehouse_seconds_per_day: f64,
    pub rows_changed_per_day: f64,
    pub usd_per_day: f64,
    pub usd_per_million_changed_rows: Option<f64>,
}

pub async fn run_cost_scenario(scenario: &CostScenario) -> anyhow::Result<Vec<PhaseCost>> {
    let dir = tempfile::tempdir()?;
    let sim_config = SimConfig {
        rows: scenario.rows,
        ..SimConfig::default()
    };
    let simulator = Simulator::start_local(sim_config.clone())
        .await
        .context("starting the Salesforce simulator")?;
    let salesforce = crate::demo::simulator_client(&simulator, &sim_config)?;
    let mut config = LocalPipelineConfig::default();
    config.loader.until_lag = std::time::Duration::ZERO;
    let (pipeline, _) = LocalPipeline::in_directory(dir.path(), salesforce, config)?;
    let names: Vec<String> =
        simulator.with_org(|org| org.objects.iter().map(|o| o.name.to_string()).collect());
    let request = LoadRequest {
        objects: names
            .iter()
            .map(ObjectName::new)
            .collect::<Result<_, _>>()?,
        mode: Mode::Incremental,
        since: None,
        until: None,
    };
    let mut at = Utc::now();
    run_once(&pipeline, &request, at).await?;
    let prices = Prices::default();
    let mut phases = Vec::new();
    for (phase, trickle) in [("idle", 0), ("trickle", scenario.trickle)] {
        let mut triggers = Vec::new();
        for _ in 0..scenario.runs {
            at += chrono::Duration::minutes(15);
            for name in &names {
                if trickle > 0 {
                    simulator.update_rows(name, trickle, at - chrono::Duration::milliseconds(1));
                }
            }
            triggers.push(run_once(&pipeline, &request, at).await?);
        }
        let records = kept_usage(pipeline.blobs().as_ref(), RECEIPTS_PREFIX).await?;
        phases.push(project(
            phase,
            &records,
            &triggers,
            &prices,
            scenario,
            names.len() as f64,
        ));
    }
    simulator.stop().await;
    Ok(phases)
}

async fn run_once(
    pipeline: &Arc<LocalPipeline>,
    request: &LoadRequest,
    at: DateTime<Utc>,
) -> anyhow::Result<String> {
    let result = pipeline.run(request, at, Arc::new(NoEvents)).await?;
    anyhow::ensure!(
        result.dead_letters.is_empty(),
        "a scheduled run dead-lettered: {:?}",
        result.dead_letters
    );
    // Every run of one trigger has an id starting with its time.
    Ok(result.report.run_id.as_str()[..16].to_string())
}

/// Prices each trigger's records alone, then projects the average trigger to a day.
fn project(
    phase: &str,
    records: &[UsageRecord],
    triggers: &[String],
    prices: &Prices,
    scenario: &CostScenario,
    measured_objects: f64,
) -> PhaseCost {
    let mut by_trigger: BTreeMap<&str, Vec<UsageRecord>> = BTreeMap::new();
    for record in records {
        if let Some(trigger) = triggers
            .iter()
            .find(|t| record.run_id.starts_with(t.as_str()))
        {
            by_trigger.entry(trigger).or_default().push(record.clone());
        }
    }
    let scale = f64::from(scenario.objects) / measured_objects;
    let per_day = scenario.runs_per_day / triggers.len().max(1) as f64 * scale;
    // The probe asks five objects per composite call: scaled by calls, not by objects.
    let probe_scale = f64::from(scenario.objects.div_ceil(5)) / (measured_objects / 5.0).ceil();
    let per_trigger_day = scenario.runs_per_day / triggers.len().max(1) as f64;
    let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
    let (mut bulk, mut s3, mut sqs, mut resumes, mut seconds, mut rows) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    // The warehouse apart: it scales with triggers, the rest with objects too.
    let (mut warehouse_usd, mut other_usd) = (0.0, 0.0);
    for records in by_trigger.values() {
        let report = cost_report(records, prices, scenario.runs_per_day, scenario.api_limit);
        for (kind, n) in &report.usage.salesforce_calls {
            let daily = if kind == "composite" {
                *n as f64 * probe_scale * per_trigger_day
            } else {
                *n as f64 * per_day
            };
            *by_kind.entry(kind.clone()).or_default() += daily;
        }
        bulk += report.usage.bulk_jobs as f64;
        s3 += report.usage.s3_total() as f64;
        sqs += report
            .lines
            .iter()
            .filter(|l| l.service == "SQS")
            .map(|l| l.quantity)
            .sum::<f64>();
        resumes += report.warehouse.resumes as f64;
        seconds += report.warehouse.billed_seconds;
        rows += report.rows_changed as f64;
        warehouse_usd += report.warehouse.usd;
        other_usd += report.usd - report.warehouse.usd;
    }
    // One warehouse session a trigger at most, whatever the org's size: the merges of one
    // trigger wake it once when they come close together (`resumes` counts what they did).
    let rows_changed_per_day = rows * per_day;
    let usd_per_day =
        other_usd * per_day + warehouse_usd * per_trigger_day + prices.fixed_usd_per_day();
    PhaseCost {
        phase: phase.to_string(),
        objects: scenario.objects,
        api_calls_per_day: by_kind.values().sum(),
        api_calls_by_kind_per_day: by_kind,
        bulk_jobs_per_day: bulk * per_day,
        s3_requests_per_day: s3 * per_day,
        sqs_requests_per_day: sqs * per_day,
        warehouse_resumes_per_day: resumes * per_trigger_day,
        warehouse_seconds_per_day: seconds * per_trigger_day,
        rows_changed_per_day,
        usd_per_day,
        usd_per_million_changed_rows: (rows_changed_per_day > 0.0)
            .then(|| usd_per_day / (rows_changed_per_day / 1e6)),
    }
}

/// The phases as a Markdown table.
pub fn render(phases: &[PhaseCost], scenario: &CostScenario) -> String {
    let mut out = format!(
        "{} objects, {:.0} scheduled runs a day (measured: the 6 demo objects, {} runs per phase, \
         {} rows changed per object per run in the trickle phase; list prices of `sfpipe cost --print-prices`)\n\n",
        scenario.objects, scenario.runs_per_day, scenario.runs, scenario.trickle
    );
    out.push_str("| phase | API calls/day (% of limit) | Bulk jobs/day (% of 10,000) | S3 requests/day | SQS requests/day | warehouse resumes/day | warehouse s billed/day | rows changed/day | USD/day | USD per M changed rows |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let mut calls = Vec::new();
    for p in phases {
        let kinds: Vec<String> = p
            .api_calls_by_kind_per_day
            .iter()
            .map(|(k, n)| format!("{k} {n:.0}"))
            .collect();
        calls.push(format!("- {}: {}\n", p.phase, kinds.join(", ")));
        out.push_str(&format!(
            "| {} | {:.0} ({:.2} %) | {:.0} ({:.2} %) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} |\n",
            p.phase,
            p.api_calls_per_day,
            100.0 * p.api_calls_per_day / scenario.api_limit as f64,
            p.bulk_jobs_per_day,
            100.0 * p.bulk_jobs_per_day / DAILY_BULK_QUERY_JOBS as f64,
            p.s3_requests_per_day,
            p.sqs_requests_per_day,
            p.warehouse_resumes_per_day,
            p.warehouse_seconds_per_day,
            p.rows_changed_per_day,
            p.usd_per_day,
            p.usd_per_million_changed_rows
                .map_or("-".to_string(), |u| format!("{u:.2}")),
        ));
    }
    out.push_str("\nAPI calls a day by kind:\n");
    out.push_str(&calls.concat());
    out
}
