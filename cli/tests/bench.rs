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
    for role in ["download", "gzip", "upload"] {
        assert_eq!(round[role]["rows"], 3000, "{role}: {round}");
    }
    for role in ["download", "gzip", "extract", "upload", "merge"] {
        let m = &round[role];
        assert!(m["wall_s"].as_f64().unwrap() > 0.0, "{role}: {m}");
        assert!(m["peak_rss_mb"].as_f64().unwrap() > 1.0, "{role}: {m}");
    }
    assert!(round["csv_bytes"].as_u64().unwrap() > 3000 * 100);
    let table = std::fs::read_to_string(out.path().join("results.md")).expect("table");
    assert!(table.contains("sfpipe upload") && table.contains("Lambda cost per million rows"));
    assert!(
        out.path().join("throughput.png").exists()
            || !std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists()
    );
}
