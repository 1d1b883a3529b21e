use mmea_core::autodiff::Tape;
use mmea_core::ops::reflection::{self, ad, Act, RelGraph};
use mmea_core::{autodiff, Device, Error, Tensor};
use proptest::prelude::*;

use crate::common::*;

/// A graph as plain lists, in input (unsorted) order.
#[derive(Clone, Debug)]
struct G {
    n: usize,
    r: usize,
    edges: Vec<(u32, u32)>,
    mix: Vec<Vec<(u32, f32)>>,
}

impl G {
    fn build(&self, d: &Device) -> RelGraph {
        RelGraph::new(d, self.n, self.r, &self.edges, &self.mix).unwrap()
    }
    /// Input positions in the graph's edge order (stable sort by head, then tail).
    fn order(&self) -> Vec<usize> {
        let mut o: Vec<usize> = (0..self.edges.len()).collect();
        o.sort_by_key(|&e| self.edges[e]);
        o
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, k: usize) -> usize {
        (self.next() % k as u64) as usize
    }
}

/// `t` random edges plus `hub` extra out-edges of entity 1. Entities 4, 9, 14, ... have no out-edges; every
/// 13th edge is a self loop; each edge mixes 1-3 relations (weights 1/count, as Dual-AMN); relation r-1
/// is never used when r > 1.
fn random_graph(seed: u64, n: usize, r: usize, t: usize, hub: usize) -> G {
    let mut rng = Rng(seed.wrapping_mul(7919).wrapping_add(17));
    let heads: Vec<u32> = (0..n as u32).filter(|i| i % 5 != 4).collect();
    let used = if r > 1 { r - 1 } else { r };
    let mut edges = Vec::new();
    let mut mix = Vec::new();
    for k in 0..t + if n > 1 { hub } else { 0 } {
        let h = if k >= t { 1 } else { heads[rng.below(heads.len())] };
        let tail = if k % 13 == 0 { h } else { rng.below(n) as u32 };
        let m = 1 + rng.below(3);
        edges.push((h, tail));
        mix.push((0..m).map(|_| (rng.below(used) as u32, 1.0 / m as f32)).collect());
    }
    G { n, r, edges, mix }
}

/// The small hand-made graph of the gradient tests: a self loop, multi-relation edges, an edge without
/// mixing entries (3 -> 4), entity 4 without out-edges, relation 4 unused, duplicate relation in a mix.
fn small_graph() -> G {
    let e = |h: u32, t: u32, rs: &[u32]| ((h, t), rs.iter().map(|&r| (r, 1.0 / rs.len() as f32)).collect::<Vec<_>>());
    let list = [e(0, 2, &[1, 2]), e(0, 1, &[0]), e(0, 0, &[0]), e(1, 3, &[2]), e(1, 0, &[3, 0, 1]), e(2, 2, &[1]), e(3, 4, &[]), e(3, 1, &[0]), e(5, 1, &[3]), e(5, 2, &[2, 3, 2])];
    G { n: 6, r: 5, edges: list.iter().map(|v| v.0).collect(), mix: list.iter().map(|v| v.1.clone()).collect() }
}

/// Straightforward reference in f64 that materialises u, ρ, ñ and s for every edge: `(y, α in input order)`.
fn naive(g: &G, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act) -> (Vec<f64>, Vec<f64>) {
    let t = g.edges.len();
    let mut rho = vec![vec![0.0f64; d]; t];
    let mut nt = vec![vec![0.0f64; d]; t];
    let mut s = vec![0.0f64; t];
    for e in 0..t {
        let mut u = vec![0.0f64; d];
        for &(r, w) in &g.mix[e] {
            for c in 0..d {
                u[c] += w as f64 * rel[r as usize * d + c] as f64;
            }
        }
        let nrm = u.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        let tl = g.edges[e].1 as usize;
        let xt: Vec<f64> = (0..d).map(|c| x[tl * d + c] as f64).collect();
        rho[e] = u.iter().map(|v| v / nrm).collect();
        let xr: f64 = (0..d).map(|c| xt[c] * rho[e][c]).sum();
        nt[e] = (0..d).map(|c| xt[c] - 2.0 * xr * rho[e][c]).collect();
        s[e] = (0..d).map(|c| rho[e][c] * a[c] as f64).sum();
    }
    let mut y = vec![0.0f64; g.n * d];
    let mut alpha = vec![0.0f64; t];
    for h in 0..g.n {
        let es: Vec<usize> = (0..t).filter(|&e| g.edges[e].0 as usize == h).collect();
        let m = es.iter().map(|&e| s[e]).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = es.iter().map(|&e| (s[e] - m).exp()).sum();
        for &e in &es {
            alpha[e] = (s[e] - m).exp() / z;
            for c in 0..d {
                y[h * d + c] += alpha[e] * nt[e][c];
            }
        }
        for c in 0..d {
            let v = &mut y[h * d + c];
            if act == Act::Tanh {
                *v = v.tanh();
            }
        }
    }
    (y, alpha)
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn inputs(seed: u64, g: &G, d: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (rand_vec(seed, g.n * d, -1.0, 1.0), rand_vec(seed + 1, g.r * d, -1.0, 1.0), rand_vec(seed + 2, d, -1.0, 1.0))
}

fn forward(dev: &Device, g: &G, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act) -> (Tensor, reflection::ReflectionSaved) {
    reflection::reflection_attention(&g.build(dev), &t(dev, x, &[g.n, d]), &t(dev, rel, &[g.r, d]), &t(dev, a, &[d]), act).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn backward(dev: &Device, g: &G, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act, gy: &[f32]) -> Vec<Tensor> {
    let graph = g.build(dev);
    let (xt, rt, at) = (t(dev, x, &[g.n, d]), t(dev, rel, &[g.r, d]), t(dev, a, &[d]));
    let (_, saved) = reflection::reflection_attention(&graph, &xt, &rt, &at, act).unwrap();
    let (gx, gr, ga) = reflection::reflection_attention_backward(&graph, &xt, &rt, &at, act, &saved, &t(dev, gy, &[g.n, d])).unwrap();
    vec![gx, gr, ga]
}

/// Checks the CPU twin against the naive reference (y and α, α permuted to the graph's edge order).
fn check_cpu_vs_naive(name: &str, g: &G, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act) {
    let (y, saved) = forward(&Device::Cpu, g, x, rel, a, d, act);
    let (want_y, want_alpha) = naive(g, x, rel, a, d, act);
    assert_close(&format!("{name} y"), &vals(&y), &f32s(&want_y), 2e-6, 1e-4);
    let alpha_sorted: Vec<f64> = g.order().iter().map(|&e| want_alpha[e]).collect();
    assert_close(&format!("{name} alpha"), &vals(&saved.alpha().unwrap()), &f32s(&alpha_sorted), 2e-6, 1e-4);
}

/// The fast CPU path (what `Device::Cpu` runs) against the shader-order twin, on the graph's slices:
/// forward y and edge scalars, backward g_x, g_rel and part (from the twin's edge scalars, with `gy` as
/// g_o). The fast path performs the twin's f32 operations in the same order, so they agree bit for bit.
#[allow(clippy::too_many_arguments)]
fn check_fast_vs_twin(name: &str, g: &G, x: &[f32], rel: &[f32], a: &[f32], d: usize, act: Act, gy: &[f32]) {
    let graph = g.build(&Device::Cpu);
    let (index, weights) = (graph.index.to_vec_u32_blocking().unwrap(), graph.weights.to_vec_f32_blocking().unwrap());
    let view = reflection::cpu::GraphView { layout: graph.layout, index: &index, weights: &weights, n: graph.n(), t: graph.num_edges(), r: graph.num_rel() };
    let same = |what: &str, got: &[f32], want: &[f32]| {
        assert_eq!(got.len(), want.len(), "{name} {what}: lengths differ");
        if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
            panic!("{name} {what}[{i}]: fast {} != twin {} (d = {d})", got[i], want[i]);
        }
    };
    let (y_twin, edge_twin) = reflection::cpu::forward(&view, x, rel, a, d, act);
    let (y_fast, edge_fast) = reflection::fast::forward(&view, x, rel, a, d, act);
    same("y", &y_fast, &y_twin);
    same("edge scalars", &edge_fast, &edge_twin);
    let twin = reflection::cpu::backward(&view, x, rel, a, d, &edge_twin, gy);
    let fast = reflection::fast::backward(&view, x, rel, a, d, &edge_twin, gy);
    same("g_x", &fast.0, &twin.0);
    same("g_rel", &fast.1, &twin.1);
    same("part", &fast.2, &twin.2);
}

/// `g` plus `extra` edges into entity `hub` (a tail hub), from random heads, each with one relation.
fn with_tail_hub(mut g: G, hub: u32, extra: usize, seed: u64) -> G {
    let mut rng = Rng(seed);
    for _ in 0..extra {
        g.edges.push((rng.below(g.n) as u32, hub));
        g.mix.push(vec![(rng.below(g.r) as u32, 1.0)]);
    }
    g
}

#[test]
fn fast_cpu_path_matches_twin() {
    // Hubs heavy enough that the fast path splits their rows into column blocks (for d >= 32): a head hub
    // (entity 1, 700 extra out-edges, also past the fused per-head path), a tail hub (entity 2, 600 extra
    // in-edges) and, with only 3 relations, relations owning a third or more of the entries each. Ragged
    // widths around the 64 lanes of the dot products and the 8-column blocks; tiny graphs too.
    let heavy = with_tail_hub(random_graph(3, 400, 3, 2000, 700), 2, 600, 4);
    let wide = random_graph(5, 300, 12, 1500, 100);
    let cases = [(&heavy, 1), (&heavy, 7), (&heavy, 33), (&heavy, 64), (&heavy, 130), (&wide, 37), (&wide, 70), (&wide, 300)];
    for (i, &(g, d)) in cases.iter().enumerate() {
        let (x, rel, a) = inputs(200 + i as u64, g, d);
        let gy = rand_vec(210 + i as u64, g.n * d, -1.0, 1.0);
        for act in [Act::Tanh, Act::Identity] {
            check_fast_vs_twin(&format!("case {i} {act:?}"), g, &x, &rel, &a, d, act, &gy);
        }
    }
    let small = small_graph();
    let (x, rel, a) = inputs(220, &small, 5);
    check_fast_vs_twin("small graph", &small, &x, &rel, &a, 5, Act::Tanh, &rand_vec(221, small.n * 5, -1.0, 1.0));
    let degenerate = [
        G { n: 3, r: 2, edges: vec![], mix: vec![] },
        G { n: 1, r: 1, edges: vec![(0, 0)], mix: vec![vec![(0, 1.0)]] },
        G { n: 2, r: 1, edges: vec![(0, 1), (1, 0)], mix: vec![vec![], vec![(0, 1.0)]] },
    ];
    for (i, g) in degenerate.iter().enumerate() {
        for d in [0usize, 1, 5] {
            let (x, rel, a) = inputs(230 + i as u64, g, d);
            check_fast_vs_twin(&format!("degenerate {i} d={d}"), g, &x, &rel, &a, d, Act::Tanh, &rand_vec(240, g.n * d, -1.0, 1.0));
        }
    }
}

#[test]
fn forward_matches_naive_reference_and_gpu() {
    // n = 300 heads (one workgroup each), a hub with 100 out-edges (> 64, so the strided α loop wraps),
    // d = 37 and 70 (ragged against the 64 invocations of a workgroup).
    let g = random_graph(1, 300, 12, 1500, 100);
    for (d, act) in [(37, Act::Tanh), (70, Act::Tanh), (70, Act::Identity)] {
        let (x, rel, a) = inputs(10 + d as u64, &g, d);
        check_cpu_vs_naive(&format!("d={d} {act:?}"), &g, &x, &rel, &a, d, act);
        check_backends(&format!("reflection forward d={d} {act:?}"), 2e-6, 1e-4, |dev| {
            let (y, saved) = forward(dev, &g, &x, &rel, &a, d, act);
            vec![y, saved.edge.clone(), saved.alpha().unwrap()]
        });
        // Entity 4 has no out-edges: act(0) = 0.
        let (y, _) = forward(&Device::Cpu, &g, &x, &rel, &a, d, act);
        assert!(vals(&y)[4 * d..5 * d].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn householder_reflection_preserves_norms() {
    // One out-edge per head ⇒ α = 1 and (identity activation) y_h = ñ_e = H_e x_t, so ‖y_h‖ = ‖x_t‖,
    // while y_h itself differs from x_t (the reflection is not the identity).
    let n = 150;
    let d = 70;
    let mut rng = Rng(5);
    let edges: Vec<(u32, u32)> = (0..n as u32).map(|h| (h, (h * 7 + 3) % n as u32)).collect();
    let mix: Vec<Vec<(u32, f32)>> = (0..n).map(|_| vec![(rng.below(6) as u32, 0.7), (rng.below(6) as u32, 0.3)]).collect();
    let g = G { n, r: 6, edges, mix };
    let (x, rel, a) = inputs(30, &g, d);
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        let (y, saved) = forward(&dev, &g, &x, &rel, &a, d, Act::Identity);
        let y = vals(&y);
        assert!(vals(&saved.alpha().unwrap()).iter().all(|&v| v == 1.0));
        let mut moved = 0;
        for (h, &(_, tl)) in g.edges.iter().enumerate() {
            let (yr, xr) = (&y[h * d..(h + 1) * d], &x[tl as usize * d..(tl as usize + 1) * d]);
            assert!((norm(yr) - norm(xr)).abs() <= 1e-5 * norm(xr), "head {h}: |y| = {}, |x_t| = {}", norm(yr), norm(xr));
            if yr.iter().zip(xr).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) > 1e-3 {
                moved += 1;
            }
        }
        assert!(moved > n * 9 / 10, "only {moved} of {n} rows were reflected");
    }
}

#[test]
fn degenerate_graphs() {
    // No edges at all; one entity with a self loop and d = 1; an edge without mixing entries (ρ = 0, so
    // ñ = x_t and s = 0); a head whose only edge has a zero relation vector.
    let cases = [
        G { n: 3, r: 2, edges: vec![], mix: vec![] },
        G { n: 1, r: 1, edges: vec![(0, 0)], mix: vec![vec![(0, 1.0)]] },
        G { n: 2, r: 1, edges: vec![(0, 1), (1, 0)], mix: vec![vec![], vec![(0, 1.0)]] },
    ];
    for (i, g) in cases.iter().enumerate() {
        for d in [1usize, 5] {
            let (x, rel, a) = inputs(40 + i as u64, g, d);
            check_cpu_vs_naive(&format!("case {i} d={d}"), g, &x, &rel, &a, d, Act::Tanh);
            let gy = rand_vec(50, g.n * d, -1.0, 1.0);
            check_backends(&format!("degenerate {i} d={d}"), 1e-6, 1e-5, |dev| {
                let (y, saved) = forward(dev, g, &x, &rel, &a, d, Act::Tanh);
                let mut out = vec![y, saved.edge];
                out.extend(backward(dev, g, &x, &rel, &a, d, Act::Tanh, &gy));
                out
            });
        }
    }
    // Edge 0 -> 1 without mixing reflects nothing: y_0 = tanh(x_1).
    let g = &cases[2];
    let (x, rel, a) = inputs(60, g, 4);
    let (y, _) = forward(&Device::Cpu, g, &x, &rel, &a, 4, Act::Tanh);
    assert_close("unmixed edge", &vals(&y)[..4], &x[4..8].iter().map(|v| v.tanh()).collect::<Vec<_>>(), 1e-6, 1e-6);
    // No edges: everything is zero, gradients too.
    let g = &cases[0];
    let (x, rel, a) = inputs(61, g, 3);
    let grads = backward(&Device::Cpu, g, &x, &rel, &a, 3, Act::Tanh, &[1.0; 9]);
    assert!(grads.iter().all(|t| vals(t).iter().all(|&v| v == 0.0)));
}

#[test]
fn backward_matches_finite_differences() {
    let g = small_graph();
    let d = 5;
    let (x, rel, a) = inputs(70, &g, d);
    let w = rand_vec(73, g.n * d, -1.0, 1.0);
    for act in [Act::Tanh, Act::Identity] {
        let grads = backward(&Device::Cpu, &g, &x, &rel, &a, d, act, &w);
        let (gx, gr, ga) = (vals(&grads[0]), vals(&grads[1]), vals(&grads[2]));
        // L = Σ W ⊙ y. Analytic gradients (module docs of ops::reflection), with g_o = W ⊙ act'(y):
        //   g_x[t] = Σ_{e into t} α_e (g_o[h] − 2 (g_o[h]·ρ_e) ρ_e),  g_a = Σ_e g_s_e ρ_e,
        //   g_Rel[r] = Σ_{(e, m) in r} m (g_ρ_e − (g_ρ_e·ρ_e) ρ_e)/‖u_e‖.
        // First against central differences of the f64 reference (step 1/256, exact in f32) ...
        let eps = 1.0 / 256.0;
        let lx = |v: &[f32]| dot_f64(&naive(&g, v, &rel, &a, d, act).0, &w);
        let lr = |v: &[f32]| dot_f64(&naive(&g, &x, v, &a, d, act).0, &w);
        let la = |v: &[f32]| dot_f64(&naive(&g, &x, &rel, v, d, act).0, &w);
        assert_close(&format!("{act:?} g_x vs f64 fd"), &gx, &finite_diff(&x, eps, lx), 2e-4, 1e-3);
        assert_close(&format!("{act:?} g_rel vs f64 fd"), &gr, &finite_diff(&rel, eps, lr), 2e-4, 1e-3);
        assert_close(&format!("{act:?} g_a vs f64 fd"), &ga, &finite_diff(&a, eps, la), 2e-4, 1e-3);
        // ... then against differences of the f32 CPU twin itself.
        let cx = |v: &[f32]| dot(&vals(&forward(&Device::Cpu, &g, v, &rel, &a, d, act).0), &w);
        let cr = |v: &[f32]| dot(&vals(&forward(&Device::Cpu, &g, &x, v, &a, d, act).0), &w);
        let ca = |v: &[f32]| dot(&vals(&forward(&Device::Cpu, &g, &x, &rel, v, d, act).0), &w);
        assert_close(&format!("{act:?} g_x vs twin fd"), &gx, &finite_diff(&x, 1e-2, cx), 3e-3, 3e-3);
        assert_close(&format!("{act:?} g_rel vs twin fd"), &gr, &finite_diff(&rel, 1e-2, cr), 3e-3, 3e-3);
        assert_close(&format!("{act:?} g_a vs twin fd"), &ga, &finite_diff(&a, 1e-2, ca), 3e-3, 3e-3);
        // Relation 4 is used by no edge.
        assert!(gr[4 * d..5 * d].iter().all(|&v| v == 0.0));
        check_backends(&format!("small backward {act:?}"), 1e-6, 1e-5, |dev| backward(dev, &g, &x, &rel, &a, d, act, &w));
    }
}

fn dot_f64(y: &[f64], w: &[f32]) -> f64 {
    y.iter().zip(w).map(|(&a, &b)| a * b as f64).sum()
}

#[test]
fn backward_gpu_matches_cpu_on_random_graph() {
    let g = random_graph(2, 300, 12, 1500, 100);
    for d in [37usize, 70] {
        let (x, rel, a) = inputs(80 + d as u64, &g, d);
        let gy = rand_vec(90 + d as u64, g.n * d, -1.0, 1.0);
        let cpu = backward(&Device::Cpu, &g, &x, &rel, &a, d, Act::Tanh, &gy);
        // Relation 11 is unused; entities that are no edge's tail get no gradient.
        assert!(vals(&cpu[1])[11 * d..].iter().all(|&v| v == 0.0));
        if let Some(lonely) = (0..g.n as u32).find(|i| g.edges.iter().all(|e| e.1 != *i)) {
            let lonely = lonely as usize;
            assert!(vals(&cpu[0])[lonely * d..(lonely + 1) * d].iter().all(|&v| v == 0.0));
        }
        check_backends(&format!("reflection backward d={d}"), 1e-5, 1e-4, |dev| backward(dev, &g, &x, &rel, &a, d, Act::Tanh, &gy));
        // Deterministic: two GPU runs agree bit for bit.
        if let Some(dev) = gpu() {
            let (r1, r2) = (backward(&dev, &g, &x, &rel, &a, d, Act::Tanh, &gy), backward(&dev, &g, &x, &rel, &a, d, Act::Tanh, &gy));
            for (p, q) in r1.iter().zip(&r2) {
                assert_eq!(vals(p), vals(q));
            }
        }
    }
}

#[test]
fn tape_wrapper_matches_finite_differences() {
    // L = Σ W ⊙ reflection_attention(x, Rel, a): tape gradients vs central differences of the f64 reference.
    let g = small_graph();
    let d = 5;
    let (x, rel, a) = inputs(100, &g, d);
    let w = rand_vec(103, g.n * d, -1.0, 1.0);
    let run = |dev: &Device| -> Vec<Vec<f32>> {
        let tape = Tape::new();
        let graph = g.build(dev);
        let (xv, rv, av) = (tape.param(&t(dev, &x, &[g.n, d])), tape.param(&t(dev, &rel, &[g.r, d])), tape.param(&t(dev, &a, &[d])));
        let wv = tape.constant(&t(dev, &w, &[g.n, d]));
        let y = ad::reflection_attention(&tape, &graph, &xv, &rv, &av, Act::Tanh).unwrap();
        let l = autodiff::ad::sum(&tape, &autodiff::ad::mul(&tape, &y, &wv).unwrap()).unwrap();
        let gr = tape.backward(&l).unwrap();
        [&xv, &rv, &av].iter().map(|v| vals(gr.get(v).unwrap())).collect()
    };
    let got = run(&Device::Cpu);
    let eps = 1.0 / 256.0;
    assert_close("tape g_x", &got[0], &finite_diff(&x, eps, |v| dot_f64(&naive(&g, v, &rel, &a, d, Act::Tanh).0, &w)), 2e-4, 1e-3);
    assert_close("tape g_rel", &got[1], &finite_diff(&rel, eps, |v| dot_f64(&naive(&g, &x, v, &a, d, Act::Tanh).0, &w)), 2e-4, 1e-3);
    assert_close("tape g_a", &got[2], &finite_diff(&a, eps, |v| dot_f64(&naive(&g, &x, &rel, v, d, Act::Tanh).0, &w)), 2e-4, 1e-3);
    if let Some(dev) = gpu() {
        for (i, (gg, cc)) in run(&dev).iter().zip(&got).enumerate() {
            assert_close(&format!("tape gpu {i}"), gg, cc, 1e-6, 1e-5);
        }
    }
}

#[test]
fn rel_graph_and_inputs_are_validated() {
    let d = Device::Cpu;
    let one = vec![vec![(0u32, 1.0f32)]];
    let err = |r: Result<RelGraph, Error>| r.unwrap_err().to_string();
    let e = err(RelGraph::new(&d, 3, 2, &[(0, 3)], &one));
    assert!(e.contains("RelGraph::new") && e.contains("(0 -> 3)"), "{e}");
    let e = err(RelGraph::new(&d, 3, 2, &[(0, 1)], &[vec![(2, 1.0)]]));
    assert!(e.contains("relation 2"), "{e}");
    assert!(matches!(RelGraph::new(&d, 3, 2, &[(0, 1)], &[vec![(1, f32::INFINITY)]]), Err(Error::NonFinite { .. })));
    assert!(matches!(RelGraph::new(&d, 3, 2, &[(0, 1), (1, 2)], &one), Err(Error::InvalidArgument { .. })));
    let g = RelGraph::new(&d, 3, 2, &[(2, 1), (0, 1), (0, 0)], &[vec![(0, 1.0)], vec![(1, 1.0)], vec![(0, 0.5), (1, 0.5)]]).unwrap();
    assert_eq!((g.n(), g.num_rel(), g.num_edges(), g.nnz()), (3, 2, 3, 4));
    // Edges are stored sorted by (head, tail).
    let l = g.layout;
    let idx = g.index.to_vec_u32_blocking().unwrap();
    assert_eq!(&idx[l.head_offsets..l.head_offsets + 4], &[0, 2, 2, 3]);
    assert_eq!(&idx[l.edge_tail..l.edge_tail + 3], &[0, 1, 1]);
    assert_eq!(&idx[l.rel_offsets..l.rel_offsets + 3], &[0, 2, 4]);
    let (x, rel, a) = (t(&d, &[0.0; 6], &[3, 2]), t(&d, &[0.0; 4], &[2, 2]), t(&d, &[0.0; 2], &[2]));
    let bad = reflection::reflection_attention(&g, &x, &t(&d, &[0.0; 6], &[3, 2]), &a, Act::Tanh);
    assert!(matches!(bad, Err(Error::Shape { op: "reflection_attention", .. })));
    let bad = reflection::reflection_attention(&g, &x, &rel, &t(&d, &[0.0; 3], &[3]), Act::Tanh);
    assert!(matches!(bad, Err(Error::Shape { .. })));
    let (_, saved) = reflection::reflection_attention(&g, &x, &rel, &a, Act::Tanh).unwrap();
    let bad = reflection::reflection_attention_backward(&g, &x, &rel, &a, Act::Tanh, &saved, &t(&d, &[0.0; 4], &[2, 2]));
    assert!(matches!(bad, Err(Error::Shape { op: "reflection_attention_backward", .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn prop_random_small_graphs(n in 1usize..30, r in 1usize..6, edges in 0usize..90, hub in 0usize..80, d in 1usize..70, seed in 0u64..1000) {
        let g = random_graph(seed, n, r, edges, hub);
        let (x, rel, a) = inputs(seed + 7, &g, d);
        let gy = rand_vec(seed + 11, n * d, -1.0, 1.0);
        check_cpu_vs_naive("prop", &g, &x, &rel, &a, d, Act::Tanh);
        check_fast_vs_twin("prop", &g, &x, &rel, &a, d, Act::Tanh, &gy);
        check_backends("prop reflection", 1e-5, 1e-4, |dev| {
            let (y, saved) = forward(dev, &g, &x, &rel, &a, d, Act::Tanh);
            let mut out = vec![y, saved.edge];
            out.extend(backward(dev, &g, &x, &rel, &a, d, Act::Tanh, &gy));
            out
        });
    }
}
