//! Alignment of whole KGs (not only test pairs): for every source entity, its top-k candidates among all
//! target entities, by cosine of the joint embedding, optionally re-ranked by sparse Sinkhorn over the
//! kept candidates (LightEA style).
//!
//! The joint embedding stays in `[N, d]` column blocks: each block's rows are scaled by the inverse norm
//! of the **joint** row, so `Σ_b P_b Q_bᵀ` is the cosine matrix (`ops::eval::similarity_tiles_blocks`), and
//! the score matrix is formed one row chunk at a time, each within one 128 MiB binding. Nothing of size `N × d·blocks` or `N₁ × N₂` is ever allocated,
//! so memory stays bounded for 100k entities.

use crate::error::{Error, Result};
use crate::gpu::BROWSER_BINDING_LIMIT;
use crate::ops::eval::{similarity_tiles_blocks, topk_rows, topk_select_rows, MAX_K};
use crate::ops::sinkhorn::{sinkhorn_topk_indexed, TopkIndex};
use crate::ops::{add, gather_rows, row_dot, scale_rows, slice_rows};
use crate::tensor::{Device, Tensor};

/// Rows `idx` of each block, scaled by `1 / ‖joint row‖` (so the blocks side by side are unit rows).
pub async fn normalized_blocks(blocks: &[Tensor], idx: &[u32]) -> Result<Vec<Tensor>> {
    const OP: &str = "normalized_blocks";
    let first = blocks.first().ok_or_else(|| Error::invalid(OP, "no embedding blocks"))?;
    let dev = first.device();
    let n = idx.len();
    let ids = Tensor::from_u32(&dev, idx.to_vec(), &[n])?;
    let rows: Vec<Tensor> = blocks.iter().map(|b| gather_rows(b, &ids)).collect::<Result<_>>()?;
    let mut sq = row_dot(&rows[0], &rows[0])?;
    for r in &rows[1..] {
        sq = add(&sq, &row_dot(r, r)?)?;
    }
    let inv: Vec<f32> = sq.to_vec_f32().await?.into_iter().map(|s| 1.0 / s.sqrt().max(1e-12)).collect();
    let inv = Tensor::from_f32(&dev, inv, &[n])?;
    rows.iter().map(|r| scale_rows(r, &inv)).collect()
}

/// Each source row's best `k` candidates: `cols[i*k + j]` (target positions) and `scores` (cosine),
/// best first.
#[derive(Clone, Debug)]
pub struct Candidates {
    pub rows: usize,
    pub k: usize,
    pub cols: Vec<u32>,
    pub scores: Vec<f32>,
}

/// Top-k targets by cosine for every source row (best first; ties to the lower target index); `p`, `q`
/// from [`normalized_blocks`]. Up to [`MAX_K`] (16) the sorted top-k kernel selects; beyond (LightEA keeps
/// 500 candidates), [`topk_select_rows`] keeps each row's k on the device and only those are sorted on
/// the host.
pub async fn top_candidates(p: &[Tensor], q: &[Tensor], k: usize) -> Result<Candidates> {
    const OP: &str = "top_candidates";
    if p.len() != q.len() || p.is_empty() {
        return Err(Error::invalid(OP, "source and target must have the same (non-zero) number of blocks"));
    }
    p[0].dims2(OP)?;
    let (n2, _) = q[0].dims2(OP)?;
    if k == 0 || k > n2 {
        return Err(Error::invalid(OP, format!("k must be in 1..={n2} (the number of targets), got {k}")));
    }
    top_candidates_with(p, q, k, k > MAX_K).await
}

/// [`top_candidates`] with the selection path chosen: by [`topk_select_rows`] and a host sort of the kept
/// entries (`select`), or by the sorted top-k kernel.
pub async fn top_candidates_with(p: &[Tensor], q: &[Tensor], k: usize, select: bool) -> Result<Candidates> {
    const OP: &str = "top_candidates";
    let (n1, _) = p[0].dims2(OP)?;
    let (n2, _) = q[0].dims2(OP)?;
    if !select && k > MAX_K {
        return Err(Error::invalid(OP, format!("the top-k kernel keeps at most {MAX_K} per row, got {k}")));
    }
    let chunk = (BROWSER_BINDING_LIMIT as usize / (4 * n2)).clamp(1, n1.max(1));
    let (mut cols, mut scores) = (Vec::with_capacity(n1 * k), Vec::with_capacity(n1 * k));
    let mut r0 = 0;
    while r0 < n1 {
        let len = chunk.min(n1 - r0);
        // One chunk of rows at a time (one tile), so only `chunk × n2` scores exist at once.
        let rows: Vec<Tensor> = p.iter().map(|b| slice_rows(b, r0, len)).collect::<Result<_>>()?;
        let tile = similarity_tiles_blocks(&rows, q, len)?;
        if select {
            let top = topk_select_rows(&tile, k)?;
            let (ids, vals) = (top.indices.to_vec_u32().await?, top.values.to_vec_f32().await?);
            // The kept entries come in column order: best first, ties to the lower target index.
            let mut order: Vec<usize> = Vec::with_capacity(k);
            for (ri, rv) in ids.chunks_exact(k).zip(vals.chunks_exact(k)) {
                order.clear();
                order.extend(0..k);
                order.sort_unstable_by(|&a, &b| rv[b].total_cmp(&rv[a]).then(ri[a].cmp(&ri[b])));
                cols.extend(order.iter().map(|&t| ri[t]));
                scores.extend(order.iter().map(|&t| rv[t]));
            }
        } else {
            let top = topk_rows(&tile, k)?;
            cols.extend(top.indices.to_vec_u32().await?);
            scores.extend(top.values.to_vec_f32().await?);
        }
        r0 += len;
    }
    Ok(Candidates { rows: n1, k, cols, scores })
}

/// Re-ranks each row's kept candidates by the log-plan of sparse Sinkhorn over them (uniform marginals,
/// `m` targets, temperature `eps`); returns the candidates sorted by plan value (the `scores` become
/// the log-plan values).
pub async fn sinkhorn_rerank(device: &Device, c: &Candidates, m: usize, eps: f32, iters: usize) -> Result<Candidates> {
    let index = TopkIndex::new(device, &c.cols, c.rows, c.k, m)?;
    let scores = Tensor::from_f32(device, c.scores.clone(), &[c.rows, c.k])?;
    let plan = sinkhorn_topk_indexed(&index, &scores, eps, iters)?.to_vec_f32().await?;
    let (mut cols, mut out) = (Vec::with_capacity(c.cols.len()), Vec::with_capacity(c.cols.len()));
    for i in 0..c.rows {
        let mut order: Vec<usize> = (0..c.k).collect();
        let row = &plan[i * c.k..(i + 1) * c.k];
        // Higher plan first; ties keep the cosine order.
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for j in order {
            cols.push(c.cols[i * c.k + j]);
            out.push(row[j]);
        }
    }
    Ok(Candidates { rows: c.rows, k: c.k, cols, scores: out })
}

#[cfg(not(target_arch = "wasm32"))]
pub fn normalized_blocks_blocking(blocks: &[Tensor], idx: &[u32]) -> Result<Vec<Tensor>> {
    pollster::block_on(normalized_blocks(blocks, idx))
}
#[cfg(not(target_arch = "wasm32"))]
pub fn top_candidates_blocking(p: &[Tensor], q: &[Tensor], k: usize) -> Result<Candidates> {
    pollster::block_on(top_candidates(p, q, k))
}
#[cfg(not(target_arch = "wasm32"))]
pub fn sinkhorn_rerank_blocking(device: &Device, c: &Candidates, m: usize, eps: f32, iters: usize) -> Result<Candidates> {
    pollster::block_on(sinkhorn_rerank(device, c, m, eps, iters))
}
