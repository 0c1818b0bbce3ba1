//! The status report as a page: `sfpipe status --html FILE` writes it once (one self-contained
//! file, no script, no network needed to open it), `sfpipe status --serve` serves it on
//! 127.0.0.1 and reads the data again at each request (the page reloads itself every few
//! seconds). The same [`StatusReport`] as `status --json`, so the page and the JSON agree.

use std::fmt::Write as _;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use sfpipe_shared::contracts::rfc3339;
use sfpipe_shared::status::{DeadLetterStatus, ObjectStatus, QueueStatus, RunStatus, StatusReport};

use crate::status::StatusOptions;

/// How often a served page reloads itself.
const REFRESH_SECONDS: u32 = 5;

/// Text made safe inside HTML (element content and quoted attributes).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24}\
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccd;padding:.25rem .5rem;\
text-align:left;font-size:.9rem}th{background:#eef}.flow{display:flex;gap:.5rem;align-items:center;\
flex-wrap:wrap}.stage{border:2px solid #447;border-radius:.4rem;padding:.5rem .8rem;min-width:8rem}\
.stage b{display:block}.busy{color:#850;font-weight:600}.bad{color:#a00;font-weight:600}.ok{color:#070}.muted{color:#667}\
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600}";

/// How long ago, for people.
fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s} s ago"),
        s if s < 2 * 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn number(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_string(), |n| n.to_string())
}

/// The stage a run's next message waits for: where it sits in the flow.
fn waiting_at(run: &RunStatus) -> Option<&'static str> {
    match run.stage {
        "started" => Some("extract"),
        "extracted" | "uploading" => Some("upload"),
        "uploaded" => Some("merge"),
        _ => None,
    }
}

fn dead_letter_stage(queue: &str) -> &'static str {
    ["extract", "upload", "merge"]
        .into_iter()
        .find(|stage| queue.contains(stage))
        .unwrap_or("other")
}

/// A stage queue's counts, as the flow shows them under the stage.
fn queue_counts(queue: Option<&QueueStatus>) -> String {
    let Some(queue) = queue else {
        return "<span class=\"muted\">queue not read</span>".into();
    };
    let mut out = match &queue.counts {
        Some(c) => format!(
            "<span class=\"queue{busy}\" data-queue=\"{name}\" data-visible=\"{v}\" \
             data-in-flight=\"{f}\" data-delayed=\"{d}\">{v} queued &middot; {f} in flight \
             &middot; {d} delayed</span>",
            busy = if c.visible > 0 { " busy" } else { "" },
            name = escape(&queue.queue),
            v = c.visible,
            f = c.in_flight,
            d = c.delayed,
        ),
        None => format!(
            "<span class=\"bad\" data-queue=\"{}\">not counted: {}</span>",
            escape(&queue.queue),
            escape(queue.problem.as_deref().unwrap_or("unknown"))
        ),
    };
    if let Some(workers) = queue.concurrency {
        let _ = write!(
            out,
            "<br><span data-concurrency=\"{workers}\">{workers} {} at most</span>",
            if workers == 1 { "worker" } else { "workers" }
        );
    }
    out
}

fn flow(report: &StatusReport) -> String {
    let mut out = String::from("<section id=\"flow\"><h2>Flow</h2><div class=\"flow\">");
    out.push_str(
        "<div class=\"stage\" data-stage=\"job-loader\"><b>job-loader</b>one message per object</div>",
    );
    for stage in ["extract", "upload", "merge"] {
        let waiting = report
            .objects
            .iter()
            .filter_map(|o| o.runs.last())
            .filter(|run| waiting_at(run) == Some(stage) && run.problem.is_none())
            .count();
        let dead = report
            .objects
            .iter()
            .flat_map(|o| &o.dead_letters)
            .chain(&report.unattributed)
            .filter(|d| dead_letter_stage(&d.queue) == stage)
            .count();
        let queue = report.queues.iter().find(|q| q.stage == stage);
        let _ = write!(
            out,
            "&rarr;<div class=\"stage\" data-stage=\"{stage}\"><b>{stage}</b>{counts}<br>\
             <span data-waiting=\"{waiting}\">{waiting} {runs} waiting</span><br>\
             <span class=\"{}\" data-dead-letters=\"{dead}\">{dead} {letters}</span></div>",
            if dead > 0 { "bad" } else { "muted" },
            counts = queue_counts(queue),
            runs = if waiting == 1 { "run" } else { "runs" },
            letters = if dead == 1 {
                "dead letter"
            } else {
                "dead letters"
            },
        );
    }
    let read_at = report.queues.iter().map(|q| q.read_at).max();
    let _ = write!(
        out,
        "</div><p class=\"muted\">Queued, in flight and delayed: each stage's queue, as its \
         service counted it{}; a queue that stays queued while its workers are all busy is \
         back pressure. Runs waiting: each object's last run, by the stage its next message is \
         for.</p></section>",
        match read_at {
            Some(at) => format!(" at <span id=\"queues-read-at\">{}</span>", rfc3339(at)),
            None => " (not read: a stack's status needs its --queue-url flags)".into(),
        }
    );
    out
}

fn object_row(object: &ObjectStatus, now: DateTime<Utc>, link: &str) -> String {
    let last = object.runs.last();
    let merged = object.runs.iter().rev().find_map(|r| r.merged_at);
    let check = match last.and_then(|r| r.problem.as_deref()) {
        Some(problem) => format!("<span class=\"bad\">{}</span>", escape(problem)),
        None if last.is_some() => "<span class=\"ok\">counts agree</span>".into(),
        None => "–".into(),
    };
    let cost = last.map_or_else(|| "–".to_string(), run_cost);
    format!(
        "<tr data-object=\"{name}\"><td><a href=\"{link}\">{name}</a></td><td>{run}</td>\
         <td data-field=\"stage\">{stage}</td><td>{fresh}</td><td data-field=\"rows_read\">{read}</td>\
         <td data-field=\"rows_changed\">{changed}</td><td>{check}</td>\
         <td data-field=\"holes\">{holes}</td><td data-field=\"dead_letters\">{dead}</td><td>{cost}</td></tr>",
        name = escape(&object.object),
        run = last.map_or_else(|| "none".into(), |r| escape(&r.run_id)),
        stage = last.map_or("–", |r| r.stage),
        fresh = merged.map_or_else(|| "never merged".into(), |at| ago(at, now)),
        read = number(last.and_then(|r| r.rows_read)),
        changed = number(last.and_then(|r| r.rows_changed)),
        holes = object.holes.len(),
        dead = object.dead_letters.len(),
    )
}

fn window(run: &RunStatus) -> String {
    match &run.window {
        Some(w) => format!(
            "{} → {}",
            w.since.map_or_else(|| "the beginning".into(), rfc3339),
            rfc3339(w.until)
        ),
        None => "–".into(),
    }
}

/// Where a page's links go: within one static file, or to the server's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Links {
    Static,
    Served,
}

/// A run's check: `ok`, or its problem.
fn run_check(run: &RunStatus) -> String {
    run.problem.as_deref().map_or_else(
        || "<span class=\"ok\">ok</span>".to_string(),
        |p| format!("<span class=\"bad\">{}</span>", escape(p)),
    )
}

/// What a run cost, from its usage records.
fn run_cost(run: &RunStatus) -> String {
    run.usage
        .as_ref()
        .map_or_else(|| "–".into(), |u| escape(&u.summary()))
}

/// One run's window, Salesforce job, merge, check and cost.
fn run_summary(run: &RunStatus) -> String {
    format!(
        "<table class=\"run\"><tr><th>window</th><td>{window}</td></tr>\
         <tr><th>mode</th><td>{mode}</td></tr><tr><th>Salesforce job</th><td>{job}</td></tr>\
         <tr><th>stage reached</th><td data-field=\"stage\">{stage}</td></tr>\
         <tr><th>records Salesforce counted</th><td>{sf_records}</td></tr>\
         <tr><th>merge</th><td>{merge}</td></tr><tr><th>check</th><td>{check}</td></tr>\
         <tr><th>cost</th><td>{cost}</td></tr></table>",
        window = escape(&window(run)),
        mode = run.mode.map_or_else(|| "–".into(), |m| format!("{m:?}")),
        job = escape(run.job_id.as_deref().unwrap_or("–")),
        stage = run.stage,
        sf_records = number(run.salesforce_records),
        merge = match run.merged_at {
            Some(at) => format!(
                "merged at {}: {} rows read, {} changed{}",
                rfc3339(at),
                number(run.rows_read),
                number(run.rows_changed),
                run.seconds
                    .map_or_else(String::new, |s| format!(", {s:.1} s after the job started"))
            ),
            None => "not merged yet".into(),
        },
        check = run_check(run),
        cost = run_cost(run),
    )
}

/// A run's parts, with their records and checksums, and its dead letters.
fn run_parts(object: &ObjectStatus, run: &RunStatus) -> String {
    let mut out = String::from(
        "<table class=\"parts\"><tr><th>part</th><th>records</th><th>bytes stored</th>\
         <th>CRC-64/NVME</th><th>key</th></tr>",
    );
    for part in &run.parts {
        let _ = write!(
            out,
            "<tr data-part=\"{n}\"><td>{n}</td><td data-field=\"records\">{records}</td>\
             <td>{bytes}</td><td data-field=\"crc64nvme\"><code>{crc}</code></td>\
             <td><code>{key}</code></td></tr>",
            n = part.part,
            records = part.records,
            bytes = part.bytes,
            crc = escape(if part.crc64nvme.is_empty() {
                "–"
            } else {
                &part.crc64nvme
            }),
            key = escape(&part.key),
        );
    }
    if run.parts.is_empty() {
        out.push_str("<tr><td colspan=\"5\" class=\"muted\">no part stored yet</td></tr>");
    }
    out.push_str("</table>");
    let letters: Vec<_> = object
        .dead_letters
        .iter()
        .filter(|d| d.run_id.as_deref() == Some(run.run_id.as_str()))
        .collect();
    if !letters.is_empty() {
        out.push_str("<h4>Dead letters</h4>");
        out.push_str(&dead_letter_list(letters, false));
    }
    out
}

/// Dead letters as a list: each one's queue (`with_run`: and its run) and reason.
fn dead_letter_list<'a>(
    letters: impl IntoIterator<Item = &'a DeadLetterStatus>,
    with_run: bool,
) -> String {
    let mut out = String::from("<ul class=\"dead-letters\">");
    for letter in letters {
        let run = if with_run {
            format!(" (run {})", escape(letter.run_id.as_deref().unwrap_or("?")))
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<li><b>{}</b>{run}: <span class=\"reason\">{}</span></li>",
            escape(&letter.queue),
            escape(&letter.reason)
        );
    }
    out.push_str("</ul>");
    out
}

/// A form that traces a row of `object` by its Id (on the server), or the command that does
/// (in a static file).
fn trace_form(object: &str, action: &str, links: Links) -> String {
    match links {
        Links::Served => format!(
            "<h4>Trace a row</h4><form action=\"{action}\" method=\"get\">\
             <input type=\"hidden\" name=\"object\" value=\"{name}\">\
             <label>Salesforce Id <input name=\"id\" required></label> \
             <button type=\"submit\">Trace</button></form>",
            name = escape(object),
        ),
        Links::Static => format!(
            "<p class=\"muted\">Trace a row of these parts: <code>sfpipe trace --object {} \
             --id ID</code> with this report's source.</p>",
            escape(object)
        ),
    }
}

/// One object's runs, holes and dead letters.
fn object_detail(object: &ObjectStatus, links: Links) -> String {
    let mut out = format!(
        "<h3>{name}</h3><p>Watermark: {watermark}. Open holes: {holes}.</p>\
         <table><tr><th>run</th><th>mode</th><th>window</th><th>stage</th><th>Salesforce job</th>\
         <th>parts</th><th>records (Salesforce / parts)</th><th>rows read / changed</th>\
         <th>seconds</th><th>check</th><th>cost</th></tr>",
        name = escape(&object.object),
        watermark = object.watermark.map_or_else(
            || escape(object.watermark_unknown.as_deref().unwrap_or("none yet")),
            rfc3339
        ),
        holes = if object.holes.is_empty() {
            "none".to_string()
        } else {
            object
                .holes
                .iter()
                .map(|h| escape(&h.run_id))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    for run in object.runs.iter().rev() {
        let _ = write!(
            out,
            "<tr data-run=\"{id}\"><td><a href=\"{link}\">{id}</a></td><td>{mode}</td><td>{window}</td><td>{stage}</td>\
             <td>{job}</td><td>{stored} of {expected}</td><td>{sf_records} / {in_parts}</td>\
             <td>{read} / {changed}</td><td>{seconds}</td><td>{check}</td><td>{cost}</td></tr>",
            id = escape(&run.run_id),
            link = match links {
                Links::Static => format!("#run-{}-{}", escape(&object.object), escape(&run.run_id)),
                Links::Served => format!("{}/run/{}", escape(&object.object), escape(&run.run_id)),
            },
            mode = run.mode.map_or_else(|| "–".into(), |m| format!("{m:?}")),
            window = escape(&window(run)),
            stage = run.stage,
            job = escape(run.job_id.as_deref().unwrap_or("–")),
            stored = run.parts_stored,
            expected = run
                .parts_expected
                .map_or_else(|| "?".into(), |n| n.to_string()),
            sf_records = number(run.salesforce_records),
            in_parts = run.records_in_parts,
            read = number(run.rows_read),
            changed = number(run.rows_changed),
            seconds = run
                .seconds
                .map_or_else(|| "–".into(), |s| format!("{s:.1}")),
            check = run_check(run),
            cost = run_cost(run),
        );
    }
    out.push_str("</table>");
    if links == Links::Static {
        for run in object.runs.iter().rev() {
            let _ = write!(
                out,
                "<details class=\"run\" id=\"run-{object}-{id}\"><summary>Run {id}: {parts} \
                 parts</summary>{detail}</details>",
                object = escape(&object.object),
                id = escape(&run.run_id),
                parts = run.parts.len(),
                detail = run_parts(object, run),
            );
        }
        out.push_str(&trace_form(&object.object, "", Links::Static));
    }
    if !object.dead_letters.is_empty() {
        out.push_str("<h4>Dead letters</h4>");
        out.push_str(&dead_letter_list(&object.dead_letters, true));
    }
    out
}

fn page(title: &str, body: &str, read_at: DateTime<Utc>, refresh: bool) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
         <title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>\
         <p class=\"muted\" id=\"read-at\">Data read at {read_at}{note}.</p>{body}</body></html>",
        title = escape(title),
        refresh = if refresh {
            format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">")
        } else {
            String::new()
        },
        read_at = rfc3339(read_at),
        note = if refresh {
            format!("; this page reloads every {REFRESH_SECONDS} s")
        } else {
            String::new()
        },
    )
}

/// The whole report on one page: the flow, one row per object, and each object's detail in a
/// section that opens without a script. `served`: links go to the server's object pages, and
/// the page reloads itself.
pub fn render(report: &StatusReport, source: &str, read_at: DateTime<Utc>, served: bool) -> String {
    let mut body = flow(report);
    body.push_str(
        "<section id=\"objects\"><h2>Objects</h2><table><tr><th>object</th><th>last run</th>\
         <th>stage reached</th><th>freshness (last merge)</th><th>rows read</th>\
         <th>rows changed</th><th>receipt's check</th><th>open holes</th><th>dead letters</th>\
         <th>cost of the last run</th></tr>",
    );
    for object in &report.objects {
        let link = if served {
            format!("object/{}", escape(&object.object))
        } else {
            format!("#object-{}", escape(&object.object))
        };
        body.push_str(&object_row(object, read_at, &link));
    }
    body.push_str("</table></section>");
    if !served {
        body.push_str("<section id=\"details\"><h2>Runs</h2>");
        for object in &report.objects {
            let _ = write!(
                body,
                "<details id=\"object-{}\"><summary>{}</summary>{}</details>",
                escape(&object.object),
                escape(&object.object),
                object_detail(object, Links::Static)
            );
        }
        body.push_str("</section>");
    }
    if !report.unattributed.is_empty() {
        body.push_str("<section><h2>Dead letters naming no object</h2>");
        body.push_str(&dead_letter_list(&report.unattributed, false));
        body.push_str("</section>");
    }
    page(&format!("sfpipe: {source}"), &body, read_at, served)
}

/// One object's page, or `None` when the report has no such object.
pub fn render_object(
    report: &StatusReport,
    object: &str,
    source: &str,
    read_at: DateTime<Utc>,
) -> Option<String> {
    let found = report
        .objects
        .iter()
        .find(|o| o.object.eq_ignore_ascii_case(object))?;
    let body = format!(
        "<p><a href=\"../\">All objects</a></p>{}{}",
        object_detail(found, Links::Served),
        trace_form(&found.object, "../trace", Links::Served),
    );
    Some(page(
        &format!("sfpipe: {} in {source}", found.object),
        &body,
        read_at,
        true,
    ))
}

/// One run's page, or why there is none (no such object, or no such run among those read).
pub fn render_run(
    report: &StatusReport,
    object: &str,
    run_id: &str,
    source: &str,
    read_at: DateTime<Utc>,
) -> Result<String, String> {
    let found = report
        .objects
        .iter()
        .find(|o| o.object.eq_ignore_ascii_case(object))
        .ok_or_else(|| format!("no object {object:?} in this pipeline's data"))?;
    let run = found
        .runs
        .iter()
        .find(|r| r.run_id == run_id)
        .ok_or_else(|| {
            format!(
                "no run {run_id:?} among {}'s last {} runs read (sfpipe status --last N reads more)",
                found.object,
                found.runs.len()
            )
        })?;
    let body = format!(
        "<p><a href=\"../../../\">All objects</a> &middot; <a href=\"../../{name}\">{name}</a></p>\
         {summary}{parts}{trace}",
        name = escape(&found.object),
        summary = run_summary(run),
        parts = run_parts(found, run),
        trace = trace_form(&found.object, "../../../trace", Links::Served),
    );
    Ok(page(
        &format!("sfpipe: {} run {} in {source}", found.object, run.run_id),
        &body,
        read_at,
        true,
    ))
}

/// What the page says its data comes from.
pub fn source_of(options: &StatusOptions) -> String {
    match (&options.dir, &options.bucket) {
        (Some(dir), _) => dir.display().to_string(),
        (None, Some(bucket)) => format!("s3://{bucket}/{}", options.prefix),
        (None, None) => "nowhere".into(),
    }
}

/// Serves the page on `address` until the process is stopped: `/` the report, `/object/NAME`
/// an object's runs; anything else, or an object the data does not hold, a plain 404 that says
/// so. Each request reads the data again.
pub async fn serve(options: StatusOptions, address: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    eprintln!("sfpipe status: serving http://{}/", listener.local_addr()?);
    serve_on(listener, options).await
}

/// [`serve`] on a listener already bound (tests bind a free port first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    options: StatusOptions,
) -> anyhow::Result<()> {
    serve_with(listener, options, None).await
}

/// What the page's handlers read from: the status flags, and for a stack its AWS configuration
/// (`None`: from the environment).
struct PageSource {
    options: StatusOptions,
    aws: Option<aws_config::SdkConfig>,
}

/// [`serve_on`] with a stack's AWS configuration.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    options: StatusOptions,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<()> {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{Html, IntoResponse, Response};

    let source = std::sync::Arc::new(PageSource { options, aws });
    async fn read(source: &PageSource) -> Result<StatusReport, Response> {
        crate::status::status_with(&source.options, source.aws.clone())
            .await
            .map_err(|error| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("sfpipe status could not read its data: {error:#}"),
                )
                    .into_response()
            })
    }
    let index = |State(source): State<std::sync::Arc<PageSource>>| async move {
        match read(&source).await {
            Ok(report) => Html(render(
                &report,
                &source_of(&source.options),
                Utc::now(),
                true,
            ))
            .into_response(),
            Err(response) => response,
        }
    };
    let object = |State(source): State<std::sync::Arc<PageSource>>, Path(name): Path<String>| async move {
        match read(&source).await {
            Ok(report) => {
                match render_object(&report, &name, &source_of(&source.options), Utc::now()) {
                    Some(page) => Html(page).into_response(),
                    None => (
                        StatusCode::NOT_FOUND,
                        format!("no object {name:?} in this pipeline's data"),
                    )
                        .into_response(),
                }
            }
            Err(response) => response,
        }
    };
    let run = |State(source): State<std::sync::Arc<PageSource>>,
               Path((name, run_id)): Path<(String, String)>| async move {
        match read(&source).await {
            Ok(report) => {
                match render_run(
                    &report,
                    &name,
                    &run_id,
                    &source_of(&source.options),
                    Utc::now(),
                ) {
                    Ok(page) => Html(page).into_response(),
                    Err(missing) => (StatusCode::NOT_FOUND, missing).into_response(),
                }
            }
            Err(response) => response,
        }
    };
    let trace = |State(source): State<std::sync::Arc<PageSource>>,
                 axum::extract::Query(query): axum::extract::Query<TraceQuery>| async move {
        let Some(dir) = source.options.dir.clone() else {
            return (
                StatusCode::NOT_FOUND,
                "trace reads a local directory; for a stack, run sfpipe trace with its flags",
            )
                .into_response();
        };
        let found = crate::trace::trace(&crate::trace::TraceOptions {
            object: query.object.clone(),
            id: query.id.clone(),
            dir,
            json: false,
        })
        .await;
        match found {
            Ok(trace) => Html(page(
                &format!("sfpipe: {} {}", query.object, query.id),
                &format!(
                    "<p><a href=\"object/{}\">Back to {}</a></p><pre id=\"trace\">{}</pre>",
                    escape(&query.object),
                    escape(&query.object),
                    escape(&trace.render())
                ),
                Utc::now(),
                false,
            ))
            .into_response(),
            Err(error) => (
                StatusCode::NOT_FOUND,
                format!(
                    "no trace of {:?} in {:?}: {error:#}",
                    query.id, query.object
                ),
            )
                .into_response(),
        }
    };
    let app = axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/object/{name}", axum::routing::get(object))
        .route("/object/{name}/run/{run}", axum::routing::get(run))
        .route("/trace", axum::routing::get(trace))
        .fallback(|| async { (StatusCode::NOT_FOUND, "nothing here: the report is at /") })
        .with_state(source);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The trace form's fields.
#[derive(serde::Deserialize)]
struct TraceQuery {
    object: String,
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
