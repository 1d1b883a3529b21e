//! `mmea bench --train demo` on the CPU backend: per-epoch losses and timings, with and without the full
//! evaluation (`--no-eval`).

use std::process::Command;

fn bench(extra: &[&str]) -> (String, String) {
    let mut args = vec!["--backend", "cpu", "bench", "--train", "demo", "--runs", "1"];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_mmea")).args(&args).output().unwrap();
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
    let eval: f64 = cells.last().unwrap().parse().unwrap_or_else(|_| panic!("evaluation seconds: {row}"));
    assert!(eval > 0.0, "{row}");
    assert!(err.contains("[CPU] full evaluation:"), "{err}");
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
