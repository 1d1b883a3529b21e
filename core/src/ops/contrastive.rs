//! Contrastive losses (mmea-spec §7 ops 17 and 18): one-direction InfoNCE (LoginMEA, §4.5) and MCLEA's
//! intra-modal contrastive loss ICL (§4.2), fused with their gradients.
//!
//! The B×B (or B×2B) similarity is never materialised whole: rows are processed in blocks (at most
//! 128 MiB of logits per block by default). Per block: logits with the matmul kernel, per-row
//! log-sum-exp / loss / gradient rows with `shaders/contrastive.wgsl` (in place), then the gradient
//! products with the matmul kernel again. The loss is the deterministic sum of the per-row losses.
//! CPU twin of the row kernel: [`cpu`].

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{grid, Arg, BROWSER_BINDING_LIMIT};
use crate::ops::elementwise::add;
use crate::ops::fusion::Assembler;
use crate::ops::rows::slice_rows;
use crate::ops::matmul::matmul_ex;
use crate::ops::reduce::sum_all;
use crate::shader;
use crate::tensor::{common_device, DType, Device, Tensor};

const SHADER: crate::gpu::Shader = shader!("contrastive");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    row0: u32,
    gold_off: u32,
    mask_off: u32,
    has_mask: u32,
    weight: f32,
    _pad: u32,
}

/// Checks shared by both losses; returns (B, d).
fn check(op: &'static str, p: &Tensor, q: &Tensor, tau: f32, block_rows: Option<usize>) -> Result<(usize, usize)> {
    p.expect_dtype(op, DType::F32)?;
    q.expect_dtype(op, DType::F32)?;
    let (b, d) = p.dims2(op)?;
    if q.shape() != p.shape() {
        return Err(Error::shape(op, "P and Q must have the same shape [B, d]", &[p.shape(), q.shape()]));
    }
    if b == 0 {
        return Err(Error::shape(op, "the batch is empty (the loss is a mean over B rows)", &[p.shape()]));
    }
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::invalid(op, format!("temperature must be positive and finite, got {tau}")));
    }
    if block_rows == Some(0) {
        return Err(Error::invalid(op, "block_rows must be at least 1"));
    }
    Ok((b, d))
}

/// Rows per block so that one `[rows, cols]` logit block stays within the binding limit.
fn default_block_rows(dev: &Device, cols: usize) -> usize {
    let limit = match dev {
        Device::Gpu(ctx) => ctx.binding_limit(),
        Device::Cpu => BROWSER_BINDING_LIMIT,
    };
    ((limit / 4) as usize / cols.max(1)).max(1)
}

/// One cross-entropy pass over the rows of `x [B, d]` against the columns `cols [C, d]`:
/// logits `S = x colsᵀ / τ`, gold at column `gold_off + i`, column `mask_off + i` excluded, and
/// `G = weight (softmax_row(S) − onehot)`. Returns the gradient rows `G cols / τ` `[B, d]` and
/// `Gᵀ x / τ` `[C, d]`; writes the per-row losses `weight (lse_i − S_i,gold)` into `losses` at `loss_off`.
#[allow(clippy::too_many_arguments)]
fn tiled_ce(
    op: &'static str,
    x: &Tensor,
    cols: &Tensor,
    gold_off: usize,
    mask_off: Option<usize>,
    weight: f32,
    tau: f32,
    block_rows: Option<usize>,
    losses: &mut Assembler,
    loss_off: usize,
) -> Result<(Tensor, Tensor)> {
    let dev = x.device();
    let (b, d) = x.dims2(op)?;
    let (c, _) = cols.dims2(op)?;
    let rows = block_rows.unwrap_or_else(|| default_block_rows(&dev, c)).min(b).max(1);
    let inv_tau = 1.0 / tau;
    let mut row_grads = if rows < b { Some(Assembler::new(&dev, &[b, d], op)?) } else { None };
    let mut single_rows = None;
    let mut col_grads: Option<Tensor> = None;
    for r0 in (0..b).step_by(rows) {
        let r1 = (r0 + rows).min(b);
        let xb = slice_rows(x, r0, r1 - r0)?;
        let s = matmul_ex(&xb, cols, None, false, true, inv_tau)?;
        let (g, loss) = ce_rows(op, s, r0, gold_off, mask_off, weight)?;
        losses.put(op, &loss, 0, loss_off + r0, r1 - r0)?;
        let gr = matmul_ex(&g, cols, None, false, false, inv_tau)?;
        match row_grads.as_mut() {
            Some(asm) => asm.put(op, &gr, 0, r0 * d, (r1 - r0) * d)?,
            None => single_rows = Some(gr),
        }
        let gc = matmul_ex(&g, &xb, None, true, false, inv_tau)?;
        col_grads = Some(match col_grads {
            None => gc,
            Some(acc) => add(&acc, &gc)?,
        });
    }
    let rows_out = match (row_grads, single_rows) {
        (Some(asm), _) => asm.finish()?,
        (None, Some(t)) => t,
        (None, None) => return Err(Error::invalid(op, "internal: no row block was processed")),
    };
    let Some(cols_out) = col_grads else {
        return Err(Error::invalid(op, "internal: no row block was processed"));
    };
    Ok((rows_out, cols_out))
}

/// The row kernel on one logit block `s [rows, cols]` whose first row is global row `row0`; returns the
/// gradient block (written over the logits) and the per-row losses `[rows]`.
fn ce_rows(op: &'static str, mut s: Tensor, row0: usize, gold_off: usize, mask_off: Option<usize>, weight: f32) -> Result<(Tensor, Tensor)> {
    let (rows, cols) = s.dims2(op)?;
    match s.device() {
        Device::Cpu => {
            let loss = cpu::ce_rows(s.cpu_f32_mut(op)?, rows, cols, row0, gold_off, mask_off, weight);
            Ok((s, Tensor::from_f32(&Device::Cpu, loss, &[rows])?))
        }
        Device::Gpu(ctx) => {
            let loss = Tensor::gpu_output(&ctx, &[rows], DType::F32, op)?;
            let p = Params {
                rows: rows as u32,
                cols: cols as u32,
                row0: row0 as u32,
                gold_off: gold_off as u32,
                mask_off: mask_off.unwrap_or(0) as u32,
                has_mask: mask_off.is_some() as u32,
                weight,
                _pad: 0,
            };
            // `s` was just made by the logits matmul and nothing else holds it: overwriting it in place
            // saves a second block-sized buffer.
            ctx.dispatch(op, &SHADER, "ce_rows", &[], &p, &[Arg::Write(s.gpu_buf(op)?), Arg::Write(loss.gpu_buf(op)?)], grid(rows as u64))?;
            Ok((s, loss))
        }
    }
}

/// One-direction InfoNCE (LoginMEA), for row-normalised `P`, `Q` `[B, d]` and temperature τ:
/// `S = P Qᵀ/τ`, `L = −(1/B) Σ_i log softmax_row(S)_ii`. Returns `(L [1], g_P, g_Q)` with
/// `G = (softmax_row(S) − I)/B`, `g_P = G Q/τ`, `g_Q = Gᵀ P/τ`.
///
/// `block_rows` rows of S are formed at a time (None: as many as fit in 128 MiB or the device's binding
/// limit); the result does not depend on it beyond rounding.
pub fn info_nce(p: &Tensor, q: &Tensor, tau: f32, block_rows: Option<usize>) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "info_nce";
    let (b, _) = check(OP, p, q, tau, block_rows)?;
    let dev = common_device(OP, &[p, q])?;
    let mut losses = Assembler::new(&dev, &[b], OP)?;
    let (g_p, g_q) = tiled_ce(OP, p, q, 0, None, 1.0 / b as f32, tau, block_rows, &mut losses, 0)?;
    let loss = sum_all(&losses.finish()?)?;
    Ok((loss, g_p, g_q))
}

/// [`info_nce`] with extra negatives: row-normalised `N [E, d]` join the in-batch candidates, so
/// `S = P [Q ; N]ᵀ/τ` `[B, B+E]` with the gold of row i at column i, and
/// `L = −(1/B) Σ_i log softmax_row(S)_ii`. Returns `(L [1], g_P, g_Q, g_N)` with
/// `G = (softmax_row(S) − [I | 0])/B = [G_Q | G_N]`, `g_P = G [Q ; N]/τ`, `g_Q = G_Qᵀ P/τ`,
/// `g_N = G_Nᵀ P/τ`. The caller must keep the positives out of `N` (a duplicate of `q_i` in `N` would be
/// a false negative). Same kernels and tiling as [`info_nce`].
pub fn info_nce_neg(p: &Tensor, q: &Tensor, n: &Tensor, tau: f32, block_rows: Option<usize>) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    const OP: &str = "info_nce_neg";
    let (b, d) = check(OP, p, q, tau, block_rows)?;
    n.expect_dtype(OP, DType::F32)?;
    let (e, dn) = n.dims2(OP)?;
    if dn != d || e == 0 {
        return Err(Error::shape(OP, "the negatives must be a non-empty [E, d] with the d of P and Q", &[p.shape(), n.shape()]));
    }
    let dev = common_device(OP, &[p, q, n])?;
    let mut cols = Assembler::new(&dev, &[b + e, d], OP)?;
    cols.put(OP, q, 0, 0, b * d)?;
    cols.put(OP, n, 0, b * d, e * d)?;
    let cols = cols.finish()?;
    let mut losses = Assembler::new(&dev, &[b], OP)?;
    let (g_p, g_cols) = tiled_ce(OP, p, &cols, 0, None, 1.0 / b as f32, tau, block_rows, &mut losses, 0)?;
    let loss = sum_all(&losses.finish()?)?;
    Ok((loss, g_p, slice_rows(&g_cols, 0, b)?, slice_rows(&g_cols, b, e)?))
}

/// MCLEA's ICL for row-normalised `P`, `Q` `[B, d]`, temperature τ and direction weight α:
/// `L_a = CE([P Qᵀ | P Pᵀ − 10⁹ I]/τ)`, `L_b = CE([Q Pᵀ | Q Qᵀ − 10⁹ I]/τ)` with the gold at column i of the
/// first block and each CE a mean over the B rows; `L = α L_a + (1−α) L_b`. Returns `(L [1], g_P, g_Q)` with
/// `G_a = α(softmax_row − onehot)/B = [G_ab | G_aa]`, `G_b = (1−α)(softmax_row − onehot)/B = [G_ba | G_bb]`,
/// `g_P = (G_ab Q + (G_aa + G_aaᵀ) P + G_baᵀ Q)/τ`, `g_Q = (G_abᵀ P + G_ba P + (G_bb + G_bbᵀ) Q)/τ`
/// (the masked diagonals contribute exactly 0). `block_rows` as in [`info_nce`].
pub fn icl(p: &Tensor, q: &Tensor, tau: f32, alpha: f32, block_rows: Option<usize>) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "icl";
    let (b, d) = check(OP, p, q, tau, block_rows)?;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(OP, format!("alpha must lie in [0, 1], got {alpha}")));
    }
    let dev = common_device(OP, &[p, q])?;
    // Both directions use the columns [Q ; P]: softmax is invariant under permuting a row's columns, and one
    // layout lets the two directions' column gradients be summed directly.
    let mut qp = Assembler::new(&dev, &[2 * b, d], OP)?;
    qp.put(OP, q, 0, 0, b * d)?;
    qp.put(OP, p, 0, b * d, b * d)?;
    let qp = qp.finish()?;
    let mut losses = Assembler::new(&dev, &[2 * b], OP)?;
    // Direction a (rows of P): gold in the Q block, P Pᵀ diagonal masked.
    let (rows_a, cols_a) = tiled_ce(OP, p, &qp, 0, Some(b), alpha / b as f32, tau, block_rows, &mut losses, 0)?;
    // Direction b (rows of Q): gold in the P block, Q Qᵀ diagonal masked.
    let (rows_b, cols_b) = tiled_ce(OP, q, &qp, b, Some(0), (1.0 - alpha) / b as f32, tau, block_rows, &mut losses, b)?;
    let cols = add(&cols_a, &cols_b)?; // [2B, d] = [g for Q ; g for P]
    let g_q = add(&rows_b, &slice_rows(&cols, 0, b)?)?;
    let g_p = add(&rows_a, &slice_rows(&cols, b, b)?)?;
    let loss = sum_all(&losses.finish()?)?;
    Ok((loss, g_p, g_q))
}

/// The CPU twin of the row kernel (same formulas as `shaders/contrastive.wgsl`).
pub mod cpu {
    use crate::cpu::par_rows;

    /// Overwrites each row of logits `s [rows, cols]` with `weight (softmax − onehot(gold))` (masked column
    /// 0) and returns the per-row losses `weight (lse − s_gold)`. Row i is global row `row0 + i`; its gold
    /// column is `gold_off + row0 + i`, its masked column `mask_off + row0 + i`.
    pub fn ce_rows(s: &mut [f32], rows: usize, cols: usize, row0: usize, gold_off: usize, mask_off: Option<usize>, weight: f32) -> Vec<f32> {
        let mut loss = vec![0.0f32; rows];
        if cols == 0 {
            return loss;
        }
        let mut lse = vec![0.0f32; rows];
        for (i, (row, l)) in s.chunks(cols).zip(lse.iter_mut()).enumerate() {
            let mask = mask_off.map(|m| m + row0 + i);
            let unmasked = row.iter().enumerate().filter(|&(j, _)| Some(j) != mask).map(|(_, &v)| v);
            let mx = unmasked.clone().fold(-3.0e38f32, f32::max);
            let sum: f32 = unmasked.map(|v| (v - mx).exp()).sum();
            *l = mx + sum.ln();
            loss[i] = weight * (*l - row[gold_off + row0 + i]);
        }
        par_rows(s, cols, |i, row| {
            let (gold, mask) = (gold_off + row0 + i, mask_off.map(|m| m + row0 + i));
            for (j, v) in row.iter_mut().enumerate() {
                let mut g = if Some(j) == mask { 0.0 } else { (*v - lse[i]).min(0.0).exp() };
                if j == gold {
                    g -= 1.0;
                }
                *v = weight * g;
            }
        });
        loss
    }
}

/// Tape wrappers: the forward already computed the gradients, so the backward only scales them by the
/// incoming scalar gradient (on the device, no readback).
pub mod ad {
    use crate::autodiff::{Tape, Var};
    use crate::error::Result;
    use crate::ops::scale_by;

    /// [`super::info_nce`] as a `[1]` loss; backward `g_P = g · ∂L/∂P`, `g_Q = g · ∂L/∂Q`.
    pub fn info_nce(tape: &Tape, p: &Var, q: &Var, tau: f32) -> Result<Var> {
        let (loss, g_p, g_q) = super::info_nce(&p.value, &q.value, tau, None)?;
        Ok(tape.record(loss, &[p, q], move |g| Ok(vec![Some(scale_by(g, &g_p)?), Some(scale_by(g, &g_q)?)])))
    }

    /// [`super::info_nce_neg`] as a `[1]` loss; gradients flow to `p`, `q` and the negatives `n`.
    pub fn info_nce_neg(tape: &Tape, p: &Var, q: &Var, n: &Var, tau: f32) -> Result<Var> {
        let (loss, g_p, g_q, g_n) = super::info_nce_neg(&p.value, &q.value, &n.value, tau, None)?;
        Ok(tape.record(loss, &[p, q, n], move |g| Ok(vec![Some(scale_by(g, &g_p)?), Some(scale_by(g, &g_q)?), Some(scale_by(g, &g_n)?)])))
    }

    /// [`super::icl`] as a `[1]` loss; backward as for [`info_nce`].
    pub fn icl(tape: &Tape, p: &Var, q: &Var, tau: f32, alpha: f32) -> Result<Var> {
        let (loss, g_p, g_q) = super::icl(&p.value, &q.value, tau, alpha, None)?;
        Ok(tape.record(loss, &[p, q], move |g| Ok(vec![Some(scale_by(g, &g_p)?), Some(scale_by(g, &g_q)?)])))
    }
}
