//! The browser demo's bundled checkpoint (`web/demo-model/checkpoint.safetensors`) must be what its
//! recorded run spec produces: this test reruns it (`mmea train --config` on the spec from the
//! checkpoint's own metadata, on the CPU backend, into a scratch directory) and compares every parameter
//! and the recorded metrics.
//!
//! On the machine that wrote the checkpoint the two are bit-identical. Other CPUs may pick other SIMD
//! kernels for the matrix products (FMA or not), so the comparison allows a small drift.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use mmea_core::model::CheckpointData;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn metric(meta: &HashMap<String, String>, path: &[&str]) -> f64 {
    let v: serde_json::Value = serde_json::from_str(&meta["metrics"]).expect("metrics metadata is JSON");
    let mut cur = &v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or_else(|| panic!("metric {path:?} missing in {v}"))
}

#[test]
fn bundled_demo_checkpoint_matches_its_command() {
    let root = repo_root();
    let committed_path = root.join("web/demo-model/checkpoint.safetensors");
    let committed = CheckpointData::parse("committed", &std::fs::read(&committed_path).expect("read the bundled checkpoint")).unwrap();
    // The checkpoint's run spec, written as a config file, repeats the run (any run can be repeated
    // from its config).
    let spec: serde_json::Value = serde_json::from_str(&committed.metadata["run_spec"]).unwrap();
    assert_eq!(spec["data"], "demo", "the bundled checkpoint is trained on the demo pair");
    let out = std::env::temp_dir().join(format!("mmea-demo-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let cfg = out.join("run_spec.json");
    std::fs::write(&cfg, spec.to_string()).unwrap();
    let run = out.join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_mmea"))
        .args(["--backend", "cpu", "train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&run)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run mmea");
    assert!(status.success(), "`mmea train --config` on the checkpoint's run spec failed");
    let fresh = CheckpointData::parse("fresh", &std::fs::read(run.join("checkpoint.safetensors")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out);

    assert_eq!(committed.metadata["epoch"], fresh.metadata["epoch"], "the model is selected at the same epoch");
    assert_eq!(committed.metadata["split"], fresh.metadata["split"], "the same split");
    assert_eq!(committed.metadata["dataset"], fresh.metadata["dataset"], "the same dataset fingerprint");
    assert_eq!(committed.tensors.len(), fresh.tensors.len());
    for ((n1, s1, d1), (n2, s2, d2)) in committed.tensors.iter().zip(&fresh.tensors) {
        assert_eq!((n1, s1), (n2, s2), "parameter names and shapes");
        let scale = d1.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let diff = d1.iter().zip(d2).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 2e-3 * scale, "parameter `{n1}`: max difference {diff:e} against max magnitude {scale:e}");
    }
    for path in [["test", "csls", "l2r", "hits1"], ["test", "csls", "l2r", "mrr"], ["test", "plain", "l2r", "hits1"]] {
        let (a, b) = (metric(&committed.metadata, &path), metric(&fresh.metadata, &path));
        assert!((a - b).abs() <= 0.01, "metric {path:?}: committed {a}, regenerated {b}");
    }
}
