//! Evaluation kernels (mmea-spec §2, §7 ops 22–25): tiled similarity, row and column top-k (k ≤ 16), CSLS,
//! rank counting, row/column argmax and mutual nearest neighbours, and the H@k / MR / MRR metrics.
//! Shaders: `shaders/topk.wgsl`, `shaders/rank.wgsl`. CPU twin: [`cpu`].
//!
//! All of these are evaluation / iterative-learning ops: **no backward exists** for any of them (they are
//! not differentiable, or are only ever applied to detached scores).
//!
//! Score matrices are [`TiledMatrix`] row blocks so that `n × n` test matrices larger than one storage
//! binding work. Ordering is total and deterministic: `(v, i)` beats `(w, j)` iff `v > w`, or `v == w` and
//! `i < j` (ties go to the lower index). Scores must be finite (no NaN or ±∞).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, MAX_GROUPS_PER_DIM};
use crate::ops::matmul::matmul_ex;
use crate::ops::rows::slice_rows;
use crate::ops::sinkhorn::{chunk_plan, TiledMatrix};
use crate::shader;
use crate::tensor::{DType, Device, Tensor};

const TOPK: crate::gpu::Shader = shader!("topk");
const RANK: crate::gpu::Shader = shader!("rank");
const SELECT: crate::gpu::Shader = shader!("topk_select");

/// Largest k of the top-k kernels.
pub const MAX_K: usize = 16;
const COL_GROUP: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    row_off: u32,
    k: u32,
    chunk: u32,
    chunk_off: u32,
    nchunks: u32,
    inv_k: f32,
}

fn params(rows: usize, cols: usize, row_off: usize, k: usize) -> Params {
    Params { rows: rows as u32, cols: cols as u32, row_off: row_off as u32, k: k as u32, chunk: 1, chunk_off: 0, nchunks: 0, inv_k: if k == 0 { 0.0 } else { 1.0 / k as f32 } }
}

fn col_groups(op: &'static str, cols: usize, chunks: usize) -> Result<[u32; 3]> {
    let x = cols.div_ceil(COL_GROUP);
    if x > MAX_GROUPS_PER_DIM as usize || chunks > MAX_GROUPS_PER_DIM as usize {
        return Err(Error::TooManyWorkgroups { op, groups: x.max(chunks) as u64, limit: MAX_GROUPS_PER_DIM });
    }
    Ok([x as u32, chunks as u32, 1])
}

/// Tiled similarity `S = P Qᵀ` (`P [n, d]`, `Q [m, d]`): row blocks of `block_rows` rows of P, each one
/// `ops::matmul_ex(P_block, Q, tb = true)`. With unit rows this is the cosine; `1 − ‖p − q‖² / 2` ranks the
/// same. No backward (evaluation only).
pub fn similarity_tiles(p: &Tensor, q: &Tensor, block_rows: usize) -> Result<TiledMatrix> {
    const OP: &str = "similarity_tiles";
    let _prof = crate::profile::scope(OP);
    let (n, d) = p.dims2(OP)?;
    let (m, d2) = q.dims2(OP)?;
    if d != d2 {
        return Err(Error::shape(OP, "P and Q must have the same width", &[p.shape(), q.shape()]));
    }
    if block_rows == 0 {
        return Err(Error::invalid(OP, "block_rows must be at least 1"));
    }
    tiles(std::slice::from_ref(p), std::slice::from_ref(q), n, m, block_rows)
}

/// [`similarity_tiles`] of column-blocked embeddings: `S = Σ_b P_b Q_bᵀ`, where `P = [P_1 | P_2 | …]` and
/// `Q = [Q_1 | …]` are given as their column blocks (each `[n, d_b]` / `[m, d_b]`). No tensor wider than
/// one block is formed on a GPU, so a joint embedding of any width stays within the per-binding limit;
/// the sum runs in block order (deterministic). On the CPU the blocks are concatenated and multiplied
/// once (no binding limit there; equal to rounding).
pub fn similarity_tiles_blocks(p: &[Tensor], q: &[Tensor], block_rows: usize) -> Result<TiledMatrix> {
    const OP: &str = "similarity_tiles_blocks";
    let _prof = crate::profile::scope(OP);
    if p.is_empty() || p.len() != q.len() {
        return Err(Error::invalid(OP, format!("P and Q need the same non-zero number of column blocks (got {} and {})", p.len(), q.len())));
    }
    if p.len() == 1 {
        return similarity_tiles(&p[0], &q[0], block_rows);
    }
    let (n, _) = p[0].dims2(OP)?;
    let (m, _) = q[0].dims2(OP)?;
    for (a, b) in p.iter().zip(q) {
        let ((na, da), (mb, db)) = (a.dims2(OP)?, b.dims2(OP)?);
        if na != n || mb != m || da != db {
            return Err(Error::shape(OP, "every block of P must be [n, d_b] and the matching block of Q [m, d_b]", &[a.shape(), b.shape()]));
        }
    }
    if block_rows == 0 {
        return Err(Error::invalid(OP, "block_rows must be at least 1"));
    }
    if matches!(p[0].device(), Device::Cpu) {
        // On the host the concatenation is cheap (n × Σd_b floats), and one product over the whole
        // width runs faster than a product per block plus the sums of the tiles.
        let pr: Vec<&Tensor> = p.iter().collect();
        let qr: Vec<&Tensor> = q.iter().collect();
        return similarity_tiles(&crate::ops::concat_cols(&pr)?, &crate::ops::concat_cols(&qr)?, block_rows);
    }
    tiles(p, q, n, m, block_rows)
}

/// The row tiles of `Σ_b P_b Q_bᵀ` (`n × m`, checked by the callers), `block_rows` rows each, the blocks
/// summed in order.
fn tiles(p: &[Tensor], q: &[Tensor], n: usize, m: usize, block_rows: usize) -> Result<TiledMatrix> {
    let mut blocks = Vec::new();
    let mut r0 = 0;
    while r0 < n {
        let r1 = n.min(r0 + block_rows);
        let mut acc: Option<Tensor> = None;
        for (pb, qb) in p.iter().zip(q) {
            let part = matmul_ex(&slice_rows(pb, r0, r1 - r0)?, qb, None, false, true, 1.0)?;
            acc = Some(match acc {
                None => part,
                Some(a) => crate::ops::add(&a, &part)?,
            });
        }
        blocks.extend(acc);
        r0 = r1;
    }
    Ok(TiledMatrix { blocks, rows: n, cols: m })
}

/// The k best entries of each row or column: `values [len, k]` (best first) and their column (for rows)
/// or row (for columns) indices `indices [len, k]` (u32).
#[derive(Clone, Debug)]
pub struct TopK {
    pub values: Tensor,
    pub indices: Tensor,
}

fn check_k(op: &'static str, k: usize, len: usize, what: &str) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(Error::invalid(op, format!("k must be in 1..={MAX_K}, got {k}")));
    }
    if k > len {
        return Err(Error::invalid(op, format!("k = {k} is larger than the {what} length {len}")));
    }
    Ok(())
}

enum Out {
    List,
    Mean,
}

fn rows_impl(op: &'static str, s: &TiledMatrix, k: usize, out: Out) -> Result<(Tensor, Option<Tensor>)> {
    s.expect_f32(op)?;
    check_k(op, k, s.cols, "row")?;
    let (n, m) = (s.rows, s.cols);
    match s.device() {
        Device::Cpu => {
            let lists = cpu::topk_rows(&s.cpu_blocks(op)?, m, k);
            match out {
                Out::List => {
                    let (v, i) = cpu::split(&lists);
                    Ok((Tensor::from_f32(&Device::Cpu, v, &[n, k])?, Some(Tensor::from_u32(&Device::Cpu, i, &[n, k])?)))
                }
                Out::Mean => Ok((Tensor::from_f32(&Device::Cpu, lists.iter().map(|l| cpu::mean(l, k)).collect(), &[n])?, None)),
            }
        }
        Device::Gpu(ctx) => {
            let offs = s.row_offsets();
            match out {
                Out::List => {
                    let vals = Tensor::gpu_output(&ctx, &[n, k], DType::F32, op)?;
                    let idx = Tensor::gpu_output(&ctx, &[n, k], DType::U32, op)?;
                    for (b, blk) in s.blocks.iter().enumerate() {
                        let rows = blk.shape()[0];
                        ctx.dispatch(
                            op,
                            &TOPK,
                            "row_topk",
                            &[],
                            &params(rows, m, offs[b], k),
                            &[Arg::Read(blk.gpu_buf(op)?), Arg::Write(vals.gpu_buf(op)?), Arg::Write(idx.gpu_buf(op)?)],
                            grid(rows as u64),
                        )?;
                    }
                    Ok((vals, Some(idx)))
                }
                Out::Mean => {
                    let mean = Tensor::gpu_output(&ctx, &[n], DType::F32, op)?;
                    for (b, blk) in s.blocks.iter().enumerate() {
                        let rows = blk.shape()[0];
                        ctx.dispatch(
                            op,
                            &TOPK,
                            "row_topk_mean",
                            &[],
                            &params(rows, m, offs[b], k),
                            &[Arg::Read(blk.gpu_buf(op)?), Arg::Write(mean.gpu_buf(op)?)],
                            grid(rows as u64),
                        )?;
                    }
                    Ok((mean, None))
                }
            }
        }
    }
}

fn cols_impl(op: &'static str, s: &TiledMatrix, k: usize, out: Out) -> Result<(Tensor, Option<Tensor>)> {
    s.expect_f32(op)?;
    check_k(op, k, s.rows, "column")?;
    let m = s.cols;
    match s.device() {
        Device::Cpu => {
            let lists = cpu::topk_cols(&s.cpu_blocks(op)?, m, k);
            match out {
                Out::List => {
                    let (v, i) = cpu::split(&lists);
                    Ok((Tensor::from_f32(&Device::Cpu, v, &[m, k])?, Some(Tensor::from_u32(&Device::Cpu, i, &[m, k])?)))
                }
                Out::Mean => Ok((Tensor::from_f32(&Device::Cpu, lists.iter().map(|l| cpu::mean(l, k)).collect(), &[m])?, None)),
            }
        }
        Device::Gpu(ctx) => {
            let offs = s.row_offsets();
            let plan = chunk_plan(&s.block_rows(), (m * k * 4) as u64);
            let pv = ctx.alloc(plan.total * m * k, "top-k partials")?;
            let pi = ctx.alloc(plan.total * m * k, "top-k partial indices")?;
            for (b, blk) in s.blocks.iter().enumerate() {
                let rows = blk.shape()[0];
                let p = Params { chunk: plan.chunk as u32, chunk_off: plan.first[b] as u32, nchunks: plan.total as u32, ..params(rows, m, offs[b], k) };
                ctx.dispatch(
                    op,
                    &TOPK,
                    "col_topk_partial",
                    &[],
                    &p,
                    &[Arg::Read(blk.gpu_buf(op)?), Arg::Write(&pv), Arg::Write(&pi)],
                    col_groups(op, m, rows.div_ceil(plan.chunk))?,
                )?;
            }
            let p = Params { nchunks: plan.total as u32, ..params(0, m, 0, k) };
            let groups = col_groups(op, m, 1)?;
            match out {
                Out::List => {
                    let vals = Tensor::gpu_output(&ctx, &[m, k], DType::F32, op)?;
                    let idx = Tensor::gpu_output(&ctx, &[m, k], DType::U32, op)?;
                    ctx.dispatch(op, &TOPK, "col_topk_merge", &[], &p, &[Arg::Read(&pv), Arg::Read(&pi), Arg::Write(vals.gpu_buf(op)?), Arg::Write(idx.gpu_buf(op)?)], groups)?;
                    Ok((vals, Some(idx)))
                }
                Out::Mean => {
                    let mean = Tensor::gpu_output(&ctx, &[m], DType::F32, op)?;
                    ctx.dispatch(op, &TOPK, "col_topk_merge_mean", &[], &p, &[Arg::Read(&pv), Arg::Read(&pi), Arg::Write(mean.gpu_buf(op)?)], groups)?;
                    Ok((mean, None))
                }
            }
        }
    }
}

fn list_out(op: &'static str, r: (Tensor, Option<Tensor>)) -> Result<TopK> {
    match r {
        (values, Some(indices)) => Ok(TopK { values, indices }),
        _ => Err(Error::invalid(op, "internal: top-k produced no indices")),
    }
}

/// Per row, the `k` largest entries (`1 ≤ k ≤ min(16, cols)`), best first, ties to the lower column.
/// No backward.
pub fn topk_rows(s: &TiledMatrix, k: usize) -> Result<TopK> {
    list_out("topk_rows", rows_impl("topk_rows", s, k, Out::List)?)
}

/// Per row, the `k` largest entries for any `1 ≤ k ≤ cols` (the sparse decodings keep hundreds), in
/// **column order**, not sorted by score; the kept set breaks ties to the lower column like [`topk_rows`].
/// Selection by bisection on the scores' bits (`shaders/topk_select.wgsl`). No backward.
pub fn topk_select_rows(s: &TiledMatrix, k: usize) -> Result<TopK> {
    const OP: &str = "topk_select_rows";
    let _prof = crate::profile::scope(OP);
    s.expect_f32(OP)?;
    let (n, m) = (s.rows, s.cols);
    if k == 0 || k > m {
        return Err(Error::invalid(OP, format!("k must be in 1..={m} (the row length), got {k}")));
    }
    match s.device() {
        Device::Cpu => {
            let (v, i) = cpu::select_rows(&s.cpu_blocks(OP)?, m, k);
            Ok(TopK { values: Tensor::from_f32(&Device::Cpu, v, &[n, k])?, indices: Tensor::from_u32(&Device::Cpu, i, &[n, k])? })
        }
        Device::Gpu(ctx) => {
            let vals = Tensor::gpu_output(&ctx, &[n, k], DType::F32, OP)?;
            let idx = Tensor::gpu_output(&ctx, &[n, k], DType::U32, OP)?;
            let offs = s.row_offsets();
            for (b, blk) in s.blocks.iter().enumerate() {
                let rows = blk.shape()[0];
                let mut p = params(rows, m, offs[b], k);
                p.chunk = m.div_ceil(256) as u32;
                ctx.dispatch(OP, &SELECT, "row_select", &[], &p, &[Arg::Read(blk.gpu_buf(OP)?), Arg::Write(vals.gpu_buf(OP)?), Arg::Write(idx.gpu_buf(OP)?)], grid(rows as u64))?;
            }
            Ok(TopK { values: vals, indices: idx })
        }
    }
}

/// Per column, over all row blocks, the `k` largest entries (`1 ≤ k ≤ min(16, rows)`), best first, ties to
/// the lower row: per-chunk top-k lists, then a merge per column. No backward.
pub fn topk_cols(s: &TiledMatrix, k: usize) -> Result<TopK> {
    list_out("topk_cols", cols_impl("topk_cols", s, k, Out::List)?)
}

/// `r_L(i)`: mean of the k largest entries of each row, `[rows]`. No backward.
pub fn topk_mean_rows(s: &TiledMatrix, k: usize) -> Result<Tensor> {
    Ok(rows_impl("topk_mean_rows", s, k, Out::Mean)?.0)
}

/// `r_R(j)`: mean of the k largest entries of each column, `[cols]`. No backward.
pub fn topk_mean_cols(s: &TiledMatrix, k: usize) -> Result<Tensor> {
    Ok(cols_impl("topk_mean_cols", s, k, Out::Mean)?.0)
}

/// CSLS rescoring (spec §2 step 4): `CSLS_ij = 2 S_ij − r_L(i) − r_R(j)` with `r_L`, `r_R` the means of the
/// k largest entries per row and per column (k = 3 in the published scripts). Tiled like `s`. No backward.
pub fn csls(s: &TiledMatrix, k: usize) -> Result<TiledMatrix> {
    const OP: &str = "csls";
    let _prof = crate::profile::scope(OP);
    let rl = topk_mean_rows(s, k)?;
    let rr = topk_mean_cols(s, k)?;
    let m = s.cols;
    let offs = s.row_offsets();
    let mut blocks = Vec::with_capacity(s.blocks.len());
    for (b, blk) in s.blocks.iter().enumerate() {
        let rows = blk.shape()[0];
        blocks.push(match blk.device() {
            Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::csls_block(blk.cpu_f32(OP)?, m, &rl.cpu_f32(OP)?[offs[b]..offs[b] + rows], rr.cpu_f32(OP)?), blk.shape())?,
            Device::Gpu(ctx) => {
                let out = Tensor::gpu_output(&ctx, blk.shape(), DType::F32, OP)?;
                ctx.dispatch(
                    OP,
                    &TOPK,
                    "csls_apply",
                    &[],
                    &params(rows, m, offs[b], 0),
                    &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(rl.gpu_buf(OP)?), Arg::Read(rr.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)],
                    grid(((rows * m) as u64).div_ceil(256)),
                )?;
                out
            }
        });
    }
    Ok(TiledMatrix { blocks, rows: s.rows, cols: m })
}

/// Column index of the largest entry of each row (`[rows]` u32, ties to the lower index); top-k with k = 1.
/// With a distance matrix, pass `−D` (argmin). No backward.
pub fn argmax_rows(s: &TiledMatrix) -> Result<Tensor> {
    topk_rows(s, 1)?.indices.reshape(&[s.rows])
}

/// Row index of the largest entry of each column (`[cols]` u32, ties to the lower index). No backward.
pub fn argmax_cols(s: &TiledMatrix) -> Result<Tensor> {
    topk_cols(s, 1)?.indices.reshape(&[s.cols])
}

/// Mutual nearest neighbours (spec §3 step 1): the pairs `(i, pl[i])` with `pr[pl[i]] == i`, in increasing
/// `i`, given `pl = argmax_rows` and `pr = argmax_cols` read back to the host.
pub fn mutual_nn(row_argmax: &[u32], col_argmax: &[u32]) -> Vec<(u32, u32)> {
    row_argmax.iter().enumerate().filter(|&(i, &j)| col_argmax.get(j as usize) == Some(&(i as u32))).map(|(i, &j)| (i as u32, j)).collect()
}

/// Ranks of the gold pairs (spec §2 step 5, 7): `l2r[i] = #{j : S_ij > S_ii}`, `r2l[j] = #{i : S_ij > S_jj}`,
/// 0-based, ties not counted.
#[derive(Clone, Debug)]
pub struct Ranks {
    pub l2r: Tensor,
    pub r2l: Tensor,
}

/// Rank counting on a square score matrix with the gold on the diagonal (one O(n²) pass per direction, no
/// sort), u32 outputs. No backward.
pub fn rank_counts(s: &TiledMatrix) -> Result<Ranks> {
    const OP: &str = "rank_counts";
    let _prof = crate::profile::scope(OP);
    s.expect_f32(OP)?;
    let n = s.rows;
    if s.cols != n {
        return Err(Error::shape(OP, "rank counting needs a square matrix (gold on the diagonal)", &[&[s.rows, s.cols]]));
    }
    match s.device() {
        Device::Cpu => {
            let (l2r, r2l) = cpu::rank_counts(&s.cpu_blocks(OP)?, n);
            Ok(Ranks { l2r: Tensor::from_u32(&Device::Cpu, l2r, &[n])?, r2l: Tensor::from_u32(&Device::Cpu, r2l, &[n])? })
        }
        Device::Gpu(ctx) => {
            let offs = s.row_offsets();
            let l2r = Tensor::gpu_output(&ctx, &[n], DType::U32, OP)?;
            let r2l = Tensor::gpu_output(&ctx, &[n], DType::U32, OP)?;
            let diag = ctx.alloc(n, "rank diagonal")?;
            let plan = chunk_plan(&s.block_rows(), (n * 4) as u64);
            let rp = |rows: usize, row_off: usize, chunk_off: usize| RankParams {
                rows: rows as u32,
                cols: n as u32,
                row_off: row_off as u32,
                chunk: plan.chunk as u32,
                chunk_off: chunk_off as u32,
                nchunks: plan.total as u32,
                _pad: [0; 2],
            };
            for (b, blk) in s.blocks.iter().enumerate() {
                let rows = blk.shape()[0];
                ctx.dispatch(
                    OP,
                    &RANK,
                    "rank_rows",
                    &[],
                    &rp(rows, offs[b], 0),
                    &[Arg::Read(blk.gpu_buf(OP)?), Arg::Write(l2r.gpu_buf(OP)?), Arg::Write(&diag)],
                    grid(rows as u64),
                )?;
            }
            let part = ctx.alloc(plan.total * n, "rank partials")?;
            for (b, blk) in s.blocks.iter().enumerate() {
                let rows = blk.shape()[0];
                ctx.dispatch(
                    OP,
                    &RANK,
                    "rank_cols_partial",
                    &[],
                    &rp(rows, offs[b], plan.first[b]),
                    &[Arg::Read(blk.gpu_buf(OP)?), Arg::Read(&diag), Arg::Write(&part)],
                    col_groups(OP, n, rows.div_ceil(plan.chunk))?,
                )?;
            }
            ctx.dispatch(OP, &RANK, "rank_cols_combine", &[], &rp(0, 0, 0), &[Arg::Read(&part), Arg::Write(r2l.gpu_buf(OP)?)], [n.div_ceil(256) as u32, 1, 1])?;
            Ok(Ranks { l2r, r2l })
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RankParams {
    rows: u32,
    cols: u32,
    row_off: u32,
    chunk: u32,
    chunk_off: u32,
    nchunks: u32,
    _pad: [u32; 2],
}

/// Alignment metrics over 0-based gold ranks (spec §2 step 5).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// `mean[rank < 1]`, `mean[rank < 10]`, `mean[rank < 50]`.
    pub hits1: f64,
    pub hits10: f64,
    pub hits50: f64,
    /// `mean(1 / (rank + 1))`.
    pub mrr: f64,
    /// `mean(rank + 1)`.
    pub mr: f64,
    /// Number of ranks averaged (all fields are 0 when it is 0).
    pub count: usize,
}

/// H@1/10/50, MRR and MR of 0-based ranks (on the host). Empty input gives all zeros.
pub fn metrics(ranks: &[u32]) -> Metrics {
    let n = ranks.len();
    if n == 0 {
        return Metrics { hits1: 0.0, hits10: 0.0, hits50: 0.0, mrr: 0.0, mr: 0.0, count: 0 };
    }
    let nf = n as f64;
    let hits = |k: u32| ranks.iter().filter(|&&r| r < k).count() as f64 / nf;
    Metrics {
        hits1: hits(1),
        hits10: hits(10),
        hits50: hits(50),
        mrr: ranks.iter().map(|&r| 1.0 / (r as f64 + 1.0)).sum::<f64>() / nf,
        mr: ranks.iter().map(|&r| r as f64 + 1.0).sum::<f64>() / nf,
        count: n,
    }
}

/// The CPU twin: same orderings and the same summation order for means as the shaders.
pub mod cpu {
    /// `(v, i)` beats `(w, j)` iff `v > w`, or `v == w` and `i < j`.
    pub fn better(a: (f32, u32), b: (f32, u32)) -> bool {
        a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
    }

    /// Insert into a best-first list of at most `k` entries if it makes the cut.
    pub fn insert(list: &mut Vec<(f32, u32)>, k: usize, x: (f32, u32)) {
        if list.len() == k && !better(x, list[k - 1]) {
            return;
        }
        let pos = list.iter().position(|&y| better(x, y)).unwrap_or(list.len());
        list.insert(pos, x);
        list.truncate(k);
    }

    pub fn topk_rows(blocks: &[&[f32]], cols: usize, k: usize) -> Vec<Vec<(f32, u32)>> {
        let mut out = Vec::new();
        for blk in blocks {
            out.extend(crate::cpu::par_map(blk.len() / cols, |r| {
                let mut l = Vec::with_capacity(k + 1);
                for (j, &v) in blk[r * cols..(r + 1) * cols].iter().enumerate() {
                    insert(&mut l, k, (v, j as u32));
                }
                l
            }));
        }
        out
    }

    /// Twin of `topk_select.wgsl`: the `k` best of each row (ties to the lower column), in column order.
    pub fn select_rows(blocks: &[&[f32]], cols: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
        let mut rows = Vec::new();
        for blk in blocks {
            rows.extend(crate::cpu::par_map(blk.len() / cols, |r| {
                let row = &blk[r * cols..(r + 1) * cols];
                // The k-th largest value t, then every entry above t and the first entries equal to t.
                let mut scratch = row.to_vec();
                // Scores are not NaN; −0 and +0 compare equal (as in the shader).
                let cmp = |a: &f32, b: &f32| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
                let t = *scratch.select_nth_unstable_by(k - 1, |a, b| cmp(b, a)).1;
                let above = row.iter().filter(|v| cmp(v, &t).is_gt()).count();
                let mut ties = k - above;
                let mut kept = Vec::with_capacity(k);
                for (j, v) in row.iter().enumerate() {
                    match cmp(v, &t) {
                        std::cmp::Ordering::Greater => kept.push(j as u32),
                        std::cmp::Ordering::Equal if ties > 0 => {
                            ties -= 1;
                            kept.push(j as u32);
                        }
                        _ => {}
                    }
                }
                kept
            }));
        }
        let mut v = Vec::with_capacity(rows.len() * k);
        for (row, kept) in blocks.iter().flat_map(|b| b.chunks(cols)).zip(&rows) {
            v.extend(kept.iter().map(|&j| row[j as usize]));
        }
        (v, rows.concat())
    }

    /// Per column, over chunks of rows in parallel; each chunk's lists are then inserted in row order.
    /// `better` is a total order (value, then lower index), so the k best are the same set in the same
    /// order as a single sweep would find.
    pub fn topk_cols(blocks: &[&[f32]], cols: usize, k: usize) -> Vec<Vec<(f32, u32)>> {
        let rows: Vec<&[f32]> = blocks.iter().flat_map(|b| b.chunks(cols)).collect();
        let chunks: Vec<usize> = (0..rows.len()).step_by(RANK_CHUNK).collect();
        let parts = crate::cpu::par_map_items(chunks, |r0| {
            let mut lists = vec![Vec::with_capacity(k + 1); cols];
            for (i, row) in rows.iter().enumerate().skip(r0).take(RANK_CHUNK) {
                for (l, &v) in lists.iter_mut().zip(row.iter()) {
                    insert(l, k, (v, i as u32));
                }
            }
            lists
        });
        let mut parts = parts.into_iter();
        let mut lists = parts.next().unwrap_or_else(|| vec![Vec::new(); cols]);
        for p in parts {
            for (l, q) in lists.iter_mut().zip(p) {
                for x in q {
                    insert(l, k, x);
                }
            }
        }
        lists
    }

    /// Rows per chunk of the column-wise CPU passes (top-k of columns, rank counts).
    const RANK_CHUNK: usize = 512;

    /// Flatten lists into `(values, indices)`.
    pub fn split(lists: &[Vec<(f32, u32)>]) -> (Vec<f32>, Vec<u32>) {
        lists.iter().flatten().copied().unzip()
    }

    /// `(Σ_t v_t) · (1/k)`, summed best first.
    pub fn mean(list: &[(f32, u32)], k: usize) -> f32 {
        list.iter().fold(0.0f32, |s, &(v, _)| s + v) * (1.0 / k as f32)
    }

    /// `2 S_ij − r_L(i) − r_R(j)` on one block (`r_l` holds the block's rows).
    pub fn csls_block(s: &[f32], cols: usize, r_l: &[f32], r_r: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; s.len()];
        crate::cpu::par_rows(&mut out, cols, |i, row| {
            for ((o, &v), &rr) in row.iter_mut().zip(&s[i * cols..(i + 1) * cols]).zip(r_r) {
                *o = (2.0 * v - r_l[i]) - rr;
            }
        });
        out
    }

    /// `(l2r, r2l)` counts of strictly better candidates on a square `n × n` matrix.
    pub fn rank_counts(blocks: &[&[f32]], n: usize) -> (Vec<u32>, Vec<u32>) {
        let rows: Vec<&[f32]> = blocks.iter().flat_map(|b| b.chunks(n)).collect();
        let diag: Vec<f32> = rows.iter().enumerate().map(|(i, r)| r[i]).collect();
        let l2r = crate::cpu::par_map(rows.len(), |i| rows[i].iter().filter(|&&v| v > diag[i]).count() as u32);
        // Integer counts: chunks in parallel, summed in any order with the same result.
        let chunks: Vec<usize> = (0..rows.len()).step_by(RANK_CHUNK).collect();
        let parts = crate::cpu::par_map_items(chunks, |r0| {
            let mut c = vec![0u32; n];
            for r in rows.iter().skip(r0).take(RANK_CHUNK) {
                for (c, (&v, &d)) in c.iter_mut().zip(r.iter().zip(&diag)) {
                    *c += (v > d) as u32;
                }
            }
            c
        });
        let mut r2l = vec![0u32; n];
        for p in parts {
            for (c, v) in r2l.iter_mut().zip(p) {
                *c += v;
            }
        }
        (l2r, r2l)
    }
}
