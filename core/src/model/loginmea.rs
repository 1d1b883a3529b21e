//! LoginMEA (Su et al., ECAI 2024) as the released code computes it (mmea-spec §4.5), with the ablation
//! switches of the paper's Table 3.
//!
//! ```text
//! modality encoders   h_m = F_m W_m + b_m                                   (m over the modalities present)
//! structure encoder   x⁰ = tanh(mean_{j ∈ {i} ∪ nbr(i)} Ent_j);  x^l = RRA_{a_S,l}(x^{l-1}),  l = 1..L
//! global branch       σ = softmax(θ);  y⁰_m = tanh(σ_m n̂(h_m))
//! local fusion        ω_i = softmax_m(uᵀ tanh(h_{m,i}));  z_m = [1 ; ω_m n̂(h_m)]
//!                     o = Σ_r λ_r Π_m (z_m W_{m,r}) + β   (LMF, rank R);  x⁰_J = tanh(o)
//! global interaction  x^l_J = RRA_{a_J,l}(x^{l-1}_J),  l = 1..L   (Rel shared with the structure encoder)
//! joint               [x⁰ ; x¹ ; … ; y⁰_1 ; … ; y⁰_M ; x¹_J ; …]   (x⁰_J itself is not in the output)
//! loss                InfoNCE(n̂(joint[l]), n̂(joint[r]), τ) over chunks of train pairs, summed
//! ```
//!
//! `RRA` is the fused relational-reflection attention layer ([`crate::ops::reflection`]), tanh output.
//! The joint embedding is kept as a list of `[N, d]` column blocks: the full `N × (d·blocks)` matrix (374 MB
//! on DBP15K) would exceed one 128 MiB storage binding, while the loss and the evaluation only ever need
//! the rows of a batch or of the test pairs, which are gathered block by block and concatenated.
//!
//! With no modality present (or all switched off) the model is the structure encoder alone, which is the
//! structure-only baseline (Dual-AMN-like reflection attention).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::{ad, Tape, Var};
use crate::data::rng::Rng;
use crate::error::{Error, Result};
use crate::ops::contrastive::ad as cad;
use crate::ops::fusion::ad as fad;
use crate::ops::gat::ad as gad;
use crate::ops::reflection::ad as rad;
use crate::ops::rows::ad as rowad;
use crate::ops::sparse::ad as sad;
use crate::ops::{Act, GatLogit, SegmentIndex, Unary};
use crate::tensor::{Device, Tensor};

use super::inputs::{encode_linear, put_encoder_weight, Inputs, Modality};
use super::params::{Init, Params};
use super::{LossArgs, RowDropout};

/// How the modalities are fused for the joint graph encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// Low-rank multimodal fusion (LoginMEA).
    LowRank,
    /// Ablation "w/o low-rank fusion": the adaptively weighted sum `Σ_m ω_m n̂(h_m)` feeds the joint
    /// graph encoder.
    WeightedSum,
    /// Ablation "concatenation fusion": only the globally weighted concatenation `y⁰` (no local fusion,
    /// no joint graph encoder).
    Concat,
}

/// The graph aggregation layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphLayer {
    /// Relational-reflection attention (LoginMEA, Dual-AMN form).
    Reflection,
    /// Ablation: mean over `{i} ∪ nbr(i)` then tanh (no relations, no attention; GCN-like).
    Mean,
    /// Ablation "plain GAT": feature attention over `{i} ∪ nbr(i)` (GAT paper logits
    /// `LeakyReLU₀.₂(a₁ᵀx_i + a₂ᵀx_j)`, no relations), then tanh. The layer's `a_s{l}` is `[d, 2]`.
    Gat,
}

/// The training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// One-direction InfoNCE with in-batch KG2 negatives (LoginMEA).
    InfoNce,
    /// MCLEA's ICL (both directions plus intra-KG negatives), α = 0.5.
    Icl,
    /// Dual-AMN's normalised hard-sample mining: both directions against every entity of both KGs, logits
    /// standardised per row and scaled by λ = 30, the positive outside the log-sum-exp
    /// ([`crate::ops::nhs`]; τ is not used). Not in LoginMEA.
    Nhs,
}

/// Dual-AMN's λ for [`Loss::Nhs`].
pub const NHS_LAMBDA: f32 = 30.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginMeaConfig {
    /// Hidden size of every block (300 in the released code).
    pub dim: usize,
    /// LMF rank (hard-coded 8 in the released code).
    pub rank: usize,
    /// Reflection layers per graph encoder (2).
    pub layers: usize,
    /// InfoNCE temperature (0.1).
    pub tau: f32,
    pub fusion: Fusion,
    /// Entity-specific modality weights ω; off = uniform 1/M ("w/o adaptive weights").
    pub adaptive_weights: bool,
    pub graph_layer: GraphLayer,
    pub loss: Loss,
}

impl Default for LoginMeaConfig {
    fn default() -> Self {
        LoginMeaConfig { dim: 300, rank: 8, layers: 2, tau: 0.1, fusion: Fusion::LowRank, adaptive_weights: true, graph_layer: GraphLayer::Reflection, loss: Loss::InfoNce }
    }
}

/// The structure-only baseline's settings (the structure encoder of LoginMEA alone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StructureConfig {
    pub dim: usize,
    pub layers: usize,
    pub tau: f32,
    pub graph_layer: GraphLayer,
    pub loss: Loss,
}

impl Default for StructureConfig {
    fn default() -> Self {
        let l = LoginMeaConfig::default();
        StructureConfig { dim: l.dim, layers: l.layers, tau: l.tau, graph_layer: l.graph_layer, loss: l.loss }
    }
}

/// The model: its config and the modalities it was built for.
#[derive(Clone, Debug)]
pub struct LoginMea {
    pub config: LoginMeaConfig,
    pub modalities: Vec<Modality>,
    /// Input width of each modality.
    pub modality_dims: Vec<usize>,
    /// Per modality: a learned constant ([`crate::model::inputs::MissingPolicy::LearnedConstant`]), with no weight matrix.
    pub constant: Vec<bool>,
    /// Built as the structure-only baseline ([`LoginMea::structure_only`]).
    structure_only: bool,
}

pub use super::Output;

fn mname(m: Modality) -> &'static str {
    m.name()
}

impl LoginMea {
    pub fn new(config: LoginMeaConfig, inputs: &Inputs) -> Result<LoginMea> {
        if config.dim == 0 || config.rank == 0 {
            return Err(Error::invalid("LoginMea::new", "dim and rank must be at least 1"));
        }
        if config.tau.is_nan() || config.tau <= 0.0 {
            return Err(Error::invalid("LoginMea::new", format!("tau must be positive, got {}", config.tau)));
        }
        let modalities = inputs.modality_list();
        if modalities.len() > crate::ops::fusion::MAX_MODALITIES {
            return Err(Error::invalid("LoginMea::new", "at most 4 modalities"));
        }
        let modality_dims = inputs.modality_widths();
        let constant = inputs.modalities.iter().map(|m| m.is_constant()).collect();
        Ok(LoginMea { config, modalities, modality_dims, constant, structure_only: false })
    }

    /// The structure-only baseline: learned entity embeddings, neighbour mean, then reflection attention
    /// (Dual-AMN-like), whatever modalities the data has.
    pub fn structure_only(config: &StructureConfig) -> Result<LoginMea> {
        let c = LoginMeaConfig { dim: config.dim, layers: config.layers, tau: config.tau, graph_layer: config.graph_layer, loss: config.loss, ..Default::default() };
        if c.dim == 0 || c.tau.is_nan() || c.tau <= 0.0 {
            return Err(Error::invalid("structure model", "dim must be at least 1 and tau positive"));
        }
        Ok(LoginMea { config: c, modalities: Vec::new(), modality_dims: Vec::new(), constant: Vec::new(), structure_only: true })
    }

    fn joint_graph(&self) -> bool {
        !self.modalities.is_empty() && self.config.fusion != Fusion::Concat
    }

    /// Fresh parameters, initialised as the reference code does (Xavier for Ent/Rel/attention vectors and
    /// LMF factors, PyTorch Linear defaults for the encoders, θ = 1, β = 0).
    pub fn init(&self, device: &Device, n: usize, num_rel: usize, seed: u64) -> Result<Params> {
        let c = &self.config;
        let d = c.dim;
        let mut rng = Rng::new(seed);
        let mut init = Init { rng: &mut rng };
        let mut p = Params::new();
        init_structure(&mut init, device, &mut p, n, num_rel, d, c.layers, c.graph_layer)?;
        for ((m, &dm), &constant) in self.modalities.iter().zip(&self.modality_dims).zip(&self.constant) {
            put_encoder_weight(&mut init, device, &mut p, constant, format!("enc.{}.w", mname(*m)), dm, d)?;
            p.put(device, format!("enc.{}.b", mname(*m)), init.linear_default(d, dm), &[d])?;
        }
        let mm = self.modalities.len();
        if mm > 0 {
            p.put(device, "theta", vec![1.0; mm], &[1, mm])?;
        }
        if self.joint_graph() {
            if c.adaptive_weights {
                p.put(device, "u", init.linear_default(d, d), &[d, 1])?;
            }
            if c.fusion == Fusion::LowRank {
                let r = c.rank;
                for m in &self.modalities {
                    // PyTorch's xavier_normal_ on the [R, d+1, d] factor: fan_in = (d+1)·d, fan_out = R·d.
                    p.put(device, format!("lmf.{}.w", mname(*m)), init.xavier_normal((d + 1) * r * d, (d + 1) * d, r * d), &[d + 1, r * d])?;
                }
                p.put(device, "lmf.lambda", init.xavier_normal(r, r, 1), &[r])?;
                p.put(device, "lmf.beta", vec![0.0; d], &[d])?;
            }
            for l in 1..=c.layers {
                init_attention(&mut init, device, &mut p, format!("a_j{l}"), d, c.graph_layer)?;
            }
        }
        Ok(p)
    }

    /// The forward pass over all entities. `vars` are the parameters on `tape` (as params to train, or
    /// as constants for inference), by name.
    pub fn forward(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        self.forward_impl(tape, vars, inputs, None)
    }

    /// [`Self::forward`], also keeping every reflection layer's attention weights (`Output::attention`).
    pub fn forward_explained(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        self.forward_impl(tape, vars, inputs, Some(Vec::new()))
    }

    fn forward_impl(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs, mut attention: Option<Vec<(String, Tensor)>>) -> Result<Output> {
        let c = &self.config;
        let v = |name: &str| var(vars, name);
        let (mut blocks, mut names) = structure_forward(tape, vars, inputs, c.layers, c.graph_layer, &mut attention)?;

        let mm = self.modalities.len();
        if mm == 0 {
            return Ok(Output { blocks, block_names: names, omega: None, sigma: None, attention: attention.unwrap_or_default(), extra: Vec::new() });
        }
        // Modality encoders.
        let mut h = Vec::with_capacity(mm);
        let mut nh = Vec::with_capacity(mm);
        for (mi, m) in self.modalities.iter().enumerate() {
            let hm = encode_linear(tape, vars, &inputs.modalities[mi], &format!("enc.{}.w", mname(*m)), &format!("enc.{}.b", mname(*m)))?;
            nh.push(rowad::l2_normalize(tape, &hm)?);
            h.push(hm);
        }
        // Global weighted concatenation.
        let sigma = rowad::softmax_rows(tape, v("theta")?)?;
        for (mi, m) in self.modalities.iter().enumerate() {
            let s = ad::reshape(tape, &rowad::slice_cols(tape, &sigma, mi, 1)?, &[1])?;
            let y0 = ad::unary(tape, Unary::Tanh, &ad::scale_by(tape, &s, &nh[mi])?)?;
            blocks.push(y0);
            names.push(format!("joint.y0.{}", mname(*m)));
        }
        if !self.joint_graph() {
            return Ok(Output { blocks, block_names: names, omega: None, sigma: Some(sigma), attention: attention.unwrap_or_default(), extra: Vec::new() });
        }
        // Entity-specific modality weights.
        let n = inputs.n;
        let omega = if c.adaptive_weights {
            let mut q = Vec::with_capacity(mm);
            for hm in &h {
                q.push(ad::linear(tape, &ad::unary(tape, Unary::Tanh, hm)?, v("u")?, None)?);
            }
            let qr: Vec<&Var> = q.iter().collect();
            Some(rowad::softmax_rows(tape, &rowad::concat_cols(tape, &qr)?)?)
        } else {
            None
        };
        let mut weighted = Vec::with_capacity(mm);
        for (mi, nhm) in nh.iter().enumerate() {
            weighted.push(match &omega {
                Some(om) => {
                    let w = ad::reshape(tape, &rowad::slice_cols(tape, om, mi, 1)?, &[n])?;
                    rowad::scale_rows(tape, nhm, &w)?
                }
                None => ad::scale(tape, nhm, 1.0 / mm as f32)?,
            });
        }
        let o = match c.fusion {
            Fusion::LowRank => {
                let mut z = Vec::with_capacity(mm);
                for w in &weighted {
                    z.push(rowad::prepend_ones_col(tape, w)?);
                }
                let zr: Vec<&Var> = z.iter().collect();
                let ws: Vec<&Var> = self.modalities.iter().map(|m| v(&format!("lmf.{}.w", mname(*m)))).collect::<Result<_>>()?;
                fad::low_rank_fusion(tape, &zr, &ws, v("lmf.lambda")?, v("lmf.beta")?, c.rank)?
            }
            Fusion::WeightedSum => ad::add_all(tape, &weighted)?,
            Fusion::Concat => unreachable!("no joint graph encoder for concatenation fusion"),
        };
        let mut xj = ad::unary(tape, Unary::Tanh, &o)?;
        for l in 1..=c.layers {
            let name = format!("joint.x{l}");
            xj = graph_layer(tape, inputs, c.graph_layer, &xj, v("rel")?, v(&format!("a_j{l}"))?, &name, &mut attention)?;
            blocks.push(xj.clone());
            names.push(name);
        }
        Ok(Output { blocks, block_names: names, omega, sigma: Some(sigma), attention: attention.unwrap_or_default(), extra: Vec::new() })
    }

    /// The loss over `args.pairs` (KG1, KG2 indices) in chunks of `args.batch`: the sum of the chunks' mean
    /// losses (the reference code accumulates the gradients of every chunk before one optimiser step). With
    /// `args.negatives` (entity indices, none of them a positive), InfoNCE also contrasts every row against
    /// them (not in LoginMEA; see `TrainConfig::negatives`); with `args.dropout`, the pairs' rows are
    /// dropped out before they are normalised (not in LoginMEA; see `TrainConfig::dropout`). [`Loss::Nhs`]
    /// takes its own path ([`nhs_loss`]), where the negatives replace "every other entity".
    pub fn loss(&self, tape: &Tape, blocks: &[Var], args: &LossArgs) -> Result<Var> {
        if args.pairs.is_empty() {
            return Err(Error::invalid("LoginMea::loss", "no training pairs"));
        }
        if self.config.loss == Loss::Nhs {
            return nhs_loss(tape, blocks, args);
        }
        let dev = blocks[0].value.device();
        let neg = if args.negatives.is_empty() {
            None
        } else if self.config.loss != Loss::InfoNce {
            return Err(Error::invalid("LoginMea::loss", "extra negatives are implemented for the InfoNCE and NHS losses only"));
        } else {
            Some(gather_joint(tape, blocks, &SegmentIndex::from_indices(&dev, args.negatives, args.n)?)?)
        };
        let tau = self.config.tau;
        chunked_joint_loss(tape, blocks, args, |p, q| match (self.config.loss, &neg) {
            (Loss::InfoNce, Some(nv)) => cad::info_nce_neg(tape, p, q, nv, tau),
            (Loss::InfoNce, None) => cad::info_nce(tape, p, q, tau),
            (Loss::Icl, _) => cad::icl(tape, p, q, tau, 0.5),
            (Loss::Nhs, _) => Err(Error::invalid("LoginMea::loss", "internal: NHS is handled above")),
        })
    }
}

/// The parameter `name` among `vars` (an error naming it if missing).
pub(crate) fn var<'a>(vars: &'a HashMap<String, Var>, name: &str) -> Result<&'a Var> {
    vars.get(name).ok_or_else(|| Error::invalid("forward", format!("missing parameter `{name}`")))
}

/// A graph layer's attention vector: `[d]` (reflection; unused by the mean layer), or `[d, 2]` =
/// `[a₁ | a₂]` for the GAT layer, as pyGAT's `a ∈ R^{2d}` (Xavier over 2d × 1).
fn init_attention(init: &mut Init, device: &Device, p: &mut Params, name: String, d: usize, kind: GraphLayer) -> Result<()> {
    match kind {
        GraphLayer::Gat => p.put(device, name, init.xavier_uniform(2 * d, 2 * d, 1), &[d, 2]),
        _ => p.put(device, name, init.xavier_uniform(d, 1, d), &[d]),
    }
}

/// The parameters of LoginMEA's structure encoder (`ent`, `rel`, `a_s1..L`, Xavier as the reference code),
/// shared by the models built on it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn init_structure(init: &mut Init, device: &Device, p: &mut Params, n: usize, num_rel: usize, d: usize, layers: usize, kind: GraphLayer) -> Result<()> {
    p.put(device, "ent", init.xavier_uniform(n * d, d, n), &[n, d])?;
    p.put(device, "rel", init.xavier_uniform(num_rel * d, d, num_rel), &[num_rel, d])?;
    for l in 1..=layers {
        init_attention(init, device, p, format!("a_s{l}"), d, kind)?;
    }
    Ok(())
}

/// The sum over chunks of `args.batch` pairs of `f(P, Q)`, P and Q the chunk's normalised joint rows (KG1
/// and KG2 sides, each dropped out first when `args.dropout` is set): the reference code accumulates every
/// chunk's gradient before one optimiser step.
pub(crate) fn chunked_joint_loss(tape: &Tape, blocks: &[Var], args: &LossArgs, mut f: impl FnMut(&Var, &Var) -> Result<Var>) -> Result<Var> {
    sum_over_chunks(tape, blocks, args, 2, |_, _, p, q| f(p, q))
}

/// The sum over chunks of `args.batch` pairs of `f(k, chunk, P, Q)`, P and Q as in [`chunked_joint_loss`].
/// Chunk k's dropout masks are seeded `stride·k` (P) and `stride·k + 1` (Q); seeds `stride·k + 2 ..
/// stride·(k + 1)` are free for `f`'s own rows.
fn sum_over_chunks(tape: &Tape, blocks: &[Var], args: &LossArgs, stride: u64, mut f: impl FnMut(u64, &[(u32, u32)], &Var, &Var) -> Result<Var>) -> Result<Var> {
    let dev = blocks.first().ok_or_else(|| Error::invalid("loss", "no embedding blocks"))?.value.device();
    let mut terms = Vec::new();
    for (k, chunk) in args.pairs.chunks(args.batch.max(1)).enumerate() {
        let (li, ri) = pair_sides(&dev, chunk, args.n)?;
        let k = k as u64;
        let p = gather_joint_dropout(tape, blocks, &li, args.dropout.map(|d| (d, stride * k)))?;
        let q = gather_joint_dropout(tape, blocks, &ri, args.dropout.map(|d| (d, stride * k + 1)))?;
        terms.push(f(k, chunk, &p, &q)?);
    }
    ad::add_all(tape, &terms).map_err(|_| Error::invalid("loss", "no training pairs"))
}

/// [`Loss::Nhs`] summed over chunks of `args.batch` pairs: per chunk, the pairs' rows against the chunk's own
/// entities and every other entity (Dual-AMN), or, with `args.negatives`, those sampled entities (in no
/// training pair) instead of all others; each side dropped out first when `args.dropout` is set (the
/// others with seed 3k + 2).
fn nhs_loss(tape: &Tape, blocks: &[Var], args: &LossArgs) -> Result<Var> {
    let dev = blocks.first().ok_or_else(|| Error::invalid("loss", "no embedding blocks"))?.value.device();
    let mut in_chunk = vec![false; args.n];
    sum_over_chunks(tape, blocks, args, 3, |k, chunk, p, q| {
        in_chunk.iter_mut().for_each(|f| *f = false);
        for &(a, b) in chunk {
            for e in [a, b] {
                if let Some(f) = in_chunk.get_mut(e as usize) {
                    *f = true;
                }
            }
        }
        let others: Vec<u32> = if args.negatives.is_empty() {
            (0..args.n as u32).filter(|&e| !in_chunk[e as usize]).collect()
        } else {
            args.negatives.iter().copied().filter(|&e| !in_chunk.get(e as usize).copied().unwrap_or(true)).collect()
        };
        let nv = if others.is_empty() {
            tape.constant(&Tensor::zeros(&dev, &[0, p.value.shape()[1]])?)
        } else {
            gather_joint_dropout(tape, blocks, &SegmentIndex::from_indices(&dev, &others, args.n)?, args.dropout.map(|d| (d, 3 * k + 2)))?
        };
        cad::nhs(tape, p, q, &nv, NHS_LAMBDA)
    })
}

/// One graph layer; with `attention` set, a reflection layer's `α` is appended to it under `name`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn graph_layer(tape: &Tape, inputs: &Inputs, kind: GraphLayer, x: &Var, rel: &Var, a: &Var, name: &str, attention: &mut Option<Vec<(String, Tensor)>>) -> Result<Var> {
    match kind {
        GraphLayer::Reflection => {
            let (y, alpha) = rad::reflection_attention_alpha(tape, &inputs.graph, x, rel, a, Act::Tanh, attention.is_some())?;
            if let (Some(list), Some(alpha)) = (attention.as_mut(), alpha) {
                list.push((name.to_string(), alpha));
            }
            Ok(y)
        }
        GraphLayer::Mean => {
            let (m, mt) = &inputs.nbr_mean;
            let y = sad::spmm(tape, m, mt, x)?;
            ad::unary(tape, Unary::Tanh, &y)
        }
        GraphLayer::Gat => {
            let y = gat_layer(tape, inputs, x, a, GatLogit::GAT)?;
            ad::unary(tape, Unary::Tanh, &y)
        }
    }
}

/// One feature-attention layer over the neighbourhood pattern, `a` `[d, 2]` = `[a₁ | a₂]`: the per-node
/// scalars `p = x a₁`, `q = x a₂` by one matmul, then the fused GAT kernel (no activation).
pub(crate) fn gat_layer(tape: &Tape, inputs: &Inputs, x: &Var, a: &Var, logit: GatLogit) -> Result<Var> {
    let pq = ad::matmul(tape, x, a, false, false)?;
    let p = rowad::slice_cols(tape, &pq, 0, 1)?;
    let q = rowad::slice_cols(tape, &pq, 1, 1)?;
    Ok(gad::gat_attention(tape, &inputs.gat_graph, x, &p, &q, logit, false)?.0)
}

/// LoginMEA's structure encoder: `x⁰ = tanh(mean over {i} ∪ nbr(i) of Ent)`, then `layers` graph layers;
/// returns the blocks `structure.x0..xL` and their names.
pub(crate) fn structure_forward(
    tape: &Tape,
    vars: &HashMap<String, Var>,
    inputs: &Inputs,
    layers: usize,
    kind: GraphLayer,
    attention: &mut Option<Vec<(String, Tensor)>>,
) -> Result<(Vec<Var>, Vec<String>)> {
    let (m, mt) = &inputs.nbr_mean;
    let mut x = ad::unary(tape, Unary::Tanh, &sad::spmm(tape, m, mt, var(vars, "ent")?)?)?;
    let (mut blocks, mut names) = (vec![x.clone()], vec!["structure.x0".to_string()]);
    for l in 1..=layers {
        let name = format!("structure.x{l}");
        x = graph_layer(tape, inputs, kind, &x, var(vars, "rel")?, var(vars, &format!("a_s{l}"))?, &name, attention)?;
        blocks.push(x.clone());
        names.push(name);
    }
    Ok((blocks, names))
}

/// The KG1 and KG2 sides of `pairs` as row indices into the `n` entities.
pub(crate) fn pair_sides(dev: &Device, pairs: &[(u32, u32)], n: usize) -> Result<(SegmentIndex, SegmentIndex)> {
    let left: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    let right: Vec<u32> = pairs.iter().map(|p| p.1).collect();
    Ok((SegmentIndex::from_indices(dev, &left, n)?, SegmentIndex::from_indices(dev, &right, n)?))
}

/// `n̂([B_1[idx] | B_2[idx] | …])`: the rows `idx` of the joint embedding, L2-normalised.
pub fn gather_joint(tape: &Tape, blocks: &[Var], idx: &SegmentIndex) -> Result<Var> {
    gather_joint_dropout(tape, blocks, idx, None)
}

/// [`gather_joint`], with the concatenated rows multiplied by mask number `k` of `dropout` before they
/// are normalised.
pub(crate) fn gather_joint_dropout(tape: &Tape, blocks: &[Var], idx: &SegmentIndex, dropout: Option<(RowDropout, u64)>) -> Result<Var> {
    let parts: Vec<Var> = blocks.iter().map(|b| sad::gather_rows(tape, b, idx)).collect::<Result<_>>()?;
    let refs: Vec<&Var> = parts.iter().collect();
    let mut cat = if refs.len() == 1 { parts[0].clone() } else { rowad::concat_cols(tape, &refs)? };
    if let Some((d, k)) = dropout {
        let (rows, cols) = cat.value.dims2("dropout")?;
        let mask = tape.constant(&d.mask(&cat.value.device(), k, rows, cols)?);
        cat = ad::mul(tape, &cat, &mask)?;
    }
    rowad::l2_normalize(tape, &cat)
}

impl super::AlignModel for LoginMea {
    fn name(&self) -> &'static str {
        if self.structure_only {
            "structure"
        } else {
            "loginmea"
        }
    }
    fn modalities(&self) -> &[Modality] {
        &self.modalities
    }
    fn init(&self, device: &Device, n: usize, num_rel: usize, seed: u64) -> Result<Params> {
        LoginMea::init(self, device, n, num_rel, seed)
    }
    fn forward(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        LoginMea::forward(self, tape, vars, inputs)
    }
    fn forward_explained(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        LoginMea::forward_explained(self, tape, vars, inputs)
    }
    fn loss(&self, tape: &Tape, out: &Output, args: &LossArgs) -> Result<Var> {
        LoginMea::loss(self, tape, &out.blocks, args)
    }
    fn supports_negatives(&self) -> bool {
        matches!(self.config.loss, Loss::InfoNce | Loss::Nhs)
    }
    fn negatives_from_both_kgs(&self) -> bool {
        self.config.loss == Loss::Nhs
    }
    fn supports_dropout(&self) -> bool {
        true
    }
}
