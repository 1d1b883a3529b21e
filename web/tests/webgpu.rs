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

fn data(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

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
