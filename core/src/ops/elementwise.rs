//! Elementwise ops: tanh, ReLU, leaky ReLU, sigmoid, softplus, affine; add/sub/axpby/mul.
//! Shader: `shaders/elementwise.wgsl`. CPU twin: [`cpu`].

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg};
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const SHADER: crate::gpu::Shader = shader!("elementwise");

/// A unary elementwise function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Tanh,
    Relu,
    /// `x` for x > 0, `slope * x` otherwise.
    LeakyRelu(f32),
    Sigmoid,
    /// `log(1 + e^x)`.
    Softplus,
    /// `scale * x + shift`.
    Affine {
        scale: f32,
        shift: f32,
    },
    /// `e^x` (the argument clamped to ≤ 80, so the result stays finite).
    Exp,
    /// `x` for x > 0, `e^x − 1` otherwise.
    Elu,
    /// `ln x` (the argument clamped to ≥ 1e-30; derivative 0 below).
    Log,
}

impl Unary {
    fn code(self) -> (u32, f32, f32) {
        match self {
            Unary::Tanh => (0, 0.0, 0.0),
            Unary::Relu => (1, 0.0, 0.0),
            Unary::LeakyRelu(s) => (2, s, 0.0),
            Unary::Sigmoid => (3, 0.0, 0.0),
            Unary::Softplus => (4, 0.0, 0.0),
            Unary::Affine { scale, shift } => (5, scale, shift),
            Unary::Exp => (6, 0.0, 0.0),
            Unary::Elu => (7, 0.0, 0.0),
            Unary::Log => (8, 0.0, 0.0),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

fn groups(n: usize) -> [u32; 3] {
    grid((n as u64).div_ceil(256))
}

/// `y = f(x)`.
pub fn unary(f: Unary, x: &Tensor) -> Result<Tensor> {
    const OP: &str = "unary";
    let _prof = crate::profile::scope(OP);
    x.expect_dtype(OP, DType::F32)?;
    match x.device() {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::unary(f, x.cpu_f32(OP)?), x.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, x.shape(), DType::F32, OP)?;
            let (code, alpha, beta) = f.code();
            let p = Params { n: x.len() as u32, alpha, beta, _pad: 0 };
            ctx.dispatch(OP, &SHADER, "unary", &[("OP", code as f64)], &p, &[Arg::Read(x.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], groups(x.len()))?;
            Ok(out)
        }
    }
}

/// `g_x = g ⊙ f'(x)`, given the forward input `x`, its output `y = f(x)` and `g = dL/dy`.
pub fn unary_backward(f: Unary, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    const OP: &str = "unary_backward";
    let _prof = crate::profile::scope(OP);
    same_shape(OP, &[x, y, g])?;
    match common_device(OP, &[x, y, g])? {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::unary_backward(f, x.cpu_f32(OP)?, y.cpu_f32(OP)?, g.cpu_f32(OP)?), x.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, x.shape(), DType::F32, OP)?;
            let (code, alpha, beta) = f.code();
            let p = Params { n: x.len() as u32, alpha, beta, _pad: 0 };
            ctx.dispatch(
                OP,
                &SHADER,
                "unary_backward",
                &[("OP", code as f64)],
                &p,
                &[Arg::Read(x.gpu_buf(OP)?), Arg::Read(y.gpu_buf(OP)?), Arg::Read(g.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)],
                groups(x.len()),
            )?;
            Ok(out)
        }
    }
}

/// All tensors are f32 with the shape of the first.
pub(crate) fn same_shape(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        t.expect_dtype(op, DType::F32)?;
        if t.shape() != ts[0].shape() {
            let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
            return Err(Error::shape(op, "operands must have the same shape", &shapes));
        }
    }
    Ok(())
}

fn binary(op: &'static str, code: u32, alpha: f32, beta: f32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if code == 2 {
        same_shape(op, &[b])?;
        a.expect_dtype(op, DType::F32)?;
        if a.len() != 1 {
            return Err(Error::shape(op, "the scale must have exactly one element", &[a.shape(), b.shape()]));
        }
    } else {
        same_shape(op, &[a, b])?;
    }
    let _prof = crate::profile::scope(op);
    match common_device(op, &[a, b])? {
        Device::Cpu => {
            let (x, y) = (a.cpu_f32(op)?, b.cpu_f32(op)?);
            let v = match code {
                0 => cpu::axpby(alpha, x, beta, y),
                1 => cpu::mul(x, y),
                _ => y.iter().map(|v| x[0] * v).collect(),
            };
            Tensor::from_f32(&Device::Cpu, v, b.shape())
        }
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, b.shape(), DType::F32, op)?;
            let p = Params { n: b.len() as u32, alpha, beta, _pad: 0 };
            ctx.dispatch(
                op,
                &SHADER,
                "binary",
                &[("OP", code as f64)],
                &p,
                &[Arg::Read(a.gpu_buf(op)?), Arg::Read(b.gpu_buf(op)?), Arg::Write(out.gpu_buf(op)?)],
                groups(b.len()),
            )?;
            Ok(out)
        }
    }
}

/// `alpha * a + beta * b`.
pub fn axpby(alpha: f32, a: &Tensor, beta: f32, b: &Tensor) -> Result<Tensor> {
    binary("axpby", 0, alpha, beta, a, b)
}
/// `a + b`. Backward: `g_a = g_b = g`.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("add", 0, 1.0, 1.0, a, b)
}
/// [`add`] that takes `a` by value and, on the CPU, adds `b` into `a`'s storage when nothing else holds
/// it (gradient accumulation: no new buffer per sum). The same values as [`add`] (each element is
/// `a + b` either way); on a GPU it is [`add`].
pub fn add_into(mut a: Tensor, b: &Tensor) -> Result<Tensor> {
    const OP: &str = "add";
    same_shape(OP, &[&a, b])?;
    if !matches!(common_device(OP, &[&a, b])?, Device::Cpu) {
        return add(&a, b);
    }
    let _prof = crate::profile::scope(OP);
    const CHUNK: usize = 4096;
    let y = b.cpu_f32(OP)?;
    crate::cpu::par_rows(a.cpu_f32_mut(OP)?, CHUNK, |c, chunk| chunk.iter_mut().zip(&y[c * CHUNK..]).for_each(|(x, v)| *x += v));
    Ok(a)
}
/// `a - b`. Backward: `g_a = g`, `g_b = -g`.
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("sub", 0, 1.0, -1.0, a, b)
}
/// `a ⊙ b`. Backward: `g_a = g ⊙ b`, `g_b = g ⊙ a`.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("mul", 1, 0.0, 0.0, a, b)
}
/// `s[0] * x` for a one-element tensor `s` (stays on the device: no readback).
pub fn scale_by(s: &Tensor, x: &Tensor) -> Result<Tensor> {
    binary("scale_by", 2, 0.0, 0.0, s, x)
}
/// `s * x`.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    unary(Unary::Affine { scale: s, shift: 0.0 }, x)
}

/// The CPU twin: the same formulas as the shader, on slices.
pub mod cpu {
    use super::Unary;

    pub fn forward(f: Unary, x: f32) -> f32 {
        match f {
            Unary::Tanh => x.clamp(-15.0, 15.0).tanh(),
            Unary::Relu => x.max(0.0),
            Unary::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Unary::Sigmoid => sigmoid(x),
            Unary::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Unary::Affine { scale, shift } => scale * x + shift,
            Unary::Exp => x.min(80.0).exp(),
            Unary::Elu => {
                if x > 0.0 {
                    x
                } else {
                    x.min(0.0).exp() - 1.0
                }
            }
            Unary::Log => x.max(1e-30).ln(),
        }
    }

    pub fn derivative(f: Unary, x: f32, y: f32) -> f32 {
        match f {
            Unary::Tanh => 1.0 - y * y,
            Unary::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::LeakyRelu(s) => {
                if x > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            Unary::Sigmoid => y * (1.0 - y),
            Unary::Softplus => sigmoid(x),
            Unary::Affine { scale, .. } => scale,
            Unary::Exp => y,
            Unary::Elu => {
                if x > 0.0 {
                    1.0
                } else {
                    y + 1.0
                }
            }
            Unary::Log => {
                if x > 1e-30 {
                    1.0 / x
                } else {
                    0.0
                }
            }
        }
    }

    pub fn sigmoid(x: f32) -> f32 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    /// `out[i] = f(i)` over chunks in parallel (rayon natively, serial in wasm).
    fn map_indexed(n: usize, f: impl Fn(usize) -> f32 + Send + Sync) -> Vec<f32> {
        const CHUNK: usize = 4096;
        let mut out = vec![0.0f32; n];
        crate::cpu::par_rows(&mut out, CHUNK, |c, chunk| {
            for (j, o) in chunk.iter_mut().enumerate() {
                *o = f(c * CHUNK + j);
            }
        });
        out
    }

    pub fn unary(f: Unary, x: &[f32]) -> Vec<f32> {
        map_indexed(x.len(), |i| forward(f, x[i]))
    }
    pub fn unary_backward(f: Unary, x: &[f32], y: &[f32], g: &[f32]) -> Vec<f32> {
        map_indexed(x.len(), |i| g[i] * derivative(f, x[i], y[i]))
    }
    pub fn axpby(alpha: f32, a: &[f32], beta: f32, b: &[f32]) -> Vec<f32> {
        map_indexed(a.len(), |i| alpha * a[i] + beta * b[i])
    }
    pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
        map_indexed(a.len(), |i| a[i] * b[i])
    }
}
