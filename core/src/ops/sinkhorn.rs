//! Log-domain Sinkhorn decoding (mmea-spec §2 "Sinkhorn decoding", §7 op 21): dense over a tiled score
//! matrix with an exact unrolled backward, and a sparse top-k variant (LightEA style, forward only).
//! Shaders: `shaders/sinkhorn.wgsl`, `shaders/sinkhorn_sparse.wgsl`. CPU twin: [`cpu`].
//!
//! **Potentials form.** With `X = S/ε` and potentials `f` (rows) and `g` (columns), `g⁰ = 0`, each of the
//! `L` iterations does a row step then a column step:
//!
//! ```text
//! f^k_i = log a_i − LSE_j (X_ij + g^{k−1}_j)
//! g^k_j = log b_j − LSE_i (X_ij + f^k_i)
//! ℓ_ij  = X_ij + f^L_i + g^L_j          (the log-plan; P = exp ℓ)
//! ```
//!
//! This is exactly the spec's `ℓ ← ℓ − LSE_row(ℓ) + log a; ℓ ← ℓ − LSE_col(ℓ) + log b` started from
//! `ℓ⁰ = X`, but the score matrix is only read (never rewritten), so it can be shared with other work and
//! the potentials of every iteration can be kept for the backward at `O(L (n + m))` memory.
//!
//! With the default uniform marginals `a_i = 1/n`, `b_j = 1/m`, the plan equals the classic alternating
//! normalisation of `K = exp(S/ε)` (divide every row by its sum, then every column by its sum; SEU,
//! LightEA) up to a constant factor: after a column step `P = P_classic / m` (rows sum to `1/n` after a
//! row step, columns to `1/m` after a column step). Rankings by `P` or by `ℓ` are therefore identical to
//! the classic decoder's.
//!
//! **Tiles.** The score matrix may be larger than one 128 MiB storage binding, so it is passed as a
//! [`TiledMatrix`] of row blocks. Row steps run per block (one workgroup per row); column steps compute
//! per-block partial `(max, Σexp)` per column over chunks of rows, then a combine kernel folds the
//! partials in a fixed order (deterministic, no atomics).
//!
//! **Backward** ([`sinkhorn_backward`], exact, unrolled through all `L` iterations). Given `G = ∂L/∂ℓ`:
//! `g_X = G`, `g_f = rowsum G`, `g_g = colsum G`; for `k = L..1`:
//! column step with `Q^k_ij = exp(X_ij + f^k_i + g^k_j − log b_j)`: `g_X −= Q^k ⊙ g_g[j]`,
//! `g_f[i] −= Σ_j Q^k_ij g_g[j]`; row step with `R^k_ij = exp(X_ij + g^{k−1}_j + f^k_i − log a_i)`:
//! `g_X −= R^k ⊙ g_f[i]`, `g_g[j] = −Σ_i R^k_ij g_f[i]`, `g_f = 0`. Finally `g_S = g_X / ε`.
//! (`Q^k` is the column softmax `∂LSE_i/∂X_ij`, `R^k` the row softmax; `f^k` only feeds the column step
//! `k` and the output, `g^{k−1}` only the row step `k`.)
//!
//! **Sparse** ([`sinkhorn_topk`]): each row keeps `k` candidate columns; the same iterations run over the
//! kept entries only (row LSE over a row's `k` entries, column LSE over the entries of a column through a
//! transposed index built on the host by counting sort). It is forward only: it serves inference decoding.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, GpuContext, BROWSER_BINDING_LIMIT};
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const SHADER: crate::gpu::Shader = shader!("sinkhorn");
const SPARSE_SHADER: crate::gpu::Shader = shader!("sinkhorn_sparse");

/// Default byte budget of one row block: the browsers' storage binding limit (128 MiB).
pub const DEFAULT_BLOCK_BYTES: u64 = BROWSER_BINDING_LIMIT;

/// Columns per workgroup in the column kernels.
const COL_GROUP: usize = 64;
/// Fewest rows per chunk of a column reduction, and most chunk slots over all blocks.
const MIN_CHUNK: usize = 32;
const MAX_SLOTS: usize = 64;

// ---- tiled matrices --------------------------------------------------------------------------------------

/// A `rows × cols` row-major matrix stored as row blocks (`blocks[b]` is `[r_b, cols]`, `Σ r_b = rows`),
/// so that matrices larger than one storage binding can be processed block by block. All blocks live on
/// one device and share a dtype.
#[derive(Clone, Debug)]
pub struct TiledMatrix {
    pub blocks: Vec<Tensor>,
    pub rows: usize,
    pub cols: usize,
}

impl TiledMatrix {
    /// Wrap existing blocks (each `[r_b, cols]`, one device, one dtype).
    pub fn new(blocks: Vec<Tensor>, cols: usize) -> Result<Self> {
        const OP: &str = "TiledMatrix::new";
        let _prof = crate::profile::scope(OP);
        let mut rows = 0;
        for b in &blocks {
            let (r, c) = b.dims2(OP)?;
            if c != cols || b.dtype() != blocks[0].dtype() {
                let shapes: Vec<&[usize]> = blocks.iter().map(|b| b.shape()).collect();
                return Err(Error::shape(OP, format!("every block must be [rows, {cols}] with one dtype"), &shapes));
            }
            rows += r;
        }
        let refs: Vec<&Tensor> = blocks.iter().collect();
        common_device(OP, &refs)?;
        Ok(TiledMatrix { blocks, rows, cols })
    }

    /// Rows per block so that one block holds at most `max_block_bytes` of f32 (at least one row).
    pub fn rows_per_block(cols: usize, max_block_bytes: u64) -> usize {
        if cols == 0 {
            return usize::MAX;
        }
        ((max_block_bytes / (4 * cols as u64)) as usize).max(1)
    }

    /// Split a row-major host matrix into blocks of at most `max_block_bytes` each, on `device`.
    pub fn from_host(device: &Device, data: &[f32], rows: usize, cols: usize, max_block_bytes: u64) -> Result<Self> {
        const OP: &str = "TiledMatrix::from_host";
        let _prof = crate::profile::scope(OP);
        if data.len() != rows * cols {
            return Err(Error::shape(OP, format!("{} values do not fill the matrix", data.len()), &[&[rows, cols]]));
        }
        if max_block_bytes == 0 {
            return Err(Error::invalid(OP, "the block byte budget must be positive"));
        }
        let per = Self::rows_per_block(cols, max_block_bytes);
        let mut blocks = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let r1 = rows.min(r0.saturating_add(per));
            blocks.push(Tensor::from_f32(device, data[r0 * cols..r1 * cols].to_vec(), &[r1 - r0, cols])?);
            r0 = r1;
        }
        Ok(TiledMatrix { blocks, rows, cols })
    }

    /// Split a 2-D tensor into row blocks of at most `max_block_bytes` (no copy when it already fits).
    pub fn from_tensor(t: &Tensor, max_block_bytes: u64) -> Result<Self> {
        const OP: &str = "TiledMatrix::from_tensor";
        let _prof = crate::profile::scope(OP);
        let (rows, cols) = t.dims2(OP)?;
        if max_block_bytes == 0 {
            return Err(Error::invalid(OP, "the block byte budget must be positive"));
        }
        let per = Self::rows_per_block(cols, max_block_bytes);
        if rows <= per {
            return Self::whole(t);
        }
        let mut blocks = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let r1 = rows.min(r0 + per);
            blocks.push(crate::ops::rows::slice_rows(t, r0, r1 - r0)?);
            r0 = r1;
        }
        Ok(TiledMatrix { blocks, rows, cols })
    }

    /// One block holding the whole tensor (a 2-D tensor; an empty one gives no blocks).
    pub fn whole(t: &Tensor) -> Result<Self> {
        let (rows, cols) = t.dims2("TiledMatrix::whole")?;
        let blocks = if rows == 0 { vec![] } else { vec![t.clone()] };
        Ok(TiledMatrix { blocks, rows, cols })
    }

    /// Rows of each block.
    pub fn block_rows(&self) -> Vec<usize> {
        self.blocks.iter().map(|b| b.shape()[0]).collect()
    }

    /// Global index of each block's first row.
    pub fn row_offsets(&self) -> Vec<usize> {
        let mut off = 0;
        self.block_rows()
            .into_iter()
            .map(|r| {
                let o = off;
                off += r;
                o
            })
            .collect()
    }

    /// The device of the blocks (the CPU for a matrix without blocks).
    pub fn device(&self) -> Device {
        self.blocks.first().map(|b| b.device()).unwrap_or(Device::Cpu)
    }

    /// True when both matrices have the same shape and the same block boundaries.
    pub fn same_tiling(&self, other: &TiledMatrix) -> bool {
        self.rows == other.rows && self.cols == other.cols && self.block_rows() == other.block_rows()
    }

    /// The whole matrix as one tensor (copies unless there is a single block). On the GPU the result must
    /// fit in one buffer.
    pub fn to_tensor(&self) -> Result<Tensor> {
        const OP: &str = "TiledMatrix::to_tensor";
        let _prof = crate::profile::scope(OP);
        match self.blocks.len() {
            0 => Tensor::zeros(&Device::Cpu, &[0, self.cols]),
            1 => Ok(self.blocks[0].clone()),
            _ => match self.device() {
                Device::Cpu => {
                    let mut v = Vec::with_capacity(self.rows * self.cols);
                    for b in &self.blocks {
                        v.extend_from_slice(b.cpu_f32(OP)?);
                    }
                    Tensor::from_f32(&Device::Cpu, v, &[self.rows, self.cols])
                }
                Device::Gpu(ctx) => {
                    let dtype = self.blocks[0].dtype();
                    let out = Tensor::gpu_output(&ctx, &[self.rows, self.cols], dtype, OP)?;
                    let mut off = 0;
                    for b in &self.blocks {
                        ctx.copy(b.gpu_buf(OP)?, 0, out.gpu_buf(OP)?, off, b.len());
                        off += b.len();
                    }
                    Ok(out)
                }
            },
        }
    }

    /// All values, row-major, on the host (f32 matrices).
    pub async fn to_vec_f32(&self) -> Result<Vec<f32>> {
        let mut v = Vec::with_capacity(self.rows * self.cols);
        for b in &self.blocks {
            v.extend(b.to_vec_f32().await?);
        }
        Ok(v)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_f32_blocking(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.to_vec_f32())
    }

    /// The blocks' f32 data (CPU matrices).
    pub(crate) fn cpu_blocks(&self, op: &'static str) -> Result<Vec<&[f32]>> {
        self.blocks.iter().map(|b| b.cpu_f32(op)).collect()
    }

    /// Checks that the blocks are f32 and really make up a `rows × cols` matrix (the fields are public).
    pub(crate) fn expect_f32(&self, op: &'static str) -> Result<()> {
        let mut rows = 0;
        for b in &self.blocks {
            b.expect_dtype(op, DType::F32)?;
            match b.shape() {
                [r, c] if *c == self.cols => rows += r,
                _ => return Err(Error::shape(op, format!("a block of a [{}, {}] tiled matrix", self.rows, self.cols), &[b.shape()])),
            }
        }
        if rows != self.rows {
            return Err(Error::shape(op, format!("blocks hold {rows} rows, the tiled matrix claims {}", self.rows), &[&self.block_rows()]));
        }
        Ok(())
    }
}

/// How a column reduction over a tiled matrix is cut: chunks of `chunk` rows that never cross a block;
/// block `b`'s chunks own partial slots `first[b]..`, `total` slots in all. The same plan is used by the
/// GPU and the CPU twin, so both sum in the same order.
#[derive(Clone, Debug)]
pub(crate) struct ChunkPlan {
    pub chunk: usize,
    pub first: Vec<usize>,
    pub total: usize,
}

/// Plan chunks so that the partial buffer (`slot_bytes` per slot) stays within the binding limit where
/// possible and holds at most 64 slots plus one per block.
pub(crate) fn chunk_plan(block_rows: &[usize], slot_bytes: u64) -> ChunkPlan {
    let rows: usize = block_rows.iter().sum();
    let nb = block_rows.len();
    let target = ((BROWSER_BINDING_LIMIT / slot_bytes.max(1)) as usize).clamp(1, MAX_SLOTS + nb);
    let chunk = if target > nb { rows.div_ceil(target - nb).max(MIN_CHUNK) } else { block_rows.iter().copied().max().unwrap_or(1).max(1) };
    let mut first = Vec::with_capacity(nb);
    let mut total = 0;
    for &r in block_rows {
        first.push(total);
        total += r.div_ceil(chunk);
    }
    ChunkPlan { chunk, first, total }
}

// ---- dense Sinkhorn ----------------------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    row_off: u32,
    f_off: u32,
    g_off: u32,
    chunk: u32,
    chunk_off: u32,
    nchunks: u32,
    flag: u32,
    inv_eps: f32,
    scale: f32,
    _pad: u32,
}

/// What [`sinkhorn`] returns: the log-plan and everything the backward needs.
#[derive(Clone, Debug)]
pub struct SinkhornOut {
    /// `ℓ = X + f^L ⊕ g^L`, tiled like the input.
    pub log_plan: TiledMatrix,
    /// `[L+1, n]`: row `k` is `f^k` (row 0 is zero).
    pub f: Tensor,
    /// `[L+1, m]`: row `k` is `g^k` (row 0 is zero).
    pub g: Tensor,
    /// The log-marginals used, `[n]` and `[m]`.
    pub log_a: Tensor,
    pub log_b: Tensor,
    pub eps: f32,
    pub iters: usize,
}

impl SinkhornOut {
    /// The plan `P = exp ℓ` (exponent clamped at 80), tiled like the log-plan.
    pub fn plan(&self) -> Result<TiledMatrix> {
        const OP: &str = "sinkhorn_plan";
        let _prof = crate::profile::scope(OP);
        let lp = &self.log_plan;
        let mut blocks = Vec::with_capacity(lp.blocks.len());
        for b in &lp.blocks {
            blocks.push(match b.device() {
                Device::Cpu => Tensor::from_f32(&Device::Cpu, b.cpu_f32(OP)?.iter().map(|&v| v.min(80.0).exp()).collect(), b.shape())?,
                Device::Gpu(ctx) => {
                    let out = Tensor::gpu_output(&ctx, b.shape(), DType::F32, OP)?;
                    let p = params(b.shape()[0], lp.cols, 0);
                    ctx.dispatch(OP, &SHADER, "exp_plan", &[], &p, &[Arg::Read(b.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], elem_groups(b.len()))?;
                    out
                }
            });
        }
        Ok(TiledMatrix { blocks, rows: lp.rows, cols: lp.cols })
    }
}

fn params(rows: usize, cols: usize, row_off: usize) -> Params {
    Params { rows: rows as u32, cols: cols as u32, row_off: row_off as u32, f_off: 0, g_off: 0, chunk: 1, chunk_off: 0, nchunks: 0, flag: 0, inv_eps: 1.0, scale: 1.0, _pad: 0 }
}

fn elem_groups(n: usize) -> [u32; 3] {
    grid((n as u64).div_ceil(256))
}

fn col_groups(op: &'static str, cols: usize, chunks: usize) -> Result<[u32; 3]> {
    let x = cols.div_ceil(COL_GROUP);
    if x > crate::gpu::MAX_GROUPS_PER_DIM as usize || chunks > crate::gpu::MAX_GROUPS_PER_DIM as usize {
        return Err(Error::TooManyWorkgroups { op, groups: x.max(chunks) as u64, limit: crate::gpu::MAX_GROUPS_PER_DIM });
    }
    Ok([x as u32, chunks as u32, 1])
}

fn check_sinkhorn_args(op: &'static str, s: &TiledMatrix, eps: f32) -> Result<()> {
    s.expect_f32(op)?;
    if s.rows == 0 || s.cols == 0 {
        return Err(Error::shape(op, "Sinkhorn needs a non-empty score matrix", &[&[s.rows, s.cols]]));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::invalid(op, format!("the temperature eps must be positive and finite, got {eps}")));
    }
    Ok(())
}

/// Dense log-domain Sinkhorn with uniform marginals `a_i = 1/n`, `b_j = 1/m` (see the module docs for the
/// iteration). `s` is the `n × m` score matrix as row blocks, `eps` the temperature (`X = S/ε`; the spec
/// uses 0.02), `iters` the number `L` of row+column steps (0 returns `ℓ = X`). Scores must be finite.
/// The plan equals the classic alternating row/column normalisation of `exp(S/ε)` divided by `m`, so it
/// ranks identically. Backward: [`sinkhorn_backward`].
pub fn sinkhorn(s: &TiledMatrix, eps: f32, iters: usize) -> Result<SinkhornOut> {
    check_sinkhorn_args("sinkhorn", s, eps)?;
    let dev = s.device();
    let log_a = Tensor::full(&dev, &[s.rows], -(s.rows as f32).ln())?;
    let log_b = Tensor::full(&dev, &[s.cols], -(s.cols as f32).ln())?;
    sinkhorn_marginals(s, eps, iters, &log_a, &log_b)
}

/// [`sinkhorn`] with given log-marginals `log_a` (`[n]`) and `log_b` (`[m]`). For a solution to exist the
/// masses should agree (`Σ a = Σ b`); otherwise the iteration still runs and ends on a column step.
pub fn sinkhorn_marginals(s: &TiledMatrix, eps: f32, iters: usize, log_a: &Tensor, log_b: &Tensor) -> Result<SinkhornOut> {
    const OP: &str = "sinkhorn";
    let _prof = crate::profile::scope(OP);
    check_sinkhorn_args(OP, s, eps)?;
    log_a.expect_dtype(OP, DType::F32)?;
    log_b.expect_dtype(OP, DType::F32)?;
    if log_a.len() != s.rows || log_b.len() != s.cols {
        return Err(Error::shape(OP, "log_a must have n and log_b m elements", &[&[s.rows, s.cols], log_a.shape(), log_b.shape()]));
    }
    let mut devs: Vec<&Tensor> = s.blocks.iter().collect();
    devs.push(log_a);
    devs.push(log_b);
    let (n, m) = (s.rows, s.cols);
    match common_device(OP, &devs)? {
        Device::Cpu => {
            let (ell, f, g) = fast::sinkhorn(&s.cpu_blocks(OP)?, m, eps, iters, log_a.cpu_f32(OP)?, log_b.cpu_f32(OP)?);
            let blocks = ell.into_iter().zip(s.block_rows()).map(|(v, r)| Tensor::from_f32(&Device::Cpu, v, &[r, m])).collect::<Result<Vec<_>>>()?;
            Ok(SinkhornOut {
                log_plan: TiledMatrix { blocks, rows: n, cols: m },
                f: Tensor::from_f32(&Device::Cpu, f, &[iters + 1, n])?,
                g: Tensor::from_f32(&Device::Cpu, g, &[iters + 1, m])?,
                log_a: log_a.clone(),
                log_b: log_b.clone(),
                eps,
                iters,
            })
        }
        Device::Gpu(ctx) => sinkhorn_gpu(&ctx, s, eps, iters, log_a, log_b),
    }
}

fn sinkhorn_gpu(ctx: &Arc<GpuContext>, s: &TiledMatrix, eps: f32, iters: usize, log_a: &Tensor, log_b: &Tensor) -> Result<SinkhornOut> {
    const OP: &str = "sinkhorn";
    let _prof = crate::profile::scope(OP);
    let (n, m) = (s.rows, s.cols);
    let f = Tensor::from_gpu(ctx, ctx.zeros((iters + 1) * n, OP)?, &[iters + 1, n], DType::F32);
    let g = Tensor::from_gpu(ctx, ctx.zeros((iters + 1) * m, OP)?, &[iters + 1, m], DType::F32);
    let plan = chunk_plan(&s.block_rows(), 8 * m as u64);
    let part = ctx.alloc(2 * plan.total * m, "sinkhorn partials")?;
    let offs = s.row_offsets();
    let inv_eps = 1.0 / eps;
    let (fb, gb, la, lb) = (f.gpu_buf(OP)?, g.gpu_buf(OP)?, log_a.gpu_buf(OP)?, log_b.gpu_buf(OP)?);
    for k in 1..=iters {
        for (b, blk) in s.blocks.iter().enumerate() {
            let rows = blk.shape()[0];
            let p = Params { f_off: (k * n) as u32, g_off: ((k - 1) * m) as u32, inv_eps, ..params(rows, m, offs[b]) };
            ctx.dispatch(OP, &SHADER, "row_lse", &[], &p, &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(gb), Arg::Read(la), Arg::Write(fb)], grid(rows as u64))?;
        }
        for (b, blk) in s.blocks.iter().enumerate() {
            let rows = blk.shape()[0];
            let p = Params { f_off: (k * n) as u32, chunk: plan.chunk as u32, chunk_off: plan.first[b] as u32, nchunks: plan.total as u32, inv_eps, ..params(rows, m, offs[b]) };
            ctx.dispatch(OP, &SHADER, "col_lse_partial", &[], &p, &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(fb), Arg::Write(&part)], col_groups(OP, m, rows.div_ceil(plan.chunk))?)?;
        }
        let p = Params { g_off: (k * m) as u32, nchunks: plan.total as u32, ..params(0, m, 0) };
        ctx.dispatch(OP, &SHADER, "col_lse_combine", &[], &p, &[Arg::Read(&part), Arg::Read(lb), Arg::Write(gb)], [m.div_ceil(256) as u32, 1, 1])?;
    }
    let mut blocks = Vec::with_capacity(s.blocks.len());
    for (b, blk) in s.blocks.iter().enumerate() {
        let rows = blk.shape()[0];
        let out = Tensor::gpu_output(ctx, &[rows, m], DType::F32, OP)?;
        let p = Params { f_off: (iters * n) as u32, g_off: (iters * m) as u32, inv_eps, ..params(rows, m, offs[b]) };
        ctx.dispatch(OP, &SHADER, "log_plan", &[], &p, &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(fb), Arg::Read(gb), Arg::Write(out.gpu_buf(OP)?)], elem_groups(rows * m))?;
        blocks.push(out);
    }
    Ok(SinkhornOut { log_plan: TiledMatrix { blocks, rows: n, cols: m }, f, g, log_a: log_a.clone(), log_b: log_b.clone(), eps, iters })
}

/// Exact gradient of a loss `L(ℓ)` with respect to the scores: given the forward input `s`, the forward
/// output `out` and `g_logplan = ∂L/∂ℓ` (tiled like `s`), returns `∂L/∂S` (tiled like `s`). The recursion
/// unrolls all `L` iterations using the saved potentials (see the module docs): per iteration one row pass
/// (`g_X −= Q ⊙ g_g`, `g_f = −Σ_j Q g_g`) and one column pass (`g_X −= R ⊙ g_f`, `g_g = −Σ_i R g_f`), then
/// `g_S = g_X / ε`. `eps` must be the forward's.
pub fn sinkhorn_backward(s: &TiledMatrix, eps: f32, out: &SinkhornOut, g_logplan: &TiledMatrix) -> Result<TiledMatrix> {
    const OP: &str = "sinkhorn_backward";
    let _prof = crate::profile::scope(OP);
    check_sinkhorn_args(OP, s, eps)?;
    g_logplan.expect_f32(OP)?;
    if eps != out.eps {
        return Err(Error::invalid(OP, format!("eps {eps} differs from the forward's {}", out.eps)));
    }
    if !s.same_tiling(g_logplan) || !s.same_tiling(&out.log_plan) {
        return Err(Error::shape(OP, "the gradient must be tiled like the scores (same row blocks)", &[&[s.rows, s.cols], &s.block_rows(), &g_logplan.block_rows()]));
    }
    let (n, m, iters) = (s.rows, s.cols, out.iters);
    if out.f.shape() != [iters + 1, n] || out.g.shape() != [iters + 1, m] {
        return Err(Error::shape(OP, "saved potentials do not match the scores", &[&[s.rows, s.cols], out.f.shape(), out.g.shape()]));
    }
    let mut devs: Vec<&Tensor> = s.blocks.iter().chain(&g_logplan.blocks).collect();
    devs.extend([&out.f, &out.g, &out.log_a, &out.log_b]);
    let dev = common_device(OP, &devs)?;
    if iters == 0 {
        let blocks = g_logplan.blocks.iter().map(|b| crate::ops::scale(b, 1.0 / eps)).collect::<Result<Vec<_>>>()?;
        return Ok(TiledMatrix { blocks, rows: n, cols: m });
    }
    match dev {
        Device::Cpu => {
            let gx = cpu::sinkhorn_backward(
                &s.cpu_blocks(OP)?,
                m,
                eps,
                iters,
                out.f.cpu_f32(OP)?,
                out.g.cpu_f32(OP)?,
                out.log_a.cpu_f32(OP)?,
                out.log_b.cpu_f32(OP)?,
                &g_logplan.cpu_blocks(OP)?,
            );
            let blocks = gx.into_iter().zip(s.block_rows()).map(|(v, r)| Tensor::from_f32(&Device::Cpu, v, &[r, m])).collect::<Result<Vec<_>>>()?;
            Ok(TiledMatrix { blocks, rows: n, cols: m })
        }
        Device::Gpu(ctx) => {
            let plan = chunk_plan(&s.block_rows(), 8 * m as u64);
            let part = ctx.alloc(plan.total * m, "sinkhorn backward partials")?;
            let gf = ctx.alloc(n, "sinkhorn g_f")?;
            let gg = ctx.alloc(m, "sinkhorn g_g")?;
            let offs = s.row_offsets();
            let inv_eps = 1.0 / eps;
            let (fb, gb, la, lb) = (out.f.gpu_buf(OP)?, out.g.gpu_buf(OP)?, out.log_a.gpu_buf(OP)?, out.log_b.gpu_buf(OP)?);
            let chunked =
                |b: usize, rows: usize| Params { chunk: plan.chunk as u32, chunk_off: plan.first[b] as u32, nchunks: plan.total as u32, inv_eps, ..params(rows, m, offs[b]) };
            // g_X starts as a copy of G; g_g = colsum G.
            let mut gx = Vec::with_capacity(s.blocks.len());
            for (b, gblk) in g_logplan.blocks.iter().enumerate() {
                let rows = gblk.shape()[0];
                let t = Tensor::gpu_output(&ctx, &[rows, m], DType::F32, OP)?;
                ctx.copy(gblk.gpu_buf(OP)?, 0, t.gpu_buf(OP)?, 0, rows * m);
                ctx.dispatch(
                    OP,
                    &SHADER,
                    "col_sum_partial",
                    &[],
                    &chunked(b, rows),
                    &[Arg::Read(gblk.gpu_buf(OP)?), Arg::Write(&part)],
                    col_groups(OP, m, rows.div_ceil(plan.chunk))?,
                )?;
                gx.push(t);
            }
            let combine = |scale: f32| -> Result<()> {
                let p = Params { nchunks: plan.total as u32, scale, ..params(0, m, 0) };
                ctx.dispatch(OP, &SHADER, "col_sum_combine", &[], &p, &[Arg::Read(&part), Arg::Write(&gg)], [m.div_ceil(256) as u32, 1, 1])
            };
            combine(1.0)?;
            for k in (1..=iters).rev() {
                for (b, blk) in s.blocks.iter().enumerate() {
                    let rows = blk.shape()[0];
                    let p = Params { f_off: (k * n) as u32, g_off: (k * m) as u32, flag: (k == iters) as u32, inv_eps, ..params(rows, m, offs[b]) };
                    ctx.dispatch(
                        OP,
                        &SHADER,
                        "bwd_col_step",
                        &[],
                        &p,
                        &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(fb), Arg::Read(gb), Arg::Read(lb), Arg::Read(&gg), Arg::Write(gx[b].gpu_buf(OP)?), Arg::Write(&gf)],
                        grid(rows as u64),
                    )?;
                }
                for (b, blk) in s.blocks.iter().enumerate() {
                    let rows = blk.shape()[0];
                    let p = Params { f_off: (k * n) as u32, g_off: ((k - 1) * m) as u32, scale: if k == 1 { inv_eps } else { 1.0 }, ..chunked(b, rows) };
                    ctx.dispatch(
                        OP,
                        &SHADER,
                        "bwd_row_step",
                        &[],
                        &p,
                        &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(fb), Arg::Read(gb), Arg::Read(la), Arg::Read(&gf), Arg::Write(gx[b].gpu_buf(OP)?), Arg::Write(&part)],
                        col_groups(OP, m, rows.div_ceil(plan.chunk))?,
                    )?;
                }
                if k > 1 {
                    combine(-1.0)?;
                }
            }
            Ok(TiledMatrix { blocks: gx, rows: n, cols: m })
        }
    }
}

// ---- sparse top-k Sinkhorn ---------------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SparseParams {
    n: u32,
    k: u32,
    m: u32,
    inv_eps: f32,
    log_a: f32,
    log_b: f32,
    _pad: [u32; 2],
}

/// The candidate structure of a sparse Sinkhorn: `cols[i, t]` is the `t`-th kept column of row `i`, plus
/// the transposed index (entries grouped by column, built on the host by a stable counting sort):
/// the entries of column `j` are the flat indices `col_entries[col_ptr[j]..col_ptr[j+1]]` (`e = i·k + t`).
#[derive(Clone, Debug)]
pub struct TopkIndex {
    n: usize,
    k: usize,
    m: usize,
    cols: Tensor,
    col_ptr: Tensor,
    col_entries: Tensor,
}

impl TopkIndex {
    /// Build the index from host column ids (`n·k` values, each `< m`) and upload it to `device`.
    pub fn new(device: &Device, cols: &[u32], n: usize, k: usize, m: usize) -> Result<Self> {
        const OP: &str = "sinkhorn_topk";
        let _prof = crate::profile::scope(OP);
        if n == 0 || k == 0 || m == 0 {
            return Err(Error::shape(OP, "sparse Sinkhorn needs n, k and m >= 1", &[&[n, k], &[m]]));
        }
        if cols.len() != n * k {
            return Err(Error::shape(OP, format!("{} column ids for [n, k]", cols.len()), &[&[n, k]]));
        }
        if (n * k) as u64 > u32::MAX as u64 || m as u64 >= u32::MAX as u64 {
            return Err(Error::invalid(OP, "too many entries for 32-bit indices"));
        }
        if let Some((e, &c)) = cols.iter().enumerate().find(|&(_, &c)| c as usize >= m) {
            return Err(Error::invalid(OP, format!("column id {c} at entry {e} (row {}) is not < m = {m}", e / k)));
        }
        let (ptr, entries) = cpu::transpose_index(cols, m);
        Ok(TopkIndex {
            n,
            k,
            m,
            cols: Tensor::from_u32(device, cols.to_vec(), &[n, k])?,
            col_ptr: Tensor::from_u32(device, ptr, &[m + 1])?,
            col_entries: Tensor::from_u32(device, entries, &[n * k])?,
        })
    }

    /// Rows, candidates per row, columns.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.n, self.k, self.m)
    }
    /// `[n, k]` column ids.
    pub fn cols(&self) -> &Tensor {
        &self.cols
    }
    /// `[m + 1]` offsets into [`TopkIndex::col_entries`].
    pub fn col_ptr(&self) -> &Tensor {
        &self.col_ptr
    }
    /// `[n·k]` flat entry ids grouped by column.
    pub fn col_entries(&self) -> &Tensor {
        &self.col_entries
    }
}

/// Sparse (top-k) log-domain Sinkhorn, LightEA style, forward only (inference decoding; no backward):
/// `cols [n, k]` (u32) are each row's kept candidate columns (distinct within a row, each `< m`) and
/// `scores [n, k]` their scores. Runs the potentials iteration of [`sinkhorn`] with uniform marginals
/// `a = 1/n`, `b = 1/m` over the kept entries only (equivalently: dense Sinkhorn on a matrix that is
/// `−∞` outside them), and returns the log-plan `ℓ [n, k]` of the kept entries. A column that no row
/// keeps gets `g_j = 0` (it carries no entry). The column ids are needed on the host to build the
/// transposed index: GPU `cols` are read back (native only; in the browser build a [`TopkIndex`] from host
/// data and call [`sinkhorn_topk_indexed`]).
pub fn sinkhorn_topk(cols: &Tensor, scores: &Tensor, m: usize, eps: f32, iters: usize) -> Result<Tensor> {
    const OP: &str = "sinkhorn_topk";
    let _prof = crate::profile::scope(OP);
    cols.expect_dtype(OP, DType::U32)?;
    let (n, k) = cols.dims2(OP)?;
    let host: Vec<u32> = match cols.device() {
        Device::Cpu => cols.cpu_u32(OP)?.to_vec(),
        #[cfg(not(target_arch = "wasm32"))]
        Device::Gpu(_) => cols.to_vec_u32_blocking()?,
        #[cfg(target_arch = "wasm32")]
        Device::Gpu(_) => return Err(Error::invalid(OP, "in the browser, build a TopkIndex from host column ids and call sinkhorn_topk_indexed")),
    };
    let index = TopkIndex::new(&scores.device(), &host, n, k, m)?;
    sinkhorn_topk_indexed(&index, scores, eps, iters)
}

/// [`sinkhorn_topk`] over a prebuilt [`TopkIndex`] (no readback).
pub fn sinkhorn_topk_indexed(index: &TopkIndex, scores: &Tensor, eps: f32, iters: usize) -> Result<Tensor> {
    const OP: &str = "sinkhorn_topk";
    let _prof = crate::profile::scope(OP);
    scores.expect_dtype(OP, DType::F32)?;
    let (n, k, m) = (index.n, index.k, index.m);
    if scores.shape() != [n, k] {
        return Err(Error::shape(OP, "scores must be [n, k] like cols", &[scores.shape(), index.cols.shape()]));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::invalid(OP, format!("the temperature eps must be positive and finite, got {eps}")));
    }
    let log_a = -(n as f32).ln();
    let log_b = -(m as f32).ln();
    match common_device(OP, &[scores, &index.cols, &index.col_ptr, &index.col_entries])? {
        Device::Cpu => {
            let out =
                cpu::sinkhorn_topk(index.cols.cpu_u32(OP)?, scores.cpu_f32(OP)?, index.col_ptr.cpu_u32(OP)?, index.col_entries.cpu_u32(OP)?, n, k, m, eps, iters, log_a, log_b);
            Tensor::from_f32(&Device::Cpu, out, &[n, k])
        }
        Device::Gpu(ctx) => {
            let f = ctx.zeros(n, "sparse sinkhorn f")?;
            let g = ctx.zeros(m, "sparse sinkhorn g")?;
            let p = SparseParams { n: n as u32, k: k as u32, m: m as u32, inv_eps: 1.0 / eps, log_a, log_b, _pad: [0; 2] };
            let (sb, cb, pb, eb) = (scores.gpu_buf(OP)?, index.cols.gpu_buf(OP)?, index.col_ptr.gpu_buf(OP)?, index.col_entries.gpu_buf(OP)?);
            for _ in 0..iters {
                ctx.dispatch(OP, &SPARSE_SHADER, "sp_row", &[], &p, &[Arg::Read(sb), Arg::Read(cb), Arg::Read(&g), Arg::Write(&f)], grid(n as u64))?;
                ctx.dispatch(OP, &SPARSE_SHADER, "sp_col", &[], &p, &[Arg::Read(sb), Arg::Read(pb), Arg::Read(eb), Arg::Read(&f), Arg::Write(&g)], grid(m as u64))?;
            }
            let out = Tensor::gpu_output(&ctx, &[n, k], DType::F32, OP)?;
            ctx.dispatch(OP, &SPARSE_SHADER, "sp_out", &[], &p, &[Arg::Read(sb), Arg::Read(cb), Arg::Read(&f), Arg::Read(&g), Arg::Write(out.gpu_buf(OP)?)], elem_groups(n * k))?;
            Ok(out)
        }
    }
}

/// The CPU twin: the same formulas in the same summation order as the shaders (lanes of 256 per dense row,
/// 64 per sparse segment, folded in a tree; column partials per chunk folded in slot order).
pub mod cpu {
    use super::{chunk_plan, ChunkPlan};

    /// Stands for −∞ in running maxima (the shaders cannot write infinities).
    pub const NEG: f32 = -3.0e38;
    /// Lanes per row in the dense row kernels, per segment in the sparse kernels.
    pub const ROW_LANES: usize = 256;
    pub const SPARSE_LANES: usize = 64;

    /// Fold `x` into a running `(max, Σ exp(· − max))`.
    pub fn online(acc: (f32, f32), x: f32) -> (f32, f32) {
        if x > acc.0 {
            (x, acc.1 * (acc.0 - x).exp() + 1.0)
        } else {
            (acc.0, acc.1 + (x - acc.0).exp())
        }
    }

    pub fn combine(a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
        let m = a.0.max(b.0);
        (m, a.1 * (a.0 - m).exp() + b.1 * (b.0 - m).exp())
    }

    pub fn finish(a: (f32, f32)) -> f32 {
        a.0 + a.1.ln()
    }

    /// `LSE_{j < len} x(j)` as a workgroup of `lanes` computes it: lane `l` folds `j = l, l + lanes, ..`,
    /// then the lanes are combined in a tree.
    pub fn lse_lanes(len: usize, lanes: usize, x: impl Fn(usize) -> f32) -> f32 {
        let mut acc = vec![(NEG, 0.0f32); lanes];
        for (l, a) in acc.iter_mut().enumerate() {
            let mut j = l;
            while j < len {
                *a = online(*a, x(j));
                j += lanes;
            }
        }
        let mut st = lanes / 2;
        while st > 0 {
            for l in 0..st {
                acc[l] = combine(acc[l], acc[l + st]);
            }
            st /= 2;
        }
        finish(acc[0])
    }

    /// Two independent sums `Σ_{j < len} x(j)` in the workgroup's lane-then-tree order.
    pub fn sum2_lanes(len: usize, lanes: usize, x: impl Fn(usize) -> (f32, f32)) -> (f32, f32) {
        let mut acc = vec![(0.0f32, 0.0f32); lanes];
        for (l, a) in acc.iter_mut().enumerate() {
            let mut j = l;
            while j < len {
                let (u, v) = x(j);
                a.0 += u;
                a.1 += v;
                j += lanes;
            }
        }
        let mut st = lanes / 2;
        while st > 0 {
            for l in 0..st {
                acc[l] = (acc[l].0 + acc[l + st].0, acc[l].1 + acc[l + st].1);
            }
            st /= 2;
        }
        acc[0]
    }

    fn plan_for(blocks: &[&[f32]], cols: usize) -> (Vec<usize>, Vec<usize>, ChunkPlan) {
        let rows: Vec<usize> = blocks.iter().map(|b| b.len() / cols).collect();
        let mut offs = Vec::with_capacity(rows.len());
        let mut o = 0;
        for &r in &rows {
            offs.push(o);
            o += r;
        }
        let plan = chunk_plan(&rows, 8 * cols as u64);
        (rows, offs, plan)
    }

    /// Dense forward over row blocks (each `r_b × cols`, `cols >= 1`). Returns the log-plan blocks and the
    /// potential histories `f [(iters+1)·n]`, `g [(iters+1)·m]` (row 0 zero).
    pub fn sinkhorn(blocks: &[&[f32]], cols: usize, eps: f32, iters: usize, log_a: &[f32], log_b: &[f32]) -> (Vec<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let m = cols;
        let (rows, offs, plan) = plan_for(blocks, m);
        let n: usize = rows.iter().sum();
        let inv_eps = 1.0 / eps;
        let mut f = vec![0.0f32; (iters + 1) * n];
        let mut g = vec![0.0f32; (iters + 1) * m];
        for k in 1..=iters {
            let g_prev = &g[(k - 1) * m..k * m];
            for (b, blk) in blocks.iter().enumerate() {
                let vals = crate::cpu::par_map(rows[b], |r| {
                    let row = &blk[r * m..(r + 1) * m];
                    log_a[offs[b] + r] - lse_lanes(m, ROW_LANES, |j| row[j] * inv_eps + g_prev[j])
                });
                f[k * n + offs[b]..k * n + offs[b] + rows[b]].copy_from_slice(&vals);
            }
            let fk = &f[k * n..(k + 1) * n];
            let mut parts: Vec<Vec<(f32, f32)>> = Vec::with_capacity(plan.total);
            for (b, blk) in blocks.iter().enumerate() {
                let nch = rows[b].div_ceil(plan.chunk);
                parts.extend(crate::cpu::par_map(nch, |c| {
                    let mut acc = vec![(NEG, 0.0f32); m];
                    for r in c * plan.chunk..((c + 1) * plan.chunk).min(rows[b]) {
                        let fi = fk[offs[b] + r];
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = online(*a, blk[r * m + j] * inv_eps + fi);
                        }
                    }
                    acc
                }));
            }
            for j in 0..m {
                let mut acc = (NEG, 0.0f32);
                for p in &parts {
                    acc = combine(acc, p[j]);
                }
                g[k * m + j] = log_b[j] - finish(acc);
            }
        }
        let (fl, gl) = (&f[iters * n..(iters + 1) * n], &g[iters * m..(iters + 1) * m]);
        let ell = blocks
            .iter()
            .enumerate()
            .map(|(b, blk)| {
                let mut out = vec![0.0f32; blk.len()];
                crate::cpu::par_rows(&mut out, m, |r, row| {
                    let fi = fl[offs[b] + r];
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = blk[r * m + j] * inv_eps + fi + gl[j];
                    }
                });
                out
            })
            .collect();
        (ell, f, g)
    }

    /// Dense backward (see the module docs): returns `∂L/∂S` blocks given the forward's potentials and
    /// `∂L/∂ℓ` blocks `gl`. `iters >= 1`.
    #[allow(clippy::too_many_arguments)]
    pub fn sinkhorn_backward(blocks: &[&[f32]], cols: usize, eps: f32, iters: usize, f: &[f32], g: &[f32], log_a: &[f32], log_b: &[f32], gl: &[&[f32]]) -> Vec<Vec<f32>> {
        let m = cols;
        let (rows, offs, plan) = plan_for(blocks, m);
        let n: usize = rows.iter().sum();
        let inv_eps = 1.0 / eps;
        let mut gx: Vec<Vec<f32>> = gl.iter().map(|b| b.to_vec()).collect();
        let mut gf = vec![0.0f32; n];
        // g_g = colsum G, per chunk then folded in slot order.
        let colsum = |gx: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let mut parts = Vec::with_capacity(plan.total);
            for (b, blk) in gx.iter().enumerate() {
                parts.extend(crate::cpu::par_map(rows[b].div_ceil(plan.chunk), |c| {
                    let mut s = vec![0.0f32; m];
                    for r in c * plan.chunk..((c + 1) * plan.chunk).min(rows[b]) {
                        for (j, v) in s.iter_mut().enumerate() {
                            *v += blk[r * m + j];
                        }
                    }
                    s
                }));
            }
            parts
        };
        let fold = |parts: &[Vec<f32>], scale: f32| -> Vec<f32> { (0..m).map(|j| scale * parts.iter().fold(0.0f32, |s, p| s + p[j])).collect() };
        let mut gg = fold(&colsum(&gx), 1.0);
        for k in (1..=iters).rev() {
            let (fk, gk, gk1) = (&f[k * n..(k + 1) * n], &g[k * m..(k + 1) * m], &g[(k - 1) * m..k * m]);
            // Column step k, one row at a time: Q_ij = exp(X_ij + f_i + g_j − log b_j).
            for (b, blk) in blocks.iter().enumerate() {
                let q = |r: usize, j: usize| (blk[r * m + j] * inv_eps + fk[offs[b] + r] + gk[j] - log_b[j]).min(30.0).exp();
                let old = &gx[b];
                let sums = crate::cpu::par_map(rows[b], |r| sum2_lanes(m, ROW_LANES, |j| (q(r, j) * gg[j], old[r * m + j])));
                for (r, (acc_q, acc_g)) in sums.into_iter().enumerate() {
                    gf[offs[b] + r] = if k == iters { acc_g } else { 0.0 } - acc_q;
                }
                crate::cpu::par_rows(&mut gx[b], m, |r, row| {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v -= q(r, j) * gg[j];
                    }
                });
            }
            // Row step k, one chunk of rows at a time: R_ij = exp(X_ij + g^{k−1}_j + f_i − log a_i).
            let scale = if k == 1 { inv_eps } else { 1.0 };
            let mut parts = Vec::with_capacity(plan.total);
            for (b, blk) in blocks.iter().enumerate() {
                let rr = |r: usize, j: usize| {
                    let i = offs[b] + r;
                    (blk[r * m + j] * inv_eps + gk1[j] + fk[i] - log_a[i]).min(30.0).exp() * gf[i]
                };
                parts.extend(crate::cpu::par_map(rows[b].div_ceil(plan.chunk), |c| {
                    let mut s = vec![0.0f32; m];
                    for r in c * plan.chunk..((c + 1) * plan.chunk).min(rows[b]) {
                        for (j, v) in s.iter_mut().enumerate() {
                            *v += rr(r, j);
                        }
                    }
                    s
                }));
                crate::cpu::par_rows(&mut gx[b], m, |r, row| {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (*v - rr(r, j)) * scale;
                    }
                });
            }
            if k > 1 {
                gg = fold(&parts, -1.0);
            }
        }
        gx
    }

    /// Stable counting sort of the flat entries `e = i·k + t` by column: `(col_ptr [m+1], entries [n·k])`.
    pub fn transpose_index(cols: &[u32], m: usize) -> (Vec<u32>, Vec<u32>) {
        let mut ptr = vec![0u32; m + 1];
        for &c in cols {
            ptr[c as usize + 1] += 1;
        }
        for j in 0..m {
            ptr[j + 1] += ptr[j];
        }
        let mut next = ptr.clone();
        let mut entries = vec![0u32; cols.len()];
        for (e, &c) in cols.iter().enumerate() {
            entries[next[c as usize] as usize] = e as u32;
            next[c as usize] += 1;
        }
        (ptr, entries)
    }

    /// Sparse forward: returns the log-plan of the kept entries, `[n·k]`.
    #[allow(clippy::too_many_arguments)]
    pub fn sinkhorn_topk(cols: &[u32], scores: &[f32], col_ptr: &[u32], entries: &[u32], n: usize, k: usize, m: usize, eps: f32, iters: usize, log_a: f32, log_b: f32) -> Vec<f32> {
        let inv_eps = 1.0 / eps;
        let mut f = vec![0.0f32; n];
        let mut g = vec![0.0f32; m];
        for _ in 0..iters {
            f = crate::cpu::par_map(n, |i| log_a - lse_lanes(k, SPARSE_LANES, |t| scores[i * k + t] * inv_eps + g[cols[i * k + t] as usize]));
            g = crate::cpu::par_map(m, |j| {
                let (a, b) = (col_ptr[j] as usize, col_ptr[j + 1] as usize);
                if a == b {
                    return 0.0;
                }
                log_b
                    - lse_lanes(b - a, SPARSE_LANES, |q| {
                        let e = entries[a + q] as usize;
                        scores[e] * inv_eps + f[e / k]
                    })
            });
        }
        (0..n * k).map(|e| scores[e] * inv_eps + f[e / k] + g[cols[e] as usize]).collect()
    }
}

/// Tape wrappers.
pub mod ad {
    use super::{sinkhorn, sinkhorn_backward, TiledMatrix};
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;

    /// The log-plan `ℓ` of dense Sinkhorn on a whole (single-block) score matrix `s`, uniform marginals.
    /// Saves the scores and the potentials; backward: [`sinkhorn_backward`] (exact, unrolled).
    pub fn sinkhorn_log_plan(tape: &Tape, s: &Var, eps: f32, iters: usize) -> Result<Var> {
        let st = TiledMatrix::whole(&s.value)?;
        let out = sinkhorn(&st, eps, iters)?;
        let lp = out.log_plan.to_tensor()?;
        Ok(tape.record(lp, &[s], move |g| {
            let gt = TiledMatrix::whole(g)?;
            Ok(vec![Some(sinkhorn_backward(&st, eps, &out, &gt)?.to_tensor()?)])
        }))
    }
}

/// The CPU backend's dense forward: the same iteration as [`cpu::sinkhorn`] (and the shaders) in another
/// summation order, built for a few cores rather than to mirror a workgroup. Each iteration is one pass
/// over the matrix, with exponentials in a polynomial form that is vectorised (AVX-512 or AVX2 when the
/// CPU has them, chosen at run time):
/// - the row step takes each row's exact maximum (the row is in cache for its second and third reads);
/// - the column step needs no maxima: column `j` is shifted by the bound `B_j = max_i log a_i − g^{k−1}_j`,
///   which holds because the row step makes every `X_ij + g^{k−1}_j + f^k_i ≤ log a_i`. So a row, once
///   loaded, yields its `f^k_i` and then its terms of every column sum. A column whose sum underflows
///   under its bound (its best entry more than ~69 below it) is redone with its exact maximum.
///
/// Row chunks of the column step are summed in a fixed order, so the result does not depend on the
/// number of threads. It agrees with the twin to float rounding (tested), not bit for bit.
pub mod fast {
    use crate::cpu::par_map_items;

    /// Rows per chunk of a column step (its partial sums are one `m`-vector per chunk).
    const CHUNK: usize = 256;
    /// Below this a column's shifted sum is redone with the exact maximum.
    const TINY: f32 = 1e-30;

    /// `e^x` for `x ≤ 88` to about 2 ulp (0 below −87.3): `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-6
    /// Taylor polynomial for `e^r` (error below 2e-7), and `2^n` from the exponent bits. Integer work is
    /// done on the bits of the rounded float (no float-to-int conversion), so it vectorises.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer held in the low bits
        let under = x < -87.3;
        let x = x.clamp(-87.3, 88.0);
        let t = x * LOG2E + ROUND;
        let n = t - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        // t's bits are 0x4B40_0000 + n (two's complement in the low mantissa bits).
        let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
        if under {
            0.0
        } else {
            p * scale
        }
    }

    /// Lanes of the row reductions: independent accumulators, so that the compiler can vectorise them
    /// (a single float accumulator is a serial chain it may not reorder).
    const LANES: usize = 16;

    /// One row of an iteration: `e_j = exp(x_j/ε + g_j − M)` into `buf` (`M` the row's maximum), and
    /// returns `(M, Σ_j e_j)`.
    #[inline(always)]
    fn row_body(row: &[f32], inv_eps: f32, g: &[f32], buf: &mut [f32]) -> (f32, f32) {
        let (rc, gc) = (row.chunks_exact(LANES), g.chunks_exact(LANES));
        let (rt, gt) = (rc.remainder(), gc.remainder());
        let mut mx = [f32::NEG_INFINITY; LANES];
        for (r, gg) in rc.clone().zip(gc.clone()) {
            for l in 0..LANES {
                let v = r[l] * inv_eps + gg[l];
                mx[l] = if v > mx[l] { v } else { mx[l] };
            }
        }
        let mut m = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (x, gj) in rt.iter().zip(gt) {
            m = m.max(x * inv_eps + gj);
        }
        let mut acc = [0.0f32; LANES];
        let mut bc = buf.chunks_exact_mut(LANES);
        for ((r, gg), e) in rc.zip(gc).zip(&mut bc) {
            for l in 0..LANES {
                e[l] = exp(r[l] * inv_eps + gg[l] - m);
                acc[l] += e[l];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for ((x, gj), e) in rt.iter().zip(gt).zip(bc.into_remainder()) {
            *e = exp(x * inv_eps + gj - m);
            s += *e;
        }
        (m, s)
    }

    /// `acc_j += α e_j` over one row.
    #[inline(always)]
    fn col_body(acc: &mut [f32], e: &[f32], alpha: f32) {
        for (a, v) in acc.iter_mut().zip(e) {
            *a += v * alpha;
        }
    }

    // The same bodies compiled for AVX-512 and AVX2 (chosen at run time; the build targets baseline
    // x86-64). Same operations in the same order: the results do not depend on which one runs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn row_avx512(row: &[f32], inv_eps: f32, g: &[f32], buf: &mut [f32]) -> (f32, f32) {
        row_body(row, inv_eps, g, buf)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn row_avx2(row: &[f32], inv_eps: f32, g: &[f32], buf: &mut [f32]) -> (f32, f32) {
        row_body(row, inv_eps, g, buf)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn col_avx512(acc: &mut [f32], e: &[f32], alpha: f32) {
        col_body(acc, e, alpha)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn col_avx2(acc: &mut [f32], e: &[f32], alpha: f32) {
        col_body(acc, e, alpha)
    }

    /// The widest vector unit this CPU has: 2 AVX-512, 1 AVX2, 0 neither.
    fn simd_level() -> u8 {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return 2;
            }
            if std::is_x86_feature_detected!("avx2") {
                return 1;
            }
        }
        0
    }

    fn row_pass(level: u8, row: &[f32], inv_eps: f32, g: &[f32], buf: &mut [f32]) -> (f32, f32) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `level` comes from `simd_level`, so the CPU has the features these were built for.
            if level == 2 {
                return unsafe { row_avx512(row, inv_eps, g, buf) };
            }
            if level == 1 {
                return unsafe { row_avx2(row, inv_eps, g, buf) };
            }
        }
        let _ = level;
        row_body(row, inv_eps, g, buf)
    }

    fn col_pass(level: u8, acc: &mut [f32], e: &[f32], alpha: f32) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: as in `row_pass`.
            if level == 2 {
                return unsafe { col_avx512(acc, e, alpha) };
            }
            if level == 1 {
                return unsafe { col_avx2(acc, e, alpha) };
            }
        }
        let _ = level;
        col_body(acc, e, alpha)
    }

    /// Dense forward over row blocks, with the same outputs as [`super::cpu::sinkhorn`]: the log-plan
    /// blocks and the potential histories `f [(iters+1)·n]`, `g [(iters+1)·m]` (row 0 zero).
    pub fn sinkhorn(blocks: &[&[f32]], cols: usize, eps: f32, iters: usize, log_a: &[f32], log_b: &[f32]) -> (Vec<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let m = cols;
        let inv_eps = 1.0 / eps;
        let level = simd_level();
        let n: usize = blocks.iter().map(|b| b.len() / m).sum();
        // Chunks of at most CHUNK rows that never cross a block: (block, first row, rows, global offset).
        let mut chunks = Vec::new();
        let mut offs = Vec::with_capacity(blocks.len());
        let mut off = 0;
        for (b, blk) in blocks.iter().enumerate() {
            let rows = blk.len() / m;
            for r0 in (0..rows).step_by(CHUNK) {
                chunks.push((b, r0, CHUNK.min(rows - r0), off + r0));
            }
            offs.push(off);
            off += rows;
        }
        let row = |b: usize, r: usize| &blocks[b][r * m..(r + 1) * m];
        let la_max = log_a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut f = vec![0.0f32; (iters + 1) * n];
        let mut g = vec![0.0f32; (iters + 1) * m];
        for k in 1..=iters {
            let g_prev = g[(k - 1) * m..k * m].to_vec();
            let bound: Vec<f32> = g_prev.iter().map(|gj| la_max - gj).collect();
            // Row step and column accumulation in one pass: each row, once loaded, gives its f^k_i and
            // then its terms of the column sums. With e_ij = exp(X_ij + g_j − M_i) from the row step, the
            // column term exp(X_ij + f_i − B_j) is e_ij · exp(f_i + M_i − max log a): one exponential
            // per entry and iteration.
            let done: Vec<(Vec<f32>, Vec<f32>)> = par_map_items(chunks.clone(), |(b, r0, len, o)| {
                let mut acc = vec![0.0f32; m];
                let mut buf = vec![0.0f32; m];
                let mut fs = Vec::with_capacity(len);
                for r in 0..len {
                    let (mx, sum) = row_pass(level, row(b, r0 + r), inv_eps, &g_prev, &mut buf);
                    let fi = log_a[o + r] - (mx + sum.ln());
                    col_pass(level, &mut acc, &buf, exp(fi + mx - la_max));
                    fs.push(fi);
                }
                (fs, acc)
            });
            let (fk, parts): (Vec<Vec<f32>>, Vec<Vec<f32>>) = done.into_iter().unzip();
            let fk: Vec<f32> = fk.concat();
            let gk = &mut g[k * m..(k + 1) * m];
            for (j, gj) in gk.iter_mut().enumerate() {
                let s = parts.iter().fold(0.0f32, |s, p| s + p[j]);
                let lse = if s > TINY {
                    bound[j] + s.ln()
                } else {
                    // Exact maximum for this column (rare: no row wants it by a wide margin).
                    let col = |i: usize, c: &(usize, usize, usize, usize)| blocks[c.0][(c.1 + i) * m + j] * inv_eps + fk[c.3 + i];
                    let mx = chunks.iter().flat_map(|c| (0..c.2).map(move |i| col(i, c))).fold(f32::NEG_INFINITY, f32::max);
                    let s: f32 = chunks.iter().flat_map(|c| (0..c.2).map(move |i| col(i, c))).map(|v| (v - mx).exp()).sum();
                    mx + s.ln()
                };
                *gj = log_b[j] - lse;
            }
            f[k * n..(k + 1) * n].copy_from_slice(&fk);
        }
        let (fl, gl) = (&f[iters * n..(iters + 1) * n], &g[iters * m..(iters + 1) * m]);
        let ell = blocks
            .iter()
            .zip(&offs)
            .map(|(blk, &o)| {
                let mut out = vec![0.0f32; blk.len()];
                crate::cpu::par_rows(&mut out, m, |r, row| {
                    let fi = fl[o + r];
                    for ((v, x), gj) in row.iter_mut().zip(&blk[r * m..(r + 1) * m]).zip(gl) {
                        *v = x * inv_eps + fi + gj;
                    }
                });
                out
            })
            .collect();
        (ell, f, g)
    }
}
