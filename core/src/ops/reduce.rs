//! Deterministic reductions (fixed order, no atomics). Shader: `shaders/reduce.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Arg, MAX_GROUPS_PER_DIM};
use crate::shader;
use crate::tensor::{DType, Device, Tensor};

const SHADER: crate::gpu::Shader = shader!("reduce");
const CHUNK: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    chunk: u32,
    _pad: u32,
}

/// Column sums of a `[rows, cols]` matrix: a `[cols]` vector (e.g. a bias gradient).
pub fn sum_rows(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "sum_rows";
    let _prof = crate::profile::scope(OP);
    x.expect_dtype(OP, DType::F32)?;
    let (rows, cols) = x.dims2(OP)?;
    match x.device() {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::sum_rows(x.cpu_f32(OP)?, rows, cols), &[cols]),
        Device::Gpu(ctx) => {
            if rows == 0 {
                return Tensor::zeros(&Device::Gpu(ctx), &[cols]);
            }
            let mut cur = x.clone();
            let mut r = rows;
            loop {
                let chunks = r.div_ceil(CHUNK);
                if chunks > MAX_GROUPS_PER_DIM as usize {
                    return Err(Error::TooManyWorkgroups { op: OP, groups: chunks as u64, limit: MAX_GROUPS_PER_DIM });
                }
                let out = Tensor::gpu_output(&ctx, &[chunks, cols], DType::F32, OP)?;
                let p = Params { rows: r as u32, cols: cols as u32, chunk: CHUNK as u32, _pad: 0 };
                ctx.dispatch(OP, &SHADER, "sum_rows_partial", &[], &p, &[Arg::Read(cur.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], [cols.div_ceil(64) as u32, chunks as u32, 1])?;
                cur = out;
                r = chunks;
                if r == 1 {
                    return cur.reshape(&[cols]);
                }
            }
        }
    }
}

/// Sum of all elements, as a `[1]` tensor.
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    let n = x.len();
    // Viewing the data as [n/c, c] rows keeps the first pass wide; the remainder is handled by padding
    // nothing: we only use exact factorisations and fall back to a single column.
    let c = [256usize, 64, 16, 4].into_iter().find(|c| n % c == 0 && n >= *c).unwrap_or(1);
    let cols = sum_rows(&x.reshape(&[n / c, c])?)?;
    sum_rows(&cols.reshape(&[c, 1])?)
}

pub mod cpu {
    /// Column sums, in the same chunked order as the shader (so results match to rounding): each chunk
    /// of [`CHUNK`](super::CHUNK) rows is summed row by row, then the chunk sums in chunk order. Chunks
    /// run in parallel natively; the order of every addition is fixed, so the result does not depend on
    /// the threads.
    pub fn sum_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let chunk = super::CHUNK;
        let partial = |c: usize| {
            let mut s = vec![0.0f32; cols];
            for row in x[c * chunk * cols..((c + 1) * chunk).min(rows) * cols].chunks_exact(cols.max(1)) {
                s.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            s
        };
        let parts = crate::cpu::par_map(rows.div_ceil(chunk), partial);
        let mut out = vec![0.0f32; cols];
        for p in &parts {
            out.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        out
    }
}
