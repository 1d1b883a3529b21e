use mmea_core::ops::{self, AdamW};
use mmea_core::{Device, Tensor};

use crate::common::*;

/// PyTorch's AdamW written out in f64 (torch.optim.AdamW with amsgrad off, preceded by
/// clip_grad_norm_ when `clip` is set): returns θ after every step in `grads` (one gradient list per step).
struct RefAdamW {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    clip: Option<f64>,
}

impl RefAdamW {
    fn run(&self, theta0: &[Vec<f32>], grads: &[Vec<Vec<f32>>]) -> Vec<Vec<f64>> {
        let mut th: Vec<Vec<f64>> = theta0.iter().map(|p| p.iter().map(|&v| v as f64).collect()).collect();
        let mut m: Vec<Vec<f64>> = th.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut v = m.clone();
        for (step, gs) in grads.iter().enumerate() {
            let t = (step + 1) as f64;
            let coef = match self.clip {
                Some(c) => {
                    let norm = gs.iter().flatten().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt();
                    (c / (norm + 1e-6)).min(1.0)
                }
                None => 1.0,
            };
            for p in 0..th.len() {
                for i in 0..th[p].len() {
                    let g = gs[p][i] as f64 * coef;
                    th[p][i] *= 1.0 - self.lr * self.wd;
                    m[p][i] = self.b1 * m[p][i] + (1.0 - self.b1) * g;
                    v[p][i] = self.b2 * v[p][i] + (1.0 - self.b2) * g * g;
                    let mhat = m[p][i] / (1.0 - self.b1.powf(t));
                    let vhat = v[p][i] / (1.0 - self.b2.powf(t));
                    th[p][i] -= self.lr * mhat / (vhat.sqrt() + self.eps);
                }
            }
        }
        th
    }
}

fn f64s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

// 3 workgroups of 256 plus a ragged 37; a matrix; a single element; an empty parameter.
const SHAPES: [&[usize]; 4] = [&[805], &[3, 7], &[1], &[0]];

fn setup(seed: u64, steps: usize, gscale: f32) -> (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>) {
    let theta: Vec<Vec<f32>> = SHAPES.iter().enumerate().map(|(i, s)| rand_vec(seed + i as u64, s.iter().product(), -1.0, 1.0)).collect();
    let grads =
        (0..steps).map(|k| SHAPES.iter().enumerate().map(|(i, s)| rand_vec(seed + 100 * (k as u64 + 1) + i as u64, s.iter().product(), -gscale, gscale)).collect()).collect();
    (theta, grads)
}

/// Run `opt` over the steps on `dev`; returns the final parameters.
fn run(dev: &Device, opt: &mut AdamW, theta: &[Vec<f32>], grads: &[Vec<Vec<f32>>]) -> Vec<Tensor> {
    let mut params: Vec<Tensor> = theta.iter().zip(SHAPES).map(|(v, s)| t(dev, v, s)).collect();
    for gs in grads {
        let g: Vec<Tensor> = gs.iter().zip(SHAPES).map(|(v, s)| t(dev, v, s)).collect();
        opt.step(&mut params, &g).unwrap();
    }
    params
}

#[test]
fn adamw_matches_pytorch_formula_in_f64() {
    let (theta, grads) = setup(400, 6, 1.0);
    let r = RefAdamW { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, clip: None };
    let want = r.run(&theta, &grads);
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        let mut opt = AdamW::new(1e-2);
        let got = run(&dev, &mut opt, &theta, &grads);
        assert_eq!(opt.step, 6);
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.shape(), SHAPES[p]);
            assert_close(&format!("{dev:?} param {p}"), &vals(g), &f64s(w), 2e-6, 1e-5);
        }
        // The parameters actually moved by several learning rates.
        let moved = vals(&got[0]).iter().zip(&theta[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved > 2e-2, "{dev:?}: parameters barely moved ({moved})");
    }
}

#[test]
fn adamw_with_clipping_matches_f64_and_gpu_matches_cpu() {
    // Gradients of norm ~ 20 clipped to 1; eps = 0.05 makes the update depend on the gradient scale, so
    // a wrong clipping factor shows.
    let (theta, grads) = setup(410, 4, 1.0);
    let r = RefAdamW { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 0.05, wd: 0.01, clip: Some(1.0) };
    let want = r.run(&theta, &grads);
    let unclipped = RefAdamW { clip: None, ..r }.run(&theta, &grads);
    let diff = want[0].iter().zip(&unclipped[0]).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    assert!(diff > 1e-3, "clipping should change the result ({diff})");
    let mk = || {
        let mut o = AdamW::new(1e-2);
        o.eps = 0.05;
        o.clip_grad_norm = Some(1.0);
        o
    };
    let mut cpu_opt = mk();
    let cpu = run(&Device::Cpu, &mut cpu_opt, &theta, &grads);
    for (p, (g, w)) in cpu.iter().zip(&want).enumerate() {
        assert_close(&format!("cpu clipped param {p}"), &vals(g), &f64s(w), 2e-6, 1e-5);
    }
    if let Some(gd) = gpu() {
        let mut gpu_opt = mk();
        let gp = run(&gd, &mut gpu_opt, &theta, &grads);
        for p in 0..SHAPES.len() {
            assert_close(&format!("gpu vs cpu param {p}"), &vals(&gp[p]), &vals(&cpu[p]), 1e-6, 1e-5);
            let (gm, gv, gt) = gpu_opt.moments(p).unwrap();
            let (cm, cv, ct) = cpu_opt.moments(p).unwrap();
            assert_eq!(gt, ct);
            assert_close(&format!("m {p}"), &vals(gm), &vals(cm), 1e-7, 1e-5);
            assert_close(&format!("v {p}"), &vals(gv), &vals(cv), 1e-9, 1e-5);
        }
    }
}

#[test]
fn global_grad_sq_norm_matches_f64() {
    let (_, grads) = setup(420, 1, 1.0);
    let want: f64 = grads[0].iter().flatten().map(|&g| g as f64 * g as f64).sum();
    check_backends("global_grad_sq_norm", 1e-4, 1e-5, |d| {
        let g: Vec<Tensor> = grads[0].iter().zip(SHAPES).map(|(v, s)| t(d, v, s)).collect();
        let refs: Vec<&Tensor> = g.iter().collect();
        let s = ops::global_grad_sq_norm(&refs).unwrap();
        assert!((vals(&s)[0] as f64 - want).abs() < 1e-3, "{} vs {want}", vals(&s)[0]);
        vec![s]
    });
}

#[test]
fn reset_state_makes_the_next_step_a_first_step() {
    // After a reset, m̂ = g and v̂ = g², so θ ← θ(1 − lr·wd) − lr·g/(|g| + eps): every element moves by
    // ≈ lr against the sign of its gradient (|g| >= 0.5 >> eps), whatever the earlier steps were.
    let lr = 1e-3;
    let n = 805;
    let theta = rand_vec(430, n, -1.0, 1.0);
    let g_early: Vec<Vec<f32>> = (0..3).map(|k| rand_vec(431 + k, n, -1.0, 1.0)).collect();
    let g_last: Vec<f32> = rand_vec(440, n, 0.5, 1.0).iter().enumerate().map(|(i, &v)| if i % 3 == 0 { -v } else { v }).collect();
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        let mut opt = AdamW::new(lr);
        let mut p = vec![t(&dev, &theta, &[n])];
        for g in &g_early {
            opt.step(&mut p, &[t(&dev, g, &[n])]).unwrap();
        }
        assert_eq!(opt.moments(0).unwrap().2, 3);
        opt.reset_state();
        assert_eq!(opt.step, 0);
        assert!(opt.moments(0).is_none());
        let before = vals(&p[0]);
        opt.step(&mut p, &[t(&dev, &g_last, &[n])]).unwrap();
        let after = vals(&p[0]);
        for i in 0..n {
            let decayed = before[i] as f64 * (1.0 - lr * 0.01);
            let upd = after[i] as f64 - decayed;
            assert!((upd.abs() - lr).abs() < 2e-6, "{dev:?} element {i}: |update| = {} (lr {lr})", upd.abs());
            assert!(upd.signum() == -(g_last[i] as f64).signum(), "{dev:?} element {i}: update {upd} vs g {}", g_last[i]);
        }
        // And it equals the first step of a brand-new optimiser from the same parameters.
        let mut fresh = AdamW::new(lr);
        let mut q = vec![t(&dev, &before, &[n])];
        fresh.step(&mut q, &[t(&dev, &g_last, &[n])]).unwrap();
        assert_eq!(vals(&q[0]), after, "{dev:?}");
    }
}

#[test]
fn step_some_skips_parameters_without_gradients() {
    for dev in [Some(Device::Cpu), gpu()].into_iter().flatten() {
        let a0 = rand_vec(450, 10, -1.0, 1.0);
        let b0 = rand_vec(451, 4, -1.0, 1.0);
        let ga = rand_vec(452, 10, -1.0, 1.0);
        let gb = rand_vec(453, 4, -1.0, 1.0);
        let mut opt = AdamW::new(1e-2);
        let mut p = vec![t(&dev, &a0, &[10]), t(&dev, &b0, &[2, 2])];
        let (ta, tb) = (t(&dev, &ga, &[10]), t(&dev, &gb, &[2, 2]));
        opt.step_some(&mut p, &[Some(&ta), None]).unwrap();
        assert_eq!(vals(&p[1]), b0, "{dev:?}: a parameter without gradient is untouched (no weight decay either)");
        assert_ne!(vals(&p[0]), a0);
        assert!(opt.moments(1).is_none());
        opt.step_some(&mut p, &[Some(&ta), Some(&tb)]).unwrap();
        assert_eq!(opt.moments(0).unwrap().2, 2);
        assert_eq!(opt.moments(1).unwrap().2, 1, "per-parameter step counts, as PyTorch");
        assert_eq!(opt.step, 2);
        // Parameter 1's update was a first step: |Δ| ≈ lr (after decay).
        let b1 = vals(&p[1]);
        for i in 0..4 {
            let upd = b1[i] as f64 - b0[i] as f64 * (1.0 - 1e-2 * 0.01);
            assert!((upd.abs() - 1e-2).abs() < 1e-5, "{dev:?}: {upd}");
        }
    }
}

#[test]
fn gpu_update_is_in_place() {
    let Some(g) = gpu() else { return };
    let mut p = vec![t(&g, &[1.0, -1.0, 0.5], &[3])];
    let alias = p[0].clone();
    let mut opt = AdamW::new(0.1);
    opt.step(&mut p, &[t(&g, &[1.0, 1.0, -1.0], &[3])]).unwrap();
    let now = vals(&p[0]);
    assert_eq!(vals(&alias), now, "the parameter's buffer is updated, not replaced");
    assert_close("values", &now, &[1.0 * 0.999 - 0.1, -0.999 - 0.1, 0.5 * 0.999 + 0.1], 1e-6, 1e-6);
}

#[test]
fn adamw_rejects_bad_inputs() {
    let c = Device::Cpu;
    let mut opt = AdamW::new(1e-3);
    let mut p = vec![t(&c, &[0.0; 4], &[2, 2])];
    let e = opt.step(&mut p, &[t(&c, &[0.0; 4], &[4])]).unwrap_err().to_string();
    assert!(e.contains("adamw") && e.contains("[2, 2]") && e.contains("[4]"), "{e}");
    let e = opt.step(&mut p, &[]).unwrap_err().to_string();
    assert!(e.contains("1 parameters but 0 gradients"), "{e}");
    opt.step(&mut p, &[t(&c, &[1.0; 4], &[2, 2])]).unwrap();
    let mut p2 = vec![p[0].clone(), t(&c, &[0.0], &[1])];
    let e = opt.step(&mut p2, &[t(&c, &[1.0; 4], &[2, 2]), t(&c, &[1.0], &[1])]).unwrap_err().to_string();
    assert!(e.contains("reset_state"), "{e}");
    opt.reset_state();
    opt.step(&mut p2, &[t(&c, &[1.0; 4], &[2, 2]), t(&c, &[1.0], &[1])]).unwrap();
    opt.clip_grad_norm = Some(0.0);
    assert!(opt.step(&mut p2, &[t(&c, &[1.0; 4], &[2, 2]), t(&c, &[1.0], &[1])]).is_err());
}
