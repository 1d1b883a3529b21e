//! The AdamW optimiser with PyTorch semantics (`torch.optim.AdamW`, amsgrad off; mmea-spec §7 op 26 and
//! §3.3), with optional global gradient-norm clipping (`torch.nn.utils.clip_grad_norm_`).
//! Shader: `shaders/adamw.wgsl`. CPU twin: [`cpu`].
//!
//! Parameters are updated **in place**: on the GPU the kernel writes into the parameter's existing buffer
//! (every tensor sharing that buffer sees the new values); on the CPU the data is updated through
//! copy-on-write (`Arc::make_mut`), so only the tensor in the `params` slice changes. This is the one op
//! that mutates a tensor.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, Shader};
use crate::ops;
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const SHADER: Shader = shader!("adamw");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    decay: f32,
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
    max_norm: f32,
    _p: [u32; 2],
}

/// The per-step constants of one AdamW update at step `t`, computed on the host in f64 and rounded to f32
/// once (PyTorch computes the bias corrections as Python floats too):
/// `decay = 1 − lr·wd`, `step_size = lr / (1 − β1^t)`, `bc2_sqrt = sqrt(1 − β2^t)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConsts {
    pub decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

/// First and second moments of one parameter, and its own step count (PyTorch keeps `step` per parameter:
/// a parameter without a gradient in some step is not advanced).
struct Moments {
    m: Tensor,
    v: Tensor,
    t: u64,
}

/// AdamW (decoupled weight decay), as `torch.optim.AdamW`. For each parameter θ with gradient g at its
/// step t (1-based):
///
/// `θ ← θ(1 − lr·wd)`; `m ← β1 m + (1−β1) g`; `v ← β2 v + (1−β2) g²`;
/// `θ ← θ − lr·(m/(1−β1^t)) / (sqrt(v/(1−β2^t)) + eps)` (evaluated as PyTorch does:
/// `θ − (lr/(1−β1^t))·m / (sqrt(v)/sqrt(1−β2^t) + eps)`).
///
/// With `clip_grad_norm = Some(c)`, all gradients are first multiplied by `min(1, c / (‖g‖ + 1e-6))`
/// where `‖g‖` is the L2 norm over all gradients of the step (a deterministic reduction; the factor is
/// applied on the device, no readback).
///
/// State (m, v, t) is kept per position in the `params` slice, so pass the parameters in the same order
/// every step. [`AdamW::reset_state`] forgets it (the reference code's per-epoch optimiser re-creation:
/// the next step is a first step, `≈ lr·sign(g)` per element).
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold (MEAformer: 1.0). None = no clipping.
    pub clip_grad_norm: Option<f64>,
    /// Number of [`AdamW::step`] calls since construction or the last [`AdamW::reset_state`].
    pub step: u64,
    state: Vec<Option<Moments>>,
}

impl AdamW {
    /// PyTorch's defaults: β = (0.9, 0.999), eps = 1e-8, weight decay 0.01, no clipping.
    pub fn new(lr: f64) -> Self {
        AdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, clip_grad_norm: None, step: 0, state: Vec::new() }
    }

    /// Forget the moments and step counts: the next step behaves as the first step of a new optimiser.
    pub fn reset_state(&mut self) {
        self.state.clear();
        self.step = 0;
    }

    /// The moments `(m, v)` and step count of parameter `i`, if it has been updated since the last reset.
    pub fn moments(&self, i: usize) -> Option<(&Tensor, &Tensor, u64)> {
        self.state.get(i).and_then(|s| s.as_ref()).map(|s| (&s.m, &s.v, s.t))
    }

    /// Restores parameter `i`'s moments and step count (resuming a run), out of `num_params` parameters.
    pub fn restore_moments(&mut self, num_params: usize, i: usize, m: Tensor, v: Tensor, t: u64) -> Result<()> {
        if i >= num_params || m.shape() != v.shape() {
            return Err(Error::invalid("adamw", format!("cannot restore moments {i} of {num_params} (shapes {:?}, {:?})", m.shape(), v.shape())));
        }
        if self.state.len() != num_params {
            self.state = (0..num_params).map(|_| None).collect();
        }
        self.state[i] = Some(Moments { m, v, t });
        Ok(())
    }

    /// The constants of an update at step `t` (1-based), in f64 on the host.
    pub fn consts(&self, t: u64) -> AdamWConsts {
        let t = t as f64;
        let bc1 = 1.0 - self.beta1.powf(t);
        let bc2 = 1.0 - self.beta2.powf(t);
        AdamWConsts {
            decay: (1.0 - self.lr * self.weight_decay) as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            step_size: (self.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: self.eps as f32,
        }
    }

    /// One update of every parameter with its gradient (`grads[i]` has the shape of `params[i]`).
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor]) -> Result<()> {
        let gs: Vec<Option<&Tensor>> = grads.iter().map(Some).collect();
        self.step_some(params, &gs)
    }

    /// Like [`AdamW::step`], but parameters whose gradient is None are skipped entirely (no decay, no
    /// moment update, their step count does not advance), as PyTorch skips parameters with `grad = None`.
    pub fn step_some(&mut self, params: &mut [Tensor], grads: &[Option<&Tensor>]) -> Result<()> {
        const OP: &str = "adamw";
        let _prof = crate::profile::scope(OP);
        if params.len() != grads.len() {
            return Err(Error::invalid(OP, format!("{} parameters but {} gradients", params.len(), grads.len())));
        }
        if self.state.is_empty() {
            self.state = params.iter().map(|_| None).collect();
        } else if self.state.len() != params.len() {
            return Err(Error::invalid(
                OP,
                format!("the optimiser holds state for {} parameters but got {}; pass the same parameters every step or call reset_state", self.state.len(), params.len()),
            ));
        }
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            p.expect_dtype(OP, DType::F32)?;
            if let Some(g) = g {
                g.expect_dtype(OP, DType::F32)?;
                if g.shape() != p.shape() {
                    return Err(Error::shape(OP, format!("gradient {i} does not match its parameter"), &[p.shape(), g.shape()]));
                }
                common_device(OP, &[p, g])?;
            }
            if let Some(st) = &self.state[i] {
                if st.m.shape() != p.shape() || !st.m.device().same(&p.device()) {
                    return Err(Error::invalid(OP, format!("parameter {i} changed shape or device since the last step ({:?} -> {:?}); call reset_state", st.m, p)));
                }
            }
        }
        let clip = match self.clip_grad_norm {
            Some(c) if c.is_nan() || c <= 0.0 => return Err(Error::invalid(OP, format!("clip_grad_norm must be positive, got {c}"))),
            Some(c) => {
                let present: Vec<&Tensor> = grads.iter().flatten().copied().collect();
                if present.is_empty() {
                    None
                } else {
                    Some((c as f32, global_grad_sq_norm(&present)?))
                }
            }
            None => None,
        };

        self.step += 1;
        for i in 0..params.len() {
            let Some(g) = grads[i] else { continue };
            let t = self.state[i].as_ref().map_or(0, |s| s.t) + 1;
            let c = self.consts(t);
            if self.state[i].is_none() {
                let dev = params[i].device();
                let shape = params[i].shape().to_vec();
                self.state[i] = Some(Moments { m: Tensor::zeros(&dev, &shape)?, v: Tensor::zeros(&dev, &shape)?, t: 0 });
            }
            let Some(st) = self.state[i].as_mut() else { continue };
            st.t = t;
            match params[i].device() {
                Device::Cpu => {
                    let scale = match &clip {
                        Some((max_norm, sq)) => cpu::clip_coef(sq.cpu_f32(OP)?[0], *max_norm),
                        None => 1.0,
                    };
                    let gv = g.cpu_f32(OP)?;
                    let (m, v) = (st.m.cpu_f32_mut(OP)?, st.v.cpu_f32_mut(OP)?);
                    cpu::adamw(params[i].cpu_f32_mut(OP)?, gv, m, v, &c, scale);
                }
                Device::Gpu(ctx) => {
                    let n = params[i].len();
                    if n == 0 {
                        continue;
                    }
                    let p = Params {
                        n: n as u32,
                        decay: c.decay,
                        beta1: c.beta1,
                        beta2: c.beta2,
                        one_minus_beta1: c.one_minus_beta1,
                        one_minus_beta2: c.one_minus_beta2,
                        step_size: c.step_size,
                        bc2_sqrt: c.bc2_sqrt,
                        eps: c.eps,
                        max_norm: clip.as_ref().map_or(0.0, |(m, _)| *m),
                        _p: [0; 2],
                    };
                    // Without clipping the sq binding is unused: bind the gradient again (read-only).
                    let sq = match &clip {
                        Some((_, sq)) => sq.gpu_buf(OP)?,
                        None => g.gpu_buf(OP)?,
                    };
                    ctx.dispatch(
                        OP,
                        &SHADER,
                        "adamw",
                        &[("CLIP", clip.is_some() as u32 as f64)],
                        &p,
                        &[Arg::Write(params[i].gpu_buf(OP)?), Arg::Read(g.gpu_buf(OP)?), Arg::Write(st.m.gpu_buf(OP)?), Arg::Write(st.v.gpu_buf(OP)?), Arg::Read(sq)],
                        grid((n as u64).div_ceil(256)),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// `Σ_i Σ_k g_i[k]²` over all gradients, as a `[1]` tensor on their device (deterministic: a fixed-order
/// reduction per gradient, then a fixed-order sum). Its square root is the global L2 norm that
/// `clip_grad_norm_` uses.
pub fn global_grad_sq_norm(grads: &[&Tensor]) -> Result<Tensor> {
    const OP: &str = "global_grad_sq_norm";
    let _prof = crate::profile::scope(OP);
    let Some(first) = grads.first() else { return Err(Error::invalid(OP, "no gradients")) };
    common_device(OP, grads)?;
    let mut acc: Option<Tensor> = None;
    for g in grads {
        g.expect_dtype(OP, DType::F32)?;
        let flat = g.reshape(&[g.len()])?;
        let s = ops::sum_all(&ops::mul(&flat, &flat)?)?;
        acc = Some(match acc {
            None => s,
            Some(a) => ops::add(&a, &s)?,
        });
    }
    match acc {
        Some(a) => Ok(a),
        None => Tensor::zeros(&first.device(), &[1]),
    }
}

/// The CPU twin of the update kernel.
pub mod cpu {
    use super::AdamWConsts;

    /// `min(1, max_norm / (sqrt(sq) + 1e-6))`, the clipping factor for a squared global norm `sq`.
    pub fn clip_coef(sq: f32, max_norm: f32) -> f32 {
        (max_norm / (sq.sqrt() + 1e-6)).min(1.0)
    }

    /// One in-place AdamW update of `theta` with gradient `g · scale` (see the shader for the formula).
    pub fn adamw(theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamWConsts, scale: f32) {
        for (((th, &gi), mi), vi) in theta.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let gi = gi * scale;
            let decayed = *th * c.decay;
            *mi = c.beta1 * *mi + c.one_minus_beta1 * gi;
            *vi = c.beta2 * *vi + c.one_minus_beta2 * (gi * gi);
            *th = decayed - c.step_size * (*mi / (vi.sqrt() / c.bc2_sqrt + c.eps));
        }
    }
}
