//! `mmea report` on committed run records: one row per run with its setting, metrics, run time and peak
//! memory, and a link to the config that repeats it; the committed docs/results.md and README table are
//! what the manifest's runs give.

use std::process::Command;

#[test]
fn report_rows_carry_time_memory_and_the_command() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_mmea"))
        .current_dir(root)
        .args(["report", "results/zh_en/label-prop/simple", "results/zh_en/label-prop/lightea", "results/zh_en/loginmea/default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.contains("| run time | peak memory |"), "{header}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| zh_en |")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    // The training-free aligner's variant, its bootstrapping and its sparse decoding are named.
    assert!(rows.iter().any(|r| r.contains("| label-prop (simple) |") && r.contains("| no |")), "{text}");
    assert!(rows.iter().any(|r| r.contains("| label-prop (LightEA) |") && r.contains("| bootstrapping (1 round) |") && r.contains("(top-500)")), "{text}");
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let n = header.split(" | ").count();
        assert_eq!(cells.len(), n, "every row has every column: {row}");
        assert!(row.contains(" s |") && row.contains("GB RSS"), "{row}");
        assert!(row.contains("[config](results/zh_en/") && row.contains("/config.toml)"), "{row}");
        assert!(row.contains("image: absent, left out; attribute: absent, left out") || row.contains("not read by this model"), "{row}");
    }
    // A directory that is not a finished run is refused with its path named.
    let bad = Command::new(env!("CARGO_BIN_EXE_mmea")).current_dir(root).args(["report", "docs"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("docs"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn the_committed_results_are_what_the_manifest_runs_give() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_mmea")).current_dir(root).args(["report", "--check"]).output().unwrap();
    assert!(out.status.success(), "docs/results.md or the README table is stale: {}", String::from_utf8_lossy(&out.stderr));
    // Every run the manifest names has a config that resolves as a run config.
    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(format!("{root}/results/manifest.toml")).unwrap()).unwrap();
    for t in manifest["table"].as_array().unwrap() {
        for r in t["runs"].as_array().unwrap() {
            let cfg = format!("{root}/results/{}/config.toml", r.as_str().unwrap());
            let o = Command::new(env!("CARGO_BIN_EXE_mmea")).args(["train", "--config", &cfg, "--print-config"]).output().unwrap();
            assert!(o.status.success(), "{cfg}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}
