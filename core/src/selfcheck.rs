//! A quick self-check: run each kernel on the given device and on the CPU twin, compare. Used by
//! `mmea info` (and the browser demo) to show that the shaders work on this adapter.

use crate::error::Result;
use crate::ops::{self, Unary};
use crate::tensor::{Device, Tensor};

pub struct SelfCheck {
    pub lines: Vec<String>,
    pub passed: usize,
    pub failed: usize,
}

/// Deterministic test values uniform in [-1, 1) (xorshift64; no dependency). Shared by the self-check,
/// the benchmark and the browser tests so that all of them exercise the same inputs.
pub fn test_data(seed: u64, n: usize) -> Vec<f32> {
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

fn data(seed: u64, n: usize) -> Vec<f32> {
    test_data(seed, n)
}

type Case = (&'static str, fn(&Device) -> Result<Tensor>);

fn cases() -> Vec<Case> {
    vec![
        ("matmul 130x70 * 70x90 + bias", |d| {
            let a = Tensor::from_f32(d, data(1, 130 * 70), &[130, 70])?;
            let b = Tensor::from_f32(d, data(2, 70 * 90), &[70, 90])?;
            let bias = Tensor::from_f32(d, data(3, 90), &[90])?;
            ops::linear(&a, &b, Some(&bias))
        }),
        ("tanh backward (1000)", |d| {
            let x = Tensor::from_f32(d, data(4, 1000), &[1000])?;
            let y = ops::unary(Unary::Tanh, &x)?;
            ops::unary_backward(Unary::Tanh, &x, &y, &Tensor::from_f32(d, data(5, 1000), &[1000])?)
        }),
        ("column sums 600x70", |d| ops::sum_rows(&Tensor::from_f32(d, data(6, 600 * 70), &[600, 70])?)),
        ("reflection attention, 200 entities, 600 edges, d=40", |d| {
            let (n, dim, rels) = (200usize, 40usize, 12usize);
            let r = data(7, 600 * 3);
            let idx = |v: f32, m: usize| (((v + 1.0) * 0.5 * m as f32) as usize).min(m - 1) as u32;
            let edges: Vec<(u32, u32)> = (0..600).map(|e| (idx(r[3 * e], n), idx(r[3 * e + 1], n))).collect();
            let mixing: Vec<Vec<(u32, f32)>> = (0..600).map(|e| vec![(idx(r[3 * e + 2], rels), 1.0)]).collect();
            let graph = ops::RelGraph::new(d, n, rels, &edges, &mixing)?;
            let x = Tensor::from_f32(d, data(8, n * dim), &[n, dim])?;
            let rel = Tensor::from_f32(d, data(9, rels * dim), &[rels, dim])?;
            let a = Tensor::from_f32(d, data(10, dim), &[dim])?;
            Ok(ops::reflection_attention(&graph, &x, &rel, &a, ops::Act::Tanh)?.0)
        }),
    ]
}

/// Runs natively (blocking readback). The browser demo calls [`run_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn run(device: &Device) -> Result<SelfCheck> {
    pollster::block_on(run_async(device))
}

pub async fn run_async(device: &Device) -> Result<SelfCheck> {
    let mut out = SelfCheck { lines: vec![], passed: 0, failed: 0 };
    for (name, f) in cases() {
        let want = f(&Device::Cpu)?.to_vec_f32().await?;
        let got = f(device)?.to_vec_f32().await?;
        let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0f32, f32::max);
        let ok = got.len() == want.len() && worst < 1e-4;
        if ok {
            out.passed += 1
        } else {
            out.failed += 1
        }
        out.lines.push(format!("  {} {name}: max relative difference to the CPU twin {worst:.2e}", if ok { "ok  " } else { "FAIL" }));
    }
    Ok(out)
}
