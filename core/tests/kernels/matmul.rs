use mmea_core::ops;
use mmea_core::Device;
use proptest::prelude::*;

use crate::common::*;

/// Naive reference, independent of the sgemm twin.
fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                s += av as f64 * bv as f64;
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[test]
fn matmul_all_transposes_with_bias() {
    // 3+ tiles of 64 in m and n with ragged tails, K not a multiple of 16.
    let (m, k, n) = (197, 45, 150);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = rand_vec(10, m * k, -1.0, 1.0);
        let b = rand_vec(11, k * n, -1.0, 1.0);
        let bias = rand_vec(12, n, -1.0, 1.0);
        let ashape = if ta { [k, m] } else { [m, k] };
        let bshape = if tb { [n, k] } else { [k, n] };
        let mut want = naive(&a, &b, m, k, n, ta, tb);
        for r in 0..m {
            for c in 0..n {
                want[r * n + c] += bias[c];
            }
        }
        let cpu = ops::matmul_ex(&t(&Device::Cpu, &a, &ashape), &t(&Device::Cpu, &b, &bshape), Some(&t(&Device::Cpu, &bias, &[n])), ta, tb, 1.0).unwrap();
        assert_close(&format!("cpu ta={ta} tb={tb}"), &vals(&cpu), &want, 1e-4, 1e-4);
        check_backends(&format!("matmul ta={ta} tb={tb}"), 1e-4, 1e-4, |d| {
            vec![ops::matmul_ex(&t(d, &a, &ashape), &t(d, &b, &bshape), Some(&t(d, &bias, &[n])), ta, tb, 1.0).unwrap()]
        });
    }
}

#[test]
fn batched_matmul_shared_and_batched_b() {
    let (bt, m, k, n) = (3, 70, 33, 65);
    let a = rand_vec(13, bt * m * k, -1.0, 1.0);
    let b1 = rand_vec(14, k * n, -1.0, 1.0);
    let b3 = rand_vec(15, bt * k * n, -1.0, 1.0);
    check_backends("batched", 1e-4, 1e-4, |d| {
        vec![
            ops::matmul_ex(&t(d, &a, &[bt, m, k]), &t(d, &b1, &[k, n]), None, false, false, 2.0).unwrap(),
            ops::matmul_ex(&t(d, &a, &[bt, m, k]), &t(d, &b3, &[bt, k, n]), None, false, false, 1.0).unwrap(),
        ]
    });
    let c = vals(&ops::matmul_ex(&t(&Device::Cpu, &a, &[bt, m, k]), &t(&Device::Cpu, &b3, &[bt, k, n]), None, false, false, 1.0).unwrap());
    let want1 = naive(&a[m * k..2 * m * k], &b3[k * n..2 * k * n], m, k, n, false, false);
    assert_close("batch 1", &c[m * n..2 * m * n], &want1, 1e-4, 1e-4);
}

#[test]
fn degenerate_matmuls() {
    check_backends("degenerate", 1e-6, 1e-6, |d| {
        vec![
            ops::matmul(&t(d, &[2.0], &[1, 1]), &t(d, &[3.0, 4.0], &[1, 2])).unwrap(),
            ops::matmul(&t(d, &[], &[0, 3]), &t(d, &[1.0; 6], &[3, 2])).unwrap(),
            ops::matmul(&t(d, &[], &[2, 0]), &t(d, &[], &[0, 3])).unwrap(),
        ]
    });
}

#[test]
fn linear_backward_matches_finite_differences() {
    // L = Σ W_out ⊙ (X W + b):  g_X = W_out Wᵀ, g_W = Xᵀ W_out, g_b = Σ_rows W_out.
    let (m, k, n) = (5, 4, 3);
    let x = rand_vec(20, m * k, -1.0, 1.0);
    let w = rand_vec(21, k * n, -1.0, 1.0);
    let b = rand_vec(22, n, -1.0, 1.0);
    let wo = rand_vec(23, m * n, -1.0, 1.0);
    let d = Device::Cpu;
    let loss = |x: &[f32], w: &[f32], b: &[f32]| dot(&vals(&ops::linear(&t(&d, x, &[m, k]), &t(&d, w, &[k, n]), Some(&t(&d, b, &[n]))).unwrap()), &wo);
    let (gx, gw, gb) = ops::linear_backward(&t(&d, &x, &[m, k]), &t(&d, &w, &[k, n]), &t(&d, &wo, &[m, n]), true).unwrap();
    assert_close("g_x", &vals(&gx), &finite_diff(&x, 1e-2, |v| loss(v, &w, &b)), 1e-3, 1e-3);
    assert_close("g_w", &vals(&gw), &finite_diff(&w, 1e-2, |v| loss(&x, v, &b)), 1e-3, 1e-3);
    assert_close("g_b", &vals(&gb.unwrap()), &finite_diff(&b, 1e-2, |v| loss(&x, &w, v)), 1e-3, 1e-3);
}

#[test]
fn matmul_backward_all_transposes_fd_and_gpu() {
    let (m, k, n) = (6, 5, 4);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let ashape = if ta { [k, m] } else { [m, k] };
        let bshape = if tb { [n, k] } else { [k, n] };
        let a = rand_vec(30, m * k, -1.0, 1.0);
        let b = rand_vec(31, k * n, -1.0, 1.0);
        let wo = rand_vec(32, m * n, -1.0, 1.0);
        let d = Device::Cpu;
        let loss = |a: &[f32], b: &[f32]| dot(&vals(&ops::matmul_ex(&t(&d, a, &ashape), &t(&d, b, &bshape), None, ta, tb, 1.0).unwrap()), &wo);
        let (ga, gb) = ops::matmul_backward(&t(&d, &a, &ashape), &t(&d, &b, &bshape), &t(&d, &wo, &[m, n]), ta, tb).unwrap();
        assert_eq!(ga.shape(), &ashape);
        assert_eq!(gb.shape(), &bshape);
        assert_close("g_a", &vals(&ga), &finite_diff(&a, 1e-2, |v| loss(v, &b)), 1e-3, 1e-3);
        assert_close("g_b", &vals(&gb), &finite_diff(&b, 1e-2, |v| loss(&a, v)), 1e-3, 1e-3);
    }
    // GPU backward vs CPU backward on a multi-tile shape, bias gradient included.
    let (m, k, n) = (130, 70, 200);
    let x = rand_vec(33, m * k, -1.0, 1.0);
    let w = rand_vec(34, k * n, -1.0, 1.0);
    let g = rand_vec(35, m * n, -1.0, 1.0);
    check_backends("linear backward", 1e-3, 1e-4, |d| {
        let (gx, gw, gb) = ops::linear_backward(&t(d, &x, &[m, k]), &t(d, &w, &[k, n]), &t(d, &g, &[m, n]), true).unwrap();
        vec![gx, gw, gb.unwrap()]
    });
}

#[test]
fn sum_rows_and_sum_all() {
    // 600 rows = 3 chunks of 256 with a ragged tail; 70 columns = 2 workgroups of 64.
    let (r, c) = (600, 70);
    let x = rand_vec(40, r * c, -1.0, 1.0);
    let mut want = vec![0.0f64; c];
    for i in 0..r {
        for j in 0..c {
            want[j] += x[i * c + j] as f64;
        }
    }
    let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
    assert_close("cpu sum_rows", &vals(&ops::sum_rows(&t(&Device::Cpu, &x, &[r, c])).unwrap()), &want, 1e-4, 1e-5);
    check_backends("sum_rows", 1e-4, 1e-5, |d| {
        vec![
            ops::sum_rows(&t(d, &x, &[r, c])).unwrap(),
            ops::sum_all(&t(d, &x, &[r * c])).unwrap(),
            ops::sum_rows(&t(d, &[], &[0, 3])).unwrap(),
            ops::sum_all(&t(d, &[1.5], &[1])).unwrap(),
        ]
    });
}

#[test]
fn parallel_sum_rows_keeps_the_chunked_order() {
    // 70,000 rows = 274 chunks of 256: enough for the parallel path. The result must be the serial
    // chunked sum bit for bit (each chunk row by row, then the chunks in order), whatever the threads.
    let (r, c) = (70_000, 3);
    let x = rand_vec(41, r * c, -1.0, 1.0);
    let mut want = vec![0.0f32; c];
    for chunk in x.chunks(256 * c) {
        let mut s = vec![0.0f32; c];
        for row in chunk.chunks(c) {
            s.iter_mut().zip(row).for_each(|(a, v)| *a += v);
        }
        want.iter_mut().zip(&s).for_each(|(a, v)| *a += v);
    }
    assert_eq!(vals(&ops::sum_rows(&t(&Device::Cpu, &x, &[r, c])).unwrap()), want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn prop_sum_rows_matches_f64(rows in 0usize..700, cols in 1usize..90, seed in 0u64..1000) {
        let x = rand_vec(seed, rows * cols, -1.0, 1.0);
        let mut want = vec![0.0f64; cols];
        for i in 0..rows { for j in 0..cols { want[j] += x[i * cols + j] as f64; } }
        let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
        check_backends("prop sum_rows", 1e-4, 1e-4, |d| vec![ops::sum_rows(&t(d, &x, &[rows, cols])).unwrap()]);
        assert_close("prop sum_rows cpu", &vals(&ops::sum_rows(&t(&Device::Cpu, &x, &[rows, cols])).unwrap()), &want, 1e-4, 1e-4);
    }
}

#[test]
fn tiled_products_equal_the_direct_ones() {
    // Each tiling path with a small element limit and ragged blocks, on both backends, against the naive
    // reference: rows of A (result too large), the shared dimension (Aᵀ B with A too large), rows of B
    // (A Bᵀ with B too large), with a bias where the path passes one.
    let cases: [(usize, usize, usize, bool, bool, usize); 4] =
        [(301, 37, 20, false, false, 1000), (300, 45, 20, false, true, 2000), (41, 503, 17, true, false, 4000), (23, 19, 411, false, true, 1500)];
    for (m, k, n, ta, tb, limit) in cases {
        let a = rand_vec(m as u64, m * k, -1.0, 1.0);
        let b = rand_vec(n as u64 + 7, k * n, -1.0, 1.0);
        let bias = rand_vec(3, n, -1.0, 1.0);
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        let mut want = naive(&a, &b, m, k, n, ta, tb);
        for row in want.chunks_mut(n) {
            row.iter_mut().zip(&bias).for_each(|(w, c)| *w = 0.5 * *w + c);
        }
        check_backends(&format!("tiled {m}x{k}x{n} ta={ta} tb={tb}"), 1e-4, 1e-4, |d| {
            let got = ops::matmul::matmul_tiled(&t(d, &a, &a_shape), &t(d, &b, &b_shape), Some(&t(d, &bias, &[n])), ta, tb, 0.5, limit).unwrap();
            assert_close("tiled vs naive", &vals(&got), &want, 1e-4, 1e-4);
            vec![got]
        });
    }
    // Aᵀ Bᵀ with A too large has no tiling by row copies: a clear error, not a wrong result.
    let e = ops::matmul::matmul_tiled(&t(&Device::Cpu, &[0.0; 6], &[3, 2]), &t(&Device::Cpu, &[0.0; 3], &[1, 3]), None, true, true, 1.0, 4).unwrap_err();
    assert!(e.to_string().contains("matmul"), "{e}");
}
