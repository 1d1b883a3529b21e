//! `mmea train` end to end on the demo pair (tiny model, a few epochs): the learning-rate schedule reaches
//! the run's config and setting line, and a cosine run refuses to be extended by `--resume --epochs`
//! (its rates depend on the epoch count) while an interrupted one still resumes; the setting line names an
//! iterative-learning rate other than lr/5, and the record and report give the dev distractors actually used;
//! a relation bag other than the reference codes' is named in the setting line, config and report.

use std::path::Path;
use std::process::{Command, Output};

fn mmea(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu"]).args(args).arg(out).output().expect("run mmea")
}

/// The resolved config a run folder holds.
fn config(dir: &Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).expect("config.toml")).expect("config.toml is TOML")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn cosine_runs_record_their_schedule_and_refuse_a_longer_resume() {
    let out = std::env::temp_dir().join(format!("mmea-cli-cosine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = mmea(
        &[
            "train",
            "--data",
            "demo",
            "--epochs",
            "3",
            "--set",
            "train.eval_every=2",
            "--set",
            "model.dim=16",
            "--set",
            "model.rank=2",
            "--set",
            "train.lr_schedule=cosine",
            "--quiet",
            "--out",
        ],
        &out,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cosine lr"), "the setting line names the schedule: {}", text(&o));
    let cfg = config(&out);
    assert_eq!(cfg["train"]["lr_schedule"].as_str(), Some("cosine"));

    let longer = Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu", "train", "--quiet", "--epochs", "5", "--resume"]).arg(&out).output().unwrap();
    assert!(!longer.status.success(), "extending a cosine run must fail: {}", text(&longer));
    assert!(text(&longer).contains("cosine") && text(&longer).contains("config.toml"), "{}", text(&longer));
    let cfg_after = config(&out);
    assert_eq!(cfg_after["train"]["epochs"].as_integer(), Some(3), "the refused resume left the config alone");

    let same = Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu", "train", "--quiet", "--resume"]).arg(&out).output().unwrap();
    assert!(same.status.success(), "{}", text(&same));
    assert!(text(&same).contains("no epoch this session"), "{}", text(&same));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_setting_line_and_report_name_the_il_rate_and_the_distractors_used() {
    let out = std::env::temp_dir().join(format!("mmea-cli-il-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let args =
        ["train", "--data", "demo", "--epochs", "2", "--set", "train.eval_every=1", "--set", "model.dim=16", "--set", "model.rank=2", "--iterative", "--set", "train.il_start=1"];
    let o = mmea(&[&args[..], &["--set", "train.il_step=1", "--set", "train.il_lr_factor=0.5", "--set", "train.dev_distractors=1000000", "--quiet", "--out"]].concat(), &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("iterative, lr × 0.5 from epoch 1"), "the setting line names the IL rate: {}", text(&o));
    // A million distractors are asked for; the demo pair has far fewer unlabelled entities, and the
    // record and the report give the count actually used.
    let fin = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let fin: serde_json::Value = serde_json::from_str(fin.lines().last().unwrap()).unwrap();
    let used = fin["dev_distractors"].as_u64().unwrap();
    assert!(used > 0 && used < 1_000_000, "{used}");
    assert!(fin["setting"].as_str().unwrap().contains(&format!("ranked among {used} distractors per side")), "{fin}");
    let rep = Command::new(env!("CARGO_BIN_EXE_mmea")).arg("report").arg(&out).output().unwrap();
    assert!(rep.status.success(), "{}", text(&rep));
    assert!(text(&rep).contains(&format!("clean, best on dev among {used} distractors")), "{}", text(&rep));
    let _ = std::fs::remove_dir_all(&out);

    // The reference code's lr/5 (the default factor) is not spelled out.
    let o = mmea(&[&args[..], &["--quiet", "--out"]].concat(), &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("clean protocol, iterative |") && !text(&o).contains("lr ×"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_non_reference_relation_bag_is_named_in_the_setting_config_and_report() {
    let out = std::env::temp_dir().join(format!("mmea-cli-relbag-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = mmea(
        &[
            "train",
            "--data",
            "demo",
            "--epochs",
            "1",
            "--set",
            "model.dim=16",
            "--set",
            "model.rank=2",
            "--set",
            "modalities.rel_columns=0",
            "--set",
            "modalities.rel_directed=true",
            "--quiet",
            "--out",
        ],
        &out,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("structure + relation (every relation, head/tail)"), "{}", text(&o));
    let cfg = config(&out);
    assert_eq!((cfg["modalities"]["rel_columns"].as_integer(), cfg["modalities"]["rel_directed"].as_bool()), (Some(0), Some(true)));
    let rep = Command::new(env!("CARGO_BIN_EXE_mmea")).arg("report").arg(&out).output().unwrap();
    assert!(text(&rep).contains("| structure + relation (every relation, head/tail) |"), "{}", text(&rep));
    // The checkpoint rebuilds the same bag: evaluating it works (a 1000-column bag would not fit W_rel).
    let ev = Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu", "eval"]).arg(out.join("checkpoint.safetensors")).output().unwrap();
    assert!(ev.status.success(), "{}", text(&ev));
    let _ = std::fs::remove_dir_all(&out);
}
