//! Dense matrix products with optional transposes, bias and batching, and their backward.
//! Shader: `shaders/matmul.wgsl`. CPU twin: [`cpu`] (matrixmultiply's sgemm, threaded natively).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Arg, MAX_GROUPS_PER_DIM};
use crate::ops::reduce::sum_rows;
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const SHADER: crate::gpu::Shader = shader!("matmul");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    _p: [u32; 3],
}

/// Shape bookkeeping shared by both backends: returns (batch, m, k, n, batched_b).
fn plan(op: &'static str, a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<(usize, usize, usize, usize, bool)> {
    a.expect_dtype(op, DType::F32)?;
    b.expect_dtype(op, DType::F32)?;
    let (batch, ar, ac) = match a.shape() {
        [r, c] => (1, *r, *c),
        [bt, r, c] => (*bt, *r, *c),
        _ => return Err(Error::shape(op, "A must be 2-D or 3-D", &[a.shape(), b.shape()])),
    };
    let (bb, br, bc, batched_b) = match b.shape() {
        [r, c] => (1, *r, *c, false),
        [bt, r, c] => (*bt, *r, *c, true),
        _ => return Err(Error::shape(op, "B must be 2-D or 3-D", &[a.shape(), b.shape()])),
    };
    if batched_b && bb != batch {
        return Err(Error::shape(op, "batch sizes differ", &[a.shape(), b.shape()]));
    }
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(Error::shape(op, format!("inner dimensions differ ({k} vs {k2}; ta={ta}, tb={tb})"), &[a.shape(), b.shape()]));
    }
    Ok((batch, m, k, n, batched_b))
}

/// `alpha * op(A) op(B) + bias`. A is `[m, k]` (or `[k, m]` with `ta`), B is `[k, n]` (or `[n, k]` with
/// `tb`); a 3-D A `[batch, .., ..]` multiplies each slice, with B either shared (2-D) or batched (3-D).
/// `bias` has n elements and is added to every row.
pub fn matmul_ex(a: &Tensor, b: &Tensor, bias: Option<&Tensor>, ta: bool, tb: bool, alpha: f32) -> Result<Tensor> {
    const OP: &str = "matmul";
    let _prof = crate::profile::scope(OP);
    let (batch, m, k, n, batched_b) = plan(OP, a, b, ta, tb)?;
    if let Some(bias) = bias {
        if bias.len() != n {
            return Err(Error::shape(OP, format!("bias must have {n} elements"), &[a.shape(), b.shape(), bias.shape()]));
        }
    }
    let out_shape: Vec<usize> = if a.shape().len() == 3 { vec![batch, m, n] } else { vec![m, n] };
    let mut devs = vec![a, b];
    devs.extend(bias);
    match common_device(OP, &devs)? {
        Device::Cpu => {
            let mut c = vec![0.0f32; batch * m * n];
            let (av, bv) = (a.cpu_f32(OP)?, b.cpu_f32(OP)?);
            for bi in 0..batch {
                let asl = &av[bi * m * k..(bi + 1) * m * k];
                let bsl = if batched_b { &bv[bi * k * n..(bi + 1) * k * n] } else { bv };
                cpu::gemm(asl, bsl, &mut c[bi * m * n..(bi + 1) * m * n], m, k, n, ta, tb, alpha);
            }
            if let Some(bias) = bias {
                let bs = bias.cpu_f32(OP)?;
                for row in c.chunks_mut(n.max(1)) {
                    row.iter_mut().zip(bs).for_each(|(v, b)| *v += b);
                }
            }
            Tensor::from_f32(&Device::Cpu, c, &out_shape)
        }
        Device::Gpu(ctx) => {
            let limit = (ctx.binding_limit() / 4) as usize;
            if batch == 1 && a.shape().len() == 2 && b.shape().len() == 2 && (a.len() > limit || b.len() > limit || m * n > limit) {
                return tiled(a, b, bias, ta, tb, alpha, (m, k, n), limit);
            }
            let out = Tensor::gpu_output(&ctx, &out_shape, DType::F32, OP)?;
            let groups = [n.div_ceil(64) as u64, m.div_ceil(64) as u64, batch as u64];
            if let Some(&g) = groups.iter().find(|&&g| g > MAX_GROUPS_PER_DIM as u64) {
                return Err(Error::TooManyWorkgroups { op: OP, groups: g, limit: MAX_GROUPS_PER_DIM });
            }
            let p = Params {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                lda: if ta { m as u32 } else { k as u32 },
                ldb: if tb { k as u32 } else { n as u32 },
                stride_a: (m * k) as u32,
                stride_b: if batched_b { (k * n) as u32 } else { 0 },
                stride_c: (m * n) as u32,
                alpha,
                _p: [0; 3],
            };
            // Unused bias binding: bind A again (read-only, any size works).
            let bias_buf = match bias {
                Some(t) => t.gpu_buf(OP)?,
                None => a.gpu_buf(OP)?,
            };
            ctx.dispatch(
                OP,
                &SHADER,
                "matmul",
                &[("TA", ta as u32 as f64), ("TB", tb as u32 as f64), ("BIAS", bias.is_some() as u32 as f64)],
                &p,
                &[Arg::Read(a.gpu_buf(OP)?), Arg::Read(b.gpu_buf(OP)?), Arg::Read(bias_buf), Arg::Write(out.gpu_buf(OP)?)],
                [groups[0] as u32, groups[1] as u32, groups[2] as u32],
            )?;
            Ok(out)
        }
    }
}

/// [`matmul_ex`] for 2-D operands computed as products whose operands and results each have at most
/// `limit` elements (where the tiling applies; otherwise [`Error::BindingTooLarge`]). The GPU path of
/// [`matmul_ex`] takes it by itself with the binding limit (e.g. DBP15K's `[38,960, 1000]` bag of relations
/// is 156 MB, and WebGPU binds at most 128 MiB); public so tests can force small tiles on any device.
pub fn matmul_tiled(a: &Tensor, b: &Tensor, bias: Option<&Tensor>, ta: bool, tb: bool, alpha: f32, limit: usize) -> Result<Tensor> {
    const OP: &str = "matmul_tiled";
    let _prof = crate::profile::scope(OP);
    let (batch, m, k, n, _) = plan(OP, a, b, ta, tb)?;
    if batch != 1 || a.shape().len() != 2 || b.shape().len() != 2 || limit == 0 {
        return Err(Error::invalid(OP, "tiling is for 2-D operands and a positive limit"));
    }
    tiled(a, b, bias, ta, tb, alpha, (m, k, n), limit)
}

/// The tiles, cut and joined with buffer copies (which have no binding limit):
/// * the result or A too large (A not transposed): blocks of A's rows, results stacked;
/// * `ta` with A too large (B not transposed): blocks of the shared dimension k (rows of A and of B),
///   partial products summed in block order;
/// * `tb` with B too large: blocks of B's rows (columns of the result), joined side by side.
#[allow(clippy::too_many_arguments)]
fn tiled(a: &Tensor, b: &Tensor, bias: Option<&Tensor>, ta: bool, tb: bool, alpha: f32, (m, k, n): (usize, usize, usize), limit: usize) -> Result<Tensor> {
    use crate::ops::rows::{concat_cols, concat_rows, slice_rows};
    const OP: &str = "matmul";
    let _prof = crate::profile::scope(OP);
    let too_big = || Error::BindingTooLarge { op: OP, bytes: (a.len().max(b.len()).max(m * n) * 4) as u64, limit: (limit * 4) as u64 };
    let block = |width: usize| (limit / width.max(1)).max(1);
    if !ta && (a.len() > limit || m * n > limit) && block(k.max(n)) < m {
        let r = block(k.max(n));
        let parts: Vec<Tensor> = (0..m).step_by(r).map(|s| matmul_ex(&slice_rows(a, s, r.min(m - s))?, b, bias, false, tb, alpha)).collect::<Result<_>>()?;
        return concat_rows(&parts.iter().collect::<Vec<_>>());
    }
    if ta && a.len() > limit && !tb {
        // A is [k, m], B is [k, n]: C = Σ_blocks A_blkᵀ B_blk.
        let r = block(m.max(n));
        if r >= k {
            return Err(too_big());
        }
        let mut acc: Option<Tensor> = None;
        for s in (0..k).step_by(r) {
            let len = r.min(k - s);
            let part = matmul_ex(&slice_rows(a, s, len)?, &slice_rows(b, s, len)?, if s == 0 { bias } else { None }, true, false, alpha)?;
            acc = Some(match acc {
                None => part,
                Some(t) => crate::ops::add(&t, &part)?,
            });
        }
        return acc.ok_or_else(too_big);
    }
    if tb && b.len() > limit && block(k) < n {
        // B is [n, k]: column blocks of C.
        let r = block(k.max(m));
        let parts: Vec<Tensor> = (0..n)
            .step_by(r)
            .map(|s| {
                let len = r.min(n - s);
                let bias_part = bias.map(|t| slice_rows(&t.reshape(&[n, 1])?, s, len)?.reshape(&[len])).transpose()?;
                matmul_ex(a, &slice_rows(b, s, len)?, bias_part.as_ref(), ta, true, alpha)
            })
            .collect::<Result<_>>()?;
        return concat_cols(&parts.iter().collect::<Vec<_>>());
    }
    Err(too_big())
}

/// `A B`.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_ex(a, b, None, false, false, 1.0)
}

/// `X W + bias`, a linear layer.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    matmul_ex(x, w, bias, false, false, 1.0)
}

/// Gradients of `Y = X W + b` (2-D): `g_X = g_Y Wᵀ`, `g_W = Xᵀ g_Y`, `g_b = Σ_rows g_Y`.
pub fn linear_backward(x: &Tensor, w: &Tensor, g_y: &Tensor, want_bias: bool) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let g_x = matmul_ex(g_y, w, None, false, true, 1.0)?;
    let g_w = matmul_ex(x, g_y, None, true, false, 1.0)?;
    let g_b = if want_bias { Some(sum_rows(g_y)?) } else { None };
    Ok((g_x, g_w, g_b))
}

/// Gradients of `C = op(A) op(B)` for 2-D operands, in the storage layout of A and B.
pub fn matmul_backward(a: &Tensor, b: &Tensor, g_c: &Tensor, ta: bool, tb: bool) -> Result<(Tensor, Tensor)> {
    // With op(A) = A:  g_A = g_C op(B)ᵀ;  with op(A) = Aᵀ:  g_A = op(B) g_Cᵀ.
    let g_a = if ta { matmul_ex(b, g_c, None, tb, true, 1.0)? } else { matmul_ex(g_c, b, None, false, !tb, 1.0)? };
    // With op(B) = B:  g_B = op(A)ᵀ g_C;  with op(B) = Bᵀ:  g_B = g_Cᵀ op(A).
    let g_b = if tb { matmul_ex(g_c, a, None, true, ta, 1.0)? } else { matmul_ex(a, g_c, None, !ta, false, 1.0)? };
    Ok((g_a, g_b))
}

pub mod cpu {
    /// `C = alpha * op(A) op(B)` (overwrites C), row-major, with transposes by stride.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, ta: bool, tb: bool, alpha: f32) {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            c.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
        let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
        // SAFETY: the slices hold m*k, k*n and m*n elements and the strides stay inside them.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, 0.0, c.as_mut_ptr(), n as isize, 1);
        }
    }
}
