use mmea_core::ops::{self, Unary};
use mmea_core::Device;

use crate::common::*;

const ALL: [Unary; 9] =
    [Unary::Tanh, Unary::Relu, Unary::LeakyRelu(0.2), Unary::Sigmoid, Unary::Softplus, Unary::Affine { scale: -1.5, shift: 0.25 }, Unary::Exp, Unary::Elu, Unary::Log];

// 3 workgroups of 256 plus a ragged tail; values include large magnitudes (tanh/softplus overflow paths).
const N: usize = 3 * 256 + 37;

#[test]
fn unary_forward_gpu_matches_cpu() {
    let mut x = rand_vec(1, N, -4.0, 4.0);
    x[0] = 60.0;
    x[1] = -60.0;
    for f in ALL {
        check_backends(&format!("{f:?}"), 1e-5, 1e-5, |d| vec![ops::unary(f, &t(d, &x, &[N])).unwrap()]);
    }
}

#[test]
fn unary_backward_matches_finite_differences() {
    // d/dx Σ w f(x) = w f'(x); checked per element against central differences of the CPU twin.
    // Points near the kinks of relu / leaky relu are avoided (|x| >= 0.05).
    let x: Vec<f32> = rand_vec(2, 200, -3.0, 3.0).into_iter().map(|v| if v.abs() < 0.05 { v + 0.1 } else { v }).collect();
    let w = rand_vec(3, 200, -1.0, 1.0);
    for f in ALL {
        let y = ops::elementwise::cpu::unary(f, &x);
        let analytic = ops::elementwise::cpu::unary_backward(f, &x, &y, &w);
        let numeric = finite_diff(&x, 1e-3, |xs| dot(&ops::elementwise::cpu::unary(f, xs), &w));
        assert_close(&format!("{f:?} fd"), &analytic, &numeric, 2e-3, 2e-3);
    }
}

#[test]
fn unary_backward_gpu_matches_cpu() {
    let x = rand_vec(4, N, -4.0, 4.0);
    let g = rand_vec(5, N, -1.0, 1.0);
    for f in ALL {
        check_backends(&format!("{f:?} backward"), 1e-5, 1e-5, |d| {
            let xt = t(d, &x, &[N]);
            let y = ops::unary(f, &xt).unwrap();
            vec![ops::unary_backward(f, &xt, &y, &t(d, &g, &[N])).unwrap()]
        });
    }
}

#[test]
fn binary_ops_gpu_match_cpu() {
    let a = rand_vec(6, N, -2.0, 2.0);
    let b = rand_vec(7, N, -2.0, 2.0);
    check_backends("binary", 1e-6, 1e-6, |d| {
        let (ta, tb) = (t(d, &a, &[N]), t(d, &b, &[N]));
        vec![
            ops::add(&ta, &tb).unwrap(),
            ops::sub(&ta, &tb).unwrap(),
            ops::mul(&ta, &tb).unwrap(),
            ops::axpby(0.5, &ta, -2.0, &tb).unwrap(),
            ops::scale_by(&t(d, &[3.0], &[1]), &ta).unwrap(),
        ]
    });
}

#[test]
fn add_into_equals_add_and_leaves_shared_storage_alone() {
    // 20,013 elements: more than the CPU's parallel threshold, with a ragged last chunk.
    const N: usize = 20_013;
    let a = rand_vec(8, N, -2.0, 2.0);
    let b = rand_vec(9, N, -2.0, 2.0);
    check_backends("add_into", 0.0, 0.0, |d| {
        let (ta, tb) = (t(d, &a, &[N]), t(d, &b, &[N]));
        let want = ops::add(&ta, &tb).unwrap();
        // Unique storage (added in place on the CPU) and shared storage (`ta` stays as it was).
        let unique = ops::add_into(t(d, &a, &[N]), &tb).unwrap();
        let shared = ops::add_into(ta.clone(), &tb).unwrap();
        assert_eq!(vals(&unique), vals(&want));
        assert_eq!(vals(&shared), vals(&want));
        assert_eq!(vals(&ta), a);
        vec![unique, shared]
    });
    let err = ops::add_into(t(&Device::Cpu, &[1.0, 2.0], &[2]), &t(&Device::Cpu, &[1.0], &[1])).unwrap_err().to_string();
    assert!(err.contains("add") && err.contains("[2]") && err.contains("[1]"), "{err}");
}

#[test]
fn degenerate_shapes() {
    check_backends("empty and single", 0.0, 0.0, |d| vec![ops::unary(Unary::Tanh, &t(d, &[], &[0])).unwrap(), ops::unary(Unary::Sigmoid, &t(d, &[0.5], &[1, 1])).unwrap()]);
}

#[test]
fn shape_mismatch_names_the_op() {
    let d = Device::Cpu;
    let err = ops::add(&t(&d, &[1.0, 2.0], &[2]), &t(&d, &[1.0], &[1])).unwrap_err().to_string();
    assert!(err.contains("add") && err.contains("[2]") && err.contains("[1]"), "{err}");
}

#[test]
fn large_index_space_uses_2d_grid() {
    // 65,535 * 256 + 1 elements need a second grid dimension.
    let n = 65_535 * 256 + 1;
    let Some(g) = gpu() else { return };
    let x: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let y = vals(&ops::unary(Unary::Relu, &t(&g, &x, &[n])).unwrap());
    for i in [0, 1, 65_535 * 256 - 1, 65_535 * 256, n - 1] {
        assert_eq!(y[i], x[i].max(0.0), "element {i}");
    }
}
