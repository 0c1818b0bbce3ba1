//! The status page (`sfpipe status --html`, `--serve`) after a demo run: what a person reads
//! there equals `sfpipe status --json`, a dead letter shows its reason, an object's page lists
//! its runs, and anything the data does not hold answers a plain 404 that says so.

use std::net::Ipv4Addr;

use sfpipe_cli::demo::{DemoOptions, run_demo};
use sfpipe_cli::status::{StatusOptions, status};
use sfpipe_shared::ports::BlobStore;
use sfpipe_shared::status::{DeadLetter, dead_letter_key};

fn options(dir: &std::path::Path) -> StatusOptions {
    StatusOptions {
        json: true,
        serve: true,
        port: 0,
        ..StatusOptions::for_dir(dir)
    }
}

/// The page of `dir` served on a free port of 127.0.0.1: its base URL, and the server's task.
async fn serve(dir: &std::path::Path) -> (String, tokio::task::JoinHandle<impl Sized>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a free port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(sfpipe_cli::status_page::serve_on(listener, options(dir)));
    (base, server)
}

/// The table row of `page` that starts with `start`, up to its `</tr>`.
fn row<'a>(page: &'a str, start: &str) -> &'a str {
    let at = page
        .find(start)
        .unwrap_or_else(|| panic!("no row {start} in: {page}"));
    &page[at..at + page[at..].find("</tr>").expect("row end")]
}

/// A demo's directory, with one dead letter kept as the local pipeline keeps them.
async fn demo_with_a_dead_letter() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    run_demo(&DemoOptions::new(dir.path(), 40, 3))
        .await
        .expect("demo");
    let blobs = sfpipe_shared::local::FsBlobStore::new(dir.path().join("blobs")).expect("blobs");
    let letter = DeadLetter {
        queue: "merge-dlq".into(),
        body: r#"{"object":"Contact","run_id":"r-gone"}"#.into(),
        reason: "merge stage, object Contact: the part's header <Id,Name> is not the table's"
            .into(),
    };
    blobs
        .put_if_absent(
            &dead_letter_key(&letter.queue, &letter.body),
            serde_json::to_vec(&letter).expect("json").into(),
        )
        .await
        .expect("keep the letter");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_page_shows_what_status_json_says() {
    let dir = demo_with_a_dead_letter().await;
    let report = status(&options(dir.path())).await.expect("status");
    let (base, server) = serve(dir.path()).await;
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("http-equiv=\"refresh\""),
        "the page reloads itself"
    );
    assert!(
        page.contains("Data read at"),
        "it says when its data was read"
    );
    for object in &report.objects {
        let run = object.runs.last().expect("a run");
        let row_html = row(&page, &format!("<tr data-object=\"{}\">", object.object));
        assert!(
            row_html.contains(&format!(
                "data-field=\"rows_read\">{}<",
                run.rows_read.expect("rows read")
            )),
            "{row_html}"
        );
        assert!(
            row_html.contains(&format!("data-field=\"stage\">{}<", run.stage)),
            "{row_html}"
        );
        assert!(
            row_html.contains(&format!(
                "data-field=\"dead_letters\">{}<",
                object.dead_letters.len()
            )),
            "{row_html}"
        );
    }
    assert!(page.contains("data-stage=\"merge\""));
    assert!(
        page.contains("data-dead-letters=\"1\""),
        "the merge stage shows its dead letter"
    );
    // Each stage's queue as the demo left it (kept in its directory), with its workers.
    assert_eq!(report.queues.len(), 3, "{}", report.render());
    for queue in &report.queues {
        let counts = queue.counts.expect("counted");
        assert_eq!(counts.total(), 0, "a finished run leaves its queues empty");
        assert!(
            page.contains(&format!(
                "data-queue=\"{}\" data-visible=\"0\" data-in-flight=\"0\" data-delayed=\"0\"",
                queue.queue
            )),
            "{} in the flow: {page}",
            queue.queue
        );
        let workers = queue.concurrency.expect("a local run's workers");
        assert!(page.contains(&format!("data-concurrency=\"{workers}\"")));
    }

    let contact = client
        .get(format!("{base}/object/Contact"))
        .send()
        .await
        .expect("GET /object/Contact");
    assert_eq!(contact.status(), 200);
    let contact = contact.text().await.expect("text");
    assert!(
        contact.contains("the part&#39;s header &lt;Id,Name&gt; is not the table&#39;s"),
        "the reason, escaped: {contact}"
    );
    let run = report
        .objects
        .iter()
        .find(|o| o.object == "Contact")
        .and_then(|o| o.runs.last())
        .expect("Contact's run");
    let run_id = &run.run_id;
    assert!(contact.contains(&format!("data-run=\"{run_id}\"")));

    // A run's page: its parts, each with its records and checksum as the manifests say.
    assert!(contact.contains(&format!("href=\"Contact/run/{run_id}\"")));
    assert!(!run.parts.is_empty(), "a merged run has parts");
    let run_page = client
        .get(format!("{base}/object/Contact/run/{run_id}"))
        .send()
        .await
        .expect("GET a run");
    assert_eq!(run_page.status(), 200);
    let run_page = run_page.text().await.expect("text");
    for part in &run.parts {
        assert!(!part.crc64nvme.is_empty(), "{part:?}");
        let row_html = row(&run_page, &format!("<tr data-part=\"{}\">", part.part));
        assert!(
            row_html.contains(&format!("data-field=\"records\">{}<", part.records)),
            "{row_html}"
        );
        assert!(row_html.contains(&part.crc64nvme), "{row_html}");
    }
    assert!(
        run_page.contains("action=\"../../../trace\""),
        "a row of the run's parts is traced from its page"
    );

    // A row traced from the object's page (its form is a plain GET).
    assert!(contact.contains("action=\"../trace\""));
    let id: String = rusqlite::Connection::open(dir.path().join("warehouse.sqlite"))
        .expect("warehouse")
        .query_row("SELECT \"Id\" FROM \"Contact\" LIMIT 1", [], |row| {
            row.get(0)
        })
        .expect("a Contact row");
    let traced = client
        .get(format!("{base}/trace?object=Contact&id={id}"))
        .send()
        .await
        .expect("GET /trace");
    assert_eq!(traced.status(), 200);
    let traced = traced.text().await.expect("text");
    assert!(traced.contains("<pre id=\"trace\">"), "{traced}");
    assert!(traced.contains(run_id.as_str()), "the row's run: {traced}");

    for (path, code, says) in [
        ("/trace?object=Contact&id=003NOPE", 404, "003NOPE"),
        ("/trace?object=Contact", 400, "missing field `id`"),
        (
            "/object/Nope__c",
            404,
            "no object \"Nope__c\" in this pipeline's data",
        ),
        (
            "/object/Contact/run/r-nope",
            404,
            "no run \"r-nope\" among Contact's last",
        ),
        ("/object/Nope__c/run/r-nope", 404, "no object \"Nope__c\""),
        ("/../../etc/passwd", 404, "nothing here"),
        ("/blobs/", 404, "nothing here"),
    ] {
        let answer = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(answer.status(), code, "{path}");
        let text = answer.text().await.expect("text");
        assert!(text.contains(says), "{path}: {text}");
        assert!(!text.contains("panicked"), "{path}: {text}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_report_needs_no_script_and_no_network() {
    let dir = demo_with_a_dead_letter().await;
    let report = status(&options(dir.path())).await.expect("status");
    let page = sfpipe_cli::status_page::render(&report, "demo", chrono::Utc::now(), false);
    assert!(!page.contains("<script"), "no script");
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "a report does not reload"
    );
    for needle in ["http://", "https://", "src=", "@import"] {
        assert!(
            !page.contains(needle),
            "the report fetches nothing ({needle})"
        );
    }
    // Each object's runs open in place, without a script.
    for object in &report.objects {
        assert!(page.contains(&format!("<details id=\"object-{}\">", object.object)));
        assert!(page.contains(&format!("href=\"#object-{}\"", object.object)));
    }
    assert!(page.contains("is not the table&#39;s"));
    // Each run's parts open in place too, with their checksums.
    for object in &report.objects {
        for run in &object.runs {
            assert!(page.contains(&format!(
                "<details class=\"run\" id=\"run-{}-{}\">",
                object.object, run.run_id
            )));
            for part in &run.parts {
                assert!(page.contains(&part.crc64nvme), "{part:?}");
            }
        }
    }
}

/// While a run goes on, the flow shows what waits where: the job-loader's messages in the
/// extract queue, then the parts' messages in the upload queue once extract has run, as the
/// run keeps its queue counts in its directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_shows_what_waits_in_each_queue_during_a_run() {
    use sfpipe_shared::stages::Stage;
    use sfpipe_tests::harness::{Harness, HarnessOptions};
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account", "Contact", "Opportunity"],
        page_records: 10,
        ..HarnessOptions::default()
    })
    .await;
    let dir = harness.blobs_path.parent().expect("the run's directory");
    let request = sfpipe_shared::stages::loader::LoadRequest {
        objects: harness.objects.clone(),
        mode: sfpipe_shared::contracts::Mode::Incremental,
        since: None,
        until: None,
    };
    harness
        .pipeline
        .load(
            &request,
            chrono::Utc::now(),
            &sfpipe_shared::local::NoEvents,
        )
        .await
        .expect("the job-loader");
    let shown = |stage: &str, visible: usize| {
        format!(
            "data-stage=\"{stage}\"><b>{stage}</b><span class=\"queue{}\"",
            if visible > 0 { " busy" } else { "" }
        )
    };
    let read = async || {
        sfpipe_cli::queue_counts::keep(harness.pipeline.clone(), dir)
            .finish()
            .await;
        let report = status(&options(dir)).await.expect("status");
        let page = sfpipe_cli::status_page::render(&report, "run", chrono::Utc::now(), true);
        let visible = |stage: &str| {
            report
                .queues
                .iter()
                .find(|q| q.stage == stage)
                .and_then(|q| q.counts)
                .map(|c| c.visible)
        };
        (
            visible("extract"),
            visible("upload"),
            visible("merge"),
            page,
        )
    };
    let (extract, upload, merge, page) = read().await;
    assert_eq!((extract, upload, merge), (Some(3), Some(0), Some(0)));
    assert!(page.contains(&shown("extract", 3)), "{page}");
    assert!(page.contains("data-visible=\"3\""), "{page}");

    harness
        .pipeline
        .drain_stage(
            Stage::Extract,
            2,
            std::sync::Arc::new(sfpipe_shared::local::NoEvents),
        )
        .await;
    let parts = harness.pipeline.pending(Stage::Upload).len();
    assert!(parts >= 3, "each object's parts wait for upload");
    let (extract, upload, merge, page) = read().await;
    assert_eq!((extract, upload, merge), (Some(0), Some(parts), Some(0)));
    assert!(page.contains(&shown("upload", parts)), "{page}");
    assert!(
        page.contains(&format!("data-visible=\"{parts}\"")),
        "{page}"
    );
}

/// Headless Chromium (Debian's `chromium`, installed by `scripts/servers`), or
/// `SFPIPE_CHROMIUM`.
fn chromium() -> String {
    std::env::var("SFPIPE_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// What Chromium shows at `url`, as its DOM after the page loaded (no script runs on the page;
/// this is what a person's browser lays out), and a screenshot saved to `screenshot`.
fn browse(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir().expect("a browser profile");
    let mut command = std::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--window-size=1400,1000", "--hide-scrollbars"]);
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let output = command.arg(url).output().unwrap_or_else(|e| {
        panic!(
            "chromium could not be started ({e}): run ./scripts/test, which installs Debian's \
             chromium where it is missing (as root), or apt-get install chromium, or set \
             SFPIPE_CHROMIUM to a Chromium binary"
        )
    });
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The page in a real browser, during a demo run and after it: the objects, counts equal to
/// `status --json`, the flow's queues, the dead letter's reason, a run's parts and a trace; a screenshot is saved beside the
/// test's build (`status-page.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_the_objects_their_counts_a_reason_and_a_trace() {
    let dir = demo_with_a_dead_letter().await;
    let (base, server) = serve(dir.path()).await;
    // During the demo's second run the page answers, whatever the run has reached.
    let again = DemoOptions::new(dir.path(), 40, 3);
    let second = tokio::spawn(async move { run_demo(&again).await.map(|_| ()) });
    let url = format!("{base}/");
    let during = tokio::task::spawn_blocking({
        let url = url.clone();
        move || browse(&url, None)
    })
    .await
    .expect("browser");
    assert!(during.contains("Data read at"), "{during}");
    assert!(during.contains("data-object=\"Account\""), "{during}");
    assert!(
        during.contains("data-stage=\"upload\"><b>upload</b><span class=\"queue"),
        "the flow counts the upload queue during the run: {during}"
    );
    second
        .await
        .expect("demo task")
        .expect("the second demo run");

    let report = status(&options(dir.path())).await.expect("status");
    let shown = tokio::task::spawn_blocking({
        let url = url.clone();
        move || browse(&url, None)
    })
    .await
    .expect("browser");
    for object in &report.objects {
        let run = object.runs.last().expect("a run");
        let row_html = row(&shown, &format!("<tr data-object=\"{}\">", object.object));
        for (field, value) in [
            ("rows_read", run.rows_read.expect("rows read").to_string()),
            (
                "rows_changed",
                run.rows_changed.expect("rows changed").to_string(),
            ),
            ("dead_letters", object.dead_letters.len().to_string()),
        ] {
            assert!(
                row_html.contains(&format!("data-field=\"{field}\">{value}<")),
                "{field} of {}: {row_html}",
                object.object
            );
        }
    }
    let contact = tokio::task::spawn_blocking({
        let url = format!("{base}/object/Contact");
        move || browse(&url, None)
    })
    .await
    .expect("browser");
    assert!(contact.contains("is not the table's"), "{contact}");
    // A run's page: its parts, each with its checksum, as a person sees them.
    let run = report
        .objects
        .iter()
        .find(|o| o.object == "Contact")
        .and_then(|o| o.runs.last())
        .expect("Contact's run")
        .clone();
    let run_page = tokio::task::spawn_blocking({
        let url = format!("{base}/object/Contact/run/{}", run.run_id);
        move || browse(&url, None)
    })
    .await
    .expect("browser");
    for part in &run.parts {
        assert!(
            run_page.contains(&format!("<tr data-part=\"{}\">", part.part))
                && run_page.contains(&part.crc64nvme),
            "{part:?}: {run_page}"
        );
    }
    let id: String = rusqlite::Connection::open(dir.path().join("warehouse.sqlite"))
        .expect("warehouse")
        .query_row("SELECT \"Id\" FROM \"Contact\" LIMIT 1", [], |row| {
            row.get(0)
        })
        .expect("a Contact row");
    let traced = tokio::task::spawn_blocking({
        let url = format!("{base}/trace?object=Contact&id={id}");
        move || browse(&url, None)
    })
    .await
    .expect("browser");
    assert!(traced.contains("<pre id=\"trace\">"), "{traced}");
    assert!(traced.contains(&id), "{traced}");

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    tokio::task::spawn_blocking({
        let screenshot = screenshot.clone();
        move || browse(&url, Some(&screenshot))
    })
    .await
    .expect("browser");
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    server.abort();
}
