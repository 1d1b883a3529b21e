//! Low-rank multimodal fusion (LMF, Liu et al. 2018; mmea-spec §4.5 step 3 and §7 op 14).
//!
//! For M modalities (1 to 4) with inputs `z_m` `[n, d_in+1]` (the caller puts the constant 1 in the first
//! column) and factors `W_m` `[d_in+1, R*d]` (column `r*d + k` is output k of rank component r):
//! `F_m = z_m W_m`, stacked as one tensor `F [M, n, R*d]`, and
//! `o[i,k] = Σ_r λ_r Π_m F[m,i,r*d+k] + β_k`.
//!
//! [`lmf_combine`] is the kernel (shader `shaders/low_rank_fusion.wgsl`, CPU twin [`cpu`]);
//! [`low_rank_fusion`] is the composite that also does the factor matmuls, in row blocks so that no
//! binding exceeds the 128 MiB storage-binding limit. Its backward recomputes the F blocks from z and W
//! instead of keeping `M*n*R*d` floats alive between forward and backward (one extra batched matmul).

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, GpuBuffer, GpuContext};
use crate::ops::elementwise::add_into;
use crate::ops::matmul::matmul_ex;
use crate::ops::reduce::sum_rows;
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const SHADER: crate::gpu::Shader = shader!("low_rank_fusion");

/// Most modalities one fused product supports (the kernels keep the factors of an element in registers).
pub const MAX_MODALITIES: usize = 4;
/// Rows per workgroup in the rank-weight gradient's first pass.
const LAMBDA_BLOCK_ROWS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    d: u32,
    rank: u32,
    modalities: u32,
    block_rows: u32,
    nblocks: u32,
    _pad: [u32; 2],
}

/// (modalities, rows, d) of a stacked factor tensor `F [M, n, R*d]`, after checking it against `rank`
/// and `lambda`.
fn combine_dims(op: &'static str, f: &Tensor, lambda: &Tensor, rank: usize) -> Result<(usize, usize, usize)> {
    f.expect_dtype(op, DType::F32)?;
    lambda.expect_dtype(op, DType::F32)?;
    let [m, n, rd] = *f.shape() else {
        return Err(Error::shape(op, "F must be 3-D [modalities, rows, rank*d]", &[f.shape()]));
    };
    if m == 0 || m > MAX_MODALITIES {
        return Err(Error::shape(op, format!("1 to {MAX_MODALITIES} modalities are supported, got {m}"), &[f.shape()]));
    }
    if rank == 0 {
        return Err(Error::invalid(op, "rank must be at least 1"));
    }
    if rd % rank != 0 {
        return Err(Error::shape(op, format!("the last dimension of F must be rank*d with rank {rank}"), &[f.shape()]));
    }
    if lambda.len() != rank {
        return Err(Error::shape(op, format!("lambda must have rank = {rank} elements"), &[f.shape(), lambda.shape()]));
    }
    Ok((m, n, rd / rank))
}

fn params(m: usize, n: usize, d: usize, rank: usize) -> Params {
    let nblocks = n.div_ceil(LAMBDA_BLOCK_ROWS);
    Params { n: n as u32, d: d as u32, rank: rank as u32, modalities: m as u32, block_rows: LAMBDA_BLOCK_ROWS as u32, nblocks: nblocks as u32, _pad: [0; 2] }
}

/// `o[i,k] = Σ_r λ_r Π_m F[m,i,r*d+k] + β_k` for `F [M, n, R*d]` (M = 1..4), `λ` with R elements, `β` with
/// d elements; returns `o [n, d]`.
///
/// Backward ([`lmf_combine_backward`]): with `P_r = Π_m F_m[.., r]`,
/// `g_F[m,i,r*d+k] = λ_r g_o[i,k] Π_{m'≠m} F[m',i,r*d+k]`, `g_λ_r = Σ_{i,k} g_o[i,k] P_r[i,k]`,
/// `g_β = Σ_rows g_o`.
pub fn lmf_combine(f: &Tensor, lambda: &Tensor, beta: &Tensor, rank: usize) -> Result<Tensor> {
    const OP: &str = "lmf_combine";
    let _prof = crate::profile::scope(OP);
    let (m, n, d) = combine_dims(OP, f, lambda, rank)?;
    beta.expect_dtype(OP, DType::F32)?;
    if beta.len() != d {
        return Err(Error::shape(OP, format!("beta must have d = {d} elements"), &[f.shape(), beta.shape()]));
    }
    match common_device(OP, &[f, lambda, beta])? {
        Device::Cpu => {
            let o = cpu::combine(f.cpu_f32(OP)?, lambda.cpu_f32(OP)?, beta.cpu_f32(OP)?, m, n, d, rank);
            Tensor::from_f32(&Device::Cpu, o, &[n, d])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            if n * d == 0 {
                return Ok(out);
            }
            ctx.dispatch(
                OP,
                &SHADER,
                "lmf_forward",
                &[],
                &params(m, n, d, rank),
                &[Arg::Read(f.gpu_buf(OP)?), Arg::Read(lambda.gpu_buf(OP)?), Arg::Read(beta.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)],
                grid((n * d).div_ceil(256) as u64),
            )?;
            Ok(out)
        }
    }
}

/// Gradients of [`lmf_combine`] given `g_o = dL/do` `[n, d]`: returns `(g_F [M, n, R*d], g_λ [R], g_β [d])`
/// with `g_F[m,i,r*d+k] = λ_r g_o[i,k] Π_{m'≠m} F[m',i,r*d+k]` (products of the other factors, never a
/// division), `g_λ_r = Σ_{i,k} g_o[i,k] Π_m F[m,i,r*d+k]` (per-row-block partial sums, then a column sum:
/// deterministic) and `g_β = Σ_rows g_o`.
pub fn lmf_combine_backward(f: &Tensor, lambda: &Tensor, g_o: &Tensor, rank: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (g_f, g_lambda) = combine_backward_f_lambda("lmf_combine_backward", f, lambda, g_o, rank)?;
    Ok((g_f, g_lambda, sum_rows(g_o)?))
}

fn combine_backward_f_lambda(op: &'static str, f: &Tensor, lambda: &Tensor, g_o: &Tensor, rank: usize) -> Result<(Tensor, Tensor)> {
    let _prof = crate::profile::scope(op);
    let (m, n, d) = combine_dims(op, f, lambda, rank)?;
    g_o.expect_dtype(op, DType::F32)?;
    if g_o.shape() != [n, d] {
        return Err(Error::shape(op, format!("g_o must be [{n}, {d}]"), &[f.shape(), g_o.shape()]));
    }
    match common_device(op, &[f, lambda, g_o])? {
        Device::Cpu => {
            let (fv, lv, gv) = (f.cpu_f32(op)?, lambda.cpu_f32(op)?, g_o.cpu_f32(op)?);
            let g_f = fast::combine_backward_f(fv, lv, gv, m, n, d, rank);
            let partial = fast::lambda_partials(fv, gv, m, n, d, rank, LAMBDA_BLOCK_ROWS);
            let g_lambda = crate::ops::reduce::cpu::sum_rows(&partial, n.div_ceil(LAMBDA_BLOCK_ROWS), rank);
            Ok((Tensor::from_f32(&Device::Cpu, g_f, f.shape())?, Tensor::from_f32(&Device::Cpu, g_lambda, &[rank])?))
        }
        Device::Gpu(ctx) => {
            let dev = Device::Gpu(ctx.clone());
            if n * d == 0 {
                return Ok((Tensor::zeros(&dev, f.shape())?, Tensor::zeros(&dev, &[rank])?));
            }
            let p = params(m, n, d, rank);
            let g_f = Tensor::gpu_output(&ctx, f.shape(), DType::F32, op)?;
            ctx.dispatch(
                op,
                &SHADER,
                "lmf_backward_f",
                &[],
                &p,
                &[Arg::Read(f.gpu_buf(op)?), Arg::Read(lambda.gpu_buf(op)?), Arg::Read(g_o.gpu_buf(op)?), Arg::Write(g_f.gpu_buf(op)?)],
                grid((n * rank * d).div_ceil(256) as u64),
            )?;
            let nblocks = p.nblocks as usize;
            let partial = Tensor::gpu_output(&ctx, &[nblocks, rank], DType::F32, op)?;
            let mut groups = grid(nblocks as u64);
            groups[2] = rank as u32;
            ctx.dispatch(op, &SHADER, "lmf_backward_lambda", &[], &p, &[Arg::Read(f.gpu_buf(op)?), Arg::Read(g_o.gpu_buf(op)?), Arg::Write(partial.gpu_buf(op)?)], groups)?;
            Ok((g_f, sum_rows(&partial)?))
        }
    }
}

// ---- the composite: factor matmuls + combine, in row blocks -----------------------------------------

/// Gradients of [`low_rank_fusion`], one per input.
pub struct LowRankFusionGrads {
    /// `g_{z_m} = Σ_r g_{F_{m,r}} W_{m,r}ᵀ`, `[n, d_in+1]` per modality.
    pub g_z: Vec<Tensor>,
    /// `g_{W_m} = z_mᵀ g_{F_m}`, `[d_in+1, R*d]` per modality.
    pub g_w: Vec<Tensor>,
    /// `[R]`.
    pub g_lambda: Tensor,
    /// `[d]`.
    pub g_beta: Tensor,
}

struct FusionDims {
    m: usize,
    n: usize,
    din: usize,
    d: usize,
    rank: usize,
}

fn fusion_dims(op: &'static str, z: &[Tensor], w: &[Tensor], lambda: &Tensor, rank: usize) -> Result<FusionDims> {
    let m = z.len();
    if m == 0 || m > MAX_MODALITIES || w.len() != m {
        return Err(Error::invalid(op, format!("need 1 to {MAX_MODALITIES} modalities with one factor each, got {} inputs and {} factors", z.len(), w.len())));
    }
    if rank == 0 {
        return Err(Error::invalid(op, "rank must be at least 1"));
    }
    lambda.expect_dtype(op, DType::F32)?;
    if lambda.len() != rank {
        return Err(Error::shape(op, format!("lambda must have rank = {rank} elements"), &[lambda.shape()]));
    }
    let (n, din) = z[0].dims2(op)?;
    let (_, rd) = w[0].dims2(op)?;
    if rd % rank != 0 {
        return Err(Error::shape(op, format!("factor width must be rank*d with rank {rank}"), &[w[0].shape()]));
    }
    for (zm, wm) in z.iter().zip(w) {
        zm.expect_dtype(op, DType::F32)?;
        wm.expect_dtype(op, DType::F32)?;
        if zm.shape() != [n, din] || wm.shape() != [din, rd] {
            return Err(Error::shape(op, format!("every z_m must be [{n}, {din}] and every W_m [{din}, {rd}]"), &[zm.shape(), wm.shape()]));
        }
    }
    Ok(FusionDims { m, n, din, d: rd / rank, rank })
}

/// Rows per block: explicit, or as many as keep the largest per-block tensor (`F [M, rows, R*d]` or
/// `z [M, rows, d_in+1]`) within the storage-binding limit.
fn fusion_block_rows(op: &'static str, dev: &Device, dims: &FusionDims, block_rows: Option<usize>) -> Result<usize> {
    match block_rows {
        Some(0) => Err(Error::invalid(op, "block_rows must be at least 1")),
        Some(b) => Ok(b.min(dims.n).max(1)),
        None => {
            let limit = match dev {
                Device::Gpu(ctx) => ctx.binding_limit(),
                // The CPU has no binding limit, but whole-graph factors are large (zh-en with images:
                // F and g_F are 1.1 GB each), so it takes blocks of the browsers' binding size too; the
                // copies cost little beside the matmuls.
                Device::Cpu => crate::gpu::BROWSER_BINDING_LIMIT,
            };
            let per_row = dims.m * (dims.rank * dims.d).max(dims.din).max(1);
            Ok(((limit / 4) as usize / per_row).clamp(1, dims.n.max(1)))
        }
    }
}

/// `[M, r1-r0, cols]`: rows r0..r1 of every `x_m [n, cols]`, stacked.
fn stack_rows(op: &'static str, dev: &Device, xs: &[Tensor], r0: usize, r1: usize) -> Result<Tensor> {
    let (n, cols) = xs[0].dims2(op)?;
    let rows = r1 - r0;
    if xs.len() == 1 && rows == n {
        return xs[0].reshape(&[1, n, cols]);
    }
    let mut asm = Assembler::new(dev, &[xs.len(), rows, cols], op)?;
    for (m, x) in xs.iter().enumerate() {
        asm.put(op, x, r0 * cols, m * rows * cols, rows * cols)?;
    }
    asm.finish()
}

fn blocks(n: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(rows.max(1)).map(move |r0| (r0, (r0 + rows).min(n)))
}

/// `o = Σ_r λ_r Π_m (z_m W_m)[.., r*d..(r+1)*d] + β`: the factor matmuls (one batched matmul over the
/// stacked modalities) followed by [`lmf_combine`]. All `z_m` are `[n, d_in+1]`, all `W_m` are
/// `[d_in+1, R*d]`, `λ` has R elements, `β` has d; returns `[n, d]`.
///
/// Backward ([`low_rank_fusion_backward`]): `g_F` from [`lmf_combine_backward`], then
/// `g_{z_m} = g_{F_m} W_mᵀ`, `g_{W_m} = z_mᵀ g_{F_m}`, `g_λ`, `g_β = Σ_rows g_o`.
pub fn low_rank_fusion(z: &[Tensor], w: &[Tensor], lambda: &Tensor, beta: &Tensor, rank: usize) -> Result<Tensor> {
    low_rank_fusion_blocked(z, w, lambda, beta, rank, None)
}

/// [`low_rank_fusion`] over row blocks of `block_rows` rows (None: as many as the binding limit allows on a
/// GPU, as many as 128 MiB of F holds on the CPU). The result does not depend on the block size beyond rounding.
pub fn low_rank_fusion_blocked(z: &[Tensor], w: &[Tensor], lambda: &Tensor, beta: &Tensor, rank: usize, block_rows: Option<usize>) -> Result<Tensor> {
    const OP: &str = "low_rank_fusion";
    let _prof = crate::profile::scope(OP);
    let dims = fusion_dims(OP, z, w, lambda, rank)?;
    beta.expect_dtype(OP, DType::F32)?;
    if beta.len() != dims.d {
        return Err(Error::shape(OP, format!("beta must have d = {} elements", dims.d), &[beta.shape()]));
    }
    let all: Vec<&Tensor> = z.iter().chain(w).chain([lambda, beta]).collect();
    let dev = common_device(OP, &all)?;
    let (n, d) = (dims.n, dims.d);
    if n == 0 {
        return Tensor::zeros(&dev, &[0, d]);
    }
    let rows = fusion_block_rows(OP, &dev, &dims, block_rows)?;
    let w_stack = stack_rows(OP, &dev, w, 0, dims.din)?;
    if rows >= n {
        let f = matmul_ex(&stack_rows(OP, &dev, z, 0, n)?, &w_stack, None, false, false, 1.0)?;
        return lmf_combine(&f, lambda, beta, rank);
    }
    let mut out = Assembler::new(&dev, &[n, d], OP)?;
    for (r0, r1) in blocks(n, rows) {
        let f = matmul_ex(&stack_rows(OP, &dev, z, r0, r1)?, &w_stack, None, false, false, 1.0)?;
        let o = lmf_combine(&f, lambda, beta, rank)?;
        out.put(OP, &o, 0, r0 * d, (r1 - r0) * d)?;
    }
    out.finish()
}

/// Gradients of [`low_rank_fusion`] given `g_o` `[n, d]` (see [`LowRankFusionGrads`]).
pub fn low_rank_fusion_backward(z: &[Tensor], w: &[Tensor], lambda: &Tensor, g_o: &Tensor, rank: usize) -> Result<LowRankFusionGrads> {
    low_rank_fusion_backward_blocked(z, w, lambda, g_o, rank, None)
}

/// [`low_rank_fusion_backward`] over row blocks (see [`low_rank_fusion_blocked`]). Recomputes each block's
/// F from z and W; `g_W` and `g_λ` are summed over blocks in block order (deterministic).
pub fn low_rank_fusion_backward_blocked(z: &[Tensor], w: &[Tensor], lambda: &Tensor, g_o: &Tensor, rank: usize, block_rows: Option<usize>) -> Result<LowRankFusionGrads> {
    const OP: &str = "low_rank_fusion_backward";
    let _prof = crate::profile::scope(OP);
    let dims = fusion_dims(OP, z, w, lambda, rank)?;
    let FusionDims { m, n, din, d, .. } = dims;
    let rd = rank * d;
    g_o.expect_dtype(OP, DType::F32)?;
    if g_o.shape() != [n, d] {
        return Err(Error::shape(OP, format!("g_o must be [{n}, {d}]"), &[z[0].shape(), g_o.shape()]));
    }
    let all: Vec<&Tensor> = z.iter().chain(w).chain([lambda, g_o]).collect();
    let dev = common_device(OP, &all)?;
    let g_beta = sum_rows(g_o)?;
    if n == 0 {
        return Ok(LowRankFusionGrads {
            g_z: (0..m).map(|_| Tensor::zeros(&dev, &[0, din])).collect::<Result<_>>()?,
            g_w: (0..m).map(|_| Tensor::zeros(&dev, &[din, rd])).collect::<Result<_>>()?,
            g_lambda: Tensor::zeros(&dev, &[rank])?,
            g_beta,
        });
    }
    let rows = fusion_block_rows(OP, &dev, &dims, block_rows)?;
    let w_stack = stack_rows(OP, &dev, w, 0, din)?;
    let single = rows >= n;
    let mut g_z_asm: Vec<Assembler> = Vec::new();
    if !(single && m == 1) {
        for _ in 0..m {
            g_z_asm.push(Assembler::new(&dev, &[n, din], OP)?);
        }
    }
    let mut g_z_single = None;
    let mut g_w_acc: Option<Tensor> = None;
    let mut g_lambda_acc: Option<Tensor> = None;
    for (r0, r1) in blocks(n, rows) {
        let zb = stack_rows(OP, &dev, z, r0, r1)?;
        let f = matmul_ex(&zb, &w_stack, None, false, false, 1.0)?;
        let gob = if single { g_o.clone() } else { crate::ops::rows::slice_rows(g_o, r0, r1 - r0)? };
        let (g_f, g_l) = combine_backward_f_lambda(OP, &f, lambda, &gob, rank)?;
        drop(f);
        let gzb = matmul_ex(&g_f, &w_stack, None, false, true, 1.0)?; // [M, rows, din]
        let gwb = matmul_ex(&zb, &g_f, None, true, false, 1.0)?; // [M, din, R*d]
        g_w_acc = Some(match g_w_acc {
            None => gwb,
            Some(acc) => add_into(acc, &gwb)?,
        });
        g_lambda_acc = Some(match g_lambda_acc {
            None => g_l,
            Some(acc) => add_into(acc, &g_l)?,
        });
        if g_z_asm.is_empty() {
            g_z_single = Some(gzb.reshape(&[n, din])?);
        } else {
            let rows_b = r1 - r0;
            for (mi, asm) in g_z_asm.iter_mut().enumerate() {
                asm.put(OP, &gzb, mi * rows_b * din, r0 * din, rows_b * din)?;
            }
        }
    }
    let g_z = match g_z_single {
        Some(g) => vec![g],
        None => g_z_asm.into_iter().map(Assembler::finish).collect::<Result<_>>()?,
    };
    let (Some(g_w_stack), Some(g_lambda)) = (g_w_acc, g_lambda_acc) else {
        return Err(Error::invalid(OP, "internal: no row block was processed"));
    };
    let g_w = if m == 1 {
        vec![g_w_stack.reshape(&[din, rd])?]
    } else {
        (0..m)
            .map(|mi| {
                let mut asm = Assembler::new(&dev, &[din, rd], OP)?;
                asm.put(OP, &g_w_stack, mi * din * rd, 0, din * rd)?;
                asm.finish()
            })
            .collect::<Result<_>>()?
    };
    Ok(LowRankFusionGrads { g_z, g_w, g_lambda, g_beta })
}

// ---- building tensors from contiguous pieces -------------------------------------------------------

enum Store {
    Cpu(Vec<f32>),
    Gpu(Arc<GpuContext>, GpuBuffer),
}

/// Builds an f32 tensor out of contiguous pieces of other tensors: on the GPU by buffer copies queued in
/// order with the kernels (no readback), on the CPU by slice copies. On the GPU the buffer starts
/// uninitialised, so the pieces must cover every element.
pub(crate) struct Assembler {
    shape: Vec<usize>,
    len: usize,
    store: Store,
}

impl Assembler {
    pub(crate) fn new(dev: &Device, shape: &[usize], op: &'static str) -> Result<Self> {
        let len = shape.iter().product();
        let store = match dev {
            Device::Cpu => Store::Cpu(vec![0.0; len]),
            Device::Gpu(ctx) => Store::Gpu(ctx.clone(), ctx.alloc(len, op)?),
        };
        Ok(Assembler { shape: shape.to_vec(), len, store })
    }

    /// Copy `len` elements of `src` starting at `src_off` to `dst_off`.
    pub(crate) fn put(&mut self, op: &'static str, src: &Tensor, src_off: usize, dst_off: usize, len: usize) -> Result<()> {
        src.expect_dtype(op, DType::F32)?;
        if src_off + len > src.len() || dst_off + len > self.len {
            return Err(Error::invalid(op, format!("internal: copy of {len} elements from {src_off} (of {}) to {dst_off} (of {}) is out of range", src.len(), self.len)));
        }
        match &mut self.store {
            Store::Cpu(v) => v[dst_off..dst_off + len].copy_from_slice(&src.cpu_f32(op)?[src_off..src_off + len]),
            Store::Gpu(ctx, buf) => ctx.copy(src.gpu_buf(op)?, src_off, buf, dst_off, len),
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Tensor> {
        match self.store {
            Store::Cpu(v) => Tensor::from_f32(&Device::Cpu, v, &self.shape),
            Store::Gpu(ctx, buf) => Ok(Tensor::from_gpu(&ctx, buf, &self.shape, DType::F32)),
        }
    }
}

/// The CPU twin: the same formulas as the shader, on slices (`f` is `[M, n, R*d]` row-major).
pub mod cpu {
    use crate::cpu::par_rows;

    /// `o[i,k] = Σ_r λ_r Π_m f[m,i,r*d+k] + β_k`.
    pub fn combine(f: &[f32], lambda: &[f32], beta: &[f32], m: usize, n: usize, d: usize, rank: usize) -> Vec<f32> {
        let rd = rank * d;
        let stride = n * rd;
        let mut o = vec![0.0f32; n * d];
        par_rows(&mut o, d, |i, row| {
            for (k, out) in row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (r, &l) in lambda.iter().enumerate().take(rank) {
                    let e = i * rd + r * d + k;
                    let mut prod = f[e];
                    for mm in 1..m {
                        prod *= f[mm * stride + e];
                    }
                    acc += l * prod;
                }
                *out = acc + beta[k];
            }
        });
        o
    }

    /// `g_f[m,i,r*d+k] = λ_r g_o[i,k] Π_{m'≠m} f[m',i,r*d+k]`.
    pub fn combine_backward_f(f: &[f32], lambda: &[f32], g_o: &[f32], m: usize, n: usize, d: usize, rank: usize) -> Vec<f32> {
        let rd = rank * d;
        let stride = n * rd;
        let mut g_f = vec![0.0f32; m * stride];
        for idx in 0..stride {
            let (i, c) = (idx / rd, idx % rd);
            let (r, k) = (c / d, c % d);
            let g = lambda[r] * g_o[i * d + k];
            for mm in 0..m {
                let mut prod = g;
                for m2 in (0..m).filter(|&m2| m2 != mm) {
                    prod *= f[m2 * stride + idx];
                }
                g_f[mm * stride + idx] = prod;
            }
        }
        g_f
    }

    /// `partial[b, r] = Σ_{i in block b} Σ_k g_o[i,k] Π_m f[m,i,r*d+k]`, blocks of `block_rows` rows.
    pub fn lambda_partials(f: &[f32], g_o: &[f32], m: usize, n: usize, d: usize, rank: usize, block_rows: usize) -> Vec<f32> {
        let rd = rank * d;
        let stride = n * rd;
        let nblocks = n.div_ceil(block_rows);
        let mut partial = vec![0.0f32; nblocks * rank];
        for (b, out) in partial.chunks_mut(rank.max(1)).enumerate() {
            for (r, o) in out.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for i in b * block_rows..((b + 1) * block_rows).min(n) {
                    for k in 0..d {
                        let e = i * rd + r * d + k;
                        let mut prod = g_o[i * d + k];
                        for mm in 0..m {
                            prod *= f[mm * stride + e];
                        }
                        acc += prod;
                    }
                }
                *o = acc;
            }
        }
        partial
    }
}

/// The CPU backend's versions of [`cpu::combine_backward_f`] and [`cpu::lambda_partials`]: parallel over
/// rows (blocks), without index arithmetic per element, and with every product and sum in the twin's
/// order, so the results are bit-identical to the twin's (tested).
pub mod fast {
    use crate::cpu::{par_map, par_rows};

    /// [`super::cpu::combine_backward_f`], one modality plane at a time, rows in parallel.
    pub fn combine_backward_f(f: &[f32], lambda: &[f32], g_o: &[f32], m: usize, n: usize, d: usize, rank: usize) -> Vec<f32> {
        let rd = rank * d;
        let stride = n * rd;
        let mut g_f = vec![0.0f32; m * stride];
        for (mm, plane) in g_f.chunks_mut(stride.max(1)).enumerate() {
            par_rows(plane, rd, |i, row| {
                let go = &g_o[i * d..(i + 1) * d];
                for (r, out) in row.chunks_mut(d.max(1)).enumerate() {
                    let l = lambda[r];
                    let base = i * rd + r * d;
                    for (k, o) in out.iter_mut().enumerate() {
                        let mut prod = l * go[k];
                        for m2 in (0..m).filter(|&m2| m2 != mm) {
                            prod *= f[m2 * stride + base + k];
                        }
                        *o = prod;
                    }
                }
            });
        }
        g_f
    }

    /// [`super::cpu::lambda_partials`], blocks in parallel.
    pub fn lambda_partials(f: &[f32], g_o: &[f32], m: usize, n: usize, d: usize, rank: usize, block_rows: usize) -> Vec<f32> {
        let rd = rank * d;
        let stride = n * rd;
        let block = |b: usize| -> Vec<f32> {
            (0..rank)
                .map(|r| {
                    let mut acc = 0.0f32;
                    for i in b * block_rows..((b + 1) * block_rows).min(n) {
                        let e0 = i * rd + r * d;
                        for (k, &g) in g_o[i * d..(i + 1) * d].iter().enumerate() {
                            let mut prod = g;
                            for mm in 0..m {
                                prod *= f[mm * stride + e0 + k];
                            }
                            acc += prod;
                        }
                    }
                    acc
                })
                .collect()
        };
        par_map(n.div_ceil(block_rows.max(1)), block).concat()
    }
}

/// Tape wrappers.
pub mod ad {
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;
    use crate::tensor::Tensor;

    /// [`super::lmf_combine`] on the tape; saves F and λ.
    pub fn lmf_combine(tape: &Tape, f: &Var, lambda: &Var, beta: &Var, rank: usize) -> Result<Var> {
        let o = super::lmf_combine(&f.value, &lambda.value, &beta.value, rank)?;
        let (fv, lv) = (f.value.clone(), lambda.value.clone());
        let bshape = beta.value.shape().to_vec();
        Ok(tape.record(o, &[f, lambda, beta], move |g| {
            let (g_f, g_l, g_b) = super::lmf_combine_backward(&fv, &lv, g, rank)?;
            Ok(vec![Some(g_f), Some(g_l.reshape(lv.shape())?), Some(g_b.reshape(&bshape)?)])
        }))
    }

    /// [`super::low_rank_fusion`] on the tape; saves z, W and λ (F is recomputed in the backward).
    /// Parents, in order: the z_m, the W_m, λ, β.
    pub fn low_rank_fusion(tape: &Tape, z: &[&Var], w: &[&Var], lambda: &Var, beta: &Var, rank: usize) -> Result<Var> {
        let zv: Vec<Tensor> = z.iter().map(|v| v.value.clone()).collect();
        let wv: Vec<Tensor> = w.iter().map(|v| v.value.clone()).collect();
        let o = super::low_rank_fusion(&zv, &wv, &lambda.value, &beta.value, rank)?;
        let lv = lambda.value.clone();
        let bshape = beta.value.shape().to_vec();
        let mut parents: Vec<&Var> = z.iter().chain(w).copied().collect();
        parents.push(lambda);
        parents.push(beta);
        Ok(tape.record(o, &parents, move |g| {
            let grads = super::low_rank_fusion_backward(&zv, &wv, &lv, g, rank)?;
            let mut out: Vec<Option<Tensor>> = grads.g_z.into_iter().chain(grads.g_w).map(Some).collect();
            out.push(Some(grads.g_lambda.reshape(lv.shape())?));
            out.push(Some(grads.g_beta.reshape(&bshape)?));
            Ok(out)
        }))
    }
}
