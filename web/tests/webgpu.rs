//! Kernels through mmea-core on real WebGPU in headless Chromium (SwiftShader), compared with the CPU twin
//! compiled to wasm. Run: `cargo test -p mmea-web --release --target wasm32-unknown-unknown --test webgpu`
//! (the runner is wasm-bindgen-test-runner; chromedriver must be on PATH; see .ci/run).
#![cfg(target_arch = "wasm32")]

use mmea_core::gpu::{GpuContext, GpuOptions};
use mmea_core::{ops, Device, Tensor};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Fails (rather than skipping) when the browser offers no WebGPU adapter.
async fn webgpu() -> Device {
    match GpuContext::new(&GpuOptions::default()).await {
        Ok(ctx) => Device::Gpu(ctx),
        Err(e) => panic!("no WebGPU adapter in this browser: {e}"),
    }
}

use mmea_core::selfcheck::test_data as data;

async fn host(t: &Tensor) -> Vec<f32> {
    t.to_vec_f32().await.expect("readback")
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}[{i}]: got {g}, want {w}");
    }
}

#[wasm_bindgen_test]
async fn matmul_on_webgpu_matches_cpu() {
    let gpu = webgpu().await;
    // 3 tiles of 64 in m with a ragged tail; transposed B; bias.
    let (m, k, n) = (150, 33, 70);
    let (a, b, bias) = (data(1, m * k), data(2, n * k), data(3, n));
    let run = |d: &Device| {
        ops::matmul_ex(
            &Tensor::from_f32(d, a.clone(), &[m, k]).unwrap(),
            &Tensor::from_f32(d, b.clone(), &[n, k]).unwrap(),
            Some(&Tensor::from_f32(d, bias.clone(), &[n]).unwrap()),
            false,
            true,
            1.0,
        )
        .unwrap()
    };
    assert_close("matmul", &host(&run(&gpu)).await, &host(&run(&Device::Cpu)).await, 1e-4);
}

/// A random relation graph: `n` entities, heads with 0..6 out-edges (some none), 1..3 relations per edge.
fn graph_lists(n: usize, num_rel: usize) -> (Vec<(u32, u32)>, Vec<Vec<(u32, f32)>>) {
    let r = data(40, n * 10);
    let mut edges = Vec::new();
    let mut mixing = Vec::new();
    let mut q = 0;
    let mut next = || {
        q += 1;
        (r[q % r.len()] + 1.0) / 2.0
    };
    for h in 0..n {
        let deg = (next() * 6.0) as usize;
        for _ in 0..deg {
            let t = (next() * n as f32) as u32 % n as u32;
            let k = 1 + (next() * 3.0) as usize % 3;
            let rels: Vec<(u32, f32)> = (0..k).map(|_| ((next() * num_rel as f32) as u32 % num_rel as u32, 1.0 / k as f32)).collect();
            edges.push((h as u32, t));
            mixing.push(rels);
        }
    }
    (edges, mixing)
}

#[wasm_bindgen_test]
async fn reflection_attention_on_webgpu_matches_cpu() {
    use mmea_core::ops::reflection::{reflection_attention, reflection_attention_backward, Act, RelGraph};
    let gpu = webgpu().await;
    let (n, d, num_rel) = (300, 37, 20);
    let (edges, mixing) = graph_lists(n, num_rel);
    let (x, rel, a, g) = (data(41, n * d), data(42, num_rel * d), data(43, d), data(44, n * d));
    let mut results = Vec::new();
    for dev in [&gpu, &Device::Cpu] {
        let graph = RelGraph::new(dev, n, num_rel, &edges, &mixing).unwrap();
        let xt = Tensor::from_f32(dev, x.clone(), &[n, d]).unwrap();
        let rt = Tensor::from_f32(dev, rel.clone(), &[num_rel, d]).unwrap();
        let at = Tensor::from_f32(dev, a.clone(), &[d]).unwrap();
        let (y, saved) = reflection_attention(&graph, &xt, &rt, &at, Act::Tanh).unwrap();
        let gy = Tensor::from_f32(dev, g.clone(), &[n, d]).unwrap();
        let (gx, grel, ga) = reflection_attention_backward(&graph, &xt, &rt, &at, Act::Tanh, &saved, &gy).unwrap();
        results.push([host(&y).await, host(&gx).await, host(&grel).await, host(&ga).await]);
    }
    for (i, name) in ["y", "g_x", "g_rel", "g_a"].iter().enumerate() {
        assert_close(name, &results[0][i], &results[1][i], 1e-4);
    }
}

#[wasm_bindgen_test]
async fn sinkhorn_on_webgpu_matches_cpu() {
    use mmea_core::ops::sinkhorn::{sinkhorn, sinkhorn_backward, TiledMatrix};
    let gpu = webgpu().await;
    // 300 x 257 scores in row blocks of 128 rows (3 tiles, the last ragged), 10 iterations at eps = 0.05.
    let (n, m, iters, eps) = (300, 257, 10, 0.05);
    let (s, g) = (data(50, n * m), data(51, n * m));
    let block = 128 * m as u64 * 4;
    let mut results = Vec::new();
    for dev in [&gpu, &Device::Cpu] {
        let st = TiledMatrix::from_host(dev, &s, n, m, block).unwrap();
        assert_eq!(st.blocks.len(), 3);
        let out = sinkhorn(&st, eps, iters).unwrap();
        let gt = TiledMatrix::from_host(dev, &g, n, m, block).unwrap();
        let gs = sinkhorn_backward(&st, eps, &out, &gt).unwrap();
        results.push((out.log_plan.to_vec_f32().await.unwrap(), gs.to_vec_f32().await.unwrap()));
    }
    assert_close("log plan", &results[0].0, &results[1].0, 1e-4);
    assert_close("g_s", &results[0].1, &results[1].1, 1e-3);
}

/// Every kernel the demo uses, end to end: the bundled checkpoint opened by the demo engine on WebGPU and
/// on the CPU twin (both in this browser), then the forward pass, the score matrices (cosine, CSLS,
/// Sinkhorn), the test metrics, a Sinkhorn step sequence and the PCA compared.
#[wasm_bindgen_test]
async fn demo_engine_on_webgpu_matches_cpu() {
    use mmea_web::engine::Engine;
    const CKPT: &[u8] = include_bytes!("../demo-model/checkpoint.safetensors");
    let gpu = Engine::load(webgpu().await, "checkpoint.safetensors", CKPT).await.expect("load on WebGPU");
    let cpu = Engine::load(Device::Cpu, "checkpoint.safetensors", CKPT).await.expect("load on the CPU");
    assert_close("cosine", &gpu.cosine, &cpu.cosine, 1e-4);
    assert_close("csls", &gpu.csls, &cpu.csls, 1e-4);
    // The log-plan is S/ε plus potentials (values in the hundreds): compare relative to that scale.
    assert_close("sinkhorn log-plan", &gpu.sinkhorn, &cpu.sinkhorn, 1e-4);
    let same = (0..cpu.n1()).filter(|&i| gpu.plain.cols[i * gpu.plain.k] == cpu.plain.cols[i * cpu.plain.k]).count();
    assert!(same as f64 >= 0.99 * cpu.n1() as f64, "plain top-1 agrees for {same} of {}", cpu.n1());
    let (mg, mc) = (gpu.metrics().await.unwrap(), cpu.metrics().await.unwrap());
    for (name, g, c) in [("plain", mg.plain, mc.plain), ("csls", mg.csls.unwrap(), mc.csls.unwrap()), ("sinkhorn", mg.sinkhorn.unwrap(), mc.sinkhorn.unwrap())] {
        assert!((g.l2r.hits1 - c.l2r.hits1).abs() <= 0.005 && (g.l2r.mrr - c.l2r.mrr).abs() <= 0.005, "{name}: WebGPU {:?} vs CPU {:?}", g.l2r, c.l2r);
    }
    let (src, _) = cpu.opened.split.test[0];
    let sg = gpu.sinkhorn_steps(src as usize, 8, 5, 0.05).await.unwrap();
    let sc = cpu.sinkhorn_steps(src as usize, 8, 5, 0.05).await.unwrap();
    let plan = |v: &serde_json::Value| -> Vec<f32> { v["steps"][5]["plan"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    assert_close("sinkhorn steps", &plan(&sg), &plan(&sc), 1e-3);
    let pg = gpu.pca(30).await.unwrap();
    let pc = cpu.pca(30).await.unwrap();
    let ex = |v: &serde_json::Value| -> Vec<f32> { v["explained"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    assert_close("PCA explained variance", &ex(&pg), &ex(&pc), 1e-3);
}
