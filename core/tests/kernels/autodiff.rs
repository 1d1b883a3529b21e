use mmea_core::autodiff::{ad, Tape};
use mmea_core::ops::{self, Unary};
use mmea_core::Device;

use crate::common::*;

/// L = Σ tanh(X W + b) ⊙ (X W + b): X W + b is used twice, so its gradient must be the sum of both paths:
/// g_h = tanh(h) + h ⊙ (1 − tanh²(h)).
fn loss_and_grads(d: &Device, x: &[f32], w: &[f32], b: &[f32]) -> (f32, Vec<Vec<f32>>) {
    let tape = Tape::new();
    let xv = tape.constant(&t(d, x, &[4, 3]));
    let wv = tape.param(&t(d, w, &[3, 5]));
    let bv = tape.param(&t(d, b, &[5]));
    let h = ad::linear(&tape, &xv, &wv, Some(&bv)).unwrap();
    let th = ad::unary(&tape, Unary::Tanh, &h).unwrap();
    let prod = ad::mul(&tape, &th, &h).unwrap();
    let loss = ad::sum(&tape, &prod).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert!(grads.get(&xv).is_none(), "constants get no gradient");
    (vals(&loss.value)[0], vec![vals(grads.get(&wv).unwrap()), vals(grads.get(&bv).unwrap())])
}

#[test]
fn tape_accumulates_gradients_of_reused_values() {
    let x = rand_vec(50, 12, -1.0, 1.0);
    let w = rand_vec(51, 15, -1.0, 1.0);
    let b = rand_vec(52, 5, -1.0, 1.0);
    let (_, g) = loss_and_grads(&Device::Cpu, &x, &w, &b);
    let f = |w: &[f32], b: &[f32]| loss_and_grads(&Device::Cpu, &x, w, b).0 as f64;
    assert_close("g_w", &g[0], &finite_diff(&w, 1e-2, |v| f(v, &b)), 2e-3, 2e-3);
    assert_close("g_b", &g[1], &finite_diff(&b, 1e-2, |v| f(&w, v)), 2e-3, 2e-3);
    if let Some(gd) = gpu() {
        let (_, gg) = loss_and_grads(&gd, &x, &w, &b);
        assert_close("gpu g_w", &gg[0], &g[0], 1e-5, 1e-4);
        assert_close("gpu g_b", &gg[1], &g[1], 1e-5, 1e-4);
    }
}

#[test]
fn matmul_transposed_on_tape() {
    // L = Σ (A Bᵀ) ⊙ R  ⇒  g_A = R B, g_B = Rᵀ A.
    let d = Device::Cpu;
    let a = rand_vec(53, 6, -1.0, 1.0);
    let b = rand_vec(54, 9, -1.0, 1.0);
    let r = rand_vec(55, 6, -1.0, 1.0);
    let tape = Tape::new();
    let av = tape.param(&t(&d, &a, &[2, 3]));
    let bv = tape.param(&t(&d, &b, &[3, 3]));
    let rv = tape.constant(&t(&d, &r, &[2, 3]));
    let c = ad::matmul(&tape, &av, &bv, false, true).unwrap();
    let l = ad::sum(&tape, &ad::mul(&tape, &c, &rv).unwrap()).unwrap();
    let g = tape.backward(&l).unwrap();
    let want_a = vals(&ops::matmul(&t(&d, &r, &[2, 3]), &t(&d, &b, &[3, 3])).unwrap());
    let want_b = vals(&ops::matmul_ex(&t(&d, &r, &[2, 3]), &t(&d, &a, &[2, 3]), None, true, false, 1.0).unwrap());
    assert_close("g_a", &vals(g.get(&av).unwrap()), &want_a, 1e-5, 1e-5);
    assert_close("g_b", &vals(g.get(&bv).unwrap()), &want_b, 1e-5, 1e-5);
}
