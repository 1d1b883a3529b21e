//! Contrastive losses (mmea-spec §7 ops 17 and 18): one-direction InfoNCE (LoginMEA, §4.5) and MCLEA's
//! intra-modal contrastive loss ICL (§4.2), and Dual-AMN's normalised hard-sample loss (NHS), fused with
//! their gradients.
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
use crate::ops::matmul::matmul_ex;
use crate::ops::reduce::sum_all;
use crate::ops::rows::slice_rows;
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
    mask2_off: u32,
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
/// logits `S = x colsᵀ / τ`, gold at column `gold_off + i`, columns `masks[k] + i` excluded, and
/// `G = weight (softmax_row(S) − onehot)`. Returns the gradient rows `G cols / τ` `[B, d]` and
/// `Gᵀ x / τ` `[C, d]`; writes the per-row losses `weight (lse_i − S_i,gold)` into `losses` at `loss_off`.
#[allow(clippy::too_many_arguments)]
fn tiled_ce(
    op: &'static str,
    x: &Tensor,
    cols: &Tensor,
    gold_off: usize,
    masks: [Option<usize>; 2],
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
        let (g, loss) = ce_rows(op, s, r0, gold_off, masks, weight)?;
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
fn ce_rows(op: &'static str, mut s: Tensor, row0: usize, gold_off: usize, masks: [Option<usize>; 2], weight: f32) -> Result<(Tensor, Tensor)> {
    let (rows, cols) = s.dims2(op)?;
    match s.device() {
        Device::Cpu => {
            let loss = cpu::ce_rows(s.cpu_f32_mut(op)?, rows, cols, row0, gold_off, masks, weight);
            Ok((s, Tensor::from_f32(&Device::Cpu, loss, &[rows])?))
        }
        Device::Gpu(ctx) => {
            let loss = Tensor::gpu_output(&ctx, &[rows], DType::F32, op)?;
            let p = Params {
                rows: rows as u32,
                cols: cols as u32,
                row0: row0 as u32,
                gold_off: gold_off as u32,
                mask_off: masks[0].unwrap_or(0) as u32,
                has_mask: masks[0].is_some() as u32 | (masks[1].is_some() as u32) << 1,
                weight,
                mask2_off: masks[1].unwrap_or(0) as u32,
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
    let _prof = crate::profile::scope(OP);
    let (b, _) = check(OP, p, q, tau, block_rows)?;
    let dev = common_device(OP, &[p, q])?;
    let mut losses = Assembler::new(&dev, &[b], OP)?;
    let (g_p, g_q) = tiled_ce(OP, p, q, 0, [None, None], 1.0 / b as f32, tau, block_rows, &mut losses, 0)?;
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
    let _prof = crate::profile::scope(OP);
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
    let (g_p, g_cols) = tiled_ce(OP, p, &cols, 0, [None, None], 1.0 / b as f32, tau, block_rows, &mut losses, 0)?;
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
    let _prof = crate::profile::scope(OP);
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
    let (rows_a, cols_a) = tiled_ce(OP, p, &qp, 0, [Some(b), None], alpha / b as f32, tau, block_rows, &mut losses, 0)?;
    // Direction b (rows of Q): gold in the P block, Q Qᵀ diagonal masked.
    let (rows_b, cols_b) = tiled_ce(OP, q, &qp, b, [Some(0), None], (1.0 - alpha) / b as f32, tau, block_rows, &mut losses, b)?;
    let cols = add(&cols_a, &cols_b)?; // [2B, d] = [g for Q ; g for P]
    let g_q = add(&rows_b, &slice_rows(&cols, 0, b)?)?;
    let g_p = add(&rows_a, &slice_rows(&cols, b, b)?)?;
    let loss = sum_all(&losses.finish()?)?;
    Ok((loss, g_p, g_q))
}

/// Dual-AMN's normalised hard-sample mining loss (NHS), for row-normalised `P`, `Q` `[B, d]` and the
/// remaining entities `N` `[E, d]` (every entity of both KGs that is in no pair of `P`, `Q`), so the
/// columns `C = [Q ; P ; N]` are all the entities. For row i of P (and likewise of Q, with the roles of P
/// and Q swapped):
///
/// `L_i = lse_{j ∉ {q_i, p_i}} (t_i p_i·c_j) − t_i p_i·q_i`,   `t_i = λ / std_j(p_i·c_j)` (held constant),
///
/// and `L = (1/B) Σ_i (L_i^P + L_i^Q)`. This is Dual-AMN's loss on unit rows: there the logits are the
/// per-row standardised `pos − neg_j + γ` (squared distances, statistics under stop-gradient) times λ = 30;
/// on unit rows `pos − neg_j = 2 (p_i·c_j − p_i·q_i)` and the standardisation leaves exactly the logits above
/// plus constants per row (γ, the mean and Dual-AMN's `+ 10` only shift `L`). Unlike InfoNCE the positive is
/// not in the lse, so its pull `t_i` never fades as the pair is learnt, and `t_i` (≈ 30 / 0.1) is much sharper
/// than 1/τ. Two small departures: the statistics run over every column (Dual-AMN zeroes the two masked
/// entries first), and the masked columns are left out of the lse (Dual-AMN keeps them as constant logits).
///
/// Returns `(L [1], g_P, g_Q, g_N)`. `E` may be 0 (all entities in the batch) if B ≥ 2.
pub fn nhs(p: &Tensor, q: &Tensor, n: &Tensor, lambda: f32, block_rows: Option<usize>) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    const OP: &str = "nhs";
    let _prof = crate::profile::scope(OP);
    let cols = nhs_columns(OP, p, q, n, lambda, block_rows)?;
    let moments = nhs_moments(&cols)?;
    let t_p = nhs_scales_from_moments(&moments, p, lambda)?;
    let t_q = nhs_scales_from_moments(&moments, q, lambda)?;
    nhs_scaled(OP, p, q, &cols, &t_p, &t_q, block_rows)
}

/// [`nhs`] with the row scales `t_P`, `t_Q` `[B]` given (a function of P, Q, N only through the logits: the
/// one gradient checks differentiate).
pub fn nhs_with_scales(p: &Tensor, q: &Tensor, n: &Tensor, t_p: &Tensor, t_q: &Tensor, block_rows: Option<usize>) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    const OP: &str = "nhs_with_scales";
    let _prof = crate::profile::scope(OP);
    let cols = nhs_columns(OP, p, q, n, 1.0, block_rows)?;
    let b = p.shape()[0];
    for t in [t_p, t_q] {
        if t.len() != b {
            return Err(Error::shape(OP, "the row scales must be [B]", &[p.shape(), t.shape()]));
        }
    }
    nhs_scaled(OP, p, q, &cols, t_p, t_q, block_rows)
}

/// The row scales of [`nhs`]: `t_i = λ / std_j(x_i·c_j)` over the rows `c_j` of `cols` `[C, d]`, from
/// the column mean `m = Cᵀ1/C` and second moment `M = CᵀC/C` (`var_i = x_iᵀ M x_i − (x_i·m)²`; one `d × d`
/// product instead of a `[B, C]` block). `x` `[B, d]`; returns `[B]`.
pub fn nhs_row_scales(cols: &Tensor, x: &Tensor, lambda: f32) -> Result<Tensor> {
    nhs_scales_from_moments(&nhs_moments(cols)?, x, lambda)
}

/// The column mean `m` `[d, 1]` and second moment `M` `[d, d]` of `cols` `[C, d]`.
fn nhs_moments(cols: &Tensor) -> Result<(Tensor, Tensor)> {
    use crate::ops::reduce::sum_rows;
    let (c, d) = cols.dims2("nhs_row_scales")?;
    let inv_c = 1.0 / c as f32;
    let m = crate::ops::elementwise::scale(&sum_rows(cols)?, inv_c)?.reshape(&[d, 1])?;
    Ok((m, matmul_ex(cols, cols, None, true, false, inv_c)?))
}

fn nhs_scales_from_moments((m, second): &(Tensor, Tensor), x: &Tensor, lambda: f32) -> Result<Tensor> {
    use crate::ops::elementwise::{mul, sub, unary, Unary};
    use crate::ops::rows::row_dot;
    let mean = matmul_ex(x, m, None, false, false, 1.0)?.reshape(&[x.shape()[0]])?;
    let sq = row_dot(&matmul_ex(x, second, None, false, false, 1.0)?, x)?;
    let var = sub(&sq, &mul(&mean, &mean)?)?;
    // λ var^(−1/2) = exp(−½ ln var + ln λ); ln clamps var at 1e-30, so a constant row gives a huge but finite scale.
    unary(Unary::Exp, &unary(Unary::Affine { scale: -0.5, shift: lambda.ln() }, &unary(Unary::Log, &var)?)?)
}

/// Checks [`nhs`]'s inputs and assembles `C = [Q ; P ; N]`.
fn nhs_columns(op: &'static str, p: &Tensor, q: &Tensor, n: &Tensor, lambda: f32, block_rows: Option<usize>) -> Result<Tensor> {
    let (b, d) = check(op, p, q, 1.0, block_rows)?;
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(Error::invalid(op, format!("lambda must be positive and finite, got {lambda}")));
    }
    n.expect_dtype(op, DType::F32)?;
    let e = if n.is_empty() { 0 } else { n.dims2(op)?.0 };
    if e > 0 && n.shape()[1] != d {
        return Err(Error::shape(op, "the other entities must be [E, d] with the d of P and Q", &[p.shape(), n.shape()]));
    }
    if 2 * b + e < 3 {
        return Err(Error::invalid(op, "no negatives: one pair and no other entity"));
    }
    let dev = common_device(op, &[p, q, n])?;
    let mut cols = Assembler::new(&dev, &[2 * b + e, d], op)?;
    cols.put(op, q, 0, 0, b * d)?;
    cols.put(op, p, 0, b * d, b * d)?;
    if e > 0 {
        cols.put(op, n, 0, 2 * b * d, e * d)?;
    }
    cols.finish()
}

fn nhs_scaled(op: &'static str, p: &Tensor, q: &Tensor, cols: &Tensor, t_p: &Tensor, t_q: &Tensor, block_rows: Option<usize>) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    use crate::ops::rows::scale_rows;
    let (b, d) = p.dims2(op)?;
    let c = cols.shape()[0];
    let dev = p.device();
    let mut losses = Assembler::new(&dev, &[2 * b], op)?;
    let w = 1.0 / b as f32;
    // Rows of P: gold q_i at column i (masked out of the lse too), self p_i at column B + i.
    let (rows_p, cols_p) = tiled_ce(op, &scale_rows(p, t_p)?, cols, 0, [Some(0), Some(b)], w, 1.0, block_rows, &mut losses, 0)?;
    // Rows of Q: gold p_i at column B + i, self q_i at column i.
    let (rows_q, cols_q) = tiled_ce(op, &scale_rows(q, t_q)?, cols, b, [Some(b), Some(0)], w, 1.0, block_rows, &mut losses, b)?;
    let g_cols = add(&cols_p, &cols_q)?;
    let g_p = add(&scale_rows(&rows_p, t_p)?, &slice_rows(&g_cols, b, b)?)?;
    let g_q = add(&scale_rows(&rows_q, t_q)?, &slice_rows(&g_cols, 0, b)?)?;
    let g_n = if c > 2 * b { slice_rows(&g_cols, 2 * b, c - 2 * b)? } else { Tensor::zeros(&dev, &[0, d])? };
    let loss = sum_all(&losses.finish()?)?;
    Ok((loss, g_p, g_q, g_n))
}

/// The CPU twin of the row kernel (same formulas as `shaders/contrastive.wgsl`).
pub mod cpu {
    use crate::cpu::par_rows;

    /// Overwrites each row of logits `s [rows, cols]` with `weight (softmax − onehot(gold))` (masked column
    /// 0) and returns the per-row losses `weight (lse − s_gold)`. Row i is global row `row0 + i`; its gold
    /// column is `gold_off + row0 + i`, its masked columns `masks[k] + row0 + i` (each optional).
    pub fn ce_rows(s: &mut [f32], rows: usize, cols: usize, row0: usize, gold_off: usize, masks: [Option<usize>; 2], weight: f32) -> Vec<f32> {
        let mut loss = vec![0.0f32; rows];
        if cols == 0 {
            return loss;
        }
        let mut lse = vec![0.0f32; rows];
        for (i, (row, l)) in s.chunks(cols).zip(lse.iter_mut()).enumerate() {
            let mask = masks.map(|m| m.map(|m| m + row0 + i));
            let unmasked = row.iter().enumerate().filter(|&(j, _)| !mask.contains(&Some(j))).map(|(_, &v)| v);
            let mx = unmasked.clone().fold(-3.0e38f32, f32::max);
            let sum: f32 = unmasked.map(|v| (v - mx).exp()).sum();
            *l = mx + sum.ln();
            loss[i] = weight * (*l - row[gold_off + row0 + i]);
        }
        par_rows(s, cols, |i, row| {
            let (gold, mask) = (gold_off + row0 + i, masks.map(|m| m.map(|m| m + row0 + i)));
            for (j, v) in row.iter_mut().enumerate() {
                let mut g = if mask.contains(&Some(j)) { 0.0 } else { (*v - lse[i]).min(0.0).exp() };
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

    /// [`super::nhs`] as a `[1]` loss; gradients flow to `p`, `q` and the other entities `n` (the row
    /// scales are constants, as Dual-AMN's stop-gradient statistics).
    pub fn nhs(tape: &Tape, p: &Var, q: &Var, n: &Var, lambda: f32) -> Result<Var> {
        let (loss, g_p, g_q, g_n) = super::nhs(&p.value, &q.value, &n.value, lambda, None)?;
        Ok(tape.record(loss, &[p, q, n], move |g| Ok(vec![Some(scale_by(g, &g_p)?), Some(scale_by(g, &g_q)?), Some(scale_by(g, &g_n)?)])))
    }

    /// [`super::icl`] as a `[1]` loss; backward as for [`info_nce`].
    pub fn icl(tape: &Tape, p: &Var, q: &Var, tau: f32, alpha: f32) -> Result<Var> {
        let (loss, g_p, g_q) = super::icl(&p.value, &q.value, tau, alpha, None)?;
        Ok(tape.record(loss, &[p, q], move |g| Ok(vec![Some(scale_by(g, &g_p)?), Some(scale_by(g, &g_q)?)])))
    }
}
