//! `sfpipe bench --brokers URL,...`: each broker against the in-process queue, on this machine.
//!
//! - Queue throughput: `messages` messages of a stage message's size sent by eight senders, then
//!   received ten at a time and deleted by eight workers (the queue suite's load: send, receive,
//!   delete), in messages per second.
//! - End to end: one org of `rows` rows per object loaded by the same pipeline, its stages' queues
//!   in process or on the broker, in rows per second, and checked exact.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use sfpipe_shared::contracts::{Mode, ObjectName};
use sfpipe_shared::local::pipeline::{LocalPipelineConfig, StagePorts};
use sfpipe_shared::local::{
    LocalPipeline, LocalQueue, LocalQueueConfig, NoEvents, directory_stores,
};
use sfpipe_shared::ports::{OutgoingMessage, Queue};
use sfpipe_shared::stages::loader::LoadRequest;
use sfpipe_simulator::{SimConfig, Simulator};

/// Where the queues live: `in-process`, or a broker's URL.
const IN_PROCESS: &str = "in-process";
const SENDERS: usize = 8;

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueThroughput {
    pub broker: String,
    pub messages: u64,
    pub sends_per_s: f64,
    pub receive_deletes_per_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineThroughput {
    pub broker: String,
    pub objects: usize,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// Every object equals Salesforce, field for field.
    pub exact: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerBench {
    pub queues: Vec<QueueThroughput>,
    pub pipelines: Vec<PipelineThroughput>,
}

/// A broker's name for the report, without its password.
fn label(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if url != IN_PROCESS => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

async fn queue_on(url: &str, name: &str) -> anyhow::Result<Arc<dyn Queue>> {
    if url == IN_PROCESS {
        let (queue, _) = LocalQueue::with_dead_letter_queue(name, LocalQueueConfig::default());
        return Ok(queue);
    }
    let config = sfpipe_shared::brokers::BrokerQueueConfig {
        visibility_timeout: Duration::from_secs(300),
        max_receives: 5,
        fifo: false,
    };
    Ok(sfpipe_shared::brokers::connect(url, name, Some(&format!("{name}-dlq")), config).await?)
}

async fn queue_throughput(url: &str, messages: u64) -> anyhow::Result<QueueThroughput> {
    let queue = queue_on(url, &format!("bench-{}", uuid::Uuid::new_v4().simple())).await?;
    // About an upload message's size.
    let body = "x".repeat(600);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS as u64 {
        let queue = queue.clone();
        let body = body.clone();
        senders.spawn(async move {
            for n in (sender..messages).step_by(SENDERS) {
                queue
                    .send(OutgoingMessage::new(body.clone(), format!("m-{n}")))
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = senders.join_next().await {
        done??;
    }
    let sent_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let queue = queue.clone();
        let received = received.clone();
        workers.spawn(async move {
            while received.load(std::sync::atomic::Ordering::SeqCst) < messages {
                for message in queue.receive(10, Duration::from_millis(100)).await? {
                    queue.delete(&message.receipt).await?;
                    received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let received_s = started.elapsed().as_secs_f64();
    Ok(QueueThroughput {
        broker: label(url),
        messages,
        sends_per_s: messages as f64 / sent_s,
        receive_deletes_per_s: messages as f64 / received_s,
    })
}

async fn pipeline_throughput(
    url: &str,
    rows: u64,
    objects: usize,
    page_records: u64,
) -> anyhow::Result<PipelineThroughput> {
    let sim_config = SimConfig {
        seed: 7,
        rows,
        bulk_polls_to_complete: 1,
        result_page_rows: page_records,
        ..SimConfig::default()
    };
    let simulator = Simulator::start_local(sim_config.clone())
        .await
        .context("starting the Salesforce simulator")?;
    let salesforce = crate::demo::simulator_client(&simulator, &sim_config)?;
    let names: Vec<String> = simulator.with_org(|org| {
        org.objects
            .iter()
            .take(objects)
            .map(|o| o.name.to_string())
            .collect()
    });
    let dir = tempfile::tempdir()?;
    let stores = directory_stores(dir.path())?;
    let mut config = LocalPipelineConfig::default();
    config.extract.page_records = page_records;
    let pipeline = if url == IN_PROCESS {
        LocalPipeline::new(salesforce, stores.blobs, stores.warehouse, config, None)
    } else {
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let ports = StagePorts::on_broker(
            url,
            &prefix,
            &config.limits,
            config.queues.max_receives,
            &|queue| queue,
        )
        .await?;
        LocalPipeline::on_queues(salesforce, stores.blobs, stores.warehouse, config, ports)
    };
    let pipeline = Arc::new(pipeline);
    let request = LoadRequest {
        objects: names
            .iter()
            .map(ObjectName::new)
            .collect::<Result<_, _>>()?,
        mode: Mode::Full,
        since: None,
        until: None,
    };
    let started = Instant::now();
    let result = pipeline
        .run(&request, Utc::now(), Arc::new(NoEvents))
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let only: Vec<&str> = names.iter().map(String::as_str).collect();
    let checks = simulator
        .with_org(|org| crate::verify::compare_objects(org, &stores.warehouse_path, &only))?;
    simulator.stop().await;
    let total = rows * names.len() as u64;
    Ok(PipelineThroughput {
        broker: label(url),
        objects: names.len(),
        rows: total,
        seconds,
        rows_per_s: total as f64 / seconds,
        exact: result.dead_letters.is_empty() && checks.iter().all(|c| c.is_exact()),
    })
}

/// Measures the in-process queue, then each broker.
pub async fn run(
    urls: &[String],
    messages: u64,
    rows: u64,
    objects: usize,
    page_records: u64,
) -> anyhow::Result<BrokerBench> {
    let mut all = vec![IN_PROCESS.to_string()];
    all.extend(urls.iter().cloned());
    let mut bench = BrokerBench {
        queues: Vec::new(),
        pipelines: Vec::new(),
    };
    for url in &all {
        eprintln!("bench: {} messages on {}", messages, label(url));
        bench.queues.push(queue_throughput(url, messages).await?);
        eprintln!("bench: {rows} rows x {objects} objects on {}", label(url));
        bench
            .pipelines
            .push(pipeline_throughput(url, rows, objects, page_records).await?);
    }
    Ok(bench)
}

/// The report: a table of each.
pub fn render(bench: &BrokerBench) -> String {
    let mut out =
        String::from("| queue | messages | sends/s | receives+deletes/s |\n|---|---:|---:|---:|\n");
    for q in &bench.queues {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} |\n",
            q.broker, q.messages, q.sends_per_s, q.receive_deletes_per_s
        ));
    }
    out.push_str(
        "\n| stages' queues | objects | rows | seconds | rows/s | exact |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    for p in &bench.pipelines {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} | {} |\n",
            p.broker,
            p.objects,
            p.rows,
            p.seconds,
            p.rows_per_s,
            if p.exact { "yes" } else { "NO" }
        ));
    }
    out
}
