//! Row-wise ops on row-major `[n, d]` matrices: L2 normalisation, softmax over a small axis, per-row
//! scaling and row dot products, and column/row blocks (concat, slice, slice backward, prepend a ones
//! column). mmea-spec §7 ops 3, 5, 27.
//!
//! Shaders: `shaders/l2_normalize.wgsl`, `shaders/softmax_rows.wgsl`, `shaders/row_scale.wgsl`,
//! `shaders/copy_cols.wgsl`; row blocks (contiguous) use [`GpuContext::copy`]. CPU twin: [`cpu`].
//! Tape wrappers: [`ad`].

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, GpuBuffer, GpuContext, Shader};
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const L2: Shader = shader!("l2_normalize");
const SOFTMAX: Shader = shader!("softmax_rows");
const ROW_SCALE: Shader = shader!("row_scale");
const COPY: Shader = shader!("copy_cols");

/// Norms below this are clamped in [`l2_normalize`] (as `torch.nn.functional.normalize` does).
pub const L2_EPS: f32 = 1e-12;
/// Invocations per workgroup in the one-workgroup-per-row reductions; the CPU twin sums in their order.
pub const ROW_WG: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowParams {
    n: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ScaleParams {
    n: u32,
    d: u32,
    total: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CopyParams {
    total: u32,
    cols: u32,
    src_ld: u32,
    src_off: u32,
    dst_ld: u32,
    dst_off: u32,
    value: f32,
    _pad: u32,
}

/// `(rows, cols)` of a 2-D f32 tensor.
fn f32_2d(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    t.expect_dtype(op, DType::F32)?;
    t.dims2(op)
}

use super::elementwise::same_shape;

/// One workgroup per row, spread over a 2-D grid.
fn row_groups(n: usize) -> [u32; 3] {
    grid(n as u64)
}

/// One invocation per element, 256 per workgroup.
fn elem_groups(total: usize) -> [u32; 3] {
    grid((total as u64).div_ceil(256))
}

// ---- L2 normalisation -----------------------------------------------------------------------------

/// Row L2 normalisation of `x` `[n, d]`: `y_i = x_i / max(‖x_i‖, 1e-12)`.
///
/// Backward ([`l2_normalize_backward`]): `g_x_i = (g_y_i − (g_y_i·y_i) y_i) / ‖x_i‖`, or `g_y_i / 1e-12`
/// for rows whose norm is below the clamp.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "l2_normalize";
    let _prof = crate::profile::scope(OP);
    let (n, d) = f32_2d(OP, x)?;
    match x.device() {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::l2_normalize(x.cpu_f32(OP)?, n, d), x.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, x.shape(), DType::F32, OP)?;
            if out.is_empty() {
                return Ok(out);
            }
            let p = RowParams { n: n as u32, d: d as u32, eps: L2_EPS, _pad: 0 };
            ctx.dispatch(OP, &L2, "l2_normalize", &[], &p, &[Arg::Read(x.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], row_groups(n))?;
            Ok(out)
        }
    }
}

/// Gradient of [`l2_normalize`] given its input `x`, its output `y` and `g_y = dL/dy` (all `[n, d]`):
/// `g_x_i = (g_y_i − (g_y_i·y_i) y_i) / ‖x_i‖` where `‖x_i‖ >= 1e-12`, else `g_y_i / 1e-12`.
pub fn l2_normalize_backward(x: &Tensor, y: &Tensor, g_y: &Tensor) -> Result<Tensor> {
    const OP: &str = "l2_normalize_backward";
    let _prof = crate::profile::scope(OP);
    same_shape(OP, &[x, y, g_y])?;
    let (n, d) = x.dims2(OP)?;
    match common_device(OP, &[x, y, g_y])? {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::l2_normalize_backward(x.cpu_f32(OP)?, y.cpu_f32(OP)?, g_y.cpu_f32(OP)?, n, d), x.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, x.shape(), DType::F32, OP)?;
            if out.is_empty() {
                return Ok(out);
            }
            let p = RowParams { n: n as u32, d: d as u32, eps: L2_EPS, _pad: 0 };
            ctx.dispatch(
                OP,
                &L2,
                "l2_normalize_backward",
                &[],
                &p,
                &[Arg::Read(x.gpu_buf(OP)?), Arg::Read(y.gpu_buf(OP)?), Arg::Read(g_y.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)],
                row_groups(n),
            )?;
            Ok(out)
        }
    }
}

// ---- softmax over a small axis --------------------------------------------------------------------

/// Softmax of every row of `x` `[n, m]` (m small: modalities): `y_ij = exp(x_ij − max_i) / Σ_k exp(x_ik − max_i)`.
/// One GPU invocation per row, so meant for m up to ~64.
///
/// Backward ([`softmax_rows_backward`]): `g_x_ij = y_ij (g_ij − Σ_k y_ik g_ik)`.
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "softmax_rows";
    let _prof = crate::profile::scope(OP);
    let (n, m) = f32_2d(OP, x)?;
    match x.device() {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::softmax_rows(x.cpu_f32(OP)?, n, m), x.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, x.shape(), DType::F32, OP)?;
            if out.is_empty() {
                return Ok(out);
            }
            let p = RowParams { n: n as u32, d: m as u32, eps: 0.0, _pad: 0 };
            ctx.dispatch(OP, &SOFTMAX, "softmax_rows", &[], &p, &[Arg::Read(x.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], grid((n as u64).div_ceil(64)))?;
            Ok(out)
        }
    }
}

/// Gradient of [`softmax_rows`] from its output `y` and `g = dL/dy` (both `[n, m]`):
/// `g_x_ij = y_ij (g_ij − Σ_k y_ik g_ik)`.
pub fn softmax_rows_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    const OP: &str = "softmax_rows_backward";
    let _prof = crate::profile::scope(OP);
    same_shape(OP, &[y, g])?;
    let (n, m) = y.dims2(OP)?;
    match common_device(OP, &[y, g])? {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::softmax_rows_backward(y.cpu_f32(OP)?, g.cpu_f32(OP)?, n, m), y.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, y.shape(), DType::F32, OP)?;
            if out.is_empty() {
                return Ok(out);
            }
            let p = RowParams { n: n as u32, d: m as u32, eps: 0.0, _pad: 0 };
            ctx.dispatch(
                OP,
                &SOFTMAX,
                "softmax_rows_backward",
                &[],
                &p,
                &[Arg::Read(y.gpu_buf(OP)?), Arg::Read(g.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)],
                grid((n as u64).div_ceil(64)),
            )?;
            Ok(out)
        }
    }
}

// ---- row scaling and row dot products -------------------------------------------------------------

/// Check that `s` holds one value per row of `x` (`[n]` or `[n, 1]`).
fn check_row_vector(op: &'static str, x: &Tensor, s: &Tensor) -> Result<(usize, usize)> {
    let (n, d) = f32_2d(op, x)?;
    s.expect_dtype(op, DType::F32)?;
    let ok = match s.shape() {
        [k] => *k == n,
        [k, 1] => *k == n,
        _ => false,
    };
    if !ok {
        return Err(Error::shape(op, format!("the scale must have shape [{n}] or [{n}, 1] (one value per row)"), &[x.shape(), s.shape()]));
    }
    Ok((n, d))
}

/// Scale every row of `x` `[n, d]` by its own weight: `y_ik = x_ik · s_i`, with `s` `[n]` (or `[n, 1]`).
///
/// Backward ([`scale_rows_backward`]): `g_x = scale_rows(g, s)`, `g_s_i = Σ_k g_ik x_ik` (= [`row_dot`]`(g, x)`).
pub fn scale_rows(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    const OP: &str = "scale_rows";
    let _prof = crate::profile::scope(OP);
    let (n, d) = check_row_vector(OP, x, s)?;
    match common_device(OP, &[x, s])? {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::scale_rows(x.cpu_f32(OP)?, s.cpu_f32(OP)?, n, d), x.shape()),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, x.shape(), DType::F32, OP)?;
            if out.is_empty() {
                return Ok(out);
            }
            let p = ScaleParams { n: n as u32, d: d as u32, total: (n * d) as u32, _pad: 0 };
            ctx.dispatch(OP, &ROW_SCALE, "scale_rows", &[], &p, &[Arg::Read(x.gpu_buf(OP)?), Arg::Read(s.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], elem_groups(n * d))?;
            Ok(out)
        }
    }
}

/// Gradients of `y = scale_rows(x, s)`: `(g_x, g_s)` with `g_x = scale_rows(g, s)` and
/// `g_s_i = Σ_k g_ik x_ik` (shaped like `s`).
pub fn scale_rows_backward(x: &Tensor, s: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
    const OP: &str = "scale_rows_backward";
    let _prof = crate::profile::scope(OP);
    check_row_vector(OP, x, s)?;
    same_shape(OP, &[x, g])?;
    let g_x = scale_rows(g, s)?;
    let g_s = row_dot(g, x)?.reshape(s.shape())?;
    Ok((g_x, g_s))
}

/// Row-wise dot products of `a` and `b` (both `[n, d]`): `out_i = Σ_k a_ik b_ik`, an `[n]` vector
/// (one workgroup per row, tree reduction; deterministic).
///
/// Backward: `g_a = scale_rows(b, g_out)`, `g_b = scale_rows(a, g_out)`.
pub fn row_dot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    const OP: &str = "row_dot";
    let _prof = crate::profile::scope(OP);
    same_shape(OP, &[a, b])?;
    let (n, d) = a.dims2(OP)?;
    match common_device(OP, &[a, b])? {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::row_dot(a.cpu_f32(OP)?, b.cpu_f32(OP)?, n, d), &[n]),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[n], DType::F32, OP)?;
            if n == 0 {
                return Ok(out);
            }
            let p = ScaleParams { n: n as u32, d: d as u32, total: (n * d) as u32, _pad: 0 };
            ctx.dispatch(OP, &ROW_SCALE, "row_dot", &[], &p, &[Arg::Read(a.gpu_buf(OP)?), Arg::Read(b.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], row_groups(n))?;
            Ok(out)
        }
    }
}

// ---- column and row blocks ------------------------------------------------------------------------

/// A `rows x cols` block inside a row-major matrix: row length `ld`, first column `off`.
#[derive(Clone, Copy)]
struct Block {
    ld: usize,
    off: usize,
}

#[allow(clippy::too_many_arguments)]
fn gpu_copy_block(ctx: &Arc<GpuContext>, op: &'static str, src: &GpuBuffer, s: Block, dst: &GpuBuffer, t: Block, rows: usize, cols: usize) -> Result<()> {
    let total = rows * cols;
    if total == 0 {
        return Ok(());
    }
    let p = CopyParams { total: total as u32, cols: cols as u32, src_ld: s.ld as u32, src_off: s.off as u32, dst_ld: t.ld as u32, dst_off: t.off as u32, value: 0.0, _pad: 0 };
    ctx.dispatch(op, &COPY, "copy_cols", &[], &p, &[Arg::Read(src), Arg::Write(dst)], elem_groups(total))
}

fn gpu_fill_block(ctx: &Arc<GpuContext>, op: &'static str, dst: &GpuBuffer, t: Block, rows: usize, cols: usize, value: f32) -> Result<()> {
    let total = rows * cols;
    if total == 0 {
        return Ok(());
    }
    let p = CopyParams { total: total as u32, cols: cols as u32, src_ld: 0, src_off: 0, dst_ld: t.ld as u32, dst_off: t.off as u32, value, _pad: 0 };
    ctx.dispatch(op, &COPY, "fill_cols", &[], &p, &[Arg::Write(dst)], elem_groups(total))
}

/// Concatenate `[n, d_i]` matrices side by side: `[n, Σ d_i]` (row i = the rows i of the parts, in order).
///
/// Backward: `g_x_i = slice_cols(g, Σ_{j<i} d_j, d_i)`.
pub fn concat_cols(xs: &[&Tensor]) -> Result<Tensor> {
    const OP: &str = "concat_cols";
    let _prof = crate::profile::scope(OP);
    let Some(first) = xs.first() else { return Err(Error::invalid(OP, "nothing to concatenate")) };
    let mut widths = Vec::with_capacity(xs.len());
    let (n, _) = f32_2d(OP, first)?;
    for x in xs {
        let (r, c) = f32_2d(OP, x)?;
        if r != n {
            let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
            return Err(Error::shape(OP, "all parts must have the same number of rows", &shapes));
        }
        widths.push(c);
    }
    let total: usize = widths.iter().sum();
    match common_device(OP, xs)? {
        Device::Cpu => {
            let mut out = vec![0.0f32; n * total];
            let mut off = 0;
            for (x, &w) in xs.iter().zip(&widths) {
                cpu::copy_block(x.cpu_f32(OP)?, w, 0, &mut out, total, off, n, w);
                off += w;
            }
            Tensor::from_f32(&Device::Cpu, out, &[n, total])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[n, total], DType::F32, OP)?;
            let mut off = 0;
            for (x, &w) in xs.iter().zip(&widths) {
                gpu_copy_block(&ctx, OP, x.gpu_buf(OP)?, Block { ld: w, off: 0 }, out.gpu_buf(OP)?, Block { ld: total, off }, n, w)?;
                off += w;
            }
            Ok(out)
        }
    }
}

/// Columns `start .. start + len` of `x` `[n, d]`: an `[n, len]` matrix.
///
/// Backward ([`slice_cols_backward`]): `g` scattered into an `[n, d]` matrix of zeros at column `start`.
pub fn slice_cols(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    const OP: &str = "slice_cols";
    let _prof = crate::profile::scope(OP);
    let (n, d) = f32_2d(OP, x)?;
    if start.checked_add(len).is_none_or(|e| e > d) {
        return Err(Error::shape(OP, format!("columns {start}..{} are out of range", start.saturating_add(len)), &[x.shape()]));
    }
    match x.device() {
        Device::Cpu => {
            let mut out = vec![0.0f32; n * len];
            cpu::copy_block(x.cpu_f32(OP)?, d, start, &mut out, len, 0, n, len);
            Tensor::from_f32(&Device::Cpu, out, &[n, len])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[n, len], DType::F32, OP)?;
            gpu_copy_block(&ctx, OP, x.gpu_buf(OP)?, Block { ld: d, off: start }, out.gpu_buf(OP)?, Block { ld: len, off: 0 }, n, len)?;
            Ok(out)
        }
    }
}

/// Gradient of `slice_cols(x, start, len)` with `x` `[n, total_cols]`: `g` `[n, len]` placed at column
/// `start` of an `[n, total_cols]` matrix of zeros.
pub fn slice_cols_backward(g: &Tensor, total_cols: usize, start: usize) -> Result<Tensor> {
    const OP: &str = "slice_cols_backward";
    let _prof = crate::profile::scope(OP);
    let (n, len) = f32_2d(OP, g)?;
    if start.checked_add(len).is_none_or(|e| e > total_cols) {
        return Err(Error::shape(OP, format!("columns {start}..{} do not fit in {total_cols}", start.saturating_add(len)), &[g.shape()]));
    }
    match g.device() {
        Device::Cpu => {
            let mut out = vec![0.0f32; n * total_cols];
            cpu::copy_block(g.cpu_f32(OP)?, len, 0, &mut out, total_cols, start, n, len);
            Tensor::from_f32(&Device::Cpu, out, &[n, total_cols])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::zeros(&Device::Gpu(ctx.clone()), &[n, total_cols])?;
            gpu_copy_block(&ctx, OP, g.gpu_buf(OP)?, Block { ld: len, off: 0 }, out.gpu_buf(OP)?, Block { ld: total_cols, off: start }, n, len)?;
            Ok(out)
        }
    }
}

/// `[1 ; x_i]` for every row of `x` `[n, d]`: an `[n, d + 1]` matrix whose first column is ones (the
/// constant input of low-rank fusion).
///
/// Backward ([`prepend_ones_col_backward`]): `g_x = slice_cols(g, 1, d)`.
pub fn prepend_ones_col(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "prepend_ones_col";
    let _prof = crate::profile::scope(OP);
    let (n, d) = f32_2d(OP, x)?;
    match x.device() {
        Device::Cpu => {
            let mut out = vec![1.0f32; n * (d + 1)];
            cpu::copy_block(x.cpu_f32(OP)?, d, 0, &mut out, d + 1, 1, n, d);
            Tensor::from_f32(&Device::Cpu, out, &[n, d + 1])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[n, d + 1], DType::F32, OP)?;
            gpu_fill_block(&ctx, OP, out.gpu_buf(OP)?, Block { ld: d + 1, off: 0 }, n, 1, 1.0)?;
            gpu_copy_block(&ctx, OP, x.gpu_buf(OP)?, Block { ld: d, off: 0 }, out.gpu_buf(OP)?, Block { ld: d + 1, off: 1 }, n, d)?;
            Ok(out)
        }
    }
}

/// Gradient of [`prepend_ones_col`]: drop the first column of `g` `[n, d + 1]` (`slice_cols(g, 1, d)`).
pub fn prepend_ones_col_backward(g: &Tensor) -> Result<Tensor> {
    const OP: &str = "prepend_ones_col_backward";
    let _prof = crate::profile::scope(OP);
    let (_, c) = f32_2d(OP, g)?;
    if c == 0 {
        return Err(Error::shape(OP, "the gradient needs the ones column", &[g.shape()]));
    }
    slice_cols(g, 1, c - 1)
}

/// Stack `[n_i, d]` matrices vertically: `[Σ n_i, d]` (contiguous copies).
///
/// Backward: `g_x_i = slice_rows(g, Σ_{j<i} n_j, n_i)`.
pub fn concat_rows(xs: &[&Tensor]) -> Result<Tensor> {
    const OP: &str = "concat_rows";
    let _prof = crate::profile::scope(OP);
    let Some(first) = xs.first() else { return Err(Error::invalid(OP, "nothing to concatenate")) };
    let (_, d) = f32_2d(OP, first)?;
    let mut heights = Vec::with_capacity(xs.len());
    for x in xs {
        let (r, c) = f32_2d(OP, x)?;
        if c != d {
            let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
            return Err(Error::shape(OP, "all parts must have the same number of columns", &shapes));
        }
        heights.push(r);
    }
    let n: usize = heights.iter().sum();
    match common_device(OP, xs)? {
        Device::Cpu => {
            let mut out = Vec::with_capacity(n * d);
            for x in xs {
                out.extend_from_slice(x.cpu_f32(OP)?);
            }
            Tensor::from_f32(&Device::Cpu, out, &[n, d])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[n, d], DType::F32, OP)?;
            let mut off = 0;
            for x in xs {
                ctx.copy(x.gpu_buf(OP)?, 0, out.gpu_buf(OP)?, off, x.len());
                off += x.len();
            }
            Ok(out)
        }
    }
}

/// Rows `start .. start + len` of `x` `[n, d]` (f32 or u32): an `[len, d]` matrix (one contiguous copy;
/// none when the range is all of `x`).
///
/// Backward ([`slice_rows_backward`]): `g` placed at row `start` of an `[n, d]` matrix of zeros.
pub fn slice_rows(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    const OP: &str = "slice_rows";
    let _prof = crate::profile::scope(OP);
    let (n, d) = x.dims2(OP)?;
    if start.checked_add(len).is_none_or(|e| e > n) {
        return Err(Error::shape(OP, format!("rows {start}..{} are out of range", start.saturating_add(len)), &[x.shape()]));
    }
    if start == 0 && len == n {
        // Tensors are immutable: the whole range is the tensor itself.
        return Ok(x.clone());
    }
    let (a, b) = (start * d, (start + len) * d);
    match x.device() {
        Device::Cpu => match x.dtype() {
            DType::F32 => Tensor::from_f32(&Device::Cpu, x.cpu_f32(OP)?[a..b].to_vec(), &[len, d]),
            DType::U32 => Tensor::from_u32(&Device::Cpu, x.cpu_u32(OP)?[a..b].to_vec(), &[len, d]),
        },
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[len, d], x.dtype(), OP)?;
            ctx.copy(x.gpu_buf(OP)?, a, out.gpu_buf(OP)?, 0, len * d);
            Ok(out)
        }
    }
}

/// Gradient of `slice_rows(x, start, len)` with `x` `[total_rows, d]`: `g` `[len, d]` placed at row
/// `start` of a `[total_rows, d]` matrix of zeros.
pub fn slice_rows_backward(g: &Tensor, total_rows: usize, start: usize) -> Result<Tensor> {
    const OP: &str = "slice_rows_backward";
    let _prof = crate::profile::scope(OP);
    let (len, d) = f32_2d(OP, g)?;
    if start.checked_add(len).is_none_or(|e| e > total_rows) {
        return Err(Error::shape(OP, format!("rows {start}..{} do not fit in {total_rows}", start.saturating_add(len)), &[g.shape()]));
    }
    match g.device() {
        Device::Cpu => {
            let mut out = vec![0.0f32; total_rows * d];
            out[start * d..(start + len) * d].copy_from_slice(g.cpu_f32(OP)?);
            Tensor::from_f32(&Device::Cpu, out, &[total_rows, d])
        }
        Device::Gpu(ctx) => {
            let out = Tensor::zeros(&Device::Gpu(ctx.clone()), &[total_rows, d])?;
            ctx.copy(g.gpu_buf(OP)?, 0, out.gpu_buf(OP)?, start * d, len * d);
            Ok(out)
        }
    }
}

/// The CPU twin: the same formulas as the shaders, on row-major slices. Row reductions sum in the
/// shaders' order (strided partial sums over [`ROW_WG`] lanes, then a pairwise tree).
pub mod cpu {
    use super::{L2_EPS, ROW_WG};
    use crate::cpu::{par_map, par_rows};

    /// `Σ_k f(k)` for k < d in the order of a 256-lane workgroup reduction: lane t sums k = t, t+256, ...
    /// sequentially, then lanes are combined pairwise (t += t + s for s = 128, 64, ..., 1).
    pub fn workgroup_sum(d: usize, f: impl Fn(usize) -> f32) -> f32 {
        let mut lanes = [0.0f32; ROW_WG];
        for (t, lane) in lanes.iter_mut().enumerate() {
            let mut s = 0.0f32;
            let mut k = t;
            while k < d {
                s += f(k);
                k += ROW_WG;
            }
            *lane = s;
        }
        let mut s = ROW_WG / 2;
        while s > 0 {
            for t in 0..s {
                lanes[t] += lanes[t + s];
            }
            s /= 2;
        }
        lanes[0]
    }

    /// `y_i = x_i / max(‖x_i‖, 1e-12)`.
    pub fn l2_normalize(x: &[f32], n: usize, d: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; n * d];
        par_rows(&mut y, d, |i, row| {
            let xr = &x[i * d..(i + 1) * d];
            let nrm = workgroup_sum(d, |k| xr[k] * xr[k]).sqrt().max(L2_EPS);
            row.iter_mut().zip(xr).for_each(|(o, &v)| *o = v / nrm);
        });
        y
    }

    /// `g_x_i = (g_i − (g_i·y_i) y_i) / ‖x_i‖`, or `g_i / 1e-12` when `‖x_i‖ < 1e-12`.
    pub fn l2_normalize_backward(x: &[f32], y: &[f32], g: &[f32], n: usize, d: usize) -> Vec<f32> {
        let mut gx = vec![0.0f32; n * d];
        par_rows(&mut gx, d, |i, row| {
            let r = i * d..(i + 1) * d;
            let (xr, yr, gr) = (&x[r.clone()], &y[r.clone()], &g[r]);
            let nrm = workgroup_sum(d, |k| xr[k] * xr[k]).sqrt();
            let dt = workgroup_sum(d, |k| gr[k] * yr[k]);
            if nrm >= L2_EPS {
                row.iter_mut().zip(gr).zip(yr).for_each(|((o, &gk), &yk)| *o = (gk - dt * yk) / nrm);
            } else {
                row.iter_mut().zip(gr).for_each(|(o, &gk)| *o = gk / L2_EPS);
            }
        });
        gx
    }

    /// Row softmax with the row maximum subtracted.
    pub fn softmax_rows(x: &[f32], n: usize, m: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; n * m];
        par_rows(&mut y, m, |i, row| {
            let xr = &x[i * m..(i + 1) * m];
            let mx = xr[1..].iter().fold(xr[0], |a, &b| a.max(b));
            let mut s = 0.0f32;
            for &v in xr {
                s += (v - mx).exp();
            }
            row.iter_mut().zip(xr).for_each(|(o, &v)| *o = (v - mx).exp() / s);
        });
        y
    }

    /// `g_x_ij = y_ij (g_ij − Σ_k y_ik g_ik)`.
    pub fn softmax_rows_backward(y: &[f32], g: &[f32], n: usize, m: usize) -> Vec<f32> {
        let mut gx = vec![0.0f32; n * m];
        par_rows(&mut gx, m, |i, row| {
            let (yr, gr) = (&y[i * m..(i + 1) * m], &g[i * m..(i + 1) * m]);
            let mut dt = 0.0f32;
            for (&yk, &gk) in yr.iter().zip(gr) {
                dt += yk * gk;
            }
            row.iter_mut().zip(yr).zip(gr).for_each(|((o, &yk), &gk)| *o = yk * (gk - dt));
        });
        gx
    }

    /// `y_ik = x_ik · s_i`.
    pub fn scale_rows(x: &[f32], s: &[f32], n: usize, d: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; n * d];
        par_rows(&mut y, d, |i, row| {
            row.iter_mut().zip(&x[i * d..(i + 1) * d]).for_each(|(o, &v)| *o = v * s[i]);
        });
        y
    }

    /// `out_i = Σ_k a_ik b_ik`.
    pub fn row_dot(a: &[f32], b: &[f32], n: usize, d: usize) -> Vec<f32> {
        par_map(n, |i| {
            let (ar, br) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
            workgroup_sum(d, |k| ar[k] * br[k])
        })
    }

    /// `dst[r * dst_ld + dst_off + c] = src[r * src_ld + src_off + c]` for r < rows, c < cols.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_block(src: &[f32], src_ld: usize, src_off: usize, dst: &mut [f32], dst_ld: usize, dst_off: usize, rows: usize, cols: usize) {
        if cols == 0 {
            return;
        }
        for r in 0..rows {
            dst[r * dst_ld + dst_off..r * dst_ld + dst_off + cols].copy_from_slice(&src[r * src_ld + src_off..r * src_ld + src_off + cols]);
        }
    }
}

/// Tape wrappers: each forward saves what its backward needs.
pub mod ad {
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;
    use crate::tensor::Tensor;

    /// `y = x / max(‖x‖, 1e-12)` per row; saves x and y.
    pub fn l2_normalize(tape: &Tape, x: &Var) -> Result<Var> {
        let y = super::l2_normalize(&x.value)?;
        let (xs, ys) = (x.value.clone(), y.clone());
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::l2_normalize_backward(&xs, &ys, g)?)])))
    }

    /// Row softmax; saves y.
    pub fn softmax_rows(tape: &Tape, x: &Var) -> Result<Var> {
        let y = super::softmax_rows(&x.value)?;
        let ys = y.clone();
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::softmax_rows_backward(&ys, g)?)])))
    }

    /// `y_ik = x_ik s_i`; saves x and s.
    pub fn scale_rows(tape: &Tape, x: &Var, s: &Var) -> Result<Var> {
        let y = super::scale_rows(&x.value, &s.value)?;
        let (xs, ss) = (x.value.clone(), s.value.clone());
        let (need_x, need_s) = (x.needs_grad(), s.needs_grad());
        Ok(tape.record(y, &[x, s], move |g| {
            let gx = if need_x { Some(super::scale_rows(g, &ss)?) } else { None };
            let gs = if need_s { Some(super::row_dot(g, &xs)?.reshape(ss.shape())?) } else { None };
            Ok(vec![gx, gs])
        }))
    }

    /// `out_i = a_i·b_i`; saves a and b.
    pub fn row_dot(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
        let y = super::row_dot(&a.value, &b.value)?;
        let (av, bv) = (a.value.clone(), b.value.clone());
        let (need_a, need_b) = (a.needs_grad(), b.needs_grad());
        Ok(tape.record(y, &[a, b], move |g| {
            let ga = if need_a { Some(super::scale_rows(&bv, g)?) } else { None };
            let gb = if need_b { Some(super::scale_rows(&av, g)?) } else { None };
            Ok(vec![ga, gb])
        }))
    }

    /// Side-by-side concat; the backward slices the gradient back into the parts' widths.
    pub fn concat_cols(tape: &Tape, xs: &[&Var]) -> Result<Var> {
        let vals: Vec<&Tensor> = xs.iter().map(|v| &v.value).collect();
        let y = super::concat_cols(&vals)?;
        let parts: Vec<(usize, bool)> = xs.iter().map(|v| (v.value.shape().get(1).copied().unwrap_or(0), v.needs_grad())).collect();
        Ok(tape.record(y, xs, move |g| {
            let mut off = 0;
            let mut out = Vec::with_capacity(parts.len());
            for &(w, need) in &parts {
                out.push(if need { Some(super::slice_cols(g, off, w)?) } else { None });
                off += w;
            }
            Ok(out)
        }))
    }

    /// Columns `start .. start + len`; the backward scatters into zeros.
    pub fn slice_cols(tape: &Tape, x: &Var, start: usize, len: usize) -> Result<Var> {
        let y = super::slice_cols(&x.value, start, len)?;
        let total = x.value.shape().get(1).copied().unwrap_or(0);
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::slice_cols_backward(g, total, start)?)])))
    }

    /// Vertical concat; the backward slices the gradient back into the parts' heights.
    pub fn concat_rows(tape: &Tape, xs: &[&Var]) -> Result<Var> {
        let vals: Vec<&Tensor> = xs.iter().map(|v| &v.value).collect();
        let y = super::concat_rows(&vals)?;
        let parts: Vec<(usize, bool)> = xs.iter().map(|v| (v.value.shape().first().copied().unwrap_or(0), v.needs_grad())).collect();
        Ok(tape.record(y, xs, move |g| {
            let mut off = 0;
            let mut out = Vec::with_capacity(parts.len());
            for &(h, need) in &parts {
                out.push(if need { Some(super::slice_rows(g, off, h)?) } else { None });
                off += h;
            }
            Ok(out)
        }))
    }

    /// Rows `start .. start + len`; the backward scatters into zeros.
    pub fn slice_rows(tape: &Tape, x: &Var, start: usize, len: usize) -> Result<Var> {
        let y = super::slice_rows(&x.value, start, len)?;
        let total = x.value.shape().first().copied().unwrap_or(0);
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::slice_rows_backward(g, total, start)?)])))
    }

    /// `[1 ; x_i]` per row; the backward drops the first column.
    pub fn prepend_ones_col(tape: &Tape, x: &Var) -> Result<Var> {
        let y = super::prepend_ones_col(&x.value)?;
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::prepend_ones_col_backward(g)?)])))
    }
}
