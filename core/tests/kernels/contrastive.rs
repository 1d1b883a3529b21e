use mmea_core::autodiff::{ad, Tape};
use mmea_core::ops::{self, contrastive};
use mmea_core::{Device, Tensor};
use proptest::prelude::*;

use crate::common::*;

/// Random rows of unit length (the losses expect L2-normalised inputs).
fn unit_rows(seed: u64, b: usize, d: usize) -> Vec<f32> {
    let mut v = rand_vec(seed, b * d, -1.0, 1.0);
    for row in v.chunks_mut(d.max(1)) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        row.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn sim(a: &[f32], b: &[f32], n: usize, d: usize, tau: f64) -> Vec<Vec<f64>> {
    (0..n).map(|i| (0..n).map(|j| (0..d).map(|k| a[i * d + k] as f64 * b[j * d + k] as f64).sum::<f64>() / tau).collect()).collect()
}

/// Row-wise softmax and the mean cross-entropy with gold column i: returns (L, softmax − onehot scaled by w/B).
fn ce(logits: &[Vec<f64>], w: f64) -> (f64, Vec<Vec<f64>>) {
    let b = logits.len() as f64;
    let mut loss = 0.0;
    let mut g = Vec::new();
    for (i, row) in logits.iter().enumerate() {
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
        loss += lse - row[i];
        g.push(row.iter().enumerate().map(|(j, v)| w * ((v - lse).exp() - if j == i { 1.0 } else { 0.0 }) / b).collect());
    }
    (w * loss / b, g)
}

/// `A X` for A [n, m] (f64) and X [m, d] (f32).
fn mm(a: &[Vec<f64>], x: &[f32], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; a.len() * d];
    for (i, row) in a.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            for k in 0..d {
                out[i * d + k] += v * x[j * d + k] as f64;
            }
        }
    }
    out
}

fn transpose(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a[0].len()).map(|j| a.iter().map(|r| r[j]).collect()).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// f64 InfoNCE: S = P Qᵀ/τ, L = −(1/B) Σ log softmax(S)_ii, G = (softmax − I)/B, g_P = G Q/τ, g_Q = Gᵀ P/τ.
fn ref_info_nce(p: &[f32], q: &[f32], b: usize, d: usize, tau: f64) -> (f64, Vec<f32>, Vec<f32>) {
    let (l, g) = ce(&sim(p, q, b, d, tau), 1.0);
    let gp: Vec<f64> = mm(&g, q, d).into_iter().map(|v| v / tau).collect();
    let gq: Vec<f64> = mm(&transpose(&g), p, d).into_iter().map(|v| v / tau).collect();
    (l, f32s(&gp), f32s(&gq))
}

/// f64 ICL with the literal −10⁹ I masks, and the spec's gradient formula (§7 op 18).
fn ref_icl(p: &[f32], q: &[f32], b: usize, d: usize, tau: f64, alpha: f64) -> (f64, Vec<f32>, Vec<f32>) {
    let cat = |x: Vec<Vec<f64>>, y: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        x.into_iter()
            .zip(y)
            .enumerate()
            .map(|(i, (mut a, mut bb))| {
                bb[i] -= 1e9 / tau;
                a.extend(bb);
                a
            })
            .collect()
    };
    let (la, ga) = ce(&cat(sim(p, q, b, d, tau), sim(p, p, b, d, tau)), alpha);
    let (lb, gb) = ce(&cat(sim(q, p, b, d, tau), sim(q, q, b, d, tau)), 1.0 - alpha);
    let split = |g: &[Vec<f64>]| -> (Vec<Vec<f64>>, Vec<Vec<f64>>) { (g.iter().map(|r| r[..b].to_vec()).collect(), g.iter().map(|r| r[b..].to_vec()).collect()) };
    let (gab, gaa) = split(&ga);
    let (gba, gbb) = split(&gb);
    let sum = |parts: Vec<Vec<f64>>| -> Vec<f32> { (0..b * d).map(|e| parts.iter().map(|v| v[e]).sum::<f64>() / tau).map(|v| v as f32).collect() };
    // g_P = (G_ab Q + (G_aa + G_aaᵀ) P + G_baᵀ Q)/τ;  g_Q = (G_abᵀ P + G_ba P + (G_bb + G_bbᵀ) Q)/τ.
    let gp = sum(vec![mm(&gab, q, d), mm(&gaa, p, d), mm(&transpose(&gaa), p, d), mm(&transpose(&gba), q, d)]);
    let gq = sum(vec![mm(&transpose(&gab), p, d), mm(&gba, p, d), mm(&gbb, q, d), mm(&transpose(&gbb), q, d)]);
    (la + lb, gp, gq)
}

fn run_info_nce(dev: &Device, p: &[f32], q: &[f32], b: usize, d: usize, tau: f32, block: Option<usize>) -> Vec<Tensor> {
    let (l, gp, gq) = ops::info_nce(&t(dev, p, &[b, d]), &t(dev, q, &[b, d]), tau, block).unwrap();
    assert_eq!(l.shape(), &[1]);
    vec![l, gp, gq]
}

#[allow(clippy::too_many_arguments)]
fn run_icl(dev: &Device, p: &[f32], q: &[f32], b: usize, d: usize, tau: f32, alpha: f32, block: Option<usize>) -> Vec<Tensor> {
    let (l, gp, gq) = ops::icl(&t(dev, p, &[b, d]), &t(dev, q, &[b, d]), tau, alpha, block).unwrap();
    assert_eq!(l.shape(), &[1]);
    vec![l, gp, gq]
}

fn assert_matches(name: &str, got: &[Tensor], loss: f64, gp: &[f32], gq: &[f32]) {
    assert_close(&format!("{name} loss"), &vals(&got[0]), &[loss as f32], 1e-5, 2e-5);
    assert_close(&format!("{name} g_p"), &vals(&got[1]), gp, 2e-6, 1e-3);
    assert_close(&format!("{name} g_q"), &vals(&got[2]), gq, 2e-6, 1e-3);
}

#[test]
fn info_nce_matches_f64_reference() {
    // B = 300: the row kernel runs one workgroup per row (300 workgroups), each over 300 columns (two
    // strides of 256 invocations, ragged); blocks of 64 and 97 rows split B raggedly (5 and 4 blocks).
    let (b, d, tau) = (300, 70, 0.1);
    let p = unit_rows(1, b, d);
    let q: Vec<f32> = p.iter().zip(unit_rows(2, b, d)).map(|(a, n)| a + 0.3 * n).collect();
    let (l, gp, gq) = ref_info_nce(&p, &q, b, d, tau as f64);
    for block in [None, Some(64), Some(97)] {
        assert_matches(&format!("cpu block={block:?}"), &run_info_nce(&Device::Cpu, &p, &q, b, d, tau, block), l, &gp, &gq);
        if let Some(g) = gpu() {
            assert_matches(&format!("gpu block={block:?}"), &run_info_nce(&g, &p, &q, b, d, tau, block), l, &gp, &gq);
        }
        check_backends(&format!("info_nce block={block:?}"), 1e-6, 1e-4, |dv| run_info_nce(dv, &p, &q, b, d, tau, block));
    }
}

#[test]
fn icl_matches_f64_reference() {
    let (b, d, tau) = (300, 70, 0.1);
    let p = unit_rows(3, b, d);
    let q: Vec<f32> = p.iter().zip(unit_rows(4, b, d)).map(|(a, n)| a + 0.3 * n).collect();
    for alpha in [0.5f32, 0.3] {
        let (l, gp, gq) = ref_icl(&p, &q, b, d, tau as f64, alpha as f64);
        for block in [None, Some(64)] {
            assert_matches(&format!("cpu icl a={alpha} block={block:?}"), &run_icl(&Device::Cpu, &p, &q, b, d, tau, alpha, block), l, &gp, &gq);
            if let Some(g) = gpu() {
                assert_matches(&format!("gpu icl a={alpha} block={block:?}"), &run_icl(&g, &p, &q, b, d, tau, alpha, block), l, &gp, &gq);
            }
            check_backends(&format!("icl a={alpha} block={block:?}"), 1e-6, 1e-4, |dv| run_icl(dv, &p, &q, b, d, tau, alpha, block));
        }
    }
}

#[test]
fn contrastive_gradients_match_finite_differences() {
    // InfoNCE: G = (softmax_row(PQᵀ/τ) − I)/B, g_P = G Q/τ, g_Q = Gᵀ P/τ.
    // ICL: G_a = α(softmax − onehot)/B = [G_ab | G_aa], G_b = (1−α)(…)/B = [G_ba | G_bb],
    //      g_P = (G_ab Q + (G_aa + G_aaᵀ) P + G_baᵀ Q)/τ, g_Q = (G_abᵀ P + G_ba P + (G_bb + G_bbᵀ) Q)/τ.
    // Blocks of 2 rows over B = 5 exercise the tiled path on the CPU twin.
    let (b, d, tau, alpha) = (5, 4, 0.5f32, 0.3f32);
    let p = rand_vec(10, b * d, -1.0, 1.0);
    let q = rand_vec(11, b * d, -1.0, 1.0);
    let cpu = Device::Cpu;
    let nce = |p: &[f32], q: &[f32]| vals(&run_info_nce(&cpu, p, q, b, d, tau, Some(2))[0])[0] as f64;
    let g = run_info_nce(&cpu, &p, &q, b, d, tau, Some(2));
    assert_close("info_nce g_p", &vals(&g[1]), &finite_diff(&p, 1e-2, |v| nce(v, &q)), 2e-3, 2e-3);
    assert_close("info_nce g_q", &vals(&g[2]), &finite_diff(&q, 1e-2, |v| nce(&p, v)), 2e-3, 2e-3);
    let icl = |p: &[f32], q: &[f32]| vals(&run_icl(&cpu, p, q, b, d, tau, alpha, Some(2))[0])[0] as f64;
    let g = run_icl(&cpu, &p, &q, b, d, tau, alpha, Some(2));
    assert_close("icl g_p", &vals(&g[1]), &finite_diff(&p, 1e-2, |v| icl(v, &q)), 2e-3, 2e-3);
    assert_close("icl g_q", &vals(&g[2]), &finite_diff(&q, 1e-2, |v| icl(&p, v)), 2e-3, 2e-3);
    // The gradients are not trivially zero.
    assert!(vals(&g[1]).iter().any(|v| v.abs() > 1e-2));
}

#[test]
fn contrastive_single_row_and_tiny_batches() {
    // B = 1: the only candidate is the gold (the intra diagonal is masked), so L = 0 and all gradients are 0.
    let p = unit_rows(20, 1, 3);
    let q = unit_rows(21, 1, 3);
    check_backends("B=1", 1e-7, 0.0, |dv| {
        let mut v = run_info_nce(dv, &p, &q, 1, 3, 0.1, None);
        v.extend(run_icl(dv, &p, &q, 1, 3, 0.1, 0.5, None));
        v
    });
    let v = run_icl(&Device::Cpu, &p, &q, 1, 3, 0.1, 0.5, None);
    assert_eq!(vals(&v[0]), vec![0.0]);
    assert!(vals(&v[1]).iter().chain(&vals(&v[2])).all(|x| *x == 0.0));
    // B = 2 with one-row blocks, and d = 1, against the reference.
    let p = unit_rows(22, 2, 1);
    let q = rand_vec(23, 2, -1.0, 1.0);
    let (l, gp, gq) = ref_icl(&p, &q, 2, 1, 0.2, 0.5);
    check_backends("B=2 d=1", 1e-6, 1e-4, |dv| run_icl(dv, &p, &q, 2, 1, 0.2, 0.5, Some(1)));
    assert_matches("B=2 d=1", &run_icl(&Device::Cpu, &p, &q, 2, 1, 0.2, 0.5, Some(1)), l, &gp, &gq);
}

#[test]
fn contrastive_rejects_bad_arguments() {
    let cpu = Device::Cpu;
    let p = t(&cpu, &[1.0; 6], &[2, 3]);
    assert!(ops::info_nce(&p, &t(&cpu, &[1.0; 3], &[1, 3]), 0.1, None).is_err());
    assert!(ops::info_nce(&p, &p, 0.0, None).is_err());
    assert!(ops::info_nce(&p, &p, f32::NAN, None).is_err());
    assert!(ops::info_nce(&p, &p, 0.1, Some(0)).is_err());
    assert!(ops::info_nce(&t(&cpu, &[], &[0, 3]), &t(&cpu, &[], &[0, 3]), 0.1, None).is_err());
    assert!(ops::info_nce(&t(&cpu, &[1.0; 6], &[6]), &t(&cpu, &[1.0; 6], &[6]), 0.1, None).is_err());
    assert!(ops::icl(&p, &p, 0.1, 1.5, None).is_err());
}

#[test]
fn tape_contrastive_losses_scale_saved_gradients() {
    // L = 2.5 · InfoNCE(P, Q) + ICL(P, Q): the loss nodes receive incoming gradients 2.5 and 1, so
    // g_P = 2.5 ∂InfoNCE/∂P + ∂ICL/∂P (and likewise for Q), checked by finite differences.
    let (b, d, tau, alpha) = (4, 3, 0.5f32, 0.5f32);
    let p = rand_vec(30, b * d, -1.0, 1.0);
    let q = rand_vec(31, b * d, -1.0, 1.0);
    let run = |dev: &Device, p: &[f32], q: &[f32]| -> (f32, Vec<f32>, Vec<f32>) {
        let tape = Tape::new();
        let pv = tape.param(&t(dev, p, &[b, d]));
        let qv = tape.param(&t(dev, q, &[b, d]));
        let a = ad::scale(&tape, &contrastive::ad::info_nce(&tape, &pv, &qv, tau).unwrap(), 2.5).unwrap();
        let c = contrastive::ad::icl(&tape, &pv, &qv, tau, alpha).unwrap();
        let loss = ad::add(&tape, &a, &c).unwrap();
        let g = tape.backward(&loss).unwrap();
        (vals(&loss.value)[0], vals(g.get(&pv).unwrap()), vals(g.get(&qv).unwrap()))
    };
    let cpu = Device::Cpu;
    let (_, gp, gq) = run(&cpu, &p, &q);
    assert_close("tape g_p", &gp, &finite_diff(&p, 1e-2, |v| run(&cpu, v, &q).0 as f64), 3e-3, 2e-3);
    assert_close("tape g_q", &gq, &finite_diff(&q, 1e-2, |v| run(&cpu, &p, v).0 as f64), 3e-3, 2e-3);
    if let Some(g) = gpu() {
        let (_, ggp, ggq) = run(&g, &p, &q);
        assert_close("tape gpu g_p", &ggp, &gp, 1e-5, 1e-4);
        assert_close("tape gpu g_q", &ggq, &gq, 1e-5, 1e-4);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn prop_contrastive_rows(b in 1usize..160, d in 1usize..24, block in 1usize..200, seed in 0u64..1000) {
        // The row kernel reduces (max, then sum of exponentials) over 1..320 columns: both losses, any
        // block size, against the f64 reference and across backends.
        let p = unit_rows(seed, b, d);
        let q = unit_rows(seed + 1, b, d);
        let (l, gp, gq) = ref_info_nce(&p, &q, b, d, 0.1);
        assert_matches("prop info_nce", &run_info_nce(&Device::Cpu, &p, &q, b, d, 0.1, Some(block)), l, &gp, &gq);
        let (l, gp, gq) = ref_icl(&p, &q, b, d, 0.1, 0.5);
        assert_matches("prop icl", &run_icl(&Device::Cpu, &p, &q, b, d, 0.1, 0.5, Some(block)), l, &gp, &gq);
        check_backends("prop contrastive", 1e-6, 1e-4, |dv| {
            let mut v = run_info_nce(dv, &p, &q, b, d, 0.1, Some(block));
            v.extend(run_icl(dv, &p, &q, b, d, 0.1, 0.5, Some(block)));
            v
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn run_info_nce_neg(dev: &Device, p: &[f32], q: &[f32], n: &[f32], b: usize, e: usize, d: usize, tau: f32, block: Option<usize>) -> Vec<Tensor> {
    let (l, gp, gq, gn) = ops::info_nce_neg(&t(dev, p, &[b, d]), &t(dev, q, &[b, d]), &t(dev, n, &[e, d]), tau, block).unwrap();
    assert_eq!((l.shape(), gn.shape()), (&[1][..], &[e, d][..]));
    vec![l, gp, gq, gn]
}

#[test]
fn info_nce_with_negatives_matches_f64_reference_and_backends() {
    // B = 300 rows against 300 + 170 columns (ragged over 256-wide strides), blocks of 64 and 97 rows.
    let (b, e, d, tau) = (300, 170, 70, 0.1f32);
    let p = unit_rows(30, b, d);
    let q: Vec<f32> = p.iter().zip(unit_rows(31, b, d)).map(|(a, n)| a + 0.3 * n).collect();
    let n = unit_rows(32, e, d);
    // Reference: the cross-entropy over [Q ; N] with gold at column i.
    let mut cols = q.clone();
    cols.extend(&n);
    let s: Vec<Vec<f64>> = (0..b).map(|i| (0..b + e).map(|j| (0..d).map(|k| p[i * d + k] as f64 * cols[j * d + k] as f64).sum::<f64>() / tau as f64).collect()).collect();
    let (l, g) = ce(&s, 1.0);
    let gp = f32s(&mm(&g, &cols, d).into_iter().map(|v| v / tau as f64).collect::<Vec<_>>());
    let gc: Vec<f64> = mm(&transpose(&g), &p, d).into_iter().map(|v| v / tau as f64).collect();
    let (gq, gn) = (f32s(&gc[..b * d]), f32s(&gc[b * d..]));
    for block in [None, Some(64), Some(97)] {
        let got = run_info_nce_neg(&Device::Cpu, &p, &q, &n, b, e, d, tau, block);
        assert_matches(&format!("cpu block={block:?}"), &got, l, &gp, &gq);
        assert_close(&format!("cpu block={block:?} g_n"), &vals(&got[3]), &gn, 2e-6, 1e-3);
        check_backends(&format!("info_nce_neg block={block:?}"), 1e-6, 1e-4, |dv| run_info_nce_neg(dv, &p, &q, &n, b, e, d, tau, block));
    }
    // Gradients by finite differences on a tiny case (blocks of 2 rows over B = 5).
    let (b, e, d, tau) = (5, 3, 4, 0.5f32);
    let (p, q, n) = (rand_vec(40, b * d, -1.0, 1.0), rand_vec(41, b * d, -1.0, 1.0), rand_vec(42, e * d, -1.0, 1.0));
    let cpu = Device::Cpu;
    let f = |p: &[f32], q: &[f32], n: &[f32]| vals(&run_info_nce_neg(&cpu, p, q, n, b, e, d, tau, Some(2))[0])[0] as f64;
    let g = run_info_nce_neg(&cpu, &p, &q, &n, b, e, d, tau, Some(2));
    assert_close("g_p", &vals(&g[1]), &finite_diff(&p, 1e-2, |v| f(v, &q, &n)), 2e-3, 2e-3);
    assert_close("g_q", &vals(&g[2]), &finite_diff(&q, 1e-2, |v| f(&p, v, &n)), 2e-3, 2e-3);
    assert_close("g_n", &vals(&g[3]), &finite_diff(&n, 1e-2, |v| f(&p, &q, v)), 2e-3, 2e-3);
    assert!(vals(&g[3]).iter().any(|v| v.abs() > 1e-2), "negatives receive gradient");
    // Shape errors name the op.
    let err = ops::info_nce_neg(&t(&cpu, &p, &[b, d]), &t(&cpu, &q, &[b, d]), &t(&cpu, &n[..6], &[2, 3]), tau, None).unwrap_err();
    assert!(err.to_string().contains("info_nce_neg"), "{err}");
}

#[allow(clippy::too_many_arguments)]
fn run_nhs(dev: &Device, p: &[f32], q: &[f32], n: &[f32], b: usize, e: usize, d: usize, block: Option<usize>) -> Vec<Tensor> {
    let (l, gp, gq, gn) = ops::nhs(&t(dev, p, &[b, d]), &t(dev, q, &[b, d]), &t(dev, n, &[e, d]), 30.0, block).unwrap();
    assert_eq!((l.shape(), gn.shape()), (&[1][..], &[e, d][..]));
    vec![l, gp, gq, gn]
}

/// f64 NHS with the row scales given: for row i of X ∈ {P, Q} with gold G (Q for P, P for Q), the columns
/// C = [Q ; P ; N], masked j ∈ {gold i, self i}: L_i = lse_{j unmasked}(t_i x_i·c_j) − t_i x_i·g_i, L = Σ/B.
/// Returns (L, g_P, g_Q, g_N).
#[allow(clippy::too_many_arguments)]
fn ref_nhs(p: &[f32], q: &[f32], n: &[f32], tp: &[f64], tq: &[f64], b: usize, e: usize, d: usize) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut cols = q.to_vec();
    cols.extend(p);
    cols.extend(n);
    let c = 2 * b + e;
    let dot = |x: &[f32], i: usize, j: usize| (0..d).map(|k| x[i * d + k] as f64 * cols[j * d + k] as f64).sum::<f64>();
    let (mut loss, mut gx) = (0.0, vec![vec![0.0; b * d]; 2]);
    let mut gc = vec![0.0; c * d];
    for (side, (x, t)) in [(p, tp), (q, tq)].into_iter().enumerate() {
        for i in 0..b {
            let (gold, me) = if side == 0 { (i, b + i) } else { (b + i, i) };
            let s: Vec<f64> = (0..c).map(|j| t[i] * dot(x, i, j)).collect();
            let mx = (0..c).filter(|&j| j != gold && j != me).map(|j| s[j]).fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + (0..c).filter(|&j| j != gold && j != me).map(|j| (s[j] - mx).exp()).sum::<f64>().ln();
            loss += (lse - s[gold]) / b as f64;
            for j in 0..c {
                let w = if j == gold {
                    -1.0
                } else if j == me {
                    0.0
                } else {
                    (s[j] - lse).exp()
                } / b as f64;
                for k in 0..d {
                    gx[side][i * d + k] += w * t[i] * cols[j * d + k] as f64;
                    gc[j * d + k] += w * t[i] * x[i * d + k] as f64;
                }
            }
        }
    }
    let (gq_c, rest) = gc.split_at(b * d);
    let (gp_c, gn) = rest.split_at(b * d);
    let gp = gx[0].iter().zip(gp_c).map(|(a, b)| a + b).collect();
    let gq = gx[1].iter().zip(gq_c).map(|(a, b)| a + b).collect();
    (loss, gp, gq, gn.to_vec())
}

/// f64 row scales: t_i = λ / std_j(x_i·c_j) over every column of C = [Q ; P ; N] (population std).
fn ref_nhs_scales(x: &[f32], cols: &[f32], b: usize, c: usize, d: usize) -> Vec<f64> {
    (0..b)
        .map(|i| {
            let s: Vec<f64> = (0..c).map(|j| (0..d).map(|k| x[i * d + k] as f64 * cols[j * d + k] as f64).sum()).collect();
            let mean = s.iter().sum::<f64>() / c as f64;
            let var = s.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c as f64;
            30.0 / var.sqrt()
        })
        .collect()
}

#[test]
fn nhs_matches_f64_reference_and_backends() {
    // B = 300 pairs against 2·300 + 170 columns (ragged over 256-wide strides), blocks of 64 and 97 rows.
    let (b, e, d) = (300, 170, 70);
    let p = unit_rows(50, b, d);
    let q = unit_rows(0, b, d).iter().zip(&p).map(|(n, a)| a + 0.5 * n).collect::<Vec<f32>>();
    let q = {
        let mut q = q;
        for r in q.chunks_mut(d) {
            let s = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= s);
        }
        q
    };
    let n = unit_rows(52, e, d);
    let mut cols = q.clone();
    cols.extend(&p);
    cols.extend(&n);
    let (tp, tq) = (ref_nhs_scales(&p, &cols, b, 2 * b + e, d), ref_nhs_scales(&q, &cols, b, 2 * b + e, d));
    // The row scales (one d × d second moment instead of the [B, C] block).
    let cpu = Device::Cpu;
    let got_tp = vals(&ops::nhs_row_scales(&t(&cpu, &cols, &[2 * b + e, d]), &t(&cpu, &p, &[b, d]), 30.0).unwrap());
    assert_close("row scales", &got_tp, &f32s(&tp), 1e-3, 1e-4);
    assert!(tp.iter().all(|&v| v > 100.0 && v < 2000.0), "random unit rows in d = 70: std ≈ 0.12, t ≈ 250");
    let (l, gp, gq, gn) = ref_nhs(&p, &q, &n, &tp, &tq, b, e, d);
    for block in [None, Some(64), Some(97)] {
        let got = run_nhs(&cpu, &p, &q, &n, b, e, d, block);
        let tol = 2e-3 * l.abs().max(1.0);
        assert!((vals(&got[0])[0] as f64 - l).abs() < tol, "cpu block={block:?}: loss {} vs {l}", vals(&got[0])[0]);
        assert_close(&format!("cpu block={block:?} g_p"), &vals(&got[1]), &f32s(&gp), 1e-3, 2e-3);
        assert_close(&format!("cpu block={block:?} g_q"), &vals(&got[2]), &f32s(&gq), 1e-3, 2e-3);
        assert_close(&format!("cpu block={block:?} g_n"), &vals(&got[3]), &f32s(&gn), 1e-3, 2e-3);
        check_backends(&format!("nhs block={block:?}"), 1e-5, 1e-3, |dv| run_nhs(dv, &p, &q, &n, b, e, d, block));
    }
    // The positive's pull does not fade: it is exactly −t_i/B on the gold logit, so g_P has a component
    // −(1/B) t_i q_i however well the pair is already matched.
    assert!(vals(&run_nhs(&cpu, &p, &q, &n, b, e, d, None)[1]).iter().any(|v| v.abs() > 1e-2));
}

#[test]
fn nhs_gradients_match_finite_differences() {
    // With the row scales held fixed (they are constants of the loss, as Dual-AMN's stop-gradient
    // statistics), the gradients are the derivative of the loss: central differences on B = 5, E = 3.
    let (b, e, d) = (5, 3, 4);
    let (p, q, n) = (rand_vec(60, b * d, -1.0, 1.0), rand_vec(61, b * d, -1.0, 1.0), rand_vec(62, e * d, -1.0, 1.0));
    let cpu = Device::Cpu;
    let (tp, tq) = (t(&cpu, &[0.7, 1.3, 2.0, 0.5, 1.1], &[b]), t(&cpu, &[1.5, 0.4, 0.9, 1.7, 1.0], &[b]));
    let run = |p: &[f32], q: &[f32], n: &[f32]| {
        let (l, gp, gq, gn) = ops::nhs_with_scales(&t(&cpu, p, &[b, d]), &t(&cpu, q, &[b, d]), &t(&cpu, n, &[e, d]), &tp, &tq, Some(2)).unwrap();
        [l, gp, gq, gn]
    };
    let f = |p: &[f32], q: &[f32], n: &[f32]| vals(&run(p, q, n)[0])[0] as f64;
    let g = run(&p, &q, &n);
    assert_close("g_p", &vals(&g[1]), &finite_diff(&p, 1e-2, |v| f(v, &q, &n)), 2e-3, 2e-3);
    assert_close("g_q", &vals(&g[2]), &finite_diff(&q, 1e-2, |v| f(&p, v, &n)), 2e-3, 2e-3);
    assert_close("g_n", &vals(&g[3]), &finite_diff(&n, 1e-2, |v| f(&p, &q, v)), 2e-3, 2e-3);
    assert!(vals(&g[3]).iter().any(|v| v.abs() > 1e-2), "the other entities receive gradient");
    // GPU vs CPU on the same fixed scales.
    check_backends("nhs_with_scales", 1e-5, 1e-4, |dv| {
        let (tp, tq) = (t(dv, &vals(&tp), &[b]), t(dv, &vals(&tq), &[b]));
        let (l, gp, gq, gn) = ops::nhs_with_scales(&t(dv, &p, &[b, d]), &t(dv, &q, &[b, d]), &t(dv, &n, &[e, d]), &tp, &tq, Some(2)).unwrap();
        vec![l, gp, gq, gn]
    });
    // No other entity (E = 0) still works when B ≥ 2; one pair alone has no negative and is refused.
    let (l, ..) = ops::nhs(&t(&cpu, &p, &[b, d]), &t(&cpu, &q, &[b, d]), &t(&cpu, &[], &[0, d]), 30.0, None).unwrap();
    assert!(vals(&l)[0].is_finite());
    let err = ops::nhs(&t(&cpu, &p[..d], &[1, d]), &t(&cpu, &q[..d], &[1, d]), &t(&cpu, &[], &[0, d]), 30.0, None).unwrap_err();
    assert!(err.to_string().contains("no negatives"), "{err}");
    let err = ops::nhs(&t(&cpu, &p, &[b, d]), &t(&cpu, &q, &[b, d]), &t(&cpu, &n[..6], &[2, 3]), 30.0, None).unwrap_err();
    assert!(err.to_string().contains("nhs"), "{err}");
}
