//! Evaluation exactly as mmea-spec §2: the queries are the KG1 sides of the test pairs, the candidates are
//! the KG2 sides of the **same** pairs, and the gold answer of query i is candidate i. Embeddings are
//! L2-normalised; ranking by cosine equals ranking by squared L2 distance (`2 − 2 cos`), and CSLS on
//! cosine ranks exactly like the reference code's CSLS on `S = 1 − D` (that one is `2×` this one).
//! Reports plain, CSLS (k = 3 by default) and log-domain Sinkhorn decoding, each l2r and r2l, with
//! H@1/H@10/H@50, MRR and MR. Ranks count strictly better candidates (the gold wins ties).
//!
//! Everything runs on the embedding's device. The n × n score matrices are row-tiled so that no binding
//! exceeds 128 MiB (n = 10,500 test pairs: 441 MB per matrix, in 4 tiles).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::BROWSER_BINDING_LIMIT;
use crate::ops::eval::{csls, metrics, rank_counts, similarity_tiles_blocks, topk_select_rows, Metrics, Ranks};
use crate::ops::sinkhorn::{sinkhorn, sinkhorn_topk_indexed, TiledMatrix, TopkIndex};
use crate::ops::{gather_rows, l2_normalize};
use crate::tensor::Tensor;

/// Sinkhorn decoding settings (SEU/LightEA use ε = 0.02 and 10–15 iterations).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SinkhornDecoding {
    pub eps: f32,
    pub iters: usize,
    /// Some(k): sparse, over each query's k best candidates by score only (LightEA's decoding; the plan is
    /// −∞ outside the kept entries, so a gold pair outside them ranks behind every kept entry of its row or
    /// column). None: dense over all candidates.
    pub top_k: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// CSLS neighbourhood size (the published scripts use 3); None skips CSLS.
    pub csls_k: Option<usize>,
    /// None skips Sinkhorn decoding.
    pub sinkhorn: Option<SinkhornDecoding>,
    /// Rows per score tile; None picks the most that fit one 128 MiB binding.
    pub block_rows: Option<usize>,
    /// Some(k): only the first k queries and the first k candidates are gold pairs; the rest are
    /// distractors, which take part in every ranking, in CSLS's neighbourhoods and in Sinkhorn's
    /// normalisation but get no rank of their own (the metrics count k pairs). None: all are scored.
    pub scored: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { csls_k: Some(3), sinkhorn: Some(SinkhornDecoding { eps: 0.02, iters: 10, top_k: None }), block_rows: None, scored: None }
    }
}

/// Metrics in both directions: l2r (KG1 queries) is what papers report.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BothWays {
    pub l2r: Metrics,
    pub r2l: Metrics,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub pairs: usize,
    pub plain: BothWays,
    pub csls: Option<BothWays>,
    pub sinkhorn: Option<BothWays>,
    /// Some(k) when the Sinkhorn decoding was sparse over each query's k best candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sinkhorn_top_k: Option<usize>,
}

/// Metrics of the first `k` ranks in each direction (the scored pairs; see [`EvalOptions::scored`]).
async fn both_ways(r: &Ranks, k: usize) -> Result<BothWays> {
    let (l2r, r2l) = (r.l2r.to_vec_u32().await?, r.r2l.to_vec_u32().await?);
    Ok(BothWays { l2r: metrics(&l2r[..k.min(l2r.len())]), r2l: metrics(&r2l[..k.min(r2l.len())]) })
}

/// Evaluate `emb` `[N, d]` (one row per entity, dense indices) on `pairs` (KG1 index, KG2 index).
pub async fn evaluate(emb: &Tensor, pairs: &[(u32, u32)], opts: &EvalOptions) -> Result<EvalReport> {
    const OP: &str = "evaluate";
    let (n_ent, _) = emb.dims2(OP)?;
    if pairs.is_empty() {
        return Err(Error::invalid(OP, "no test pairs to evaluate"));
    }
    if let Some(&(l, r)) = pairs.iter().find(|(l, r)| *l as usize >= n_ent || *r as usize >= n_ent) {
        return Err(Error::invalid(OP, format!("pair ({l}, {r}) refers to an entity beyond the {n_ent} embedding rows")));
    }
    let n = pairs.len();
    let dev = emb.device();
    let idx = |f: fn(&(u32, u32)) -> u32| Tensor::from_u32(&dev, pairs.iter().map(f).collect(), &[n]);
    let p = l2_normalize(&gather_rows(emb, &idx(|p| p.0)?)?)?;
    let q = l2_normalize(&gather_rows(emb, &idx(|p| p.1)?)?)?;
    evaluate_normalized(&p, &q, opts).await
}

/// Evaluate row-normalised query embeddings `p` `[n, d]` against candidates `q` `[n, d]`, where the gold
/// answer of query i is candidate i (what [`evaluate`] does after gathering the test pairs' rows).
pub async fn evaluate_normalized(p: &Tensor, q: &Tensor, opts: &EvalOptions) -> Result<EvalReport> {
    const OP: &str = "evaluate";
    let (n, d) = p.dims2(OP)?;
    if q.shape() != [n, d] || n == 0 {
        return Err(Error::shape(OP, "queries and candidates must be non-empty and of equal shape", &[p.shape(), q.shape()]));
    }
    evaluate_normalized_blocks(std::slice::from_ref(p), std::slice::from_ref(q), opts).await
}

/// [`evaluate_normalized`] for embeddings given as column blocks (`P = [P_1 | …]`, rows of the joint
/// already unit length; see `model::align::normalized_blocks`): the score tiles are `Σ_b P_b Q_bᵀ`, so no
/// tensor wider than one block is ever formed.
pub async fn evaluate_normalized_blocks(p: &[Tensor], q: &[Tensor], opts: &EvalOptions) -> Result<EvalReport> {
    const OP: &str = "evaluate";
    let first = p.first().ok_or_else(|| Error::invalid(OP, "no embedding blocks"))?;
    let (n, _) = first.dims2(OP)?;
    if n == 0 {
        return Err(Error::invalid(OP, "no pairs to evaluate"));
    }
    let block_rows = opts.block_rows.unwrap_or_else(|| (BROWSER_BINDING_LIMIT as usize / (4 * n)).clamp(1, n));
    let scored = opts.scored.unwrap_or(n);
    if scored == 0 || scored > n {
        return Err(Error::invalid(OP, format!("{scored} scored pairs among {n} rows (need 1..={n})")));
    }
    let s: TiledMatrix = similarity_tiles_blocks(p, q, block_rows)?;

    let plain = both_ways(&rank_counts(&s)?, scored).await?;
    let csls_m = match opts.csls_k {
        Some(k) => Some(both_ways(&rank_counts(&csls(&s, k.min(n))?)?, scored).await?),
        None => None,
    };
    // Sparse only when it keeps fewer than all candidates.
    let sinkhorn_top_k = opts.sinkhorn.and_then(|sk| sk.top_k).filter(|&k| k < n);
    let sinkhorn_m = match (opts.sinkhorn, sinkhorn_top_k) {
        (Some(sk), Some(k)) => Some(sparse_sinkhorn_metrics(&s, k, sk.eps, sk.iters, scored).await?),
        (Some(sk), None) => Some(both_ways(&rank_counts(&sinkhorn(&s, sk.eps, sk.iters)?.log_plan)?, scored).await?),
        (None, _) => None,
    };
    Ok(EvalReport { pairs: scored, plain, csls: csls_m, sinkhorn: sinkhorn_m, sinkhorn_top_k })
}

/// Sparse Sinkhorn decoding of the square score matrix `s` (gold of row i = column i): each row keeps its
/// `k` best columns ([`topk_select_rows`]), the iterations run over those entries only, and the ranks are
/// those of the sparse plan (−∞ outside the kept entries; the gold wins ties, so a gold entry that was not
/// kept ranks exactly behind the kept entries of its row, or of its column for r2l).
async fn sparse_sinkhorn_metrics(s: &TiledMatrix, k: usize, eps: f32, iters: usize, scored: usize) -> Result<BothWays> {
    let n = s.rows;
    let top = topk_select_rows(s, k)?;
    let cols = top.indices.to_vec_u32().await?;
    let index = TopkIndex::new(&top.values.device(), &cols, n, k, s.cols)?;
    let plan = sinkhorn_topk_indexed(&index, &top.values, eps, iters)?.to_vec_f32().await?;
    let mut l2r = vec![k as u32; n];
    let mut gold_col = vec![f32::NEG_INFINITY; s.cols];
    let mut col_entries: Vec<Vec<f32>> = vec![Vec::new(); s.cols];
    for i in 0..n {
        let (row, ids) = (&plan[i * k..(i + 1) * k], &cols[i * k..(i + 1) * k]);
        if let Some(g) = ids.iter().position(|&j| j as usize == i) {
            l2r[i] = row.iter().filter(|&&v| v > row[g]).count() as u32;
            gold_col[i] = row[g];
        }
        for (&j, &v) in ids.iter().zip(row) {
            col_entries[j as usize].push(v);
        }
    }
    let r2l: Vec<u32> = (0..n).map(|j| col_entries[j].iter().filter(|&&v| v > gold_col[j]).count() as u32).collect();
    Ok(BothWays { l2r: metrics(&l2r[..scored.min(n)]), r2l: metrics(&r2l[..scored.min(n)]) })
}

#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate_blocking(emb: &Tensor, pairs: &[(u32, u32)], opts: &EvalOptions) -> Result<EvalReport> {
    pollster::block_on(evaluate(emb, pairs, opts))
}
