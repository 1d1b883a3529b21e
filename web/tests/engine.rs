//! The demo engine, natively: the same code the browser worker runs, on the CPU twin and (when an adapter
//! exists; required with `MMEA_REQUIRE_GPU=1`) on wgpu, over the bundled checkpoint.
#![cfg(not(target_arch = "wasm32"))]

use mmea_core::gpu::{GpuContext, GpuOptions};
use mmea_core::Device;
use mmea_web::engine::{Engine, TOP};
use serde_json::Value;

fn checkpoint() -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo-model/checkpoint.safetensors");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn load(dev: Device) -> Engine {
    pollster::block_on(Engine::load(dev, "checkpoint.safetensors", &checkpoint())).expect("load the bundled checkpoint")
}

fn gpu() -> Option<Device> {
    match GpuContext::new_blocking(&GpuOptions::default()) {
        Ok(ctx) => Some(Device::Gpu(ctx)),
        Err(e) => {
            if std::env::var("MMEA_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("MMEA_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("SKIPPING the wgpu comparison: no adapter ({e})");
            // Counted by .ci/run at the end of the run (see core/tests/kernels/common.rs).
            use std::io::Write;
            let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gpu-skipped.log");
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
                let _ = writeln!(f, "mmea-web engine: the wgpu comparison (no adapter: {e})");
            }
            None
        }
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[test]
fn metrics_equal_the_checkpoints_recorded_test_metrics() {
    let e = load(Device::Cpu);
    let got = serde_json::to_value(pollster::block_on(e.metrics()).unwrap()).unwrap();
    // `mmea train` evaluated the selected model on test with the same code and wrote it into the metadata.
    let recorded: Value = serde_json::from_str(&e.opened.metadata["metrics"]).unwrap();
    let want = &recorded["test"];
    let mut compared = 0;
    for dec in ["plain", "csls", "sinkhorn"] {
        for dir in ["l2r", "r2l"] {
            for m in ["hits1", "hits10", "mrr", "mr"] {
                let (g, w) = (at(&got, &[dec, dir, m]).as_f64().unwrap(), at(want, &[dec, dir, m]).as_f64().unwrap());
                assert!((g - w).abs() <= 1e-9 * (1.0 + w.abs()), "{dec} {dir} {m}: engine {g}, recorded {w}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 24);
}

#[test]
fn entity_views_are_consistent() {
    let e = load(Device::Cpu);
    let n2 = e.n2();
    let test = &e.opened.split.test;
    // A test source with a gold partner.
    let (src, gold) = test[0];
    let v = e.entity(src as usize).unwrap();
    for list in ["plain", "csls", "sinkhorn"] {
        let c = v[list].as_array().unwrap();
        assert_eq!(c.len(), TOP, "{list}");
        let scores: Vec<f64> = c.iter().map(|x| x["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{list} is best first: {scores:?}");
        // The gold flag marks exactly the gold target.
        for x in c {
            assert_eq!(x["gold"].as_bool().unwrap(), x["target"].as_u64().unwrap() as u32 + e.n1() as u32 == gold);
        }
    }
    // The plain list (align's top-k kernel) agrees with sorting the host cosine row.
    let row = &e.cosine[src as usize * n2..(src as usize + 1) * n2];
    let best = row.iter().enumerate().fold((0, f32::MIN), |b, (j, &s)| if s > b.1 { (j, s) } else { b });
    assert_eq!(v["plain"][0]["target"].as_u64().unwrap() as usize, best.0);
    let rank = v["gold"]["rank"]["plain"].as_u64().unwrap() as usize;
    let in_list = v["plain"].as_array().unwrap().iter().position(|x| x["gold"].as_bool().unwrap());
    assert_eq!(in_list.map(|p| p + 1), (rank <= TOP).then_some(rank));
    // Modality weights: ω sums to 1 over the modalities present.
    let w = v["weights"].as_array().unwrap();
    assert_eq!(w.len(), e.opened.model.modalities().len());
    if e.omega.is_some() {
        let s: f64 = w.iter().map(|x| x["omega"].as_f64().unwrap()).sum();
        assert!((s - 1.0).abs() < 1e-5, "ω sums to {s}");
    }
    // Attention: every entity's out-edge weights sum to 1 in every layer.
    assert_eq!(e.attention.len(), 2 * e.summary()["model"]["layers"].as_u64().unwrap() as usize);
    for (name, alpha) in &e.attention {
        for h in 0..e.opened.inputs.n {
            let (a, b) = (e.head_offsets[h] as usize, e.head_offsets[h + 1] as usize);
            if a < b {
                let s: f32 = alpha[a..b].iter().sum();
                assert!((s - 1.0).abs() < 1e-4, "{name}: entity {h} attention sums to {s}");
            }
        }
    }
    assert!(e.entity(e.n1()).is_err(), "a KG2 index is not a source");
}

#[test]
fn sinkhorn_steps_normalise_and_pca_projects_everything() {
    let e = load(Device::Cpu);
    let (src, _) = e.opened.split.test[3];
    let v = pollster::block_on(e.sinkhorn_steps(src as usize, 8, 6, 0.05)).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7);
    let sums = |s: &Value, k: &str| s[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    // Each iteration ends with a column step: columns sum to 1 exactly; rows approach 1.
    let last = &steps[6];
    assert!(sums(last, "col_sums").iter().all(|c| (c - 1.0).abs() < 1e-4), "{:?}", sums(last, "col_sums"));
    let dev0: f64 = sums(&steps[1], "row_sums").iter().map(|r| (r - 1.0).abs()).sum();
    let dev6: f64 = sums(last, "row_sums").iter().map(|r| (r - 1.0).abs()).sum();
    assert!(dev6 <= dev0 + 1e-6, "row sums move towards 1: {dev0} then {dev6}");
    assert!(pollster::block_on(e.sinkhorn_steps(src as usize, 1, 6, 0.05)).is_err());

    let p = pollster::block_on(e.pca(30)).unwrap();
    let pts = p["points"].as_array().unwrap();
    assert_eq!(pts.len(), e.opened.inputs.n);
    let ex: Vec<f64> = p["explained"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(ex[0] > 0.0 && ex[0] <= 1.0 && ex[1] > 0.0 && ex[0] + ex[1] <= 1.0 + 1e-4 && ex[0] >= ex[1] - 1e-4, "{ex:?}");
    // The projection is centred.
    let mean: f64 = pts.iter().map(|q| q[0].as_f64().unwrap()).sum::<f64>() / pts.len() as f64;
    assert!(mean.abs() < 1e-3, "mean of the first coordinate {mean}");
}

#[test]
fn wgpu_engine_matches_cpu() {
    let Some(g) = gpu() else { return };
    let c = load(Device::Cpu);
    let w = load(g);
    let mc = serde_json::to_value(pollster::block_on(c.metrics()).unwrap()).unwrap();
    let mw = serde_json::to_value(pollster::block_on(w.metrics()).unwrap()).unwrap();
    for dec in ["plain", "csls", "sinkhorn"] {
        for m in ["hits1", "mrr"] {
            let (a, b) = (at(&mc, &[dec, "l2r", m]).as_f64().unwrap(), at(&mw, &[dec, "l2r", m]).as_f64().unwrap());
            assert!((a - b).abs() <= 0.005, "{dec} {m}: cpu {a}, wgpu {b}");
        }
    }
    let max_diff = c.cosine.iter().zip(&w.cosine).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max_diff < 1e-3, "cosine matrices differ by {max_diff}");
    let same_top1 = (0..c.n1()).filter(|&i| c.plain.cols[i * c.plain.k] == w.plain.cols[i * w.plain.k]).count();
    assert!(same_top1 as f64 >= 0.99 * c.n1() as f64, "top-1 agrees for {same_top1} of {}", c.n1());
}

#[test]
fn bad_checkpoints_get_clear_errors() {
    let msg = |bytes: &[u8]| match pollster::block_on(Engine::load(Device::Cpu, "upload.safetensors", bytes)) {
        Ok(_) => panic!("a bad checkpoint was accepted"),
        Err(e) => e.to_string(),
    };
    let m = msg(b"definitely not a checkpoint");
    assert!(m.contains("upload.safetensors") && m.contains("not a safetensors"), "{m}");
    let bytes = checkpoint();
    let m = msg(&bytes[..bytes.len() / 2]);
    assert!(m.contains("upload.safetensors"), "{m}");

    // A checkpoint of another dataset: the browser has only the demo pair.
    let ck = mmea_core::model::CheckpointData::parse("c", &bytes).unwrap();
    let mut meta = ck.metadata.clone();
    let mut spec: Value = serde_json::from_str(&meta["run_spec"]).unwrap();
    spec["data"] = Value::from("dbp15k/zh_en");
    meta.insert("run_spec".into(), spec.to_string());
    let other = mmea_core::model::params::to_safetensors(&ck.tensors, &meta).unwrap();
    let m = msg(&other);
    assert!(m.contains("trained on `dbp15k/zh_en`") && m.contains("--data demo"), "{m}");

    // The demo pair, but a tensor of the wrong shape.
    let mut tensors = ck.tensors.clone();
    let t = tensors.iter_mut().find(|t| t.0 == "ent").unwrap();
    t.1 = vec![t.1[0] / 2, t.1[1]];
    t.2.truncate(t.1[0] * t.1[1]);
    let m = msg(&mmea_core::model::params::to_safetensors(&tensors, &ck.metadata).unwrap());
    assert!(m.contains("upload.safetensors") && m.contains("ent"), "{m}");
}

/// A checkpoint of `model` trained for two epochs on the demo pair (names on), built in-process with the
/// metadata `mmea train` writes.
fn tiny_checkpoint(model: mmea_core::model::ModelConfig) -> Vec<u8> {
    use mmea_core::data::{self, FeatureOptions};
    use mmea_core::model::{checkpoint_bytes, Fingerprint, Inputs, ModalityChoice};
    use mmea_core::train::{Protocol, TrainConfig, Trainer};
    let ds = data::demo().unwrap();
    let choice = ModalityChoice { names: true, ..Default::default() };
    let features = data::build_features(&ds, &FeatureOptions { char_bigrams: true, ..Default::default() });
    let inputs = Inputs::build(&Device::Cpu, &ds, &features, None, &choice).unwrap();
    let mut split = ds.split.clone().unwrap();
    split.carve_dev(0.1, 1);
    let mut cfg = TrainConfig::for_protocol(Protocol::Clean);
    cfg.epochs = 2;
    let m = model.build(&inputs).unwrap();
    let params = m.init(&Device::Cpu, inputs.n, inputs.graph.num_rel(), 1).unwrap();
    let mut tr = Trainer::new(m, inputs, cfg.clone(), split.clone(), params).unwrap();
    while !tr.done() {
        tr.run_epoch().unwrap();
    }
    let mut spec = serde_json::json!({ "data": "demo", "modalities": choice, "train": cfg, "command": "test" });
    let mv = serde_json::to_value(&model).unwrap();
    spec["model_name"] = mv["model_name"].clone();
    spec["model"] = mv["model"].clone();
    let meta = std::collections::HashMap::from([
        ("model".to_string(), model.name().to_string()),
        ("run_spec".to_string(), spec.to_string()),
        ("dataset".to_string(), serde_json::to_string(&Fingerprint::of(&ds)).unwrap()),
        ("split".to_string(), split.to_tsv(&ds)),
        ("epoch".to_string(), "2".to_string()),
    ]);
    checkpoint_bytes(&tr.params, meta).unwrap()
}

#[test]
fn the_demo_opens_mimea_and_ricea_style_checkpoints_and_shows_their_weights() {
    use mmea_core::model::{MimeaConfig, ModelConfig, RiceaConfig};
    let mimea = tiny_checkpoint(ModelConfig::Mimea(MimeaConfig { dim: 16, ..Default::default() }));
    let e = pollster::block_on(Engine::load(Device::Cpu, "mimea.safetensors", &mimea)).unwrap();
    assert_eq!(e.summary()["model_name"], "mimea-style");
    let w = e.entity(0).unwrap()["weights"].clone();
    assert_eq!(w.as_array().unwrap().len(), 2);
    for x in w.as_array().unwrap() {
        let b = &x["beta"];
        let (a, bb, mean) = (b["alpha"].as_f64().unwrap(), b["beta"].as_f64().unwrap(), b["mean"].as_f64().unwrap());
        assert!((mean - a / (a + bb)).abs() < 1e-6 && (mean - x["omega"].as_f64().unwrap()).abs() < 1e-5, "{x}");
        assert!(b["sd"].as_f64().unwrap() > 0.0);
    }
    assert!(pollster::block_on(e.metrics()).unwrap().plain.l2r.hits1 > 0.0);

    let ricea = tiny_checkpoint(ModelConfig::Ricea(RiceaConfig { dim: 16, key_dim: 8, ..Default::default() }));
    let e = pollster::block_on(Engine::load(Device::Cpu, "ricea.safetensors", &ricea)).unwrap();
    assert_eq!(e.summary()["model_name"], "ricea-style");
    let w = e.entity(0).unwrap()["weights"].clone();
    let sum = |k: &str| w.as_array().unwrap().iter().map(|x| x[k].as_f64().unwrap()).sum::<f64>();
    assert!((sum("omega") - 1.0).abs() < 1e-5 && (sum("before_calibration") - 1.0).abs() < 1e-5, "{w}");
    assert!(w.as_array().unwrap().iter().all(|x| x["uncertainty"].as_f64().unwrap() > 0.0));

    // MCLEA- and EVA-style: global view weights σ over relation, name and structure (no entity-level ω).
    for (mc, name) in [
        (
            ModelConfig::Mclea(mmea_core::model::McleaConfig { views: mmea_core::model::ViewsConfig { dim: 16, modal_dim: 8, ..Default::default() }, ..Default::default() }),
            "mclea-style",
        ),
        (ModelConfig::Eva(mmea_core::model::EvaConfig { views: mmea_core::model::ViewsConfig { dim: 16, modal_dim: 8, ..Default::default() }, ..Default::default() }), "eva-style"),
    ] {
        let ck = tiny_checkpoint(mc);
        let e = pollster::block_on(Engine::load(Device::Cpu, "views.safetensors", &ck)).unwrap();
        assert_eq!(e.summary()["model_name"], name);
        let w = e.entity(0).unwrap()["weights"].clone();
        let w = w.as_array().unwrap();
        assert_eq!(w.iter().map(|x| x["modality"].as_str().unwrap()).collect::<Vec<_>>(), ["relation", "name", "structure"]);
        assert!((w.iter().map(|x| x["sigma"].as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 1e-5 && w.iter().all(|x| x["omega"].is_null()));
        assert!(pollster::block_on(e.metrics()).unwrap().plain.l2r.hits1 > 0.0);
    }

    // The training-free baseline: no parameters at all; the seeds come from the checkpoint's split.
    let lp = tiny_checkpoint(ModelConfig::LabelProp(mmea_core::model::LabelPropConfig::default()));
    let e = pollster::block_on(Engine::load(Device::Cpu, "label-prop.safetensors", &lp)).unwrap();
    assert_eq!((e.summary()["model_name"].as_str(), e.summary()["parameters"].as_u64()), (Some("label-prop"), Some(0)));
    let m = pollster::block_on(e.metrics()).unwrap();
    assert!(m.sinkhorn.unwrap().l2r.hits1 > 0.45, "{m:?}");
}
