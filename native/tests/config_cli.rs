//! The run config as the interface: `--config` and `--set` reach the resolved `config.toml`; a run folder's
//! config repeats its run; a key the chosen model does not use, or an unknown key, fails naming the key,
//! the model and the keys it takes; and every subcommand exits non-zero on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mmea(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mmea")).args(["--backend", "cpu"]).args(args).output().expect("run mmea")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mmea-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn final_record(dir: &Path) -> serde_json::Value {
    let m = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    serde_json::from_str(m.lines().last().expect("a final line")).expect("JSON")
}

#[test]
fn every_model_refuses_a_key_it_does_not_use_and_names_the_keys_it_takes() {
    // (model, a key of another model, a key it does take)
    let cases = [
        ("loginmea", "model.gates=false", "rank"),
        ("structure", "model.rank=4", "graph_layer"),
        ("mimea-style", "model.loss=icl", "ot_weight"),
        ("ricea-style", "model.gates=false", "calibration"),
        ("mclea-style", "model.rank=4", "kendall"),
        ("eva-style", "model.tau=0.2", "alpha_structure"),
        ("label-prop", "model.tau=0.2", "relations"),
        ("label-prop", "train.lr=0.01", "epochs"),
        ("mimea-style", "train.dropout=0.3", "lr"),
        ("mclea-style", "train.negatives=100", "lr"),
    ];
    for (model, set, takes) in cases {
        let o = mmea(&["train", "--model", model, "--set", set, "--print-config"]);
        let key = set.split('=').next().unwrap();
        assert!(!o.status.success(), "{model} with {set} must fail: {}", text(&o));
        let t = text(&o);
        assert!(t.contains(&format!("`{key}`")) && t.contains(model) && t.contains("takes:") && t.contains(takes), "{model}, {set}: {t}");
        assert!(o.stdout.is_empty(), "no config is printed on error: {t}");
    }
    // The example, and the unknown keys.
    for args in [
        &["train", "--model", "mimea-style", "--set", "model.loss=icl", "--epochs", "1"][..],
        &["train", "--set", "nonsense=1", "--print-config"][..],
        &["train", "--set", "train.nonsense=1", "--print-config"][..],
        &["train", "--set", "model.dim=wide", "--print-config"][..],
        &["train", "--set", "model.fusion=bogus", "--print-config"][..],
        &["train", "--set", "split.train_ratio=1.5", "--print-config"][..],
        &["train", "--set", "no-equals-sign", "--print-config"][..],
        &["train", "--model", "no-such-model"][..],
    ] {
        let o = mmea(args);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("error"), "{args:?}: {}", text(&o));
    }
    // The fusion error names its key and the allowed values.
    let t = text(&mmea(&["train", "--set", "model.fusion=bogus", "--print-config"]));
    assert!(t.contains("`model.fusion`") && t.contains("low-rank"), "{t}");
}

#[test]
fn config_file_and_set_reach_the_run_and_its_config_repeats_it() {
    let dir = scratch("repeat");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, "# a small LoginMEA on the demo pair\ndata = \"demo\"\nmodel_name = \"loginmea\"\n[model]\ndim = 16\n[train]\nepochs = 3\neval_every = 1\n").unwrap();
    let a = dir.join("a");
    let o = mmea(&["train", "--config", cfg.to_str().unwrap(), "--set", "model.rank=2", "--set", "train.lr=0.01", "--quiet", "--out", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let resolved: toml::Value = toml::from_str(&std::fs::read_to_string(a.join("config.toml")).unwrap()).unwrap();
    assert_eq!(resolved["model"]["dim"].as_integer(), Some(16), "from the file");
    assert_eq!(resolved["model"]["rank"].as_integer(), Some(2), "from --set");
    assert_eq!(resolved["train"]["lr"].as_float(), Some(0.01), "from --set");
    assert_eq!(resolved["train"]["epochs"].as_integer(), Some(3));
    assert_eq!(resolved["split"]["dev_fraction"].as_float(), Some(0.1), "the resolved config states the dev fraction");

    // The run folder's config alone repeats the run: the same split, selection and metrics.
    let b = dir.join("b");
    let o = mmea(&["train", "--config", a.join("config.toml").to_str().unwrap(), "--quiet", "--out", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(a.join("split.tsv")).unwrap(), std::fs::read(b.join("split.tsv")).unwrap(), "the same split");
    let (fa, fb) = (final_record(&a), final_record(&b));
    assert_eq!(fa["epoch"], fb["epoch"], "the same selected epoch");
    assert_eq!(fa["test"], fb["test"], "the same test metrics");
    // A flag still overrides the file.
    let o = mmea(&["train", "--config", a.join("config.toml").to_str().unwrap(), "--epochs", "7", "--print-config"]);
    assert!(o.status.success(), "{}", text(&o));
    let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(printed["train"]["epochs"].as_integer(), Some(7));
    assert_eq!(printed["model"]["dim"].as_integer(), Some(16));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_subcommand_exits_non_zero_on_bad_input() {
    let dir = scratch("errors");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing");
    let m = missing.to_str().unwrap();
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "[model\ndim = 3\n").unwrap();
    let not_ckpt = dir.join("not.safetensors");
    std::fs::write(&not_ckpt, b"not a checkpoint").unwrap();
    let nc = not_ckpt.to_str().unwrap();
    for args in [
        vec!["train", "--data", m, "--epochs", "1"],
        vec!["train", "--config", m],
        vec!["train", "--config", bad_toml.to_str().unwrap()],
        vec!["train", "--resume", m],
        vec!["eval", m],
        vec!["eval", nc],
        vec!["align", nc, "--top-k", "1"],
        vec!["export", nc, "--projector", dir.join("proj").to_str().unwrap()],
        vec!["report", m],
        vec!["report", "--manifest", m],
        vec!["data", "check", m],
        vec!["data", "bench", m, "--repeat", "1"],
        vec!["data", "split", m],
        vec!["bench", "--train", m, "--runs", "1"],
    ] {
        let o = mmea(&args);
        assert!(!o.status.success(), "`mmea {}` must fail: {}", args.join(" "), text(&o));
        let t = text(&o);
        assert!(t.contains("error"), "`mmea {}` says what went wrong: {t}", args.join(" "));
        assert!(!t.contains("panicked"), "`mmea {}` must not panic: {t}", args.join(" "));
    }
    // The bad TOML error names the file and the line.
    let t = text(&mmea(&["train", "--config", bad_toml.to_str().unwrap()]));
    assert!(t.contains("bad.toml") && t.contains("line 1"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bundled_datasets_are_listed_and_found_by_name() {
    let o = mmea(&["data", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for name in ["demo", "dbp15k/zh_en", "dbp15k/ja_en", "dbp15k/fr_en", "fb237_db15k"] {
        assert!(t.contains(name), "`data list` names {name}: {t}");
    }
    assert!(t.contains("19388") || t.contains("19,388"), "zh_en's KG1 entity count: {t}");
    // A bundled name resolves for `train` (checked without training) and for `data check`.
    let o = mmea(&["train", "--data", "dbp15k/zh_en", "--print-config"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mmea(&["data", "check", "fb237_db15k"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn every_documented_config_resolves() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("configs/") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let o = mmea(&["train", "--config", p.to_str().unwrap(), "--print-config"]);
            assert!(o.status.success(), "{}: {}", p.display(), text(&o));
            let t = std::fs::read_to_string(&p).unwrap();
            assert!(t.starts_with('#'), "{} opens with a comment saying what it is", p.display());
            n += 1;
        }
    }
    assert!(n >= 9, "one config per model and per headline result: found {n}");
}

#[test]
fn the_reference_protocol_feeds_zero_rows_for_a_missing_modality_and_the_clean_one_leaves_it_out() {
    let get = |args: &[&str]| -> toml::Value {
        let o = mmea(args);
        assert!(o.status.success(), "{}", text(&o));
        toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap()
    };
    let r = get(&["train", "--protocol", "reference", "--print-config"]);
    assert_eq!(r["modalities"]["missing_images"].as_str(), Some("zero-input"));
    assert_eq!(r["modalities"]["missing_attributes"].as_str(), Some("zero-input"));
    let c = get(&["train", "--print-config"]);
    assert_eq!(c["modalities"]["missing_images"].as_str(), Some("absent"));
    let l = get(&["train", "--set", "modalities.missing_attributes=learned-constant", "--print-config"]);
    assert_eq!(l["modalities"]["missing_attributes"].as_str(), Some("learned-constant"));
    let o = mmea(&["train", "--set", "modalities.missing_images=zeros", "--print-config"]);
    assert!(!o.status.success() && text(&o).contains("`modalities.missing_images`") && text(&o).contains("zero-input"), "{}", text(&o));

    // The setting line, the record and the report name the policy.
    let dir = scratch("policy");
    let o = mmea(&[
        "train",
        "--epochs",
        "1",
        "--set",
        "model.dim=16",
        "--set",
        "model.rank=2",
        "--set",
        "modalities.missing_images=zero-input",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("image (absent from the data: zero-input)"), "{}", text(&o));
    assert_eq!(final_record(&dir)["filled"]["image"], "zero-input");
    let rep = mmea(&["report", dir.to_str().unwrap()]);
    assert!(text(&rep).contains("image: absent, zero-input; attribute: absent, left out"), "{}", text(&rep));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pickled_feature_dicts_are_read_and_hostile_ones_refused_with_a_non_zero_exit() {
    let fx = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/fixtures/pickle");
    // A real-format dict (ids 0..4, which are demo entities) is a usable image file.
    let o = mmea(&["data", "check", "demo", "--images", &format!("{fx}/p4.pkl")]);
    assert!(o.status.success(), "{}", text(&o));
    for (file, global) in [("hostile_os_system.pkl", "os.system"), ("hostile_eval.pkl", "builtins.eval"), ("hostile_popen.pkl", "subprocess.Popen")] {
        let o = mmea(&["data", "check", "demo", "--images", &format!("{fx}/{file}")]);
        assert!(!o.status.success(), "{file}: {}", text(&o));
        assert!(text(&o).contains(global) && text(&o).contains("offset"), "{file}: {}", text(&o));
        let dir = scratch("hostile");
        let o = mmea(&["train", "--images", &format!("{fx}/{file}"), "--epochs", "1", "--quiet", "--out", dir.to_str().unwrap()]);
        assert!(!o.status.success() && text(&o).contains(global), "{file}: {}", text(&o));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
