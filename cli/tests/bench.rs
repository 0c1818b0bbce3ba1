//! `sfpipe bench` end to end on a small object (no peer): every measured process reports, and the
//! table, the JSON and the chart are written.

use std::process::Command;

#[test]
fn bench_measures_every_stage_and_writes_its_results() {
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new(env!("CARGO_BIN_EXE_sfpipe"))
        .args([
            "bench",
            "--rows",
            "3000",
            "--no-peer",
            "--page-records",
            "1000",
        ])
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run sfpipe bench");
    assert!(status.success());
    let rounds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).expect("json"))
            .expect("valid json");
    let round = &rounds[0];
    assert_eq!(round["rows"], 3000);
    for role in ["download", "gzip", "extract", "upload", "merge"] {
        let m = &round[role];
        // Every role handled every row: extract's job counted them, upload stored them, merge's
        // table holds them.
        assert_eq!(m["rows"], 3000, "{role}: {round}");
        assert!(m["wall_s"].as_f64().unwrap() > 0.0, "{role}: {m}");
        assert!(m["peak_rss_mb"].as_f64().unwrap() > 1.0, "{role}: {m}");
    }
    assert!(round["csv_bytes"].as_u64().unwrap() > 3000 * 100);
    let table = std::fs::read_to_string(out.path().join("results.md")).expect("table");
    assert!(table.contains("sfpipe upload") && table.contains("Lambda cost per million rows"));
    // The chart's font is built in: the chart is drawn on any machine.
    let chart = std::fs::metadata(out.path().join("throughput.png")).expect("the chart");
    assert!(chart.len() > 10_000, "a chart of {} bytes", chart.len());
}

/// The peer's script is found from the binary's location, not a path compiled in: beside an
/// installed binary's `share/sfpipe/`, or in `bench/` above a checkout's `target/`; elsewhere the
/// error says to give `--peer-script`.
#[test]
fn the_peer_script_is_found_from_the_binary_location() {
    use sfpipe_cli::bench::find_peer_script;
    let root = tempfile::tempdir().expect("tempdir");
    let install = root.path().join("usr");
    std::fs::create_dir_all(install.join("bin")).expect("bin");
    std::fs::create_dir_all(install.join("share/sfpipe")).expect("share");
    std::fs::write(install.join("share/sfpipe/simple_salesforce_bench.py"), "").expect("script");
    let found = find_peer_script(None, &install.join("bin/sfpipe")).expect("installed");
    assert!(
        found.ends_with("share/sfpipe/simple_salesforce_bench.py"),
        "{found:?}"
    );

    let checkout = root.path().join("src/sfpipe");
    std::fs::create_dir_all(checkout.join("bench")).expect("bench");
    std::fs::create_dir_all(checkout.join("target/release")).expect("target");
    std::fs::write(checkout.join("bench/simple_salesforce_bench.py"), "").expect("script");
    let found = find_peer_script(None, &checkout.join("target/release/sfpipe")).expect("checkout");
    assert_eq!(found, checkout.join("bench/simple_salesforce_bench.py"));

    let elsewhere = root.path().join("opt/bin/sfpipe");
    let error = find_peer_script(None, &elsewhere).expect_err("nowhere");
    assert!(error.to_string().contains("--peer-script"), "{error}");
    let given = find_peer_script(
        Some(&checkout.join("bench/simple_salesforce_bench.py")),
        &elsewhere,
    )
    .expect("given");
    assert_eq!(given, checkout.join("bench/simple_salesforce_bench.py"));
}
