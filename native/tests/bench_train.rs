//! `mmea bench --train demo` on the CPU backend: per-epoch losses and timings, with and without the full
//! evaluation (`--no-eval`).

use std::process::Command;

fn bench(extra: &[&str]) -> (String, String) {
    bench_env(extra, false)
}

fn bench_env(extra: &[&str], profile: bool) -> (String, String) {
    let mut args = vec!["--backend", "cpu", "bench", "--train", "demo", "--runs", "1"];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_mmea")).args(&args).env("MMEA_PROFILE", if profile { "1" } else { "0" }).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn losses(stderr: &str) -> Vec<f64> {
    stderr.lines().filter_map(|l| l.rsplit_once("loss ")).map(|(_, v)| v.trim().parse().unwrap()).collect()
}

#[test]
fn bench_train_times_epochs_and_optionally_the_evaluation() {
    let (out, err) = bench(&[]);
    let row = out.lines().find(|l| l.starts_with("CPU")).unwrap_or_else(|| panic!("no CPU row: {out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let eval: f64 = cells[cells.len() - 2].parse().unwrap_or_else(|_| panic!("evaluation seconds: {row}"));
    let scoring: f64 = cells[cells.len() - 1].parse().unwrap_or_else(|_| panic!("scoring seconds: {row}"));
    assert!(eval > 0.0 && scoring > 0.0, "{row}");
    assert!(err.contains("[CPU] full evaluation:") && err.contains("of which scoring the test pairs"), "{err}");
    assert!(!out.contains("CPU time per op"), "profile printed without MMEA_PROFILE=1: {out}");
    let with_eval = losses(&err);
    assert_eq!(with_eval.len(), 2, "warm-up and one timed epoch: {err}");
    assert!(with_eval.iter().all(|l| l.is_finite() && *l > 0.0), "{err}");

    let (out, err) = bench(&["--no-eval"]);
    let row = out.lines().find(|l| l.starts_with("CPU")).unwrap_or_else(|| panic!("no CPU row: {out}"));
    assert!(row.trim_end().ends_with("skipped"), "{row}");
    assert!(!err.contains("full evaluation"), "{err}");
    // Same seed, same epochs: the losses do not depend on whether an evaluation follows.
    assert_eq!(losses(&err), with_eval, "{err}");
}

#[test]
fn bench_train_takes_the_reference_protocol_random_images_and_prints_the_profile() {
    let (out, err) = bench_env(&["--protocol", "reference", "--random-images", "32", "--set", "train.batch=100"], true);
    let setting = out.lines().next().unwrap_or_default();
    assert!(setting.contains("reference protocol") && setting.contains("batch 100") && setting.contains("random 32-wide image rows"), "{setting}");
    assert!(out.contains("peak resident memory:"), "{out}");
    // The per-op tables: epochs, the full evaluation, the scoring alone; each names real ops and ends
    // with the time outside them.
    for what in ["one training epoch", "the full evaluation", "scoring the test pairs"] {
        let start = out.find(&format!("CPU time per op in {what}")).unwrap_or_else(|| panic!("no table for {what}: {out}"));
        let table: Vec<&str> = out[start..].lines().skip(2).take_while(|l| l.starts_with("  ")).collect();
        assert!(table.iter().any(|l| l.trim_start().starts_with("matmul")), "{what}: {table:?}");
        assert!(table.last().is_some_and(|l| l.contains("outside ops")), "{what}: {table:?}");
    }
    let epoch_table = &out[out.find("CPU time per op in one training epoch").unwrap()..];
    assert!(epoch_table.lines().take_while(|l| !l.is_empty()).any(|l| l.contains("backward")), "{epoch_table}");
    assert!(losses(&err).iter().all(|l| l.is_finite()), "{err}");
}
