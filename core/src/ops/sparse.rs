//! Sparse basics over sorted index structures, all deterministic (fixed summation order, no atomics):
//! row gather, segment sum (its adjoint), and a weighted CSR product (neighbour averages, relation mixing).
//! Shaders: `shaders/gather_rows.wgsl`, `shaders/segment_sum.wgsl`. CPU twin: [`cpu`].
//!
//! The index structures ([`SegmentIndex`], [`Csr`]) are built on the host (counting sort, stable) and hold
//! device tensors; the adjoint of every op here is another op here, fed the transposed structure:
//! `gather_rows` ↔ `segment_sum` (through [`SegmentIndex`]), `spmm(A)` ↔ `spmm(Aᵀ)`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg};
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const GATHER: crate::gpu::Shader = shader!("gather_rows");
const SEGMENT: crate::gpu::Shader = shader!("segment_sum");

/// Threads per workgroup of both shaders (one thread per output element).
const WG: u64 = 256;

fn fits_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// A grouping of `len` items into `n` segments, in CSR form: segment `i` holds the items
/// `perm[k]` (or `k` when `perm` is `None`) for `k` in `offsets[i]..offsets[i+1]`.
///
/// Built on the host by [`SegmentIndex::from_indices`] (a stable counting sort of an item → segment list)
/// or [`SegmentIndex::from_offsets`]. `ids` keeps the segment of every item, so the adjoint of a segment
/// sum is a plain [`gather_rows`].
#[derive(Clone, Debug)]
pub struct SegmentIndex {
    /// `[n + 1]` u32, non-decreasing, `offsets[0] = 0`, `offsets[n] = len`.
    pub offsets: Tensor,
    /// `[len]` u32 permutation from sorted position to item, or `None` when items are already grouped.
    pub perm: Option<Tensor>,
    /// `[len]` u32: the segment of each item (the list `from_indices` was given).
    pub ids: Tensor,
    n: usize,
    len: usize,
}

impl SegmentIndex {
    /// Group positions `e` by `idx[e]` (stable: within a segment, items keep their order). Every index must
    /// be `< n`. `perm` is `None` when `idx` is already non-decreasing.
    pub fn from_indices(device: &Device, idx: &[u32], n: usize) -> Result<SegmentIndex> {
        const OP: &str = "SegmentIndex::from_indices";
        let _prof = crate::profile::scope(OP);
        fits_u32(OP, "number of items", idx.len())?;
        fits_u32(OP, "number of segments", n)?;
        let (offsets, perm) = cpu::counting_sort(OP, idx, n)?;
        let sorted = idx.windows(2).all(|w| w[0] <= w[1]);
        Ok(SegmentIndex {
            offsets: Tensor::from_u32(device, offsets, &[n + 1])?,
            perm: if sorted { None } else { Some(Tensor::from_u32(device, perm, &[idx.len()])?) },
            ids: Tensor::from_u32(device, idx.to_vec(), &[idx.len()])?,
            n,
            len: idx.len(),
        })
    }

    /// From CSR offsets (`[n + 1]`, starting at 0, non-decreasing) and an optional permutation of
    /// `0..offsets[n]` (sorted position → item).
    pub fn from_offsets(device: &Device, offsets: &[u32], perm: Option<&[u32]>) -> Result<SegmentIndex> {
        const OP: &str = "SegmentIndex::from_offsets";
        let _prof = crate::profile::scope(OP);
        let (n, len) = cpu::check_offsets(OP, offsets)?;
        let mut ids = vec![0u32; len];
        match perm {
            Some(p) => {
                if p.len() != len {
                    return Err(Error::invalid(OP, format!("perm has {} entries, offsets cover {len} items", p.len())));
                }
                let mut seen = vec![false; len];
                for (k, &item) in p.iter().enumerate() {
                    let slot = seen.get_mut(item as usize).ok_or_else(|| Error::invalid(OP, format!("perm[{k}] = {item} is out of range for {len} items")))?;
                    if *slot {
                        return Err(Error::invalid(OP, format!("perm repeats item {item} (at position {k})")));
                    }
                    *slot = true;
                }
                for i in 0..n {
                    for k in offsets[i] as usize..offsets[i + 1] as usize {
                        ids[p[k] as usize] = i as u32;
                    }
                }
            }
            None => {
                for i in 0..n {
                    ids[offsets[i] as usize..offsets[i + 1] as usize].fill(i as u32);
                }
            }
        }
        Ok(SegmentIndex {
            offsets: Tensor::from_u32(device, offsets.to_vec(), &[n + 1])?,
            perm: match perm {
                Some(p) => Some(Tensor::from_u32(device, p.to_vec(), &[len])?),
                None => None,
            },
            ids: Tensor::from_u32(device, ids, &[len])?,
            n,
            len,
        })
    }

    /// Number of segments.
    pub fn num_segments(&self) -> usize {
        self.n
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn device(&self) -> Device {
        self.offsets.device()
    }
}

/// A sparse `[rows, cols]` matrix in CSR form (entries of a row sorted by column, duplicates kept),
/// built on the host. Its transpose, needed by the backward of [`spmm`], is another `Csr` (see
/// [`Csr::with_transpose`]).
#[derive(Clone, Debug)]
pub struct Csr {
    /// `[rows + 1]` u32.
    pub offsets: Tensor,
    /// `[nnz]` u32 column of each entry.
    pub indices: Tensor,
    /// `[nnz]` f32 value of each entry.
    pub values: Tensor,
    rows: usize,
    cols: usize,
}

impl Csr {
    /// From `(row, col, value)` triplets in any order. Entries are sorted by (row, col), stable; duplicates
    /// are kept as separate entries (their products add up). Indices must be in range, values finite.
    pub fn from_triplets(device: &Device, rows: usize, cols: usize, entries: &[(u32, u32, f32)]) -> Result<Csr> {
        const OP: &str = "Csr::from_triplets";
        let _prof = crate::profile::scope(OP);
        fits_u32(OP, "rows", rows)?;
        fits_u32(OP, "cols", cols)?;
        fits_u32(OP, "nnz", entries.len())?;
        for (k, &(r, c, v)) in entries.iter().enumerate() {
            if r as usize >= rows || c as usize >= cols {
                return Err(Error::invalid(OP, format!("entry {k} at ({r}, {c}) is outside a {rows} x {cols} matrix")));
            }
            if !v.is_finite() {
                return Err(Error::NonFinite { op: OP, detail: format!("entry {k} at ({r}, {c}) has value {v}") });
            }
        }
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&k| (entries[k].0, entries[k].1));
        let mut offsets = vec![0u32; rows + 1];
        for &(r, _, _) in entries {
            offsets[r as usize + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        let indices: Vec<u32> = order.iter().map(|&k| entries[k].1).collect();
        let values: Vec<f32> = order.iter().map(|&k| entries[k].2).collect();
        let nnz = entries.len();
        Ok(Csr {
            offsets: Tensor::from_u32(device, offsets, &[rows + 1])?,
            indices: Tensor::from_u32(device, indices, &[nnz])?,
            values: Tensor::from_f32(device, values, &[nnz])?,
            rows,
            cols,
        })
    }

    /// The matrix and its transpose, from the same triplets.
    pub fn with_transpose(device: &Device, rows: usize, cols: usize, entries: &[(u32, u32, f32)]) -> Result<(Csr, Csr)> {
        let a = Csr::from_triplets(device, rows, cols, entries)?;
        let t: Vec<(u32, u32, f32)> = entries.iter().map(|&(r, c, v)| (c, r, v)).collect();
        Ok((a, Csr::from_triplets(device, cols, rows, &t)?))
    }

    /// The neighbour-mean operator of LoginMEA/RREA's first block, `Y_i = (1/|S_i|) Σ_{j ∈ S_i} X_j` with
    /// `S_i = {i} ∪ {j : (i, j) or (j, i) in pairs}` (pairs are undirected, duplicates and self pairs
    /// collapse), and its transpose. `x⁰ = tanh(spmm(mean, Ent))`.
    pub fn neighbour_mean(device: &Device, n: usize, pairs: &[(u32, u32)]) -> Result<(Csr, Csr)> {
        let mut entries = Vec::new();
        for (i, s) in neighbour_sets("Csr::neighbour_mean", n, pairs)?.iter().enumerate() {
            let w = 1.0 / s.len() as f32;
            entries.extend(s.iter().map(|&j| (i as u32, j, w)));
        }
        Csr::with_transpose(device, n, n, &entries)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
    pub fn device(&self) -> Device {
        self.offsets.device()
    }
}

/// `S_i = {i} ∪ {j : (i, j) or (j, i) in pairs}`, each sorted and without duplicates (pairs are
/// undirected; self pairs collapse). Ids must be `< n`; `op` names the caller in the error.
pub(crate) fn neighbour_sets(op: &'static str, n: usize, pairs: &[(u32, u32)]) -> Result<Vec<Vec<u32>>> {
    let mut nbrs: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![i]).collect();
    for (k, &(a, b)) in pairs.iter().enumerate() {
        if a as usize >= n || b as usize >= n {
            return Err(Error::invalid(op, format!("pair {k} = ({a}, {b}) names an entity outside 0..{n}")));
        }
        nbrs[a as usize].push(b);
        nbrs[b as usize].push(a);
    }
    for s in nbrs.iter_mut() {
        s.sort_unstable();
        s.dedup();
    }
    Ok(nbrs)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    n_src: u32,
    _pad: u32,
}

fn groups(count: usize) -> [u32; 3] {
    grid((count as u64).div_ceil(WG))
}

/// `Y[e] = X[idx[e]]`: `x` is `[n, d]`, `idx` is `[e]` u32, the result `[e, d]`.
/// On the CPU an index `>= n` is an error; on the GPU (where checking would need a readback) it yields a
/// zero row. Backward: [`gather_rows_backward`], `g_X[i] = Σ_{e: idx[e] = i} g_Y[e]`.
pub fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    const OP: &str = "gather_rows";
    let _prof = crate::profile::scope(OP);
    x.expect_dtype(OP, DType::F32)?;
    idx.expect_dtype(OP, DType::U32)?;
    let (n, d) = x.dims2(OP)?;
    if idx.shape().len() != 1 {
        return Err(Error::shape(OP, "the index must be 1-D", &[x.shape(), idx.shape()]));
    }
    let e = idx.len();
    fits_u32(OP, "output elements", e * d)?;
    match common_device(OP, &[x, idx])? {
        Device::Cpu => Tensor::from_f32(&Device::Cpu, cpu::gather_rows(OP, x.cpu_f32(OP)?, n, d, idx.cpu_u32(OP)?)?, &[e, d]),
        Device::Gpu(ctx) => {
            let out = Tensor::gpu_output(&ctx, &[e, d], DType::F32, OP)?;
            let p = Params { rows: e as u32, d: d as u32, n_src: n as u32, _pad: 0 };
            ctx.dispatch(OP, &GATHER, "gather_rows", &[], &p, &[Arg::Read(x.gpu_buf(OP)?), Arg::Read(idx.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)], groups(e * d))?;
            Ok(out)
        }
    }
}

/// Adjoint of [`gather_rows`]: `g_X[i] = Σ_{e: idx[e] = i} g_Y[e]` for `g_y` `[e, d]`, with `seg` built
/// from the same `idx` ([`SegmentIndex::from_indices`]); the result is `[seg.num_segments(), d]`.
/// A segment sum, so deterministic.
pub fn gather_rows_backward(g_y: &Tensor, seg: &SegmentIndex) -> Result<Tensor> {
    segment_sum(g_y, seg)
}

/// `Y[i] = Σ_{k ∈ offsets[i]..offsets[i+1]} X[perm[k]]` (or `X[k]` without `perm`): `x` is `[len, d]`,
/// the result `[n, d]`; empty segments give zero rows. Summation runs in segment order, so results are
/// deterministic. Backward: [`segment_sum_backward`], `g_X[e] = g_Y[ids[e]]` (a gather).
pub fn segment_sum(x: &Tensor, seg: &SegmentIndex) -> Result<Tensor> {
    const OP: &str = "segment_sum";
    let _prof = crate::profile::scope(OP);
    x.expect_dtype(OP, DType::F32)?;
    let (rows, d) = x.dims2(OP)?;
    if rows != seg.len {
        return Err(Error::shape(OP, format!("x must have one row per item ({} items)", seg.len), &[x.shape(), seg.offsets.shape()]));
    }
    let mut ts = vec![x, &seg.offsets];
    ts.extend(seg.perm.as_ref());
    match common_device(OP, &ts)? {
        Device::Cpu => {
            let perm = match &seg.perm {
                Some(p) => Some(p.cpu_u32(OP)?),
                None => None,
            };
            let y = cpu::csr_sum(seg.offsets.cpu_u32(OP)?, perm, None, x.cpu_f32(OP)?, rows, d);
            Tensor::from_f32(&Device::Cpu, y, &[seg.n, d])
        }
        Device::Gpu(ctx) => {
            let offsets = seg.offsets.gpu_buf(OP)?;
            let perm = match &seg.perm {
                Some(p) => p.gpu_buf(OP)?,
                None => offsets,
            };
            launch_csr_sum(OP, &ctx, seg.n, d, rows, offsets, perm, seg.perm.is_some(), None, x.gpu_buf(OP)?)
        }
    }
}

/// Adjoint of [`segment_sum`]: `g_X[e] = g_Y[ids[e]]`, `[len, d]` from `g_y` `[n, d]`.
pub fn segment_sum_backward(g_y: &Tensor, seg: &SegmentIndex) -> Result<Tensor> {
    const OP: &str = "segment_sum_backward";
    let _prof = crate::profile::scope(OP);
    let (n, _) = g_y.dims2(OP)?;
    if n != seg.n {
        return Err(Error::shape(OP, format!("g_y must have one row per segment ({} segments)", seg.n), &[g_y.shape(), seg.offsets.shape()]));
    }
    gather_rows(g_y, &seg.ids)
}

/// `Y = A X` for a CSR matrix `A` (`[m, n]`) and a dense `x` (`[n, d]`): `Y[i] = Σ_k vals[k] X[cols[k]]`
/// over row `i`'s entries in CSR order (deterministic). Rows without entries give zero rows.
/// Backward: `g_X = Aᵀ g_Y` ([`spmm_backward`], given the transposed CSR); A is a constant.
pub fn spmm(a: &Csr, x: &Tensor) -> Result<Tensor> {
    const OP: &str = "spmm";
    let _prof = crate::profile::scope(OP);
    x.expect_dtype(OP, DType::F32)?;
    let (n, d) = x.dims2(OP)?;
    if n != a.cols {
        return Err(Error::shape(OP, format!("x must have {} rows (the matrix is {} x {})", a.cols, a.rows, a.cols), &[x.shape()]));
    }
    match common_device(OP, &[x, &a.offsets, &a.indices, &a.values])? {
        Device::Cpu => {
            let y = cpu::csr_sum(a.offsets.cpu_u32(OP)?, Some(a.indices.cpu_u32(OP)?), Some(a.values.cpu_f32(OP)?), x.cpu_f32(OP)?, n, d);
            Tensor::from_f32(&Device::Cpu, y, &[a.rows, d])
        }
        Device::Gpu(ctx) => launch_csr_sum(OP, &ctx, a.rows, d, n, a.offsets.gpu_buf(OP)?, a.indices.gpu_buf(OP)?, true, Some(a.values.gpu_buf(OP)?), x.gpu_buf(OP)?),
    }
}

/// Multi-head [`spmm`]: `Y[i, c] = Σ_k W[k, c / m] · X[cols[k], c]` over row `i`'s entries in CSR order,
/// where `A`'s pattern is used and its values are not: entry `k` has one weight per head of `m` columns
/// (`w` is `[nnz, H]` in CSR entry order, `x` is `[n, H·m]`). The relation heads of the training-free
/// aligner (`model::labelprop`): each head weights the same edges by its own relation score. Forward only.
pub fn spmm_heads(a: &Csr, w: &Tensor, x: &Tensor, head_width: usize) -> Result<Tensor> {
    const OP: &str = "spmm_heads";
    let _prof = crate::profile::scope(OP);
    x.expect_dtype(OP, DType::F32)?;
    w.expect_dtype(OP, DType::F32)?;
    let (n, d) = x.dims2(OP)?;
    let (nnz, heads) = w.dims2(OP)?;
    if n != a.cols {
        return Err(Error::shape(OP, format!("x must have {} rows (the matrix is {} x {})", a.cols, a.rows, a.cols), &[x.shape()]));
    }
    if head_width == 0 || heads * head_width != d || nnz != a.nnz() {
        return Err(Error::shape(OP, format!("w must be [nnz = {}, heads] and x [n, heads x {head_width}]", a.nnz()), &[w.shape(), x.shape()]));
    }
    match common_device(OP, &[x, w, &a.offsets, &a.indices])? {
        Device::Cpu => {
            let y = cpu::csr_heads(a.offsets.cpu_u32(OP)?, a.indices.cpu_u32(OP)?, w.cpu_f32(OP)?, x.cpu_f32(OP)?, n, d, head_width);
            Tensor::from_f32(&Device::Cpu, y, &[a.rows, d])
        }
        Device::Gpu(ctx) => {
            fits_u32(OP, "output elements", a.rows * d)?;
            let out = Tensor::gpu_output(&ctx, &[a.rows, d], DType::F32, OP)?;
            let p = Params { rows: a.rows as u32, d: d as u32, n_src: n as u32, _pad: 0 };
            ctx.dispatch(
                OP,
                &SEGMENT,
                "segment_sum",
                &[("GATHER", 1.0), ("WEIGHTED", 1.0), ("HEAD_WIDTH", head_width as f64)],
                &p,
                &[Arg::Read(a.offsets.gpu_buf(OP)?), Arg::Read(a.indices.gpu_buf(OP)?), Arg::Read(w.gpu_buf(OP)?), Arg::Read(x.gpu_buf(OP)?), Arg::Write(out.gpu_buf(OP)?)],
                groups(a.rows * d),
            )?;
            Ok(out)
        }
    }
}

/// Backward of [`spmm`]: `g_X = Aᵀ g_Y`, given `a_t` = the transpose of `A` (`[n, m]`).
pub fn spmm_backward(a_t: &Csr, g_y: &Tensor) -> Result<Tensor> {
    spmm(a_t, g_y)
}

#[allow(clippy::too_many_arguments)]
fn launch_csr_sum(
    op: &'static str,
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    rows: usize,
    d: usize,
    n_src: usize,
    offsets: &crate::gpu::GpuBuffer,
    cols: &crate::gpu::GpuBuffer,
    gather: bool,
    vals: Option<&crate::gpu::GpuBuffer>,
    x: &crate::gpu::GpuBuffer,
) -> Result<Tensor> {
    fits_u32(op, "output elements", rows * d)?;
    let out = Tensor::gpu_output(ctx, &[rows, d], DType::F32, op)?;
    let p = Params { rows: rows as u32, d: d as u32, n_src: n_src as u32, _pad: 0 };
    let weighted = vals.is_some();
    ctx.dispatch(
        op,
        &SEGMENT,
        "segment_sum",
        &[("GATHER", gather as u32 as f64), ("WEIGHTED", weighted as u32 as f64)],
        &p,
        &[Arg::Read(offsets), Arg::Read(cols), Arg::Read(vals.unwrap_or(x)), Arg::Read(x), Arg::Write(out.gpu_buf(op)?)],
        groups(rows * d),
    )?;
    Ok(out)
}

/// Tape wrappers.
pub mod ad {
    use super::{Csr, SegmentIndex};
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;

    /// `Y[e] = X[seg.ids[e]]` (gather by the index `seg` was built from); backward is the segment sum.
    pub fn gather_rows(tape: &Tape, x: &Var, seg: &SegmentIndex) -> Result<Var> {
        let y = super::gather_rows(&x.value, &seg.ids)?;
        let s = seg.clone();
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::gather_rows_backward(g, &s)?)])))
    }

    /// `Y[i] = Σ_{e in segment i} X[e]`; backward gathers `g_Y` back to the items.
    pub fn segment_sum(tape: &Tape, x: &Var, seg: &SegmentIndex) -> Result<Var> {
        let y = super::segment_sum(&x.value, seg)?;
        let s = seg.clone();
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::segment_sum_backward(g, &s)?)])))
    }

    /// `Y = A X` with a constant sparse `A`; `a_t` is its transpose (for `g_X = Aᵀ g_Y`).
    pub fn spmm(tape: &Tape, a: &Csr, a_t: &Csr, x: &Var) -> Result<Var> {
        let y = super::spmm(a, &x.value)?;
        let at = a_t.clone();
        Ok(tape.record(y, &[x], move |g| Ok(vec![Some(super::spmm_backward(&at, g)?)])))
    }
}

/// The CPU twin: the same formulas and summation order as the shaders, on slices.
pub mod cpu {
    use crate::error::{Error, Result};

    /// Stable counting sort of item → segment indices: `(offsets [n + 1], perm [len])`.
    pub fn counting_sort(op: &'static str, idx: &[u32], n: usize) -> Result<(Vec<u32>, Vec<u32>)> {
        let mut offsets = vec![0u32; n + 1];
        for (e, &i) in idx.iter().enumerate() {
            if i as usize >= n {
                return Err(Error::invalid(op, format!("index {i} at position {e} is out of range for {n} segments")));
            }
            offsets[i as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut next: Vec<u32> = offsets[..n].to_vec();
        let mut perm = vec![0u32; idx.len()];
        for (e, &i) in idx.iter().enumerate() {
            perm[next[i as usize] as usize] = e as u32;
            next[i as usize] += 1;
        }
        Ok((offsets, perm))
    }

    /// Checks CSR offsets; returns `(segments, items)`.
    pub fn check_offsets(op: &'static str, offsets: &[u32]) -> Result<(usize, usize)> {
        let Some((&last, _)) = offsets.split_last() else {
            return Err(Error::invalid(op, "offsets must have at least one entry (n + 1 for n segments)"));
        };
        if offsets[0] != 0 {
            return Err(Error::invalid(op, format!("offsets[0] must be 0, got {}", offsets[0])));
        }
        if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
            return Err(Error::invalid(op, format!("offsets decrease at {i}: {} > {}", offsets[i], offsets[i + 1])));
        }
        Ok((offsets.len() - 1, last as usize))
    }

    /// `Y[e] = X[idx[e]]` for `x` `[n, d]`; an index `>= n` is an error.
    pub fn gather_rows(op: &'static str, x: &[f32], n: usize, d: usize, idx: &[u32]) -> Result<Vec<f32>> {
        let mut y = Vec::with_capacity(idx.len() * d);
        for (e, &i) in idx.iter().enumerate() {
            if i as usize >= n {
                return Err(Error::invalid(op, format!("index {i} at position {e} is out of range for {n} rows")));
            }
            y.extend_from_slice(&x[i as usize * d..(i as usize + 1) * d]);
        }
        Ok(y)
    }

    /// `Y[i, c] = Σ_k w[k, c / m] · X[cols[k], c]` in k order (out-of-range sources contribute nothing).
    pub fn csr_heads(offsets: &[u32], cols: &[u32], w: &[f32], x: &[f32], n_src: usize, d: usize, m: usize) -> Vec<f32> {
        let rows = offsets.len().saturating_sub(1);
        let heads = d / m;
        let mut y = vec![0.0f32; rows * d];
        crate::cpu::par_rows(&mut y, d, |i, row| {
            for k in offsets[i] as usize..offsets[i + 1] as usize {
                let src = cols[k] as usize;
                if src >= n_src {
                    continue;
                }
                let wk = &w[k * heads..(k + 1) * heads];
                for ((o, xr), &wh) in row.chunks_exact_mut(m).zip(x[src * d..(src + 1) * d].chunks_exact(m)).zip(wk) {
                    o.iter_mut().zip(xr).for_each(|(o, &v)| *o += wh * v);
                }
            }
        });
        y
    }

    /// `Y[i] = Σ_{k ∈ offsets[i]..offsets[i+1]} vals[k] · X[cols[k]]` (cols = identity and vals = 1 when
    /// absent), summed in k order. Out-of-range sources contribute nothing (as on the GPU).
    pub fn csr_sum(offsets: &[u32], cols: Option<&[u32]>, vals: Option<&[f32]>, x: &[f32], n_src: usize, d: usize) -> Vec<f32> {
        let rows = offsets.len().saturating_sub(1);
        let mut y = vec![0.0f32; rows * d];
        crate::cpu::par_rows(&mut y, d, |i, row| {
            for k in offsets[i] as usize..offsets[i + 1] as usize {
                let src = cols.map_or(k, |c| c[k] as usize);
                if src >= n_src {
                    continue;
                }
                let w = vals.map_or(1.0, |v| v[k]);
                let xr = &x[src * d..(src + 1) * d];
                if vals.is_some() {
                    row.iter_mut().zip(xr).for_each(|(o, &v)| *o += w * v);
                } else {
                    row.iter_mut().zip(xr).for_each(|(o, &v)| *o += v);
                }
            }
        });
        y
    }
}
