//! RICEA-style: our differentiable design for what the RICEA paper ("Probing Relative Interaction and
//! Dynamic Calibration in Multi-modal Entity Alignment", ACL 2025) describes at abstract level: modality
//! weights from the **relative interaction** of an entity's modalities, then **recalibrated according to
//! their uncertainty**, which an attention mechanism perceives (the paper's ADC). Its code is not public;
//! mmea-spec §4.6 gives the facts and our proposal, which this follows without MEAformer's transformer.
//!
//! ```text
//! structure       x⁰ = tanh(mean over {i} ∪ nbr(i) of Ent);  x^l = RRA_l(x^{l-1})     (LoginMEA's encoder)
//! encoders        ĥ_m = n̂(F_m W_m + b_m)                                          (m over the modalities present)
//! interaction     q_m = ĥ_m W_q,  k_m = ĥ_m W_k                                     (W_q, W_k ∈ R^{d×d_k})
//!                 A_{m,·} = softmax_{m'}(q_m·k_{m'} / √d_k);  c_m = Σ_{m'} A_{m,m'} ĥ_{m'}   (per entity)
//! raw weights     s_m = vᵀ tanh(c_m);  w = softmax_m(s)                            (before calibration)
//! calibration     u_m = softplus(c_m W_u + b_u)   (uncertainty, perceived from the attention context)
//!                 w' = softmax_m(s_m − u_m)       (= softmax(log w − u): uncertain modalities lose weight)
//! fusion          J = Σ_m w'_m ĥ_m;  joint = [x⁰ … x^L | J]
//! loss            InfoNCE(joint), in-batch KG2 negatives
//! ```
//!
//! Ablations: `interaction: false` (c_m = ĥ_m: each modality's weight sees only itself, as LoginMEA's ω),
//! `calibration: false` (w' = w). Explanations: `weights.raw` (w) and `weights.uncertainty` (u) beside the
//! calibrated weights (`omega`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::{ad, Tape, Var};
use crate::data::rng::Rng;
use crate::error::{Error, Result};
use crate::ops::contrastive::ad as cad;
use crate::ops::rows::ad as rowad;
use crate::ops::Unary;
use crate::tensor::Device;

use super::inputs::{encode_linear, put_encoder_weight, Inputs, Modality};
use super::loginmea::{chunked_joint_loss, init_structure, structure_forward, var, GraphLayer};
use super::params::{Init, Params};
use super::{AlignModel, LossArgs, Output};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiceaConfig {
    /// Hidden size of every block (300).
    pub dim: usize,
    /// Reflection layers of the structure encoder (2).
    pub layers: usize,
    /// InfoNCE temperature (0.1).
    pub tau: f32,
    /// Width of the interaction's queries and keys (64).
    pub key_dim: usize,
    /// Weights from the modalities' relative interaction; off: each from its own modality (ablation).
    pub interaction: bool,
    /// Uncertainty-aware recalibration; off: the raw weights are used (ablation).
    pub calibration: bool,
}

impl Default for RiceaConfig {
    fn default() -> Self {
        RiceaConfig { dim: 300, layers: 2, tau: 0.1, key_dim: 64, interaction: true, calibration: true }
    }
}

/// The RICEA-style model for the modalities present.
#[derive(Clone, Debug)]
pub struct Ricea {
    pub config: RiceaConfig,
    pub modalities: Vec<Modality>,
    pub modality_dims: Vec<usize>,
    /// Per modality: a learned constant ([`crate::model::inputs::MissingPolicy::LearnedConstant`]), with no weight matrix.
    pub constant: Vec<bool>,
}

impl Ricea {
    pub fn new(config: RiceaConfig, inputs: &Inputs) -> Result<Ricea> {
        if config.dim == 0 || config.key_dim == 0 || !(config.tau.is_finite() && config.tau > 0.0) {
            return Err(Error::invalid("RICEA-style", "dim and key_dim must be at least 1 and tau positive"));
        }
        let modalities = inputs.modality_list();
        let modality_dims = inputs.modality_widths();
        let constant = inputs.modalities.iter().map(|m| m.is_constant()).collect();
        Ok(Ricea { config, modalities, modality_dims, constant })
    }

    fn forward_impl(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs, explain: bool) -> Result<Output> {
        let c = &self.config;
        let v = |name: &str| var(vars, name);
        let mut att = explain.then(Vec::new);
        let (mut blocks, mut names) = structure_forward(tape, vars, inputs, c.layers, GraphLayer::Reflection, &mut att)?;
        let attention = att.unwrap_or_default();
        let mm = self.modalities.len();
        if mm == 0 {
            return Ok(Output { blocks, block_names: names, omega: None, sigma: None, attention, extra: Vec::new() });
        }
        let n = inputs.n;
        let mut nh = Vec::with_capacity(mm);
        for (mi, md) in self.modalities.iter().enumerate() {
            let k = md.name();
            nh.push(rowad::l2_normalize(tape, &encode_linear(tape, vars, &inputs.modalities[mi], &format!("enc.{k}.w"), &format!("enc.{k}.b"))?)?);
        }
        let col = |x: &Var, j: usize| -> Result<Var> { ad::reshape(tape, &rowad::slice_cols(tape, x, j, 1)?, &[n]) };
        let cat = |xs: &[Var]| -> Result<Var> {
            let r: Vec<&Var> = xs.iter().collect();
            if r.len() == 1 {
                Ok(xs[0].clone())
            } else {
                rowad::concat_cols(tape, &r)
            }
        };
        // Relative interaction: each modality attends over the entity's modalities.
        let ctx: Vec<Var> = if c.interaction {
            let q: Vec<Var> = nh.iter().map(|h| ad::linear(tape, h, v("ric.wq")?, None)).collect::<Result<_>>()?;
            let k: Vec<Var> = nh.iter().map(|h| ad::linear(tape, h, v("ric.wk")?, None)).collect::<Result<_>>()?;
            let scale = 1.0 / (c.key_dim as f32).sqrt();
            let mut out = Vec::with_capacity(mm);
            for qm in &q {
                let logits: Vec<Var> = k.iter().map(|kj| ad::reshape(tape, &ad::scale(tape, &rowad::row_dot(tape, qm, kj)?, scale)?, &[n, 1])).collect::<Result<_>>()?;
                let a = rowad::softmax_rows(tape, &cat(&logits)?)?;
                let terms: Vec<Var> = nh.iter().enumerate().map(|(j, hj)| rowad::scale_rows(tape, hj, &col(&a, j)?)).collect::<Result<_>>()?;
                out.push(ad::add_all(tape, &terms)?);
            }
            out
        } else {
            nh.clone()
        };
        let s: Vec<Var> = ctx.iter().map(|cm| ad::linear(tape, &ad::unary(tape, Unary::Tanh, cm)?, v("ric.v")?, None)).collect::<Result<_>>()?;
        let s = cat(&s)?; // [N, M]
        let raw = rowad::softmax_rows(tape, &s)?;
        let mut extra = Vec::new();
        let w = if c.calibration {
            let u: Vec<Var> = ctx.iter().map(|cm| ad::unary(tape, Unary::Softplus, &ad::linear(tape, cm, v("adc.w")?, Some(v("adc.b")?))?)).collect::<Result<_>>()?;
            let u = cat(&u)?;
            let w = rowad::softmax_rows(tape, &ad::sub(tape, &s, &u)?)?;
            extra.push(("weights.uncertainty".to_string(), u));
            w
        } else {
            raw.clone()
        };
        extra.push(("weights.raw".to_string(), raw));
        let terms: Vec<Var> = nh.iter().enumerate().map(|(mi, h)| rowad::scale_rows(tape, h, &col(&w, mi)?)).collect::<Result<_>>()?;
        blocks.push(ad::add_all(tape, &terms)?);
        names.push("joint.fused".to_string());
        Ok(Output { blocks, block_names: names, omega: Some(w), sigma: None, attention, extra })
    }
}

impl AlignModel for Ricea {
    fn name(&self) -> &'static str {
        "ricea-style"
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
            put_encoder_weight(&mut init, device, &mut p, constant, format!("enc.{}.w", m.name()), dm, d)?;
            p.put(device, format!("enc.{}.b", m.name()), init.linear_default(d, dm), &[d])?;
        }
        if !self.modalities.is_empty() {
            if c.interaction {
                p.put(device, "ric.wq", init.xavier_uniform(d * c.key_dim, d, c.key_dim), &[d, c.key_dim])?;
                p.put(device, "ric.wk", init.xavier_uniform(d * c.key_dim, d, c.key_dim), &[d, c.key_dim])?;
            }
            p.put(device, "ric.v", init.linear_default(d, d), &[d, 1])?;
            if c.calibration {
                p.put(device, "adc.w", init.linear_default(d, d), &[d, 1])?;
                p.put(device, "adc.b", vec![0.0], &[1])?;
            }
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
        const OP: &str = "RICEA-style loss";
        if args.pairs.is_empty() {
            return Err(Error::invalid(OP, "no training pairs"));
        }
        if !args.negatives.is_empty() {
            return Err(Error::invalid(OP, "extra negatives are not implemented for this model"));
        }
        let tau = self.config.tau;
        chunked_joint_loss(tape, &out.blocks, args, |p, q| cad::info_nce(tape, p, q, tau))
    }

    fn supports_dropout(&self) -> bool {
        true
    }
}
