//! MCLEA-style and EVA-style: the two classic multi-modal baselines (mmea-spec §4.1, §4.2), on one shared
//! multi-view encoder.
//!
//! **Encoder** (both): structure by a 2-layer, 2-head "diagonal" GAT over the neighbourhood pattern with
//! self loops (§1.6 (A)) on a free entity table `X ∈ R^{N×d}` (init N(0, 1/√N)): per layer and head k,
//! `h = x ⊙ w_k` (`w_k` init ones), attention `exp(−LeakyReLU₀.₂(a_kᵀ[h_i ; h_j]))` (pyGAT's sparse layer,
//! [`GatLogit::PYGAT`], `a_k` init U(±1/√(2d))), `x'_i = Σ_j α_ij h_j`, heads averaged, ELU after every
//! layer but the last. Each other modality present: `h_m = Linear(D_m → modal_dim)(F_m)`. Joint embedding
//! `[σ_1 n̂(h_1) ; … ; σ_M n̂(h_M) ; σ_g n̂(h_g)]`, `σ = softmax(θ)`, θ init ones (one global weight per
//! view; the structure view last).
//!
//! **MCLEA-style loss**, per minibatch of `minibatch` training pairs (512; every minibatch's gradient is
//! accumulated into one step per epoch, as the reference): `ICL(joint) + Σ_v [e^{−s_v} ICL_v + s_v] +
//! zoom · Σ_v [e^{−s'_v} IAL_v + s'_v]` over the views v (modalities and structure), ICL with τ = 0.1,
//! α = 0.5 ([`crate::ops::contrastive::icl`]), IAL the KL divergence from the detached joint's intra-/inter-
//! KG softmax `[J_ab | J_aa]` to the view's `[U_ab | U_aa]` at τ₂ = 4, mean over the B·2B entries, both
//! directions; `s`, `s'` learned log-variances (Kendall weighting), init 0.
//!
//! **EVA-style loss**, per chunk of the trainer's batch: the NCA loss on the joint and on every view,
//! `(1/B) Σ_i [(1/α) log(1 + Σ_{j≠i} e^{α S_ji}) + (1/α) log(1 + Σ_{j≠i} e^{α S_ij}) − β log(1 + relu(S_ii))]`,
//! `S = n̂(A) n̂(C)ᵀ`, α = 5 for the structure view, 15 otherwise, β = 10.
//!
//! Departures from the references, on purpose: names are our character-bigram features (MCLEA has separate
//! name-embedding and char views; we have one), every view's encoder is one Linear (as MCLEA; EVA's GAT is
//! 400-400-200 wide, ours has the structure `dim` in every layer), and the optimiser settings are the
//! trainer's (pass `--lr 5e-4` for the references' AdamW rate). The GAT layers' attention is not shown in
//! the browser demo (its graph view draws the relation graph's edges, not this pattern's).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::{ad, Tape, Var};
use crate::data::rng::Rng;
use crate::error::{Error, Result};
use crate::ops::contrastive::ad as cad;
use crate::ops::rows::ad as rowad;
use crate::ops::sparse::ad as sad;
use crate::ops::{add, matmul_ex, softmax_rows, unary, GatLogit, Unary};
use crate::tensor::{Device, Tensor};

use super::inputs::{encode_linear, put_encoder_weight, Inputs, Modality};
use super::loginmea::{gat_layer, gather_joint, pair_sides, var};
use super::params::{Init, Params};
use super::{AlignModel, LossArgs, Output};

/// The shared multi-view encoder's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewsConfig {
    /// Width of the entity table and of every GAT layer (300).
    pub dim: usize,
    /// Width of every other view's Linear encoder (100, MCLEA's scripts).
    pub modal_dim: usize,
    /// GAT layers (2) and heads per layer (2, averaged).
    pub layers: usize,
    pub heads: usize,
    /// Learned global view weights σ = softmax(θ); off: θ stays at its initial value (uniform σ; ablation).
    pub fusion_weights: bool,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig { dim: 300, modal_dim: 100, layers: 2, heads: 2, fusion_weights: true }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McleaConfig {
    #[serde(flatten)]
    pub views: ViewsConfig,
    /// ICL temperature τ (0.1) and direction weight α (0.5).
    pub tau: f32,
    pub icl_alpha: f32,
    /// IAL temperature τ₂ (4.0) and weight `zoom` (0.1); `ial` off drops the term (ablation).
    pub tau2: f32,
    pub zoom: f32,
    pub ial: bool,
    /// Learned Kendall weights e^{−s_v}; off: every view's term has weight 1 (ablation).
    pub kendall: bool,
    /// The per-view ICL and IAL terms; off: joint ICL only (ablation).
    pub modal_loss: bool,
    /// Pairs per minibatch (512).
    pub minibatch: usize,
}

impl Default for McleaConfig {
    fn default() -> Self {
        McleaConfig { views: ViewsConfig::default(), tau: 0.1, icl_alpha: 0.5, tau2: 4.0, zoom: 0.1, ial: true, kendall: true, modal_loss: true, minibatch: 512 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaConfig {
    #[serde(flatten)]
    pub views: ViewsConfig,
    /// NCA scale α for the structure view (5) and for the other views and the joint (15); β (10).
    pub alpha_structure: f32,
    pub alpha: f32,
    pub beta: f32,
    /// The per-view NCA terms; off: joint NCA only (ablation).
    pub modal_loss: bool,
}

impl Default for EvaConfig {
    fn default() -> Self {
        EvaConfig { views: ViewsConfig::default(), alpha_structure: 5.0, alpha: 15.0, beta: 10.0, modal_loss: true }
    }
}

/// Which loss sits on the shared encoder.
#[derive(Clone, Debug)]
enum Objective {
    Mclea(McleaConfig),
    Eva(EvaConfig),
}

/// An MCLEA-style or EVA-style model for the modalities present.
#[derive(Clone, Debug)]
pub struct MultiView {
    objective: Objective,
    pub modalities: Vec<Modality>,
    pub modality_dims: Vec<usize>,
    /// Per modality: a learned constant ([`crate::model::inputs::MissingPolicy::LearnedConstant`]), with no weight matrix.
    pub constant: Vec<bool>,
}

fn check_views(op: &'static str, v: &ViewsConfig) -> Result<()> {
    if v.dim == 0 || v.modal_dim == 0 || v.layers == 0 || v.heads == 0 {
        return Err(Error::invalid(op, "dim, modal_dim, layers and heads must be at least 1"));
    }
    Ok(())
}

impl MultiView {
    pub fn mclea(config: McleaConfig, inputs: &Inputs) -> Result<MultiView> {
        const OP: &str = "MCLEA-style";
        check_views(OP, &config.views)?;
        let c = &config;
        let positive = |x: f32| x.is_finite() && x > 0.0;
        if !positive(c.tau) || !positive(c.tau2) || !(0.0..=1.0).contains(&c.icl_alpha) || !c.zoom.is_finite() || c.zoom < 0.0 || c.minibatch == 0 {
            return Err(Error::invalid(OP, "tau and tau2 must be positive, icl_alpha in [0, 1], zoom non-negative, minibatch at least 1"));
        }
        Ok(Self::with(Objective::Mclea(config), inputs))
    }

    pub fn eva(config: EvaConfig, inputs: &Inputs) -> Result<MultiView> {
        const OP: &str = "EVA-style";
        check_views(OP, &config.views)?;
        let c = &config;
        if ![c.alpha, c.alpha_structure].iter().all(|a| a.is_finite() && *a > 0.0) || !c.beta.is_finite() || c.beta < 0.0 {
            return Err(Error::invalid(OP, "the NCA scales alpha must be positive and beta non-negative"));
        }
        Ok(Self::with(Objective::Eva(config), inputs))
    }

    fn with(objective: Objective, inputs: &Inputs) -> MultiView {
        let modalities = inputs.modality_list();
        let modality_dims = inputs.modality_widths();
        let constant = inputs.modalities.iter().map(|m| m.is_constant()).collect();
        MultiView { objective, modalities, modality_dims, constant }
    }

    fn views(&self) -> &ViewsConfig {
        match &self.objective {
            Objective::Mclea(c) => &c.views,
            Objective::Eva(c) => &c.views,
        }
    }

    /// The view names, in block order: the modalities present, then `structure`.
    fn view_names(&self) -> Vec<&'static str> {
        self.modalities.iter().map(|m| m.name()).chain(["structure"]).collect()
    }

    fn forward_impl(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        let c = self.views();
        let v = |name: &str| var(vars, name);
        let n = inputs.n;
        // Structure: the diagonal multi-head GAT.
        let ones = tape.constant(&Tensor::from_f32(&inputs.device(), vec![1.0; n], &[n, 1])?);
        let mut x = v("ent")?.clone();
        for l in 1..=c.layers {
            let mut heads = Vec::with_capacity(c.heads);
            for k in 1..=c.heads {
                let w = ad::matmul(tape, &ones, v(&format!("gat.w{l}.{k}"))?, false, false)?;
                let h = ad::mul(tape, &x, &w)?;
                heads.push(gat_layer(tape, inputs, &h, v(&format!("gat.a{l}.{k}"))?, GatLogit::PYGAT)?);
            }
            x = ad::scale(tape, &ad::add_all(tape, &heads)?, 1.0 / c.heads as f32)?;
            if l < c.layers {
                x = ad::unary(tape, Unary::Elu, &x)?;
            }
        }
        let mut views = Vec::with_capacity(self.modalities.len() + 1);
        for (mi, m) in self.modalities.iter().enumerate() {
            let h = encode_linear(tape, vars, &inputs.modalities[mi], &format!("enc.{}.w", m.name()), &format!("enc.{}.b", m.name()))?;
            views.push(rowad::l2_normalize(tape, &h)?);
        }
        views.push(rowad::l2_normalize(tape, &x)?);
        let nv = views.len();
        let sigma =
            if c.fusion_weights { rowad::softmax_rows(tape, v("theta")?)? } else { tape.constant(&Tensor::from_f32(&inputs.device(), vec![1.0 / nv as f32; nv], &[1, nv])?) };
        let (mut blocks, mut names, mut extra) = (Vec::new(), Vec::new(), Vec::new());
        // The Kendall log-variances, for the loss.
        for name in ["kendall.icl", "kendall.ial"] {
            if let Some(s) = vars.get(name) {
                extra.push((name.to_string(), s.clone()));
            }
        }
        for (vi, (name, h)) in self.view_names().into_iter().zip(&views).enumerate() {
            let s = ad::reshape(tape, &rowad::slice_cols(tape, &sigma, vi, 1)?, &[1])?;
            blocks.push(ad::scale_by(tape, &s, h)?);
            names.push(format!("joint.{name}"));
            extra.push((format!("view.{name}"), h.clone()));
        }
        Ok(Output { blocks, block_names: names, omega: None, sigma: Some(sigma), attention: Vec::new(), extra })
    }

    fn view_vars<'a>(&self, out: &'a Output) -> Result<Vec<(&'static str, &'a Var)>> {
        self.view_names()
            .into_iter()
            .map(|name| out.extra(&format!("view.{name}")).map(|v| (name, v)).ok_or_else(|| Error::invalid("multi-view loss", format!("the forward pass has no view {name}"))))
            .collect()
    }

    fn mclea_loss(&self, c: &McleaConfig, tape: &Tape, out: &Output, pairs: &[(u32, u32)], n: usize, kendall_s: (Option<&Var>, Option<&Var>)) -> Result<Var> {
        let dev = out.blocks[0].value.device();
        let views = self.view_vars(out)?;
        let mut terms = Vec::new();
        for chunk in pairs.chunks(c.minibatch) {
            let (li, ri) = pair_sides(&dev, chunk, n)?;
            let pj = gather_joint(tape, &out.blocks, &li)?;
            let qj = gather_joint(tape, &out.blocks, &ri)?;
            terms.push(cad::icl(tape, &pj, &qj, c.tau, c.icl_alpha)?);
            if !c.modal_loss {
                continue;
            }
            let b = chunk.len();
            // −10⁹ on the intra-KG diagonal (column B + i of row i), as the reference.
            let mut m = vec![0.0f32; b * 2 * b];
            for i in 0..b {
                m[i * 2 * b + b + i] = -1e9;
            }
            let mask = Tensor::from_f32(&dev, m, &[b, 2 * b])?;
            let targets = if c.ial && c.zoom > 0.0 { Some(ial_targets(&pj.value, &qj.value, &mask, c.tau2)?) } else { None };
            for (vi, (_, h)) in views.iter().enumerate() {
                let pu = sad::gather_rows(tape, h, &li)?;
                let qu = sad::gather_rows(tape, h, &ri)?;
                let icl = cad::icl(tape, &pu, &qu, c.tau, c.icl_alpha)?;
                terms.push(kendall(tape, &icl, kendall_s.0, vi)?);
                if let Some(targets) = &targets {
                    let ial = ial(tape, &pu, &qu, targets, &mask, c.tau2, c.icl_alpha)?;
                    terms.push(ad::scale(tape, &kendall(tape, &ial, kendall_s.1, vi)?, c.zoom)?);
                }
            }
        }
        ad::add_all(tape, &terms)
    }

    fn eva_loss(&self, c: &EvaConfig, tape: &Tape, out: &Output, pairs: &[(u32, u32)], batch: usize, n: usize) -> Result<Var> {
        let dev = out.blocks[0].value.device();
        let views = self.view_vars(out)?;
        let mut terms = Vec::new();
        for chunk in pairs.chunks(batch.max(1)) {
            let (li, ri) = pair_sides(&dev, chunk, n)?;
            let b = chunk.len();
            let offdiag = tape.constant(&Tensor::from_f32(&dev, (0..b * b).map(|k| if k / b == k % b { 0.0 } else { 1.0 }).collect(), &[b, b])?);
            let ones = tape.constant(&Tensor::from_f32(&dev, vec![1.0; b], &[b, 1])?);
            let pj = gather_joint(tape, &out.blocks, &li)?;
            let qj = gather_joint(tape, &out.blocks, &ri)?;
            terms.push(nca(tape, &pj, &qj, &offdiag, &ones, c.alpha, c.beta)?);
            if c.modal_loss {
                for (name, h) in &views {
                    let a = if *name == "structure" { c.alpha_structure } else { c.alpha };
                    terms.push(nca(tape, &sad::gather_rows(tape, h, &li)?, &sad::gather_rows(tape, h, &ri)?, &offdiag, &ones, a, c.beta)?);
                }
            }
        }
        ad::add_all(tape, &terms)
    }
}

/// `e^{−s_v} L + s_v` with `s_v` column `v` of `s` `[1, V]`; `L` alone when `s` is None.
fn kendall(tape: &Tape, l: &Var, s: Option<&Var>, v: usize) -> Result<Var> {
    let Some(s) = s else { return Ok(l.clone()) };
    let sv = ad::reshape(tape, &rowad::slice_cols(tape, s, v, 1)?, &[1])?;
    let w = ad::unary(tape, Unary::Exp, &ad::scale(tape, &sv, -1.0)?)?;
    ad::add(tape, &ad::scale_by(tape, &w, l)?, &sv)
}

/// The targets of MCLEA's IAL for one minibatch, from the joint rows `pj`, `qj` (values: the target is
/// detached): for direction a, `softmax([P Qᵀ | P Pᵀ]/τ₂ + mask)` of the joint and its log; for direction
/// b the same with `[Q Pᵀ | Q Qᵀ]`. Shared by every view's [`ial`] term of the minibatch.
pub fn ial_targets(pj: &Tensor, qj: &Tensor, mask: &Tensor, tau2: f32) -> Result<[(Tensor, Tensor); 2]> {
    let target = |rows: &Tensor, other: &Tensor| -> Result<(Tensor, Tensor)> {
        let cols = crate::ops::concat_rows(&[other, rows])?;
        let t = softmax_rows(&add(&matmul_ex(rows, &cols, None, false, true, 1.0 / tau2)?, mask)?)?;
        let log_t = unary(Unary::Log, &t)?;
        Ok((t, log_t))
    };
    Ok([target(pj, qj)?, target(qj, pj)?])
}

/// MCLEA's IAL for one view: rows `pu`, `qu` `[B, d_v]` (unit length) against the minibatch's
/// [`ial_targets`]. Direction a: the view's logits `[P Qᵀ | P Pᵀ]/τ₂` with the masked diagonal,
/// `KL(target_a ‖ softmax(U_a))` averaged over the B·2B entries; direction b likewise with `[Q Pᵀ | Q Qᵀ]`;
/// `α KL_a + (1 − α) KL_b`.
pub fn ial(tape: &Tape, pu: &Var, qu: &Var, targets: &[(Tensor, Tensor); 2], mask: &Tensor, tau2: f32, alpha: f32) -> Result<Var> {
    let b = pu.shape()[0];
    let w = 1.0 / (b * 2 * b) as f32;
    let mut dirs = Vec::with_capacity(2);
    for ((rows_u, other_u, weight), (target, log_target)) in [(pu, qu, alpha), (qu, pu, 1.0 - alpha)].into_iter().zip(targets) {
        let cols_u = rowad::concat_rows(tape, &[other_u, rows_u])?;
        let logits = ad::add(tape, &ad::scale(tape, &ad::matmul(tape, rows_u, &cols_u, false, true)?, 1.0 / tau2)?, &tape.constant(mask))?;
        let log_p = ad::unary(tape, Unary::Log, &rowad::softmax_rows(tape, &logits)?)?;
        let diff = ad::sub(tape, &tape.constant(log_target), &log_p)?;
        let kl = ad::sum(tape, &ad::mul(tape, &tape.constant(target), &diff)?)?;
        dirs.push(ad::scale(tape, &kl, weight * w)?);
    }
    ad::add_all(tape, &dirs)
}

/// EVA's NCA loss for rows `a`, `c` `[B, d]` (normalised here): with `S = n̂(a) n̂(c)ᵀ`,
/// `(1/B) Σ_i [(1/α) log(1 + Σ_{j≠i} e^{α S_ji}) + (1/α) log(1 + Σ_{j≠i} e^{α S_ij}) − β log(1 + relu(S_ii))]`.
pub fn nca(tape: &Tape, a: &Var, c: &Var, offdiag: &Var, ones: &Var, alpha: f32, beta: f32) -> Result<Var> {
    let b = a.shape()[0] as f32;
    let (a, c) = (rowad::l2_normalize(tape, a)?, rowad::l2_normalize(tape, c)?);
    let s = ad::matmul(tape, &a, &c, false, true)?;
    let e = ad::mul(tape, &ad::unary(tape, Unary::Exp, &ad::scale(tape, &s, alpha)?)?, offdiag)?;
    let log1p = |x: &Var| -> Result<Var> { ad::unary(tape, Unary::Log, &ad::unary(tape, Unary::Affine { scale: 1.0, shift: 1.0 }, x)?) };
    let rows = ad::sum(tape, &log1p(&ad::matmul(tape, &e, ones, false, false)?)?)?;
    let cols = ad::sum(tape, &log1p(&ad::matmul(tape, &e, ones, true, false)?)?)?;
    let diag = ad::sum(tape, &log1p(&ad::unary(tape, Unary::Relu, &rowad::row_dot(tape, &a, &c)?)?)?)?;
    let neg = ad::scale(tape, &ad::add(tape, &rows, &cols)?, 1.0 / (alpha * b))?;
    ad::sub(tape, &neg, &ad::scale(tape, &diag, beta / b)?)
}

impl AlignModel for MultiView {
    fn name(&self) -> &'static str {
        match self.objective {
            Objective::Mclea(_) => "mclea-style",
            Objective::Eva(_) => "eva-style",
        }
    }

    fn modalities(&self) -> &[Modality] {
        &self.modalities
    }

    fn init(&self, device: &Device, n: usize, _num_rel: usize, seed: u64) -> Result<Params> {
        let c = self.views();
        let d = c.dim;
        let mut rng = Rng::new(seed);
        let mut init = Init { rng: &mut rng };
        let mut p = Params::new();
        p.put(device, "ent", init.normal(n * d, 1.0 / (n.max(1) as f64).sqrt()), &[n, d])?;
        for l in 1..=c.layers {
            for k in 1..=c.heads {
                p.put(device, format!("gat.w{l}.{k}"), vec![1.0; d], &[1, d])?;
                p.put(device, format!("gat.a{l}.{k}"), init.uniform(2 * d, 1.0 / ((2 * d) as f64).sqrt()), &[d, 2])?;
            }
        }
        for ((m, &dm), &constant) in self.modalities.iter().zip(&self.modality_dims).zip(&self.constant) {
            put_encoder_weight(&mut init, device, &mut p, constant, format!("enc.{}.w", m.name()), dm, c.modal_dim)?;
            p.put(device, format!("enc.{}.b", m.name()), init.linear_default(c.modal_dim, dm), &[c.modal_dim])?;
        }
        let views = self.modalities.len() + 1;
        if c.fusion_weights {
            p.put(device, "theta", vec![1.0; views], &[1, views])?;
        }
        if let Objective::Mclea(mc) = &self.objective {
            if mc.kendall && mc.modal_loss {
                p.put(device, "kendall.icl", vec![0.0; views], &[1, views])?;
                if mc.ial {
                    p.put(device, "kendall.ial", vec![0.0; views], &[1, views])?;
                }
            }
        }
        Ok(p)
    }

    fn forward(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        self.forward_impl(tape, vars, inputs)
    }

    fn loss(&self, tape: &Tape, out: &Output, args: &LossArgs) -> Result<Var> {
        let LossArgs { pairs, negatives, batch, n, dropout } = *args;
        let op = self.name();
        if pairs.is_empty() {
            return Err(Error::invalid(op, "no training pairs"));
        }
        if !negatives.is_empty() {
            return Err(Error::invalid(op, "extra negatives are not implemented for this model"));
        }
        if dropout.is_some() {
            return Err(Error::invalid(op, "row dropout is not implemented for this model"));
        }
        match &self.objective {
            Objective::Mclea(c) => self.mclea_loss(c, tape, out, pairs, n, (out.extra("kendall.icl"), out.extra("kendall.ial"))),
            Objective::Eva(c) => self.eva_loss(c, tape, out, pairs, batch, n),
        }
    }
}
