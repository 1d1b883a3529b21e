use mmea_core::autodiff::{Tape, Var};
use mmea_core::ops::{self, rows};
use mmea_core::{Device, Tensor};
use proptest::prelude::*;

use crate::common::*;

// ---- references in f64, independent of the twins ---------------------------------------------------

fn ref_l2(x: &[f32], n: usize, d: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n * d];
    for i in 0..n {
        let r = &x[i * d..(i + 1) * d];
        let nrm = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt().max(1e-12);
        for k in 0..d {
            y[i * d + k] = (r[k] as f64 / nrm) as f32;
        }
    }
    y
}

fn ref_softmax(x: &[f32], n: usize, m: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n * m];
    for i in 0..n {
        let r = &x[i * m..(i + 1) * m];
        let mx = r.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let s: f64 = r.iter().map(|&v| (v as f64 - mx).exp()).sum();
        for k in 0..m {
            y[i * m + k] = ((r[k] as f64 - mx).exp() / s) as f32;
        }
    }
    y
}

fn ref_row_dot(a: &[f32], b: &[f32], n: usize, d: usize) -> Vec<f32> {
    (0..n).map(|i| (0..d).map(|k| a[i * d + k] as f64 * b[i * d + k] as f64).sum::<f64>() as f32).collect()
}

/// Row data with some special rows: row 0 all zeros, row 1 tiny (norm below the 1e-12 clamp), the rest
/// uniform in [-2, 2).
fn rows_with_specials(seed: u64, n: usize, d: usize) -> Vec<f32> {
    let mut x = rand_vec(seed, n * d, -2.0, 2.0);
    if n > 2 {
        x[..d].iter_mut().for_each(|v| *v = 0.0);
        x[d..2 * d].iter_mut().for_each(|v| *v *= 1e-16);
    }
    x
}

// ---- L2 normalisation ------------------------------------------------------------------------------

// Row lengths: 805 = 3 strides of 256 lanes plus a ragged 37; 7 leaves most lanes idle; 300 rows span
// 300 workgroups; plus a single element, empty matrices and zero-width rows.
const L2_SHAPES: [(usize, usize); 6] = [(5, 805), (300, 7), (1, 1), (0, 4), (3, 0), (4, 2400)];

#[test]
fn l2_normalize_gpu_matches_cpu_and_f64() {
    for (si, &(n, d)) in L2_SHAPES.iter().enumerate() {
        let x = rows_with_specials(100 + si as u64, n, d);
        let cpu = vals(&ops::l2_normalize(&t(&Device::Cpu, &x, &[n, d])).unwrap());
        assert_close(&format!("cpu vs f64 {n}x{d}"), &cpu, &ref_l2(&x, n, d), 1e-6, 1e-5);
        for i in (if n > 2 { 2 } else { 0 })..n {
            if d > 0 {
                let s: f32 = cpu[i * d..(i + 1) * d].iter().map(|v| v * v).sum();
                assert!((s - 1.0).abs() < 1e-4, "row {i} of {n}x{d} has squared norm {s}");
            }
        }
        if n > 2 {
            assert!(cpu[..d].iter().all(|&v| v == 0.0), "a zero row stays zero");
            // Tiny row: divided by the clamp, not by its own norm.
            assert_close("tiny row", &cpu[d..2 * d], &x[d..2 * d].iter().map(|v| v / 1e-12).collect::<Vec<_>>(), 1e-6, 1e-5);
        }
        check_backends(&format!("l2_normalize {n}x{d}"), 1e-6, 1e-5, |dev| vec![ops::l2_normalize(&t(dev, &x, &[n, d])).unwrap()]);
    }
}

#[test]
fn l2_normalize_many_rows_use_2d_grid() {
    // 65,535 + 7 rows need a second grid dimension (one workgroup per row).
    let Some(g) = gpu() else { return };
    let (n, d) = (65_535 + 7, 3);
    let x = rand_vec(110, n * d, -1.0, 1.0);
    let got = vals(&ops::l2_normalize(&t(&g, &x, &[n, d])).unwrap());
    let want = ref_l2(&x, n, d);
    for i in [0, 1, 65_534, 65_535, 65_536, n - 1] {
        assert_close(&format!("row {i}"), &got[i * d..(i + 1) * d], &want[i * d..(i + 1) * d], 1e-6, 1e-5);
    }
    let gy = rand_vec(111, n * d, -1.0, 1.0);
    let xt = t(&g, &x, &[n, d]);
    let yt = ops::l2_normalize(&xt).unwrap();
    let gx = vals(&ops::l2_normalize_backward(&xt, &yt, &t(&g, &gy, &[n, d])).unwrap());
    let want = rows::cpu::l2_normalize_backward(&x, &want, &gy, n, d);
    assert_close("backward, far rows", &gx[65_535 * d..], &want[65_535 * d..], 1e-5, 1e-4);
}

#[test]
fn l2_normalize_backward_matches_finite_differences() {
    // L = Σ w ⊙ y, y_i = x_i/‖x_i‖  ⇒  g_x_i = (w_i − (w_i·y_i) y_i)/‖x_i‖.
    let (n, d) = (4, 6);
    let x = rand_vec(120, n * d, -1.0, 1.0);
    let w = rand_vec(121, n * d, -1.0, 1.0);
    let y = rows::cpu::l2_normalize(&x, n, d);
    let analytic = rows::cpu::l2_normalize_backward(&x, &y, &w, n, d);
    let numeric = finite_diff(&x, 1e-3, |v| dot(&rows::cpu::l2_normalize(v, n, d), &w));
    assert_close("l2 fd", &analytic, &numeric, 2e-3, 2e-3);
    // Below the clamp y = x/1e-12 is linear, so g_x = w/1e-12 exactly.
    let z = vec![0.0f32; d];
    let gz = rows::cpu::l2_normalize_backward(&z, &z, &w[..d], 1, d);
    assert_close("zero row", &gz, &w[..d].iter().map(|v| v / 1e-12).collect::<Vec<_>>(), 0.0, 1e-6);
}

#[test]
fn l2_normalize_backward_gpu_matches_cpu() {
    for (si, &(n, d)) in L2_SHAPES.iter().enumerate() {
        let x = rows_with_specials(130 + si as u64, n, d);
        let g = rand_vec(140 + si as u64, n * d, -1.0, 1.0);
        check_backends(&format!("l2 backward {n}x{d}"), 1e-5, 1e-4, |dev| {
            let xt = t(dev, &x, &[n, d]);
            let y = ops::l2_normalize(&xt).unwrap();
            vec![ops::l2_normalize_backward(&xt, &y, &t(dev, &g, &[n, d])).unwrap()]
        });
    }
}

// ---- softmax over a small axis ---------------------------------------------------------------------

// 205 rows = 3 workgroups of 64 plus 13; m = 6 modalities, 64 (the maximum), 1; empty shapes.
const SM_SHAPES: [(usize, usize); 5] = [(205, 6), (70, 64), (3, 1), (0, 3), (4, 0)];

#[test]
fn softmax_rows_gpu_matches_cpu_and_f64() {
    for (si, &(n, m)) in SM_SHAPES.iter().enumerate() {
        let mut x = rand_vec(150 + si as u64, n * m, -5.0, 5.0);
        if n * m >= 2 {
            x[0] = 90.0; // exp(90) overflows f32 without the max shift
            x[1] = -90.0;
        }
        let cpu = vals(&ops::softmax_rows(&t(&Device::Cpu, &x, &[n, m])).unwrap());
        assert_close(&format!("cpu vs f64 {n}x{m}"), &cpu, &ref_softmax(&x, n, m), 1e-6, 1e-5);
        for i in 0..n {
            if m > 0 {
                let s: f32 = cpu[i * m..(i + 1) * m].iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "row {i} sums to {s}");
            }
        }
        check_backends(&format!("softmax {n}x{m}"), 1e-6, 1e-5, |d| vec![ops::softmax_rows(&t(d, &x, &[n, m])).unwrap()]);
    }
}

#[test]
fn softmax_rows_backward_fd_and_gpu() {
    // L = Σ w ⊙ softmax(x)  ⇒  g_x_ij = y_ij (w_ij − Σ_k y_ik w_ik).
    let (n, m) = (5, 4);
    let x = rand_vec(160, n * m, -2.0, 2.0);
    let w = rand_vec(161, n * m, -1.0, 1.0);
    let y = rows::cpu::softmax_rows(&x, n, m);
    let analytic = rows::cpu::softmax_rows_backward(&y, &w, n, m);
    let numeric = finite_diff(&x, 1e-3, |v| dot(&rows::cpu::softmax_rows(v, n, m), &w));
    assert_close("softmax fd", &analytic, &numeric, 1e-3, 2e-3);
    for (si, &(n, m)) in SM_SHAPES.iter().enumerate() {
        let x = rand_vec(170 + si as u64, n * m, -3.0, 3.0);
        let g = rand_vec(180 + si as u64, n * m, -1.0, 1.0);
        check_backends(&format!("softmax backward {n}x{m}"), 1e-6, 1e-5, |d| {
            let y = ops::softmax_rows(&t(d, &x, &[n, m])).unwrap();
            vec![ops::softmax_rows_backward(&y, &t(d, &g, &[n, m])).unwrap()]
        });
    }
}

// ---- row scaling and row dot -----------------------------------------------------------------------

#[test]
fn scale_rows_and_row_dot_gpu_match_cpu_and_f64() {
    // scale_rows: 45 x 19 = 855 elements = 3 workgroups of 256 plus 87.
    for &(n, d) in &[(45usize, 19usize), (1, 1), (0, 3), (3, 0)] {
        let x = rand_vec(200, n * d, -2.0, 2.0);
        let s = rand_vec(201, n, -2.0, 2.0);
        let want: Vec<f32> = (0..n * d).map(|i| x[i] * s[i / d.max(1)]).collect();
        assert_close("scale_rows cpu", &vals(&ops::scale_rows(&t(&Device::Cpu, &x, &[n, d]), &t(&Device::Cpu, &s, &[n])).unwrap()), &want, 0.0, 0.0);
        check_backends(&format!("scale_rows {n}x{d}"), 0.0, 0.0, |dev| {
            vec![ops::scale_rows(&t(dev, &x, &[n, d]), &t(dev, &s, &[n])).unwrap(), ops::scale_rows(&t(dev, &x, &[n, d]), &t(dev, &s, &[n, 1])).unwrap()]
        });
    }
    // row_dot: one workgroup per row, rows of 805 = 3 lane strides + 37; d = 0 gives zeros.
    for &(n, d) in &[(5usize, 805usize), (300, 7), (1, 1), (0, 5), (3, 0)] {
        let a = rand_vec(210, n * d, -1.0, 1.0);
        let b = rand_vec(211, n * d, -1.0, 1.0);
        let cpu = vals(&ops::row_dot(&t(&Device::Cpu, &a, &[n, d]), &t(&Device::Cpu, &b, &[n, d])).unwrap());
        assert_close(&format!("row_dot cpu vs f64 {n}x{d}"), &cpu, &ref_row_dot(&a, &b, n, d), 1e-5, 1e-5);
        check_backends(&format!("row_dot {n}x{d}"), 1e-6, 1e-6, |dev| vec![ops::row_dot(&t(dev, &a, &[n, d]), &t(dev, &b, &[n, d])).unwrap()]);
    }
}

#[test]
fn scale_rows_backward_fd_and_gpu() {
    // L = Σ w ⊙ (x ⊙ s[row])  ⇒  g_x_ik = w_ik s_i,  g_s_i = Σ_k w_ik x_ik.
    let (n, d) = (4, 5);
    let x = rand_vec(220, n * d, -1.0, 1.0);
    let s = rand_vec(221, n, -1.0, 1.0);
    let w = rand_vec(222, n * d, -1.0, 1.0);
    let c = Device::Cpu;
    let (gx, gs) = ops::scale_rows_backward(&t(&c, &x, &[n, d]), &t(&c, &s, &[n]), &t(&c, &w, &[n, d])).unwrap();
    assert_eq!(gs.shape(), &[n]);
    let fx = finite_diff(&x, 1e-2, |v| dot(&rows::cpu::scale_rows(v, &s, n, d), &w));
    let fs = finite_diff(&s, 1e-2, |v| dot(&rows::cpu::scale_rows(&x, v, n, d), &w));
    assert_close("g_x", &vals(&gx), &fx, 1e-3, 1e-3);
    assert_close("g_s", &vals(&gs), &fs, 1e-3, 1e-3);
    // [n, 1] scales get an [n, 1] gradient.
    let (_, gs1) = ops::scale_rows_backward(&t(&c, &x, &[n, d]), &t(&c, &s, &[n, 1]), &t(&c, &w, &[n, d])).unwrap();
    assert_eq!(gs1.shape(), &[n, 1]);
    let (n, d) = (300, 805);
    let x = rand_vec(223, n * d, -1.0, 1.0);
    let s = rand_vec(224, n, -1.0, 1.0);
    let g = rand_vec(225, n * d, -1.0, 1.0);
    check_backends("scale_rows backward", 1e-5, 1e-5, |dev| {
        let (gx, gs) = ops::scale_rows_backward(&t(dev, &x, &[n, d]), &t(dev, &s, &[n]), &t(dev, &g, &[n, d])).unwrap();
        vec![gx, gs]
    });
}

#[test]
fn row_op_errors_name_the_op() {
    let c = Device::Cpu;
    let e = ops::scale_rows(&t(&c, &[0.0; 6], &[2, 3]), &t(&c, &[1.0; 3], &[3])).unwrap_err().to_string();
    assert!(e.contains("scale_rows") && e.contains("[2, 3]") && e.contains("[3]"), "{e}");
    let e = ops::row_dot(&t(&c, &[0.0; 6], &[2, 3]), &t(&c, &[0.0; 6], &[3, 2])).unwrap_err().to_string();
    assert!(e.contains("row_dot"), "{e}");
    let e = ops::l2_normalize(&t(&c, &[0.0; 6], &[6])).unwrap_err().to_string();
    assert!(e.contains("l2_normalize") && e.contains("2-D"), "{e}");
    let e = ops::softmax_rows(&tu(&c, &[0; 6], &[2, 3])).unwrap_err().to_string();
    assert!(e.contains("softmax_rows") && e.contains("f32"), "{e}");
}

// ---- column and row blocks -------------------------------------------------------------------------

#[test]
fn blocks_have_the_right_values() {
    let c = Device::Cpu;
    for dev in [Some(c.clone()), gpu()].into_iter().flatten() {
        let a = t(&dev, &[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let b = t(&dev, &[5.0, 6.0], &[2, 1]);
        let e = t(&dev, &[], &[2, 0]);
        let cc = ops::concat_cols(&[&a, &e, &b]).unwrap();
        assert_eq!(cc.shape(), &[2, 3]);
        assert_eq!(vals(&cc), vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0], "{dev:?}");
        assert_eq!(vals(&ops::slice_cols(&cc, 1, 2).unwrap()), vec![2.0, 5.0, 4.0, 6.0]);
        assert_eq!(vals(&ops::slice_cols_backward(&b, 3, 1).unwrap()), vec![0.0, 5.0, 0.0, 0.0, 6.0, 0.0]);
        assert_eq!(vals(&ops::prepend_ones_col(&a).unwrap()), vec![1.0, 1.0, 2.0, 1.0, 3.0, 4.0]);
        assert_eq!(vals(&ops::prepend_ones_col_backward(&cc).unwrap()), vec![2.0, 5.0, 4.0, 6.0]);
        let r = ops::concat_rows(&[&a, &t(&dev, &[7.0, 8.0], &[1, 2])]).unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert_eq!(vals(&r), vec![1.0, 2.0, 3.0, 4.0, 7.0, 8.0]);
        assert_eq!(vals(&ops::slice_rows(&r, 1, 2).unwrap()), vec![3.0, 4.0, 7.0, 8.0]);
        assert_eq!(vals(&ops::slice_rows_backward(&t(&dev, &[7.0, 8.0], &[1, 2]), 3, 1).unwrap()), vec![0.0, 0.0, 7.0, 8.0, 0.0, 0.0]);
    }
}

#[test]
fn blocks_gpu_match_cpu() {
    // 97 rows x 9 columns = 873 elements: 3 workgroups of 256 plus 105, per copy.
    let n = 97;
    let p1 = rand_vec(230, n * 3, -1.0, 1.0);
    let p2 = rand_vec(231, n * 5, -1.0, 1.0);
    let p3 = rand_vec(232, n, -1.0, 1.0);
    let g = rand_vec(233, n * 4, -1.0, 1.0);
    check_backends("blocks", 0.0, 0.0, |d| {
        let (a, b, c) = (t(d, &p1, &[n, 3]), t(d, &p2, &[n, 5]), t(d, &p3, &[n, 1]));
        let cat = ops::concat_cols(&[&a, &t(d, &[], &[n, 0]), &b, &c]).unwrap();
        let cr = ops::concat_rows(&[&b, &t(d, &[], &[0, 5]), &b]).unwrap();
        vec![
            ops::slice_cols(&cat, 3, 5).unwrap(),
            ops::slice_cols_backward(&t(d, &g, &[n, 4]), 9, 5).unwrap(),
            ops::prepend_ones_col(&b).unwrap(),
            ops::prepend_ones_col_backward(&b).unwrap(),
            ops::slice_rows(&cr, 50, 100).unwrap(),
            ops::slice_rows_backward(&t(d, &g, &[n, 4]), 200, 40).unwrap(),
            cat,
            cr,
            // degenerate: no rows, zero-width slices, a single element
            ops::concat_cols(&[&t(d, &[], &[0, 2]), &t(d, &[], &[0, 3])]).unwrap(),
            ops::slice_cols(&a, 3, 0).unwrap(),
            ops::prepend_ones_col(&t(d, &[], &[4, 0])).unwrap(),
            ops::prepend_ones_col(&t(d, &[], &[0, 3])).unwrap(),
            ops::slice_rows(&a, 5, 0).unwrap(),
            ops::concat_rows(&[&t(d, &[2.5], &[1, 1])]).unwrap(),
        ]
    });
    // Slicing a concat gives the parts back.
    let c = Device::Cpu;
    let cat = ops::concat_cols(&[&t(&c, &p1, &[n, 3]), &t(&c, &p2, &[n, 5]), &t(&c, &p3, &[n, 1])]).unwrap();
    assert_eq!(vals(&ops::slice_cols(&cat, 3, 5).unwrap()), p2);
    assert_eq!(vals(&ops::slice_cols(&cat, 8, 1).unwrap()), p3);
}

#[test]
fn block_errors_name_the_op() {
    let c = Device::Cpu;
    let x = t(&c, &[0.0; 6], &[2, 3]);
    let e = ops::slice_cols(&x, 2, 2).unwrap_err().to_string();
    assert!(e.contains("slice_cols") && e.contains("2..4"), "{e}");
    assert!(ops::slice_cols(&x, usize::MAX, 2).is_err());
    let e = ops::slice_rows(&x, 1, 2).unwrap_err().to_string();
    assert!(e.contains("slice_rows") && e.contains("1..3"), "{e}");
    let e = ops::concat_cols(&[&x, &t(&c, &[0.0; 3], &[3, 1])]).unwrap_err().to_string();
    assert!(e.contains("concat_cols") && e.contains("[3, 1]"), "{e}");
    let e = ops::concat_rows(&[&x, &t(&c, &[0.0; 2], &[1, 2])]).unwrap_err().to_string();
    assert!(e.contains("concat_rows"), "{e}");
    assert!(ops::concat_cols(&[]).is_err());
    assert!(ops::slice_cols_backward(&x, 4, 2).is_err());
    assert!(ops::slice_rows_backward(&x, 2, 1).is_err());
    assert!(ops::prepend_ones_col_backward(&t(&c, &[], &[2, 0])).is_err());
}

// ---- property tests over shapes --------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn prop_row_reductions_match_f64(n in 0usize..40, d in 0usize..700, seed in 0u64..1000) {
        let a = rand_vec(seed, n * d, -1.0, 1.0);
        let b = rand_vec(seed + 1, n * d, -1.0, 1.0);
        assert_close("prop l2 cpu", &vals(&ops::l2_normalize(&t(&Device::Cpu, &a, &[n, d])).unwrap()), &ref_l2(&a, n, d), 1e-6, 1e-5);
        assert_close("prop row_dot cpu", &vals(&ops::row_dot(&t(&Device::Cpu, &a, &[n, d]), &t(&Device::Cpu, &b, &[n, d])).unwrap()), &ref_row_dot(&a, &b, n, d), 1e-5, 1e-5);
        check_backends("prop rows", 1e-5, 1e-5, |dev| {
            let (at, bt) = (t(dev, &a, &[n, d]), t(dev, &b, &[n, d]));
            let y = ops::l2_normalize(&at).unwrap();
            vec![ops::l2_normalize_backward(&at, &y, &bt).unwrap(), y, ops::row_dot(&at, &bt).unwrap()]
        });
    }

    #[test]
    fn prop_softmax_rows(n in 0usize..300, m in 1usize..65, seed in 0u64..1000) {
        let x = rand_vec(seed, n * m, -6.0, 6.0);
        let g = rand_vec(seed + 1, n * m, -1.0, 1.0);
        assert_close("prop softmax cpu", &vals(&ops::softmax_rows(&t(&Device::Cpu, &x, &[n, m])).unwrap()), &ref_softmax(&x, n, m), 1e-6, 1e-5);
        check_backends("prop softmax", 1e-6, 1e-5, |dev| {
            let y = ops::softmax_rows(&t(dev, &x, &[n, m])).unwrap();
            vec![ops::softmax_rows_backward(&y, &t(dev, &g, &[n, m])).unwrap(), y]
        });
    }
}

// ---- tape wrappers ---------------------------------------------------------------------------------

/// Tape gradients of `L = ⟨w, f(inputs)⟩` (w random) against central differences of the forward, for every
/// input; then the GPU tape against the CPU tape.
fn check_tape(name: &str, inputs: &[(Vec<f32>, Vec<usize>)], f: impl Fn(&Tape, &[Var]) -> Var) {
    let forward = |d: &Device, vs: &[Vec<f32>]| {
        let tape = Tape::new();
        let vars: Vec<Var> = vs.iter().zip(inputs).map(|(v, (_, s))| tape.param(&t(d, v, s))).collect();
        vals(&f(&tape, &vars).value)
    };
    let grads = |d: &Device, w: &[f32]| -> Vec<Vec<f32>> {
        let tape = Tape::new();
        let vars: Vec<Var> = inputs.iter().map(|(v, s)| tape.param(&t(d, v, s))).collect();
        let y = f(&tape, &vars);
        let g = tape.backward_with(&y, Tensor::from_f32(d, w.to_vec(), y.shape()).unwrap()).unwrap();
        vars.iter().map(|v| vals(g.get(v).unwrap_or_else(|| panic!("{name}: no gradient")))).collect()
    };
    let base: Vec<Vec<f32>> = inputs.iter().map(|(v, _)| v.clone()).collect();
    let w = rand_vec(999, forward(&Device::Cpu, &base).len(), -1.0, 1.0);
    let analytic = grads(&Device::Cpu, &w);
    for (i, ga) in analytic.iter().enumerate() {
        let numeric = finite_diff(&base[i], 1e-2, |v| {
            let mut vs = base.clone();
            vs[i] = v.to_vec();
            dot(&forward(&Device::Cpu, &vs), &w)
        });
        assert_close(&format!("{name}: input {i} tape vs fd"), ga, &numeric, 2e-3, 2e-3);
    }
    if let Some(g) = gpu() {
        for (i, (gg, gc)) in grads(&g, &w).iter().zip(&analytic).enumerate() {
            assert_close(&format!("{name}: input {i} gpu tape"), gg, gc, 1e-5, 1e-4);
        }
    }
}

fn inp(seed: u64, shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
    (rand_vec(seed, shape.iter().product(), -1.0, 1.0), shape.to_vec())
}

#[test]
fn tape_l2_normalize() {
    // g_x = (w − (w·y) y)/‖x‖ per row.
    check_tape("l2_normalize", &[inp(300, &[3, 5])], |tp, v| rows::ad::l2_normalize(tp, &v[0]).unwrap());
}

#[test]
fn tape_softmax_rows() {
    // g_x = y ⊙ (w − Σ_k y_k w_k) per row.
    check_tape("softmax_rows", &[inp(301, &[4, 3])], |tp, v| rows::ad::softmax_rows(tp, &v[0]).unwrap());
}

#[test]
fn tape_scale_rows() {
    // g_x = w ⊙ s[row], g_s = row_dot(w, x).
    check_tape("scale_rows", &[inp(302, &[3, 4]), inp(303, &[3])], |tp, v| rows::ad::scale_rows(tp, &v[0], &v[1]).unwrap());
}

#[test]
fn tape_row_dot() {
    // g_a = b ⊙ w[row], g_b = a ⊙ w[row].
    check_tape("row_dot", &[inp(304, &[3, 4]), inp(305, &[3, 4])], |tp, v| rows::ad::row_dot(tp, &v[0], &v[1]).unwrap());
}

#[test]
fn tape_concat_cols() {
    // g_part = the part's columns of w.
    check_tape("concat_cols", &[inp(306, &[3, 2]), inp(307, &[3, 4]), inp(308, &[3, 1])], |tp, v| rows::ad::concat_cols(tp, &[&v[0], &v[1], &v[2]]).unwrap());
}

#[test]
fn tape_slice_cols() {
    // g_x = w in columns 1..4, zeros elsewhere.
    check_tape("slice_cols", &[inp(309, &[3, 6])], |tp, v| rows::ad::slice_cols(tp, &v[0], 1, 3).unwrap());
}

#[test]
fn tape_concat_rows() {
    // g_part = the part's rows of w.
    check_tape("concat_rows", &[inp(310, &[2, 3]), inp(311, &[3, 3])], |tp, v| rows::ad::concat_rows(tp, &[&v[0], &v[1]]).unwrap());
}

#[test]
fn tape_slice_rows() {
    // g_x = w in rows 2..4, zeros elsewhere.
    check_tape("slice_rows", &[inp(312, &[5, 3])], |tp, v| rows::ad::slice_rows(tp, &v[0], 2, 2).unwrap());
}

#[test]
fn tape_prepend_ones_col() {
    // g_x = w without its first column.
    check_tape("prepend_ones_col", &[inp(313, &[3, 4])], |tp, v| rows::ad::prepend_ones_col(tp, &v[0]).unwrap());
}

#[test]
fn tape_composite_normalise_then_weight() {
    // A LoginMEA-like chain: c = concat(ω_1 n̂(h_1), ω_2 n̂(h_2)) with ω = softmax(q) per row.
    check_tape("composite", &[inp(314, &[3, 4]), inp(315, &[3, 5]), inp(316, &[3, 2])], |tp, v| {
        let om = rows::ad::softmax_rows(tp, &v[2]).unwrap();
        let w1 = rows::ad::slice_cols(tp, &om, 0, 1).unwrap();
        let w2 = rows::ad::slice_cols(tp, &om, 1, 1).unwrap();
        let a = rows::ad::scale_rows(tp, &rows::ad::l2_normalize(tp, &v[0]).unwrap(), &w1).unwrap();
        let b = rows::ad::scale_rows(tp, &rows::ad::l2_normalize(tp, &v[1]).unwrap(), &w2).unwrap();
        rows::ad::concat_cols(tp, &[&a, &b]).unwrap()
    });
}
