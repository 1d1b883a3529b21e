use mmea_core::autodiff::{ad, Tape};
use mmea_core::ops::{self, fusion};
use mmea_core::{Device, Tensor};
use proptest::prelude::*;

use crate::common::*;

/// Inputs of one LMF problem: z_m [n, din] (first column 1), W_m [din, rank*d], λ [rank], β [d].
struct Lmf {
    m: usize,
    n: usize,
    din: usize,
    d: usize,
    rank: usize,
    z: Vec<Vec<f32>>,
    w: Vec<Vec<f32>>,
    lambda: Vec<f32>,
    beta: Vec<f32>,
}

impl Lmf {
    fn new(seed: u64, m: usize, n: usize, din: usize, d: usize, rank: usize) -> Lmf {
        let z = (0..m)
            .map(|mi| {
                let mut v = rand_vec(seed + 10 * mi as u64, n * din, -1.0, 1.0);
                for i in 0..n {
                    v[i * din] = 1.0;
                }
                v
            })
            .collect();
        let w = (0..m).map(|mi| rand_vec(seed + 10 * mi as u64 + 1, din * rank * d, -0.8, 0.8)).collect();
        Lmf { m, n, din, d, rank, z, w, lambda: rand_vec(seed + 7, rank, -1.0, 1.0), beta: rand_vec(seed + 8, d, -0.5, 0.5) }
    }
    fn zt(&self, dev: &Device) -> Vec<Tensor> {
        self.z.iter().map(|v| t(dev, v, &[self.n, self.din])).collect()
    }
    fn wt(&self, dev: &Device) -> Vec<Tensor> {
        self.w.iter().map(|v| t(dev, v, &[self.din, self.rank * self.d])).collect()
    }
    /// F[m, i, c] = Σ_p z_m[i, p] W_m[p, c], in f64.
    fn factors(&self) -> Vec<Vec<f64>> {
        let rd = self.rank * self.d;
        (0..self.m)
            .map(|mi| {
                let mut f = vec![0.0f64; self.n * rd];
                for i in 0..self.n {
                    for c in 0..rd {
                        f[i * rd + c] = (0..self.din).map(|p| self.z[mi][i * self.din + p] as f64 * self.w[mi][p * rd + c] as f64).sum();
                    }
                }
                f
            })
            .collect()
    }
    /// F stacked [M, n, R*d] as f32.
    fn stacked(&self) -> Vec<f32> {
        self.factors().into_iter().flatten().map(|v| v as f32).collect()
    }
    /// The direct, non-factorised evaluation o[i,k] = Σ_r λ_r Π_m (z_m W_{m,r})[i,k] + β_k.
    fn direct(&self) -> Vec<f32> {
        let f = self.factors();
        let rd = self.rank * self.d;
        let mut o = vec![0.0f32; self.n * self.d];
        for i in 0..self.n {
            for k in 0..self.d {
                let mut acc = self.beta[k] as f64;
                for r in 0..self.rank {
                    let prod: f64 = f.iter().map(|fm| fm[i * rd + r * self.d + k]).product();
                    acc += self.lambda[r] as f64 * prod;
                }
                o[i * self.d + k] = acc as f32;
            }
        }
        o
    }
}

#[test]
fn low_rank_fusion_matches_direct_evaluation() {
    // n = 150: 3 blocks of 64 rows (ragged) in the λ pass; n*d = 900 outputs = 3.5 workgroups of 256.
    for m in 1..=3 {
        for rank in [1, 8] {
            let pb = Lmf::new(100 + m as u64, m, 150, 5, 6, rank);
            let want = pb.direct();
            let cpu = Device::Cpu;
            let o = fusion::low_rank_fusion(&pb.zt(&cpu), &pb.wt(&cpu), &t(&cpu, &pb.lambda, &[rank]), &t(&cpu, &pb.beta, &[6]), rank).unwrap();
            assert_close(&format!("cpu M={m} R={rank}"), &vals(&o), &want, 1e-4, 1e-4);
            let fstack = pb.stacked();
            for (label, got) in [
                ("combine", vals(&ops::lmf_combine(&t(&cpu, &fstack, &[m, 150, rank * 6]), &t(&cpu, &pb.lambda, &[rank]), &t(&cpu, &pb.beta, &[6]), rank).unwrap())),
                ("blocked", vals(&fusion::low_rank_fusion_blocked(&pb.zt(&cpu), &pb.wt(&cpu), &t(&cpu, &pb.lambda, &[rank]), &t(&cpu, &pb.beta, &[6]), rank, Some(40)).unwrap())),
            ] {
                assert_close(&format!("cpu {label} M={m} R={rank}"), &got, &want, 1e-4, 1e-4);
            }
            check_backends(&format!("lmf forward M={m} R={rank}"), 1e-5, 1e-4, |d| {
                let (l, b) = (t(d, &pb.lambda, &[rank]), t(d, &pb.beta, &[6]));
                vec![
                    fusion::low_rank_fusion(&pb.zt(d), &pb.wt(d), &l, &b, rank).unwrap(),
                    fusion::low_rank_fusion_blocked(&pb.zt(d), &pb.wt(d), &l, &b, rank, Some(40)).unwrap(),
                    ops::lmf_combine(&t(d, &fstack, &[m, 150, rank * 6]), &l, &b, rank).unwrap(),
                ]
            });
            if let Some(g) = gpu() {
                let o = fusion::low_rank_fusion(&pb.zt(&g), &pb.wt(&g), &t(&g, &pb.lambda, &[rank]), &t(&g, &pb.beta, &[6]), rank).unwrap();
                assert_close(&format!("gpu vs direct M={m} R={rank}"), &vals(&o), &want, 1e-4, 1e-4);
            }
        }
    }
}

#[test]
fn lmf_combine_backward_matches_products_of_others() {
    let (n, d, rank) = (150, 6, 8);
    let rd = rank * d;
    for m in 1..=4 {
        let mut f = rand_vec(200 + m as u64, m * n * rd, -1.5, 1.5);
        // Exact zeros: a division-based backward would produce NaN or lose the other factors' product.
        for e in (0..f.len()).step_by(37) {
            f[e] = 0.0;
        }
        let lambda = rand_vec(210, rank, -1.0, 1.0);
        let go = rand_vec(211, n * d, -1.0, 1.0);
        // g_F[m,i,r*d+k] = λ_r g_o[i,k] Π_{m'≠m} F[m',i,r*d+k];  g_λ_r = Σ_{i,k} g_o[i,k] Π_m F[m,i,r*d+k];
        // g_β_k = Σ_i g_o[i,k].
        let mut want_gf = vec![0.0f32; m * n * rd];
        let mut want_gl = vec![0.0f64; rank];
        let mut want_gb = vec![0.0f64; d];
        for i in 0..n {
            for r in 0..rank {
                for k in 0..d {
                    let e = i * rd + r * d + k;
                    let g = go[i * d + k] as f64;
                    for mi in 0..m {
                        let others: f64 = (0..m).filter(|&o| o != mi).map(|o| f[o * n * rd + e] as f64).product();
                        want_gf[mi * n * rd + e] = (lambda[r] as f64 * g * others) as f32;
                    }
                    want_gl[r] += g * (0..m).map(|o| f[o * n * rd + e] as f64).product::<f64>();
                }
            }
            for k in 0..d {
                want_gb[k] += go[i * d + k] as f64;
            }
        }
        let cpu = Device::Cpu;
        let (gf, gl, gb) = ops::lmf_combine_backward(&t(&cpu, &f, &[m, n, rd]), &t(&cpu, &lambda, &[rank]), &t(&cpu, &go, &[n, d]), rank).unwrap();
        assert_close(&format!("g_F M={m}"), &vals(&gf), &want_gf, 1e-5, 1e-4);
        assert_close(&format!("g_lambda M={m}"), &vals(&gl), &want_gl.iter().map(|&v| v as f32).collect::<Vec<_>>(), 1e-3, 1e-4);
        assert_close(&format!("g_beta M={m}"), &vals(&gb), &want_gb.iter().map(|&v| v as f32).collect::<Vec<_>>(), 1e-4, 1e-4);
        check_backends(&format!("lmf_combine_backward M={m}"), 1e-4, 1e-4, |dv| {
            let (a, b, c) = ops::lmf_combine_backward(&t(dv, &f, &[m, n, rd]), &t(dv, &lambda, &[rank]), &t(dv, &go, &[n, d]), rank).unwrap();
            vec![a, b, c]
        });
    }
}

#[test]
fn fast_cpu_backward_is_bit_identical_to_the_twin() {
    // The CPU backend runs `fusion::fast` (parallel, one plane at a time); the twin is the oracle. Same
    // products in the same order, so the bits agree. n = 1000 rows of rank*d = 320 are enough to take
    // the parallel path; 1 and 0 rows and d = 1 are the edges.
    for (m, n, d, rank) in [(1, 1000, 40, 8), (2, 150, 6, 8), (3, 1000, 40, 8), (4, 777, 5, 3), (3, 1, 1, 1), (2, 0, 4, 2)] {
        let rd = rank * d;
        let f = rand_vec(300 + m as u64, m * n * rd, -1.5, 1.5);
        let lambda = rand_vec(301, rank, -1.0, 1.0);
        let go = rand_vec(302, n * d, -1.0, 1.0);
        let name = format!("M={m} n={n} d={d} R={rank}");
        assert_eq!(fusion::fast::combine_backward_f(&f, &lambda, &go, m, n, d, rank), fusion::cpu::combine_backward_f(&f, &lambda, &go, m, n, d, rank), "g_F {name}");
        assert_eq!(fusion::fast::lambda_partials(&f, &go, m, n, d, rank, 64), fusion::cpu::lambda_partials(&f, &go, m, n, d, rank, 64), "g_lambda partials {name}");
    }
}

/// L = Σ_{i,k} R[i,k] o[i,k] for the small problem, evaluated through the CPU twin.
fn fd_loss(pb: &Lmf, z: &[Vec<f32>], w: &[Vec<f32>], lambda: &[f32], beta: &[f32], r: &[f32]) -> f64 {
    let cpu = Device::Cpu;
    let zt: Vec<Tensor> = z.iter().map(|v| t(&cpu, v, &[pb.n, pb.din])).collect();
    let wt: Vec<Tensor> = w.iter().map(|v| t(&cpu, v, &[pb.din, pb.rank * pb.d])).collect();
    let o = fusion::low_rank_fusion(&zt, &wt, &t(&cpu, lambda, &[pb.rank]), &t(&cpu, beta, &[pb.d]), pb.rank).unwrap();
    dot(&vals(&o), r)
}

#[test]
fn low_rank_fusion_backward_matches_finite_differences() {
    for m in 1..=3 {
        for rank in [1, 8] {
            let pb = Lmf::new(300 + m as u64, m, 4, 3, 3, rank);
            let r = rand_vec(310, pb.n * pb.d, -1.0, 1.0);
            let cpu = Device::Cpu;
            // Block size 3 splits the 4 rows into two blocks, so the block accumulation is checked too.
            let g = fusion::low_rank_fusion_backward_blocked(&pb.zt(&cpu), &pb.wt(&cpu), &t(&cpu, &pb.lambda, &[rank]), &t(&cpu, &r, &[pb.n, pb.d]), rank, Some(3)).unwrap();
            // With L = Σ R ⊙ o and F_m = z_m W_m:  g_{F_m} = λ_r R ⊙ Π_{m'≠m} F_{m'},  g_{z_m} = g_{F_m} W_mᵀ,
            // g_{W_m} = z_mᵀ g_{F_m},  g_λ_r = Σ R ⊙ Π_m F_{m,r},  g_β = Σ_rows R.
            for mi in 0..m {
                let fz = finite_diff(&pb.z[mi], 1e-2, |v| {
                    let mut z = pb.z.clone();
                    z[mi] = v.to_vec();
                    fd_loss(&pb, &z, &pb.w, &pb.lambda, &pb.beta, &r)
                });
                assert_close(&format!("g_z[{mi}] M={m} R={rank}"), &vals(&g.g_z[mi]), &fz, 2e-3, 2e-3);
                let fw = finite_diff(&pb.w[mi], 1e-2, |v| {
                    let mut w = pb.w.clone();
                    w[mi] = v.to_vec();
                    fd_loss(&pb, &pb.z, &w, &pb.lambda, &pb.beta, &r)
                });
                assert_close(&format!("g_w[{mi}] M={m} R={rank}"), &vals(&g.g_w[mi]), &fw, 2e-3, 2e-3);
            }
            let fl = finite_diff(&pb.lambda, 1e-2, |v| fd_loss(&pb, &pb.z, &pb.w, v, &pb.beta, &r));
            assert_close(&format!("g_lambda M={m} R={rank}"), &vals(&g.g_lambda), &fl, 2e-3, 2e-3);
            let fb = finite_diff(&pb.beta, 1e-2, |v| fd_loss(&pb, &pb.z, &pb.w, &pb.lambda, v, &r));
            assert_close(&format!("g_beta M={m} R={rank}"), &vals(&g.g_beta), &fb, 2e-3, 2e-3);
        }
    }
}

#[test]
fn low_rank_fusion_backward_gpu_matches_cpu() {
    for m in 1..=3 {
        for rank in [1, 8] {
            let pb = Lmf::new(400 + m as u64, m, 150, 5, 6, rank);
            let go = rand_vec(410, 150 * 6, -1.0, 1.0);
            let run = |d: &Device, block: Option<usize>| {
                let g = fusion::low_rank_fusion_backward_blocked(&pb.zt(d), &pb.wt(d), &t(d, &pb.lambda, &[rank]), &t(d, &go, &[150, 6]), rank, block).unwrap();
                let mut v = g.g_z;
                v.extend(g.g_w);
                v.push(g.g_lambda);
                v.push(g.g_beta);
                v
            };
            // Blocked and unblocked agree on the CPU.
            for (a, b) in run(&Device::Cpu, None).iter().zip(run(&Device::Cpu, Some(40))) {
                assert_close(&format!("cpu blocked M={m} R={rank}"), &vals(&b), &vals(a), 1e-4, 1e-4);
            }
            check_backends(&format!("lmf backward M={m} R={rank}"), 1e-3, 1e-4, |d| run(d, None));
            check_backends(&format!("lmf backward blocked M={m} R={rank}"), 1e-3, 1e-4, |d| run(d, Some(40)));
        }
    }
}

#[test]
fn lmf_degenerate_shapes() {
    // A single row, an empty batch, four modalities with d = 1, and rank 16.
    for (m, n, din, d, rank) in [(2, 1, 3, 4, 3), (3, 0, 3, 2, 2), (4, 5, 2, 1, 16)] {
        let pb = Lmf::new(500, m, n, din, d, rank);
        let want = pb.direct();
        let cpu = Device::Cpu;
        let o = fusion::low_rank_fusion(&pb.zt(&cpu), &pb.wt(&cpu), &t(&cpu, &pb.lambda, &[rank]), &t(&cpu, &pb.beta, &[d]), rank).unwrap();
        assert_eq!(o.shape(), &[n, d]);
        assert_close("degenerate direct", &vals(&o), &want, 1e-4, 1e-4);
        let go = rand_vec(501, n * d, -1.0, 1.0);
        check_backends(&format!("lmf degenerate M={m} n={n}"), 1e-4, 1e-4, |dv| {
            let (l, b) = (t(dv, &pb.lambda, &[rank]), t(dv, &pb.beta, &[d]));
            let g = fusion::low_rank_fusion_backward(&pb.zt(dv), &pb.wt(dv), &l, &t(dv, &go, &[n, d]), rank).unwrap();
            let mut v = vec![fusion::low_rank_fusion(&pb.zt(dv), &pb.wt(dv), &l, &b, rank).unwrap()];
            v.extend(g.g_z);
            v.extend(g.g_w);
            v.push(g.g_lambda);
            v.push(g.g_beta);
            v
        });
    }
}

#[test]
fn lmf_rejects_bad_arguments() {
    let cpu = Device::Cpu;
    let pb = Lmf::new(600, 2, 4, 3, 2, 2);
    let (l, b) = (t(&cpu, &pb.lambda, &[2]), t(&cpu, &pb.beta, &[2]));
    // Five modalities.
    let f5 = t(&cpu, &[1.0; 5 * 4 * 4], &[5, 4, 4]);
    assert!(ops::lmf_combine(&f5, &l, &b, 2).is_err());
    // rank does not divide the factor width; lambda of the wrong length; beta of the wrong length.
    let f = t(&cpu, &[1.0; 2 * 4 * 4], &[2, 4, 4]);
    assert!(ops::lmf_combine(&f, &t(&cpu, &[1.0; 3], &[3]), &b, 3).is_err());
    assert!(ops::lmf_combine(&f, &t(&cpu, &[1.0; 3], &[3]), &b, 2).is_err());
    assert!(ops::lmf_combine(&f, &l, &t(&cpu, &[0.0; 3], &[3]), 2).is_err());
    assert!(ops::lmf_combine(&f, &l, &b, 0).is_err());
    assert!(ops::lmf_combine_backward(&f, &l, &t(&cpu, &[0.0; 6], &[3, 2]), 2).is_err());
    // Composite: mismatched counts, mismatched z rows, zero block size.
    let (z, w) = (pb.zt(&cpu), pb.wt(&cpu));
    assert!(fusion::low_rank_fusion(&z, &w[..1], &l, &b, 2).is_err());
    let z_bad = vec![z[0].clone(), t(&cpu, &[1.0; 9], &[3, 3])];
    assert!(fusion::low_rank_fusion(&z_bad, &w, &l, &b, 2).is_err());
    assert!(fusion::low_rank_fusion_blocked(&z, &w, &l, &b, 2, Some(0)).is_err());
    assert!(fusion::low_rank_fusion(&[], &[], &l, &b, 2).is_err());
}

#[test]
fn tape_low_rank_fusion_matches_finite_differences() {
    // L = Σ R ⊙ LMF(z, W, λ, β), recorded on the tape: the gradients are those of the test above.
    let (m, rank) = (2, 3);
    let pb = Lmf::new(700, m, 4, 3, 2, rank);
    let r = rand_vec(701, pb.n * pb.d, -1.0, 1.0);
    let run = |dev: &Device| {
        let tape = Tape::new();
        let z: Vec<_> = pb.zt(dev).iter().map(|x| tape.param(x)).collect();
        let w: Vec<_> = pb.wt(dev).iter().map(|x| tape.param(x)).collect();
        let l = tape.param(&t(dev, &pb.lambda, &[1, rank]));
        let b = tape.param(&t(dev, &pb.beta, &[pb.d]));
        let rv = tape.constant(&t(dev, &r, &[pb.n, pb.d]));
        let zr: Vec<_> = z.iter().collect();
        let wr: Vec<_> = w.iter().collect();
        let o = fusion::ad::low_rank_fusion(&tape, &zr, &wr, &l, &b, rank).unwrap();
        let loss = ad::sum(&tape, &ad::mul(&tape, &o, &rv).unwrap()).unwrap();
        let g = tape.backward(&loss).unwrap();
        assert_eq!(g.get(&l).unwrap().shape(), &[1, rank], "g_lambda keeps lambda's shape");
        let mut out: Vec<Vec<f32>> = z.iter().chain(&w).map(|v| vals(g.get(v).unwrap())).collect();
        out.push(vals(g.get(&l).unwrap()));
        out.push(vals(g.get(&b).unwrap()));
        out
    };
    let got = run(&Device::Cpu);
    for mi in 0..m {
        let fz = finite_diff(&pb.z[mi], 1e-2, |v| {
            let mut z = pb.z.clone();
            z[mi] = v.to_vec();
            fd_loss(&pb, &z, &pb.w, &pb.lambda, &pb.beta, &r)
        });
        assert_close("tape g_z", &got[mi], &fz, 2e-3, 2e-3);
        let fw = finite_diff(&pb.w[mi], 1e-2, |v| {
            let mut w = pb.w.clone();
            w[mi] = v.to_vec();
            fd_loss(&pb, &pb.z, &w, &pb.lambda, &pb.beta, &r)
        });
        assert_close("tape g_w", &got[m + mi], &fw, 2e-3, 2e-3);
    }
    let fl = finite_diff(&pb.lambda, 1e-2, |v| fd_loss(&pb, &pb.z, &pb.w, v, &pb.beta, &r));
    assert_close("tape g_lambda", &got[2 * m], &fl, 2e-3, 2e-3);
    let fb = finite_diff(&pb.beta, 1e-2, |v| fd_loss(&pb, &pb.z, &pb.w, &pb.lambda, v, &r));
    assert_close("tape g_beta", &got[2 * m + 1], &fb, 2e-3, 2e-3);
    if let Some(g) = gpu() {
        for (a, b) in run(&g).iter().zip(&got) {
            assert_close("tape gpu vs cpu", a, b, 1e-4, 1e-4);
        }
    }
}

#[test]
fn tape_lmf_combine_matches_finite_differences() {
    // L = Σ R ⊙ combine(F, λ, β): g_F = λ_r R ⊙ Π_{m'≠m} F_{m'}, g_λ_r = Σ R ⊙ Π_m F_{m,r}, g_β = Σ_rows R.
    let (m, n, d, rank) = (3, 3, 2, 2);
    let f = rand_vec(800, m * n * rank * d, -1.0, 1.0);
    let lambda = rand_vec(801, rank, -1.0, 1.0);
    let beta = rand_vec(802, d, -1.0, 1.0);
    let r = rand_vec(803, n * d, -1.0, 1.0);
    let cpu = Device::Cpu;
    let loss = |f: &[f32], l: &[f32], b: &[f32]| dot(&vals(&ops::lmf_combine(&t(&cpu, f, &[m, n, rank * d]), &t(&cpu, l, &[rank]), &t(&cpu, b, &[d]), rank).unwrap()), &r);
    let tape = Tape::new();
    let fv = tape.param(&t(&cpu, &f, &[m, n, rank * d]));
    let lv = tape.param(&t(&cpu, &lambda, &[rank]));
    let bv = tape.param(&t(&cpu, &beta, &[d]));
    let o = fusion::ad::lmf_combine(&tape, &fv, &lv, &bv, rank).unwrap();
    let rv = tape.constant(&t(&cpu, &r, &[n, d]));
    let g = tape.backward(&ad::sum(&tape, &ad::mul(&tape, &o, &rv).unwrap()).unwrap()).unwrap();
    assert_close("g_F", &vals(g.get(&fv).unwrap()), &finite_diff(&f, 1e-2, |v| loss(v, &lambda, &beta)), 2e-3, 2e-3);
    assert_close("g_lambda", &vals(g.get(&lv).unwrap()), &finite_diff(&lambda, 1e-2, |v| loss(&f, v, &beta)), 2e-3, 2e-3);
    assert_close("g_beta", &vals(g.get(&bv).unwrap()), &finite_diff(&beta, 1e-2, |v| loss(&f, &lambda, v)), 2e-3, 2e-3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn prop_lmf_lambda_gradient(n in 0usize..300, d in 1usize..20, m in 1usize..5, rank in 1usize..10, seed in 0u64..1000) {
        // The rank-weight gradient is a two-pass reduction: compare both backends with an f64 sum.
        let rd = rank * d;
        let f = rand_vec(seed, m * n * rd, -1.0, 1.0);
        let lambda = rand_vec(seed + 1, rank, -1.0, 1.0);
        let go = rand_vec(seed + 2, n * d, -1.0, 1.0);
        let mut want = vec![0.0f64; rank];
        for (r, wr) in want.iter_mut().enumerate() {
            for i in 0..n {
                for k in 0..d {
                    let e = i * rd + r * d + k;
                    *wr += go[i * d + k] as f64 * (0..m).map(|o| f[o * n * rd + e] as f64).product::<f64>();
                }
            }
        }
        let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
        let cpu = Device::Cpu;
        let (_, gl, _) = ops::lmf_combine_backward(&t(&cpu, &f, &[m, n, rd]), &t(&cpu, &lambda, &[rank]), &t(&cpu, &go, &[n, d]), rank).unwrap();
        assert_close("prop g_lambda cpu", &vals(&gl), &want, 1e-3, 1e-4);
        check_backends("prop lmf backward", 1e-3, 1e-4, |dv| {
            let (a, b, c) = ops::lmf_combine_backward(&t(dv, &f, &[m, n, rd]), &t(dv, &lambda, &[rank]), &t(dv, &go, &[n, d]), rank).unwrap();
            vec![a, b, c]
        });
    }
}
