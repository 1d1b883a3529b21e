//! The feature-attention graph layer (GAT): CPU twin vs an f64 reference written from the formulas, GPU vs
//! CPU on graphs spanning many workgroups (hubs with more edges than a workgroup has invocations, ragged d),
//! backward vs finite differences, the tape wrapper, validation.

use mmea_core::autodiff::{self, Tape};
use mmea_core::ops::gat::{self, ad, GatGraph, GatLogit};
use mmea_core::{Device, Error, Tensor};
use proptest::prelude::*;

use crate::common::*;

/// A host-side graph: n entities and directed edges (any order, duplicates allowed).
struct G {
    n: usize,
    edges: Vec<(u32, u32)>,
}

impl G {
    fn build(&self, d: &Device) -> GatGraph {
        GatGraph::new(d, self.n, &self.edges).unwrap()
    }
    /// Edges in the graph's order (sorted by head, then tail).
    fn sorted(&self) -> Vec<(u32, u32)> {
        let mut e = self.edges.clone();
        e.sort();
        e
    }
}

/// Random edges, with node 0 a hub of `hub` extra out-edges and node 1 a tail of `hub` extra in-edges.
fn random_graph(seed: u64, n: usize, t: usize, hub: usize) -> G {
    let r = rand_vec(seed, 2 * t + 2 * hub, 0.0, 1.0);
    let pick = |v: f32| ((v * n as f32) as u32).min(n as u32 - 1);
    let mut edges: Vec<(u32, u32)> = (0..t).map(|k| (pick(r[2 * k]), pick(r[2 * k + 1]))).collect();
    edges.extend((0..hub).map(|k| (0, pick(r[2 * t + k]))));
    edges.extend((0..hub).map(|k| (pick(r[2 * t + hub + k]), 1.min(n as u32 - 1))));
    G { n, edges }
}

/// f64 reference from the formulas: `y_h = Σ_e softmax(s)_e x_t`.
fn naive(g: &G, x: &[f32], p: &[f32], q: &[f32], d: usize, logit: GatLogit) -> Vec<f64> {
    let edges = g.sorted();
    let mut y = vec![0.0f64; g.n * d];
    for h in 0..g.n {
        let out: Vec<&(u32, u32)> = edges.iter().filter(|e| e.0 as usize == h).collect();
        if out.is_empty() {
            continue;
        }
        let s: Vec<f64> = out
            .iter()
            .map(|e| {
                let z = p[h] as f64 + q[e.1 as usize] as f64;
                logit.sign as f64 * if z > 0.0 { z } else { logit.slope as f64 * z }
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let zsum: f64 = s.iter().map(|v| (v - m).exp()).sum();
        for (e, sv) in out.iter().zip(&s) {
            let a = (sv - m).exp() / zsum;
            for c in 0..d {
                y[h * d + c] += a * x[e.1 as usize * d + c] as f64;
            }
        }
    }
    y
}

fn inputs(seed: u64, n: usize, d: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (rand_vec(seed, n * d, -1.0, 1.0), rand_vec(seed + 1, n, -2.0, 2.0), rand_vec(seed + 2, n, -2.0, 2.0))
}

fn forward(dev: &Device, g: &G, x: &[f32], p: &[f32], q: &[f32], d: usize, logit: GatLogit) -> (Tensor, gat::GatSaved) {
    gat::gat_attention(&g.build(dev), &t(dev, x, &[g.n, d]), &t(dev, p, &[g.n, 1]), &t(dev, q, &[g.n]), logit).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn backward(dev: &Device, g: &G, x: &[f32], p: &[f32], q: &[f32], d: usize, logit: GatLogit, gy: &[f32]) -> Vec<Tensor> {
    let graph = g.build(dev);
    let (xt, pt, qt) = (t(dev, x, &[g.n, d]), t(dev, p, &[g.n, 1]), t(dev, q, &[g.n]));
    let (_, saved) = gat::gat_attention(&graph, &xt, &pt, &qt, logit).unwrap();
    let (gx, gp, gq) = gat::gat_attention_backward(&graph, &xt, &pt, &qt, logit, &saved, &t(dev, gy, &[g.n, d])).unwrap();
    vec![gx, gp, gq]
}

fn dot_f64(y: &[f64], w: &[f32]) -> f64 {
    y.iter().zip(w).map(|(&a, &b)| a * b as f64).sum()
}

#[test]
fn forward_matches_naive_reference_and_gpu() {
    // 300 heads (5 grid rows of workgroups would not be needed, but > 256 for the flat passes), hubs of
    // 150 edges (more than the 64 invocations of a head's workgroup), d ragged against 64.
    let g = random_graph(1, 300, 1200, 150);
    for d in [1usize, 37, 70, 130] {
        for logit in [GatLogit::PYGAT, GatLogit::GAT] {
            let (x, p, q) = inputs(10 + d as u64, g.n, d);
            let (y, saved) = forward(&Device::Cpu, &g, &x, &p, &q, d, logit);
            let want: Vec<f32> = naive(&g, &x, &p, &q, d, logit).iter().map(|&v| v as f32).collect();
            assert_close(&format!("gat cpu vs f64 d={d} {logit:?}"), &vals(&y), &want, 1e-6, 1e-5);
            // α sums to 1 over every head that has edges.
            let (edges, alpha) = (g.sorted(), vals(&saved.alpha));
            let mut sums = vec![0.0f64; g.n];
            for (e, a) in edges.iter().zip(&alpha) {
                sums[e.0 as usize] += *a as f64;
            }
            for (h, sum) in sums.iter().enumerate() {
                let has = edges.iter().any(|e| e.0 as usize == h);
                assert!(if has { (sum - 1.0).abs() < 1e-5 } else { *sum == 0.0 }, "head {h}: {sum}");
            }
            check_backends(&format!("gat forward d={d} {logit:?}"), 1e-6, 1e-5, |dev| {
                let (y, s) = forward(dev, &g, &x, &p, &q, d, logit);
                vec![y, s.alpha]
            });
        }
    }
}

#[test]
fn degenerate_graphs() {
    // No edges at all, a node without out-edges, one self loop.
    for (n, edges) in [(3usize, vec![]), (4, vec![(0u32, 1u32), (0, 2), (3, 3)]), (1, vec![(0, 0)])] {
        let g = G { n, edges };
        for d in [1usize, 3] {
            let (x, p, q) = inputs(40, n, d);
            let (y, _) = forward(&Device::Cpu, &g, &x, &p, &q, d, GatLogit::PYGAT);
            let want: Vec<f32> = naive(&g, &x, &p, &q, d, GatLogit::PYGAT).iter().map(|&v| v as f32).collect();
            assert_close("degenerate", &vals(&y), &want, 1e-6, 1e-5);
            let gy = rand_vec(41, n * d, -1.0, 1.0);
            check_backends(&format!("gat degenerate n={n} d={d}"), 1e-6, 1e-5, |dev| {
                let mut out = backward(dev, &g, &x, &p, &q, d, GatLogit::PYGAT, &gy);
                out.insert(0, forward(dev, &g, &x, &p, &q, d, GatLogit::PYGAT).0);
                out
            });
        }
    }
    // A head with a single edge has α = 1 whatever its logit: no gradient reaches p or q.
    let g = G { n: 2, edges: vec![(0, 1), (1, 0)] };
    let (x, p, q) = inputs(42, 2, 3);
    let grads = backward(&Device::Cpu, &g, &x, &p, &q, 3, GatLogit::GAT, &[1.0; 6]);
    assert!(vals(&grads[1]).iter().chain(&vals(&grads[2])).all(|&v| v == 0.0));
}

#[test]
fn backward_matches_finite_differences() {
    let g = G { n: 6, edges: vec![(0, 1), (0, 2), (0, 0), (1, 0), (1, 3), (2, 2), (3, 4), (3, 5), (3, 1), (3, 3), (5, 0), (5, 0)] };
    let d = 4;
    // Keep z away from the LeakyReLU kink so central differences are smooth.
    let (x, mut p, mut q) = inputs(70, g.n, d);
    for v in p.iter_mut().chain(q.iter_mut()) {
        *v = if *v >= 0.0 { *v + 0.3 } else { *v - 0.3 };
    }
    // Head 0's edges go to 0, 1, 2 with z = 0.5, 1.0, -1.0: both LeakyReLU branches. A shift of p_h moves
    // all of a head's logits alike, so g_p is zero unless its edges straddle the kink (as here).
    (p[0], q[0], q[1], q[2]) = (0.0, 0.5, 1.0, -1.0);
    let w = rand_vec(73, g.n * d, -1.0, 1.0);
    for logit in [GatLogit::PYGAT, GatLogit::GAT] {
        let grads = backward(&Device::Cpu, &g, &x, &p, &q, d, logit, &w);
        let (gx, gp, gq) = (vals(&grads[0]), vals(&grads[1]), vals(&grads[2]));
        let eps = 1.0 / 512.0;
        let lx = |v: &[f32]| dot_f64(&naive(&g, v, &p, &q, d, logit), &w);
        let lp = |v: &[f32]| dot_f64(&naive(&g, &x, v, &q, d, logit), &w);
        let lq = |v: &[f32]| dot_f64(&naive(&g, &x, &p, v, d, logit), &w);
        assert_close(&format!("{logit:?} g_x vs f64 fd"), &gx, &finite_diff(&x, eps, lx), 2e-4, 1e-3);
        assert_close(&format!("{logit:?} g_p vs f64 fd"), &gp, &finite_diff(&p, eps, lp), 2e-4, 1e-3);
        assert_close(&format!("{logit:?} g_q vs f64 fd"), &gq, &finite_diff(&q, eps, lq), 2e-4, 1e-3);
        // Informative: the attention gradients are not all zero.
        assert!(gp[0].abs() > 1e-3 && gq.iter().any(|v| v.abs() > 1e-3), "{gp:?} {gq:?}");
        // Node 4 has no out-edges: no gradient through p_4.
        assert_eq!(gp[4], 0.0);
        check_backends(&format!("gat small backward {logit:?}"), 1e-6, 1e-5, |dev| backward(dev, &g, &x, &p, &q, d, logit, &w));
    }
}

#[test]
fn backward_gpu_matches_cpu_on_random_graph() {
    let g = random_graph(2, 700, 3000, 200);
    for d in [37usize, 300] {
        let (x, p, q) = inputs(80 + d as u64, g.n, d);
        let gy = rand_vec(90 + d as u64, g.n * d, -1.0, 1.0);
        check_backends(&format!("gat backward d={d}"), 1e-5, 1e-4, |dev| backward(dev, &g, &x, &p, &q, d, GatLogit::PYGAT, &gy));
        if let Some(dev) = gpu() {
            let (r1, r2) = (backward(&dev, &g, &x, &p, &q, d, GatLogit::PYGAT, &gy), backward(&dev, &g, &x, &p, &q, d, GatLogit::PYGAT, &gy));
            for (a, b) in r1.iter().zip(&r2) {
                assert_eq!(vals(a), vals(b), "deterministic");
            }
        }
    }
}

#[test]
fn tape_wrapper_matches_finite_differences() {
    // L = Σ W ⊙ gat(x, x a₁, x a₂): gradients reach x along three paths and a₁, a₂ through matmuls.
    let g = G { n: 5, edges: vec![(0, 1), (0, 2), (0, 0), (1, 0), (1, 1), (2, 3), (2, 4), (2, 2), (3, 3), (4, 0), (4, 4)] };
    let d = 3;
    let x = rand_vec(100, g.n * d, -1.0, 1.0);
    let (a1, a2) = (rand_vec(101, d, -1.0, 1.0), rand_vec(102, d, -1.0, 1.0));
    let w = rand_vec(103, g.n * d, -1.0, 1.0);
    let run = |dev: &Device, x: &[f32], a1: &[f32], a2: &[f32]| -> (f32, Vec<Vec<f32>>) {
        let tape = Tape::new();
        let graph = g.build(dev);
        let (xv, av1, av2) = (tape.param(&t(dev, x, &[g.n, d])), tape.param(&t(dev, a1, &[d, 1])), tape.param(&t(dev, a2, &[d, 1])));
        let p = autodiff::ad::matmul(&tape, &xv, &av1, false, false).unwrap();
        let q = autodiff::ad::matmul(&tape, &xv, &av2, false, false).unwrap();
        let (y, alpha) = ad::gat_attention(&tape, &graph, &xv, &p, &q, GatLogit::PYGAT, true).unwrap();
        assert_eq!(alpha.unwrap().len(), g.edges.len());
        let wv = tape.constant(&t(dev, &w, &[g.n, d]));
        let l = autodiff::ad::sum(&tape, &autodiff::ad::mul(&tape, &y, &wv).unwrap()).unwrap();
        let lv = vals(&l.value)[0];
        let gr = tape.backward(&l).unwrap();
        (lv, [&xv, &av1, &av2].iter().map(|v| vals(gr.get(v).unwrap())).collect())
    };
    let (_, got) = run(&Device::Cpu, &x, &a1, &a2);
    let eps = 1e-2;
    let fx = finite_diff(&x, eps, |v| run(&Device::Cpu, v, &a1, &a2).0 as f64);
    let f1 = finite_diff(&a1, eps, |v| run(&Device::Cpu, &x, v, &a2).0 as f64);
    let f2 = finite_diff(&a2, eps, |v| run(&Device::Cpu, &x, &a1, v).0 as f64);
    assert_close("tape g_x", &got[0], &fx, 3e-3, 3e-3);
    assert_close("tape g_a1", &got[1], &f1, 3e-3, 3e-3);
    assert_close("tape g_a2", &got[2], &f2, 3e-3, 3e-3);
    if let Some(dev) = gpu() {
        for (i, (gg, cc)) in run(&dev, &x, &a1, &a2).1.iter().zip(&got).enumerate() {
            assert_close(&format!("tape gpu {i}"), gg, cc, 1e-6, 1e-5);
        }
    }
}

#[test]
fn graph_and_inputs_are_validated() {
    let d = Device::Cpu;
    let e = GatGraph::new(&d, 3, &[(0, 3)]).unwrap_err().to_string();
    assert!(e.contains("GatGraph::new") && e.contains("(0 -> 3)"), "{e}");
    let e = GatGraph::neighbourhood(&d, 2, &[(0, 5)]).unwrap_err().to_string();
    assert!(e.contains("pair 0"), "{e}");
    // The neighbourhood pattern: self loops, both directions, duplicates collapsed.
    let g = GatGraph::neighbourhood(&d, 3, &[(0, 1), (1, 0), (2, 2)]).unwrap();
    assert_eq!((g.n(), g.num_edges()), (3, 5));
    let l = g.layout;
    let idx = g.index.to_vec_u32_blocking().unwrap();
    assert_eq!(&idx[l.head_offsets..l.head_offsets + 4], &[0, 2, 4, 5]);
    assert_eq!(&idx[l.edge_tail..l.edge_tail + 5], &[0, 1, 0, 1, 2]);
    let (x, p) = (t(&d, &[0.0; 6], &[3, 2]), t(&d, &[0.0; 3], &[3]));
    let bad = gat::gat_attention(&g, &x, &t(&d, &[0.0; 2], &[2]), &p, GatLogit::GAT);
    assert!(matches!(bad, Err(Error::Shape { op: "gat_attention", .. })));
    let bad = gat::gat_attention(&g, &t(&d, &[0.0; 4], &[2, 2]), &p, &p, GatLogit::GAT);
    assert!(matches!(bad, Err(Error::Shape { .. })));
    let (_, saved) = gat::gat_attention(&g, &x, &p, &p, GatLogit::GAT).unwrap();
    let bad = gat::gat_attention_backward(&g, &x, &p, &p, GatLogit::GAT, &saved, &t(&d, &[0.0; 4], &[2, 2]));
    assert!(matches!(bad, Err(Error::Shape { op: "gat_attention_backward", .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn prop_random_small_graphs(n in 1usize..40, edges in 0usize..120, hub in 0usize..90, d in 1usize..70, seed in 0u64..1000) {
        let g = random_graph(seed, n, edges, hub);
        let (x, p, q) = inputs(seed + 7, n, d);
        let gy = rand_vec(seed + 9, n * d, -1.0, 1.0);
        let want: Vec<f32> = naive(&g, &x, &p, &q, d, GatLogit::PYGAT).iter().map(|&v| v as f32).collect();
        assert_close("prop gat cpu", &vals(&forward(&Device::Cpu, &g, &x, &p, &q, d, GatLogit::PYGAT).0), &want, 1e-6, 1e-5);
        check_backends("prop gat", 1e-5, 1e-4, |dev| {
            let mut out = backward(dev, &g, &x, &p, &q, d, GatLogit::PYGAT, &gy);
            out.push(forward(dev, &g, &x, &p, &q, d, GatLogit::PYGAT).0);
            out
        });
    }
}
