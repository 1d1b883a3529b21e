use mmea_core::autodiff::{ad as tape_ad, Tape};
use mmea_core::ops::sinkhorn::{self as sk, ad, TiledMatrix, TopkIndex};
use mmea_core::{Device, Error};
use proptest::prelude::*;

use crate::common::*;

fn tiles(d: &Device, s: &[f32], n: usize, m: usize, budget: u64) -> TiledMatrix {
    TiledMatrix::from_host(d, s, n, m, budget).unwrap()
}
fn whole(d: &Device, s: &[f32], n: usize, m: usize) -> TiledMatrix {
    tiles(d, s, n, m, u64::MAX)
}
fn host(t: &TiledMatrix) -> Vec<f32> {
    t.to_vec_f32_blocking().unwrap()
}

/// The classic decoder (SEU): K = exp(S/ε), then `iters` times { divide each row by its sum; divide each
/// column by its sum }, in f64. (K is scaled by a constant for range; the normalisation removes it.)
fn classic(s: &[f32], n: usize, m: usize, eps: f64, iters: usize) -> Vec<f64> {
    let mx = s.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    let mut k: Vec<f64> = s.iter().map(|&v| ((v as f64 - mx) / eps).exp()).collect();
    for _ in 0..iters {
        for i in 0..n {
            let r: f64 = k[i * m..(i + 1) * m].iter().sum();
            k[i * m..(i + 1) * m].iter_mut().for_each(|v| *v /= r);
        }
        for j in 0..m {
            let c: f64 = (0..n).map(|i| k[i * m + j]).sum();
            (0..n).for_each(|i| k[i * m + j] /= c);
        }
    }
    k
}

/// Potentials-form Sinkhorn in f64 with uniform marginals over the entries where `keep` is true (the
/// others are −∞); a column without kept entries gets g = 0. Returns ℓ (−∞ outside the kept entries).
fn reference(s: &[f32], n: usize, m: usize, eps: f64, iters: usize, keep: &dyn Fn(usize, usize) -> bool) -> Vec<f64> {
    let x: Vec<f64> = s.iter().map(|&v| v as f64 / eps).collect();
    let lse = |v: &mut dyn Iterator<Item = f64>| -> Option<f64> {
        let v: Vec<f64> = v.collect();
        let mx = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then(|| mx + v.iter().map(|a| (a - mx).exp()).sum::<f64>().ln())
    };
    let (la, lb) = (-(n as f64).ln(), -(m as f64).ln());
    let mut f = vec![0.0f64; n];
    let mut g = vec![0.0f64; m];
    for _ in 0..iters {
        for i in 0..n {
            f[i] = la - lse(&mut (0..m).filter(|&j| keep(i, j)).map(|j| x[i * m + j] + g[j])).unwrap();
        }
        for j in 0..m {
            g[j] = match lse(&mut (0..n).filter(|&i| keep(i, j)).map(|i| x[i * m + j] + f[i])) {
                Some(l) => lb - l,
                None => 0.0,
            };
        }
    }
    (0..n * m).map(|e| if keep(e / m, e % m) { x[e] + f[e / m] + g[e % m] } else { f64::NEG_INFINITY }).collect()
}

fn descending_order(v: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].partial_cmp(&v[a]).unwrap());
    idx
}

#[test]
fn dense_matches_classic_alternating_normalisation() {
    let (n, m, eps, iters) = (37, 23, 0.1f32, 10);
    let s = rand_vec(100, n * m, -1.0, 1.0);
    let p = classic(&s, n, m, eps as f64, iters);
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        let out = sk::sinkhorn(&whole(&dev, &s, n, m), eps, iters).unwrap();
        let ell = host(&out.log_plan);
        // P_ours = P_classic / m after a column step (uniform marginals), so ℓ = ln P_classic − ln m.
        let want: Vec<f32> = p.iter().map(|v| (v.ln() - (m as f64).ln()) as f32).collect();
        assert_close(&format!("{dev:?} log-plan vs classic"), &ell, &want, 2e-4, 1e-5);
        // Rankings agree with the classic decoder, per row and per column.
        let ell64: Vec<f64> = ell.iter().map(|&v| v as f64).collect();
        for i in 0..n {
            assert_eq!(descending_order(&ell64[i * m..(i + 1) * m]), descending_order(&p[i * m..(i + 1) * m]), "row {i} order");
        }
        for j in 0..m {
            let col = |v: &[f64]| (0..n).map(|i| v[i * m + j]).collect::<Vec<_>>();
            assert_eq!(descending_order(&col(&ell64)), descending_order(&col(&p)), "column {j} order");
        }
        // With the saved potentials: after the row step k rows sum to 1/n, after the column step columns
        // sum to 1/m (the plan P = exp ℓ is the last column step).
        let (f, g) = (vals(&out.f), vals(&out.g));
        for k in 1..=iters {
            for i in 0..n {
                let r: f64 = (0..m).map(|j| ((s[i * m + j] / eps + f[k * n + i] + g[(k - 1) * m + j]) as f64).exp()).sum();
                assert!((r * n as f64 - 1.0).abs() < 1e-4, "{dev:?} iteration {k} row {i} sums to {r}");
            }
            for j in 0..m {
                let c: f64 = (0..n).map(|i| ((s[i * m + j] / eps + f[k * n + i] + g[k * m + j]) as f64).exp()).sum();
                assert!((c * m as f64 - 1.0).abs() < 1e-4, "{dev:?} iteration {k} column {j} sums to {c}");
            }
        }
        let plan = host(&out.plan().unwrap());
        for j in 0..m {
            let c: f64 = (0..n).map(|i| plan[i * m + j] as f64).sum();
            assert!((c * m as f64 - 1.0).abs() < 1e-4, "plan column {j} sums to {c}");
        }
    }
}

#[test]
fn dense_matches_f64_reference_and_gpu_matches_cpu() {
    // 300 rows = many row workgroups, 257 columns = 2 lanes per row for one lane and ragged column groups
    // of 64; plus the degenerate 1x1 and 1x5.
    for (n, m, seed) in [(300, 257, 101), (1, 1, 102), (1, 5, 103), (5, 1, 104)] {
        let s = rand_vec(seed, n * m, -1.0, 1.0);
        let (eps, iters) = (0.05f32, 10);
        let want: Vec<f32> = reference(&s, n, m, eps as f64, iters, &|_, _| true).into_iter().map(|v| v as f32).collect();
        let cpu = sk::sinkhorn(&whole(&Device::Cpu, &s, n, m), eps, iters).unwrap();
        assert_close(&format!("{n}x{m} cpu vs f64"), &host(&cpu.log_plan), &want, 5e-4, 1e-5);
        check_backends(&format!("sinkhorn {n}x{m}"), 2e-4, 1e-5, |d| {
            let out = sk::sinkhorn(&whole(d, &s, n, m), eps, iters).unwrap();
            vec![out.log_plan.to_tensor().unwrap(), out.f, out.g]
        });
    }
}

#[test]
fn tiled_equals_untiled_forward_and_backward() {
    let (n, m, eps, iters) = (300, 257, 0.05f32, 4);
    let s = rand_vec(110, n * m, -1.0, 1.0);
    let w = rand_vec(111, n * m, -1.0, 1.0);
    // 90 rows per block: blocks of 90, 90, 90, 30.
    let budget = 90 * m as u64 * 4;
    let run = |d: &Device, budget: u64| {
        let st = tiles(d, &s, n, m, budget);
        let out = sk::sinkhorn(&st, eps, iters).unwrap();
        let gs = sk::sinkhorn_backward(&st, eps, &out, &tiles(d, &w, n, m, budget)).unwrap();
        (st.block_rows(), host(&out.log_plan), host(&gs))
    };
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        let (rows_t, lp_t, g_t) = run(&dev, budget);
        let (rows_u, lp_u, g_u) = run(&dev, u64::MAX);
        assert_eq!(rows_t, vec![90, 90, 90, 30]);
        assert_eq!(rows_u, vec![300]);
        assert_close(&format!("{dev:?} tiled log-plan"), &lp_t, &lp_u, 1e-4, 1e-5);
        assert_close(&format!("{dev:?} tiled gradient"), &g_t, &g_u, 1e-4, 1e-4);
    }
    // The tiled GPU run against the tiled CPU twin.
    check_backends("tiled sinkhorn", 2e-4, 1e-5, |d| {
        let st = tiles(d, &s, n, m, budget);
        let out = sk::sinkhorn(&st, eps, iters).unwrap();
        let gs = sk::sinkhorn_backward(&st, eps, &out, &tiles(d, &w, n, m, budget)).unwrap();
        let mut v = out.log_plan.blocks.clone();
        v.extend(gs.blocks);
        v
    });
}

#[test]
fn backward_matches_finite_differences() {
    // L = Σ W ⊙ ℓ(S). Analytic: g_S = (unrolled recursion)/ε with g_X = W, g_f = rowsum W, g_g = colsum W;
    // for k = L..1: g_X −= Q^k ⊙ g_g, g_f −= Q^k g_g; g_X −= R^k ⊙ g_f, g_g = −R^kᵀ g_f.
    // Since ℓ is invariant to adding a constant to a row of S (f absorbs it), each row of g_S sums to 0.
    let (n, m, eps) = (4, 5, 0.5f32);
    let s = rand_vec(120, n * m, -1.0, 1.0);
    let w = rand_vec(121, n * m, -1.0, 1.0);
    for iters in 1..=3 {
        let st = whole(&Device::Cpu, &s, n, m);
        let out = sk::sinkhorn(&st, eps, iters).unwrap();
        let g = host(&sk::sinkhorn_backward(&st, eps, &out, &whole(&Device::Cpu, &w, n, m)).unwrap());
        let twin = finite_diff(&s, 1e-2, |v| dot(&host(&sk::sinkhorn(&whole(&Device::Cpu, v, n, m), eps, iters).unwrap().log_plan), &w));
        assert_close(&format!("L={iters} fd (f32 twin)"), &g, &twin, 1e-3, 1e-2);
        let exact = finite_diff(&s, 1e-3, |v| reference(v, n, m, eps as f64, iters, &|_, _| true).iter().zip(&w).map(|(a, &b)| a * b as f64).sum());
        assert_close(&format!("L={iters} fd (f64 reference)"), &g, &exact, 2e-4, 1e-3);
        for i in 0..n {
            let r: f32 = g[i * m..(i + 1) * m].iter().sum();
            assert!(r.abs() < 1e-4, "L={iters}: row {i} of g_S sums to {r}");
        }
    }
    // L = 0: ℓ = S/ε, so g_S = W/ε.
    let st = whole(&Device::Cpu, &s, n, m);
    let out = sk::sinkhorn(&st, eps, 0).unwrap();
    assert_close("L=0 forward", &host(&out.log_plan), &s.iter().map(|v| v / eps).collect::<Vec<_>>(), 1e-6, 1e-6);
    let g = host(&sk::sinkhorn_backward(&st, eps, &out, &whole(&Device::Cpu, &w, n, m)).unwrap());
    assert_close("L=0 backward", &g, &w.iter().map(|v| v / eps).collect::<Vec<_>>(), 1e-6, 1e-6);
}

#[test]
fn backward_gpu_matches_cpu() {
    for (n, m, iters, seed) in [(300, 257, 3, 130), (1, 1, 2, 131), (1, 5, 3, 132), (7, 3, 1, 133)] {
        let s = rand_vec(seed, n * m, -1.0, 1.0);
        let w = rand_vec(seed + 50, n * m, -1.0, 1.0);
        check_backends(&format!("sinkhorn backward {n}x{m}"), 1e-4, 1e-3, |d| {
            let st = whole(d, &s, n, m);
            let out = sk::sinkhorn(&st, 0.1, iters).unwrap();
            vec![sk::sinkhorn_backward(&st, 0.1, &out, &whole(d, &w, n, m)).unwrap().to_tensor().unwrap()]
        });
    }
}

#[test]
fn custom_marginals_are_met() {
    let (n, m, eps, iters) = (40, 70, 0.2f32, 30);
    let s = rand_vec(140, n * m, -1.0, 1.0);
    // a ∝ 1..n, b ∝ 1..m, both of mass 1.
    let a: Vec<f32> = (1..=n).map(|i| i as f32 / (n * (n + 1) / 2) as f32).collect();
    let b: Vec<f32> = (1..=m).map(|j| j as f32 / (m * (m + 1) / 2) as f32).collect();
    let la: Vec<f32> = a.iter().map(|v| v.ln()).collect();
    let lb: Vec<f32> = b.iter().map(|v| v.ln()).collect();
    check_backends("marginals", 2e-4, 1e-5, |d| {
        let out = sk::sinkhorn_marginals(&whole(d, &s, n, m), eps, iters, &t(d, &la, &[n]), &t(d, &lb, &[m])).unwrap();
        let p = host(&out.plan().unwrap());
        for j in 0..m {
            let c: f32 = (0..n).map(|i| p[i * m + j]).sum();
            assert!((c / b[j] - 1.0).abs() < 1e-4, "column {j}: {c} vs {}", b[j]);
        }
        for i in 0..n {
            let r: f32 = p[i * m..(i + 1) * m].iter().sum();
            assert!((r / a[i] - 1.0).abs() < 1e-2, "row {i}: {r} vs {} (converged)", a[i]);
        }
        vec![out.log_plan.to_tensor().unwrap()]
    });
}

#[test]
fn tape_wrapper_gradient_matches_finite_differences() {
    // L = Σ W ⊙ ℓ(S) through the tape: g_S = sinkhorn_backward(W) (see backward_matches_finite_differences).
    let (n, m, eps, iters) = (3, 4, 0.5f32, 2);
    let s = rand_vec(150, n * m, -1.0, 1.0);
    let w = rand_vec(151, n * m, -1.0, 1.0);
    let grad = |d: &Device| {
        let tape = Tape::new();
        let sv = tape.param(&t(d, &s, &[n, m]));
        let wv = tape.constant(&t(d, &w, &[n, m]));
        let lp = ad::sinkhorn_log_plan(&tape, &sv, eps, iters).unwrap();
        let loss = tape_ad::sum(&tape, &tape_ad::mul(&tape, &lp, &wv).unwrap()).unwrap();
        vals(tape.backward(&loss).unwrap().get(&sv).unwrap())
    };
    let g = grad(&Device::Cpu);
    let fd = finite_diff(&s, 1e-3, |v| reference(v, n, m, eps as f64, iters, &|_, _| true).iter().zip(&w).map(|(a, &b)| a * b as f64).sum());
    assert_close("tape fd", &g, &fd, 2e-4, 1e-3);
    if let Some(d) = gpu() {
        assert_close("tape gpu", &grad(&d), &g, 1e-5, 1e-4);
    }
}

#[test]
fn dense_argument_errors() {
    let d = Device::Cpu;
    let s = whole(&d, &[0.5; 6], 2, 3);
    assert!(matches!(sk::sinkhorn(&s, 0.0, 3), Err(Error::InvalidArgument { .. })));
    assert!(matches!(sk::sinkhorn(&s, f32::NAN, 3), Err(Error::InvalidArgument { .. })));
    assert!(matches!(sk::sinkhorn(&whole(&d, &[], 0, 3), 0.1, 3), Err(Error::Shape { .. })));
    assert!(matches!(TiledMatrix::from_host(&d, &[1.0; 5], 2, 3, 64), Err(Error::Shape { .. })));
    assert!(matches!(TiledMatrix::from_host(&d, &[1.0; 6], 2, 3, 0), Err(Error::InvalidArgument { .. })));
    // A gradient tiled differently from the scores is refused.
    let out = sk::sinkhorn(&s, 0.1, 2).unwrap();
    let g1 = tiles(&d, &[1.0; 6], 2, 3, 12);
    assert_eq!(g1.block_rows(), vec![1, 1]);
    assert!(matches!(sk::sinkhorn_backward(&s, 0.1, &out, &g1), Err(Error::Shape { .. })));
    assert!(matches!(sk::sinkhorn_backward(&s, 0.2, &out, &s), Err(Error::InvalidArgument { .. })));
    let bad_a = t(&d, &[0.0; 3], &[3]);
    assert!(matches!(sk::sinkhorn_marginals(&s, 0.1, 2, &bad_a, &bad_a), Err(Error::Shape { .. })));
    // A hand-built tiled matrix whose fields disagree with its blocks is refused, not indexed out of bounds.
    let lying = TiledMatrix { blocks: s.blocks.clone(), rows: 3, cols: 3 };
    assert!(matches!(sk::sinkhorn(&lying, 0.1, 2), Err(Error::Shape { .. })));
    let lying = TiledMatrix { blocks: s.blocks.clone(), rows: 2, cols: 2 };
    assert!(matches!(mmea_core::ops::eval::topk_rows(&lying, 1), Err(Error::Shape { .. })));
}

#[test]
fn tiled_matrix_constructors() {
    let (n, m) = (10, 3);
    let data: Vec<f32> = (0..n * m).map(|v| v as f32).collect();
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        // 4 rows per block: 4, 4, 2.
        let a = TiledMatrix::from_host(&dev, &data, n, m, 4 * 3 * 4 + 5).unwrap();
        assert_eq!(a.block_rows(), vec![4, 4, 2]);
        assert_eq!(a.row_offsets(), vec![0, 4, 8]);
        let b = TiledMatrix::from_tensor(&t(&dev, &data, &[n, m]), 4 * 3 * 4).unwrap();
        assert!(a.same_tiling(&b));
        assert_eq!(host(&b), data);
        assert_eq!(vals(&a.to_tensor().unwrap()), data);
        // A budget smaller than one row still gives one row per block.
        assert_eq!(TiledMatrix::from_host(&dev, &data, n, m, 1).unwrap().blocks.len(), n);
        assert_eq!(TiledMatrix::from_tensor(&t(&dev, &data, &[n, m]), 1 << 20).unwrap().blocks.len(), 1);
    }
}

// ---- sparse ----------------------------------------------------------------------------------------------

/// `k` distinct columns per row out of `0..m_used` (a partial Fisher–Yates shuffle driven by rand_vec).
fn distinct_cols(seed: u64, n: usize, k: usize, m_used: usize) -> Vec<u32> {
    let r = rand_vec(seed, n * k, 0.0, 1.0);
    let mut out = Vec::with_capacity(n * k);
    for i in 0..n {
        let mut pool: Vec<u32> = (0..m_used as u32).collect();
        for tt in 0..k {
            let pick = tt + ((r[i * k + tt] * (m_used - tt) as f32) as usize).min(m_used - tt - 1);
            pool.swap(tt, pick);
            out.push(pool[tt]);
        }
    }
    out
}

/// Dense reference restricted to the kept entries, read back at the kept entries.
fn sparse_reference(cols: &[u32], scores: &[f32], n: usize, k: usize, m: usize, eps: f64, iters: usize) -> Vec<f32> {
    let mut dense = vec![0.0f32; n * m];
    let mut keep = vec![false; n * m];
    for e in 0..n * k {
        let (i, j) = (e / k, cols[e] as usize);
        dense[i * m + j] = scores[e];
        keep[i * m + j] = true;
    }
    let l = reference(&dense, n, m, eps, iters, &|i, j| keep[i * m + j]);
    (0..n * k).map(|e| l[(e / k) * m + cols[e] as usize] as f32).collect()
}

#[allow(clippy::too_many_arguments)]
fn check_sparse(name: &str, n: usize, k: usize, m: usize, m_used: usize, seed: u64, eps: f32, iters: usize) {
    let cols = distinct_cols(seed, n, k, m_used);
    let scores = rand_vec(seed + 1, n * k, -1.0, 1.0);
    let want = sparse_reference(&cols, &scores, n, k, m, eps as f64, iters);
    let cpu = sk::sinkhorn_topk(&tu(&Device::Cpu, &cols, &[n, k]), &t(&Device::Cpu, &scores, &[n, k]), m, eps, iters).unwrap();
    assert_close(&format!("{name} vs masked dense"), &vals(&cpu), &want, 5e-4, 1e-5);
    check_backends(name, 2e-4, 1e-5, |d| vec![sk::sinkhorn_topk(&tu(d, &cols, &[n, k]), &t(d, &scores, &[n, k]), m, eps, iters).unwrap()]);
}

#[test]
fn sparse_topk_matches_masked_dense_reference() {
    // 300 rows (many row workgroups), the last 3 of 257 columns kept by no row (g = 0 there).
    check_sparse("sparse 300x7 of 257", 300, 7, 257, 254, 160, 0.05, 10);
    // k = 70 > 64 lanes per row; 3 rows over 80 columns.
    check_sparse("sparse 3x70 of 80", 3, 70, 80, 80, 161, 0.1, 5);
    // Degenerate: one row, one entry; one row keeping every column; one column kept by every row (a hub
    // column with 150 entries spans 3 lanes' worth per lane group).
    check_sparse("sparse 1x1 of 1", 1, 1, 1, 1, 162, 0.05, 3);
    check_sparse("sparse 1x5 of 5", 1, 5, 5, 5, 163, 0.05, 3);
    check_sparse("sparse hub 150x1 of 4", 150, 1, 4, 1, 164, 0.05, 4);
}

#[test]
fn sparse_index_and_errors() {
    let d = Device::Cpu;
    // Counting sort groups entries by column, stable in entry order.
    let idx = TopkIndex::new(&d, &[2, 0, 0, 2, 1, 0], 3, 2, 4).unwrap();
    assert_eq!(idx.col_ptr().to_vec_u32_blocking().unwrap(), vec![0, 3, 4, 6, 6]);
    assert_eq!(idx.col_entries().to_vec_u32_blocking().unwrap(), vec![1, 2, 5, 4, 0, 3]);
    let sc = t(&d, &[0.0; 6], &[3, 2]);
    assert!(matches!(sk::sinkhorn_topk(&tu(&d, &[0, 1, 2, 3, 4, 5], &[3, 2]), &sc, 5, 0.1, 2), Err(Error::InvalidArgument { .. })));
    assert!(matches!(sk::sinkhorn_topk(&tu(&d, &[0; 6], &[2, 3]), &sc, 5, 0.1, 2), Err(Error::Shape { .. })));
    assert!(matches!(sk::sinkhorn_topk(&tu(&d, &[], &[3, 0]), &t(&d, &[], &[3, 0]), 5, 0.1, 2), Err(Error::Shape { .. })));
    assert!(matches!(sk::sinkhorn_topk(&tu(&d, &[0; 6], &[3, 2]), &sc, 5, -1.0, 2), Err(Error::InvalidArgument { .. })));
    assert!(matches!(sk::sinkhorn_topk(&t(&d, &[0.0; 6], &[3, 2]), &sc, 5, 0.1, 2), Err(Error::DType { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn prop_sparse_topk(n in 1usize..40, m in 1usize..30, kf in 0.0f32..1.0, seed in 0u64..1000) {
        let k = 1 + ((kf * m.min(8) as f32) as usize).min(m.min(8) - 1);
        check_sparse("prop sparse", n, k, m, m, seed, 0.1, 4);
    }

    #[test]
    fn prop_dense_gpu_matches_cpu(n in 1usize..70, m in 1usize..70, blocks in 1usize..4, seed in 0u64..1000) {
        let s = rand_vec(seed, n * m, -1.0, 1.0);
        let w = rand_vec(seed + 1, n * m, -1.0, 1.0);
        let budget = (n.div_ceil(blocks) * m * 4) as u64;
        check_backends("prop dense", 2e-4, 1e-4, |d| {
            let st = tiles(d, &s, n, m, budget);
            let out = sk::sinkhorn(&st, 0.1, 3).unwrap();
            let gs = sk::sinkhorn_backward(&st, 0.1, &out, &tiles(d, &w, n, m, budget)).unwrap();
            vec![out.log_plan.to_tensor().unwrap(), gs.to_tensor().unwrap()]
        });
    }
}

#[test]
fn fast_cpu_forward_agrees_with_the_twin_including_underflowing_columns() {
    // The polynomial exponential against the library's, over the whole range the iteration uses.
    let mut worst = 0.0f64;
    for i in 0..=200_000 {
        let x = -90.0 + 90.5 * i as f32 / 200_000.0;
        let (got, want) = (sk::fast::exp(x) as f64, (x as f64).exp());
        if x < -87.3 {
            assert_eq!(got, 0.0, "exp({x})");
        } else {
            worst = worst.max((got - want).abs() / want);
        }
    }
    assert!(worst < 5e-7, "relative error {worst}");
    // eps 0.02 as in evaluation; three blocks with a ragged last one (300 rows: 128, 128, 44); 700
    // columns (ragged against every chunk and lane width); column 5 is far below every row's best, so
    // its shifted sum underflows and it takes the exact path.
    let (n, m, eps, iters) = (300, 700, 0.02f32, 10);
    let mut s = rand_vec(120, n * m, -0.2, 1.0);
    for i in 0..n {
        s[i * m + 5] = -1.0;
        s[i * m + (i * 7) % m] = 1.0;
    }
    let rows: Vec<usize> = vec![128, 128, 44];
    let mut blocks: Vec<&[f32]> = Vec::new();
    let mut r0 = 0;
    for r in &rows {
        blocks.push(&s[r0 * m..(r0 + r) * m]);
        r0 += r;
    }
    let la = vec![-(n as f32).ln(); n];
    let lb = vec![-(m as f32).ln(); m];
    let (ell_t, f_t, g_t) = sk::cpu::sinkhorn(&blocks, m, eps, iters, &la, &lb);
    let (ell_f, f_f, g_f) = sk::fast::sinkhorn(&blocks, m, eps, iters, &la, &lb);
    assert_eq!(ell_f.iter().map(|b| b.len() / m).collect::<Vec<_>>(), rows);
    assert_close("fast f", &f_f, &f_t, 2e-3, 1e-5);
    assert_close("fast g", &g_f, &g_t, 2e-3, 1e-5);
    assert_close("fast log-plan", &ell_f.concat(), &ell_t.concat(), 2e-3, 1e-5);
    assert!(g_f.iter().all(|v| v.is_finite()), "a potential is not finite");
    // Ranks of each row's best column agree.
    let best = |e: &[f32], i: usize| (0..m).max_by(|&a, &b| e[i * m + a].total_cmp(&e[i * m + b])).unwrap();
    let (et, ef) = (ell_t.concat(), ell_f.concat());
    assert!((0..n).all(|i| best(&et, i) == best(&ef, i)));
    // iters = 0 is ℓ = S/ε.
    let (ell0, _, _) = sk::fast::sinkhorn(&blocks, m, eps, 0, &la, &lb);
    assert_close("iters 0", &ell0.concat(), &s.iter().map(|v| v / eps).collect::<Vec<_>>(), 1e-5, 1e-6);
}
