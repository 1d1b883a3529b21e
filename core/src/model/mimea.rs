//! MIMEA-style: our differentiable design for the four modules the MIMEA paper names ("Leveraging
//! Intra-modal and Inter-modal Interaction for Multi-Modal Entity Alignment"; its code is not public). It
//! follows mmea-spec §4.7's proposal; where it departs, the departure is stated here.
//!
//! ```text
//! structure        x⁰ = tanh(mean over {i} ∪ nbr(i) of Ent);  x^l = RRA_l(x^{l-1})   (LoginMEA's encoder)
//! modality MLPs    h_m = ReLU(F_m W¹_m + b¹_m) W²_m + b²_m;   ĥ_m = n̂(h_m)            (m over the modalities present)
//! Beta gates       [a | b] = [ĥ_1 … ĥ_M] G + c   (N × 2M: every gate sees every modality: the interaction)
//!                  gate_m ~ Beta(α = e^{a_m}, β = e^{b_m});  μ_m = E[gate_m] = α/(α+β) = sigmoid(a_m − b_m)
//! fusion           J = Σ_m μ_m ĥ_m          (the deterministic mean of the gated sum; cosine is scale-free,
//!                                             so dividing by Σ_m μ_m would change nothing)
//! joint            [x⁰ x¹ … x^L | J]
//! loss             InfoNCE(joint)                                            (in-batch KG2 negatives)
//!                + Σ_m ḡ_m · InfoNCE(ĥ_m)      ḡ_m = batch mean of μ_m, held constant (modal-adaptive)
//!                + λ Σ_m ⟨P^m, C^m⟩             optimal-transport modal alignment (below)
//! ```
//!
//! **OT modal alignment.** For each chunk, U = the entities of its first `ot_sample` pairs (both sides).
//! Per modality the cost is `C^m_ij = 1 − ĥ_m(i)·n̂(J)(j)` over U × U; `P^m` is the entropic plan (log-domain
//! Sinkhorn on the scores `−C`, uniform marginals, ε = `ot_eps`, `ot_iters` iterations) computed on the
//! device with the evaluation's Sinkhorn kernel and **held constant**: the gradient flows through C only
//! (the envelope theorem for the entropic objective), which is cheap and stable. The term pulls each
//! entity's uni-modal embedding towards the joint embeddings it is transported to.
//!
//! Departures from §4.7's proposal: the Beta parameters are log-parametrised (α = e^a instead of
//! 1 + softplus), so that the mean is a sigmoid (no division op is needed, and any α, β > 0 is allowed);
//! the gates are not renormalised (see "fusion"); the joint keeps the structure blocks beside J (as
//! LoginMEA's joint does) rather than adding the structure as one more gated modality.
//! Ablations: `gates: false` (μ ≡ 1), `modal_loss: false`, `ot_weight: 0`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::{ad, Tape, Var};
use crate::data::rng::Rng;
use crate::error::{Error, Result};
use crate::ops::contrastive::ad as cad;
use crate::ops::rows::ad as rowad;
use crate::ops::sinkhorn::{sinkhorn, TiledMatrix};
use crate::ops::sparse::ad as sad;
use crate::ops::{add, gather_rows, matmul_ex, scale, slice_cols, sum_all, SegmentIndex, Unary};
use crate::tensor::{Device, Tensor};

use super::inputs::{encode_linear, put_encoder_weight, Inputs, Modality};
use super::loginmea::{gather_joint, init_structure, structure_forward, var, GraphLayer};
use super::params::{Init, Params};
use super::{AlignModel, LossArgs, Output};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MimeaConfig {
    /// Hidden size of every block (300).
    pub dim: usize,
    /// Reflection layers of the structure encoder (2).
    pub layers: usize,
    /// InfoNCE temperature (0.1).
    pub tau: f32,
    /// Probability-guided (Beta-gated) fusion; off: every gate is 1 (ablation).
    pub gates: bool,
    /// The modal-adaptive per-modality contrastive terms; off: joint InfoNCE only (ablation).
    pub modal_loss: bool,
    /// Weight λ of the OT modal-alignment term (0 turns it off).
    pub ot_weight: f32,
    /// Sinkhorn temperature and iterations of the OT term.
    pub ot_eps: f32,
    pub ot_iters: usize,
    /// Pairs per chunk whose entities form the OT sample U (|U| = 2 · this).
    pub ot_sample: usize,
}

impl Default for MimeaConfig {
    fn default() -> Self {
        MimeaConfig { dim: 300, layers: 2, tau: 0.1, gates: true, modal_loss: true, ot_weight: 1.0, ot_eps: 0.05, ot_iters: 20, ot_sample: 512 }
    }
}

/// The MIMEA-style model for the modalities present.
#[derive(Clone, Debug)]
pub struct Mimea {
    pub config: MimeaConfig,
    pub modalities: Vec<Modality>,
    pub modality_dims: Vec<usize>,
    /// Per modality: a learned constant ([`crate::model::inputs::MissingPolicy::LearnedConstant`]), with no weight matrix.
    pub constant: Vec<bool>,
}

impl Mimea {
    pub fn new(config: MimeaConfig, inputs: &Inputs) -> Result<Mimea> {
        let c = &config;
        let positive = |x: f32| x.is_finite() && x > 0.0;
        if c.dim == 0 || !positive(c.tau) || !positive(c.ot_eps) || c.ot_weight.is_nan() || c.ot_weight < 0.0 || c.ot_sample == 0 {
            return Err(Error::invalid("MIMEA-style", "dim, ot_sample must be at least 1; tau and ot_eps positive; ot_weight non-negative"));
        }
        let modalities = inputs.modality_list();
        let modality_dims = inputs.modality_widths();
        let constant = inputs.modalities.iter().map(|m| m.is_constant()).collect();
        Ok(Mimea { config, modalities, modality_dims, constant })
    }

    fn forward_impl(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs, explain: bool) -> Result<Output> {
        let c = &self.config;
        let v = |name: &str| var(vars, name);
        let mut att = explain.then(Vec::new);
        let (mut blocks, mut names) = structure_forward(tape, vars, inputs, c.layers, GraphLayer::Reflection, &mut att)?;
        let attention = att.unwrap_or_default();
        let mm = self.modalities.len();
        let mut extra = Vec::new();
        if mm == 0 {
            return Ok(Output { blocks, block_names: names, omega: None, sigma: None, attention, extra });
        }
        let mut nh = Vec::with_capacity(mm);
        for (mi, md) in self.modalities.iter().enumerate() {
            let k = md.name();
            let hidden = ad::unary(tape, Unary::Relu, &encode_linear(tape, vars, &inputs.modalities[mi], &format!("mlp.{k}.w1"), &format!("mlp.{k}.b1"))?)?;
            let h = ad::linear(tape, &hidden, v(&format!("mlp.{k}.w2"))?, Some(v(&format!("mlp.{k}.b2"))?))?;
            nh.push(rowad::l2_normalize(tape, &h)?);
        }
        let n = inputs.n;
        let mu = if c.gates {
            let refs: Vec<&Var> = nh.iter().collect();
            let cat = if mm == 1 { nh[0].clone() } else { rowad::concat_cols(tape, &refs)? };
            let z = ad::linear(tape, &cat, v("gate.w")?, Some(v("gate.b")?))?;
            let a = rowad::slice_cols(tape, &z, 0, mm)?;
            let b = rowad::slice_cols(tape, &z, mm, mm)?;
            let mu = ad::unary(tape, Unary::Sigmoid, &ad::sub(tape, &a, &b)?)?;
            extra.push(("beta.log_alpha".to_string(), a));
            extra.push(("beta.log_beta".to_string(), b));
            Some(mu)
        } else {
            None
        };
        let terms: Vec<Var> = nh
            .iter()
            .enumerate()
            .map(|(mi, h)| match &mu {
                Some(mu) => rowad::scale_rows(tape, h, &ad::reshape(tape, &rowad::slice_cols(tape, mu, mi, 1)?, &[n])?),
                None => Ok(h.clone()),
            })
            .collect::<Result<_>>()?;
        let joint = ad::add_all(tape, &terms)?;
        for (md, h) in self.modalities.iter().zip(&nh) {
            extra.push((format!("modal.{}", md.name()), h.clone()));
        }
        blocks.push(joint);
        names.push("joint.fused".to_string());
        Ok(Output { blocks, block_names: names, omega: mu, sigma: None, attention, extra })
    }
}

impl AlignModel for Mimea {
    fn name(&self) -> &'static str {
        "mimea-style"
    }

    fn modalities(&self) -> &[Modality] {
        &self.modalities
    }

    fn init(&self, device: &Device, n: usize, num_rel: usize, seed: u64) -> Result<Params> {
        let c = &self.config;
        let d = c.dim;
        let mut rng = Rng::new(seed);
        let mut init = Init { rng: &mut rng };
        let mut p = Params::new();
        init_structure(&mut init, device, &mut p, n, num_rel, d, c.layers, GraphLayer::Reflection)?;
        for ((m, &dm), &constant) in self.modalities.iter().zip(&self.modality_dims).zip(&self.constant) {
            let k = m.name();
            put_encoder_weight(&mut init, device, &mut p, constant, format!("mlp.{k}.w1"), dm, d)?;
            p.put(device, format!("mlp.{k}.b1"), init.linear_default(d, dm), &[d])?;
            p.put(device, format!("mlp.{k}.w2"), init.linear_default(d * d, d), &[d, d])?;
            p.put(device, format!("mlp.{k}.b2"), init.linear_default(d, d), &[d])?;
        }
        let mm = self.modalities.len();
        if mm > 0 && c.gates {
            p.put(device, "gate.w", init.linear_default(mm * d * 2 * mm, mm * d), &[mm * d, 2 * mm])?;
            // a = b at the start: every gate's mean is 1/2.
            p.put(device, "gate.b", vec![0.0; 2 * mm], &[2 * mm])?;
        }
        Ok(p)
    }

    fn forward(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        self.forward_impl(tape, vars, inputs, false)
    }

    fn forward_explained(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        self.forward_impl(tape, vars, inputs, true)
    }

    fn loss(&self, tape: &Tape, out: &Output, args: &LossArgs) -> Result<Var> {
        let LossArgs { pairs, negatives, batch, n, dropout } = *args;
        const OP: &str = "MIMEA-style loss";
        if pairs.is_empty() {
            return Err(Error::invalid(OP, "no training pairs"));
        }
        if !negatives.is_empty() {
            return Err(Error::invalid(OP, "extra negatives are not implemented for this model"));
        }
        if dropout.is_some() {
            return Err(Error::invalid(OP, "row dropout is not implemented for this model"));
        }
        let c = &self.config;
        let dev = out.blocks[0].value.device();
        let modal: Vec<(&str, &Var)> = self.modalities.iter().map(|m| m.name()).filter_map(|k| out.extra(&format!("modal.{k}")).map(|v| (k, v))).collect();
        // The gates' values (no gradient) for the constant per-chunk weights ḡ_m.
        let mu_value = out.omega.as_ref().filter(|_| c.modal_loss).map(|mu| mu.value.clone());
        let mm = self.modalities.len();
        let joint_fused = out.blocks.last().filter(|_| mm > 0);
        let nj = match joint_fused {
            Some(j) if c.ot_weight > 0.0 => Some(rowad::l2_normalize(tape, j)?),
            _ => None,
        };
        // Every term, in order; summed at the end.
        let mut terms: Vec<Var> = Vec::new();
        for chunk in pairs.chunks(batch.max(1)) {
            let left: Vec<u32> = chunk.iter().map(|p| p.0).collect();
            let right: Vec<u32> = chunk.iter().map(|p| p.1).collect();
            let li = SegmentIndex::from_indices(&dev, &left, n)?;
            let ri = SegmentIndex::from_indices(&dev, &right, n)?;
            let p = gather_joint(tape, &out.blocks, &li)?;
            let q = gather_joint(tape, &out.blocks, &ri)?;
            terms.push(cad::info_nce(tape, &p, &q, c.tau)?);
            if c.modal_loss {
                for (mi, (_, h)) in modal.iter().enumerate() {
                    // ĥ rows are unit length already; gathering keeps them so.
                    let pm = sad::gather_rows(tape, h, &li)?;
                    let qm = sad::gather_rows(tape, h, &ri)?;
                    let lm = cad::info_nce(tape, &pm, &qm, c.tau)?;
                    let term = match &mu_value {
                        Some(mu) => {
                            // ḡ_m: the mean gate of modality m over the chunk's entities, a constant.
                            let col = |idx: &[u32]| -> Result<Tensor> {
                                let rows = gather_rows(mu, &Tensor::from_u32(&dev, idx.to_vec(), &[idx.len()])?)?;
                                sum_all(&slice_cols(&rows, mi, 1)?)
                            };
                            let g = scale(&add(&col(&left)?, &col(&right)?)?, 1.0 / (2 * chunk.len()) as f32)?;
                            ad::scale_by(tape, &tape.constant(&g), &lm)?
                        }
                        None => lm,
                    };
                    terms.push(term);
                }
            }
            if let Some(nj) = &nj {
                let k = chunk.len().min(c.ot_sample);
                let u: Vec<u32> = chunk[..k].iter().flat_map(|&(l, r)| [l, r]).collect();
                let ui = SegmentIndex::from_indices(&dev, &u, n)?;
                let b = sad::gather_rows(tape, nj, &ui)?;
                for (_, h) in &modal {
                    let a = sad::gather_rows(tape, h, &ui)?;
                    // The plan on the scores −C = a·b − 1 (Sinkhorn is invariant to the constant), held constant.
                    let scores = matmul_ex(&a.value, &b.value, None, false, true, 1.0)?;
                    let plan = sinkhorn(&TiledMatrix::whole(&scores)?, c.ot_eps, c.ot_iters)?.plan()?.to_tensor()?;
                    let mass = sum_all(&plan)?;
                    // ⟨P, C⟩ = ΣP − Σ_ij P_ij a_i·b_j = ΣP − sum(a ⊙ (P b)).
                    let pb = ad::matmul(tape, &tape.constant(&plan), &b, false, false)?;
                    let inner = ad::sum(tape, &ad::mul(tape, &a, &pb)?)?;
                    let ot = ad::sub(tape, &tape.constant(&mass), &inner)?;
                    terms.push(ad::scale(tape, &ot, c.ot_weight)?);
                }
            }
        }
        ad::add_all(tape, &terms)
    }
}
