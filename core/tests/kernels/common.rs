//! Shared test harness: one GPU context for the whole test binary, deterministic random data,
//! tolerance checks, finite differences.
#![allow(dead_code)]

use std::sync::OnceLock;

use mmea_core::gpu::{GpuContext, GpuOptions};
use mmea_core::{Device, Tensor};

static GPU: OnceLock<Option<Device>> = OnceLock::new();

/// The GPU device, or None (with a printed reason) when no adapter exists. With `MMEA_REQUIRE_GPU=1`
/// (set in CI) a missing adapter fails the test instead of skipping it.
pub fn gpu() -> Option<Device> {
    GPU.get_or_init(|| match GpuContext::new_blocking(&GpuOptions::default()) {
        Ok(ctx) => {
            eprintln!("GPU tests run on: {} ({})", ctx.report().name, ctx.report().backend);
            Some(Device::Gpu(ctx))
        }
        Err(e) => {
            if std::env::var("MMEA_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("MMEA_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("SKIPPING GPU checks: no adapter ({e})");
            note_skip(&format!("{}: GPU checks (no adapter: {e})", env!("CARGO_CRATE_NAME")));
            None
        }
    })
    .clone()
}

/// Records a skipped GPU test in `target/gpu-skipped.log`, which `.ci/run` counts at the end of the run
/// (libtest hides the output of passing tests, so a printed line alone would go unseen).
pub fn note_skip(what: &str) {
    use std::io::Write;
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gpu-skipped.log");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
        let _ = writeln!(f, "{what}");
    }
}

/// Run `body` on the CPU and on the GPU (when present) and compare every returned tensor.
pub fn check_backends<F>(name: &str, atol: f32, rtol: f32, body: F)
where
    F: Fn(&Device) -> Vec<Tensor>,
{
    let want = body(&Device::Cpu);
    let Some(g) = gpu() else { return };
    let got = body(&g);
    assert_eq!(want.len(), got.len(), "{name}: different number of outputs");
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.shape(), g.shape(), "{name}: output {i} shape");
        match w.dtype() {
            mmea_core::DType::F32 => assert_close(&format!("{name}[{i}]"), &vals(g), &vals(w), atol, rtol),
            mmea_core::DType::U32 => assert_eq!(g.to_vec_u32_blocking().unwrap(), w.to_vec_u32_blocking().unwrap(), "{name}[{i}]"),
        }
    }
}

pub fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec_f32_blocking().unwrap()
}

pub fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite() == w.is_finite(), "{name}[{i}]: got {g}, want {w}");
        let err = (g - w).abs();
        let tol = atol + rtol * w.abs();
        if err > tol && err - tol > worst.1 {
            worst = (i, err - tol);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!("{name}: element {i}: got {}, want {} (|diff| = {}, atol {atol}, rtol {rtol})", got[i], want[i], (got[i] - want[i]).abs());
    }
}

/// Deterministic uniform values in [lo, hi) (splitmix64).
pub fn rand_vec(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

pub fn t(dev: &Device, data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(dev, data.to_vec(), shape).unwrap()
}
pub fn tu(dev: &Device, data: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_u32(dev, data.to_vec(), shape).unwrap()
}

/// Central finite differences of a scalar function (evaluated in f64 by the caller where possible).
pub fn finite_diff(x: &[f32], eps: f32, f: impl Fn(&[f32]) -> f64) -> Vec<f32> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let fp = f(&xp);
            xp[i] = orig - eps;
            let fm = f(&xp);
            xp[i] = orig;
            ((fp - fm) / (2.0 * eps as f64)) as f32
        })
        .collect()
}

/// `Σ_i w_i y_i`: a random linear functional turns any op into a scalar loss for gradient checks.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}
