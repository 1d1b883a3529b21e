//! `mmea train` end to end on the demo pair (tiny model, a few epochs): the learning-rate schedule reaches
//! the run's config and setting line, and a cosine run refuses to be extended by `--resume --epochs`
//! (its rates depend on the epoch count) while an interrupted one still resumes.

use std::path::Path;
use std::process::{Command, Output};

fn mmea(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu"]).args(args).arg(out).output().expect("run mmea")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn cosine_runs_record_their_schedule_and_refuse_a_longer_resume() {
    let out = std::env::temp_dir().join(format!("mmea-cli-cosine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = mmea(&["train", "--data", "demo", "--epochs", "3", "--eval-every", "2", "--dim", "16", "--rank", "2", "--lr-schedule", "cosine", "--quiet", "--out"], &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cosine lr"), "the setting line names the schedule: {}", text(&o));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["lr_schedule"], "cosine");

    let longer = Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu", "train", "--quiet", "--epochs", "5", "--resume"]).arg(&out).output().unwrap();
    assert!(!longer.status.success(), "extending a cosine run must fail: {}", text(&longer));
    assert!(text(&longer).contains("cosine") && text(&longer).contains("config.json"), "{}", text(&longer));
    let cfg_after: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_after["train"]["epochs"], 3, "the refused resume left the config alone");

    let same = Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu", "train", "--quiet", "--resume"]).arg(&out).output().unwrap();
    assert!(same.status.success(), "{}", text(&same));
    assert!(text(&same).contains("no epoch this session"), "{}", text(&same));
    let _ = std::fs::remove_dir_all(&out);
}
