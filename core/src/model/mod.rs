//! Models: compositions of the ops on the autodiff tape.
//!
//! - [`inputs`]: what a model reads from a dataset (features of the modalities present, graphs), on a device.
//! - [`params`]: named parameters, initialisers, the safetensors checkpoint format.
//! - [`checkpoint`]: opening a checkpoint against a dataset (rebuilt inputs, checks) and evaluating it.
//! - [`mimea`]: the MIMEA-style model (our design for the paper's four modules).
//! - [`ricea`]: the RICEA-style model (our design for relative interaction and calibration).
//! - [`labelprop`]: the training-free label-propagation baseline.
//! - [`loginmea`]: LoginMEA (mmea-spec §4.5) with its ablations; with no modality it is the
//!   structure-only baseline.
//!
//! Every model produces its joint embedding as a list of `[N, d]` column blocks (see [`loginmea`] for why),
//! and [`align::normalized_blocks`] turns rows of it into unit-length blocks for evaluation and alignment.

pub mod align;
pub mod checkpoint;
pub mod inputs;
pub mod labelprop;
pub mod loginmea;
pub mod mclea;
pub mod mimea;
pub mod params;
pub mod ricea;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::{Tape, Var};
use crate::data::rng::Rng;
use crate::data::Dataset;
use crate::error::Result;
use crate::tensor::{Device, Tensor};

pub use inputs::{Inputs, MissingPolicy, Modality, ModalityChoice};
pub use labelprop::{LabelProp, LabelPropConfig, LabelPropVariant};
pub use loginmea::{Fusion, GraphLayer, LoginMea, LoginMeaConfig, Loss, StructureConfig};
pub use mclea::{EvaConfig, McleaConfig, MultiView, ViewsConfig};
pub use mimea::{Mimea, MimeaConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use params::checkpoint_bytes;
pub use params::{CheckpointData, Params, CHECKPOINT_FORMAT};
pub use ricea::{Ricea, RiceaConfig};

/// A forward pass's outputs.
pub struct Output {
    /// The joint embedding as `[N, d]` column blocks.
    pub blocks: Vec<Var>,
    pub block_names: Vec<String>,
    /// Entity-specific modality weights ω `[N, M]` (when the model has them and M ≥ 1).
    pub omega: Option<Var>,
    /// Global modality weights σ `[1, M]`.
    pub sigma: Option<Var>,
    /// With `forward_explained`: each attention layer's weights `α_e` `[T]` (graph edge order), named
    /// like the blocks (`structure.x1`, …, `joint.x1`, …).
    pub attention: Vec<(String, Tensor)>,
    /// Model-specific named outputs (e.g. MIMEA-style's Beta parameters and uni-modal embeddings), for
    /// its loss and for explanations.
    pub extra: Vec<(String, Var)>,
}

impl Output {
    /// The extra output `name`, if the model produced it.
    pub fn extra(&self, name: &str) -> Option<&Var> {
        self.extra.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Dropout on the rows that enter the training loss, before they are L2-normalised (RREA and Dual-AMN drop
/// 30% of their final features during training; LoginMEA uses none). Each element is zeroed with
/// probability `p` and the others are scaled by `1/(1 − p)`. The masks are drawn on the host from a
/// generator seeded by `seed` and the block number, so a resumed run and both backends see the same masks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowDropout {
    pub p: f32,
    pub seed: u64,
}

impl RowDropout {
    /// The mask of gathered row block number `k` (`[rows, cols]`) on `device`.
    pub fn mask(&self, device: &Device, k: u64, rows: usize, cols: usize) -> Result<Tensor> {
        let mut rng = Rng::new(self.seed ^ (k + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        let keep = 1.0 / (1.0 - self.p);
        let p = self.p as f64;
        let v: Vec<f32> = (0..rows * cols).map(|_| if rng.next_f64() < p { 0.0 } else { keep }).collect();
        Tensor::from_f32(device, v, &[rows, cols])
    }
}

/// What one evaluation of the training loss covers.
#[derive(Clone, Copy, Debug)]
pub struct LossArgs<'a> {
    /// Training pairs (KG1, KG2 indices), in the epoch's order.
    pub pairs: &'a [(u32, u32)],
    /// Extra KG2 negatives (InfoNCE models only; empty otherwise).
    pub negatives: &'a [u32],
    /// Pairs per loss chunk.
    pub batch: usize,
    /// Entities in both KGs.
    pub n: usize,
    /// Dropout on the loss rows (models with [`AlignModel::supports_dropout`] only).
    pub dropout: Option<RowDropout>,
}

/// What the trainer, the checkpoint commands and the browser demo need of a model.
pub trait AlignModel {
    /// The name recorded in run specs and checkpoints (`model_name`).
    fn name(&self) -> &'static str;
    /// The modalities the model reads, in the order of `Inputs::modalities` (the weights' columns).
    fn modalities(&self) -> &[Modality];
    /// Fresh parameters for `n` entities and `num_rel` relation ids.
    fn init(&self, device: &Device, n: usize, num_rel: usize, seed: u64) -> Result<Params>;
    /// The forward pass over all entities (`vars`: the parameters on `tape`, by name).
    fn forward(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output>;
    /// The forward pass, also keeping what explains it (attention weights); by default the plain one.
    fn forward_explained(&self, tape: &Tape, vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        self.forward(tape, vars, inputs)
    }
    /// The training loss over `args.pairs` in chunks of `args.batch`, with optional extra KG2 negatives and
    /// row dropout.
    fn loss(&self, tape: &Tape, out: &Output, args: &LossArgs) -> Result<Var>;
    /// Whether [`AlignModel::loss`] accepts extra negatives.
    fn supports_negatives(&self) -> bool {
        false
    }
    /// Whether the extra negatives are drawn from both KGs (entities in no training pair on either side)
    /// rather than from KG2 alone.
    fn negatives_from_both_kgs(&self) -> bool {
        false
    }
    /// Whether [`AlignModel::loss`] accepts row dropout.
    fn supports_dropout(&self) -> bool {
        false
    }
    /// The seed pairs (training pairs), for models whose forward pass reads them (training-free ones).
    fn set_seeds(&mut self, _pairs: &[(u32, u32)]) {}
    /// Lines for the run log about what the model did beyond training (e.g. bootstrapping rounds).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// False for models with nothing to learn: the trainer then runs no loss, backward or step.
    fn trainable(&self) -> bool {
        true
    }
}

/// Which model, with its settings. Serialised as `{"model_name": "...", "model": {...}}`, the layout of
/// run specs and checkpoint metadata since the first checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model_name", content = "model")]
pub enum ModelConfig {
    /// LoginMEA (mmea-spec §4.5) and its ablations.
    #[serde(rename = "loginmea")]
    LoginMea(LoginMeaConfig),
    /// The structure-only baseline: LoginMEA's structure encoder alone (Dual-AMN-like).
    #[serde(rename = "structure")]
    Structure(StructureConfig),
    /// MIMEA-style (mmea-spec §4.7, our design; see [`mimea`]).
    #[serde(rename = "mimea-style")]
    Mimea(MimeaConfig),
    /// RICEA-style (mmea-spec §4.6, our design; see [`ricea`]).
    #[serde(rename = "ricea-style")]
    Ricea(RiceaConfig),
    /// MCLEA-style (mmea-spec §4.2; see [`mclea`]).
    #[serde(rename = "mclea-style")]
    Mclea(McleaConfig),
    /// EVA-style (mmea-spec §4.1; see [`mclea`]).
    #[serde(rename = "eva-style")]
    Eva(EvaConfig),
    /// The training-free label-propagation baseline (see [`labelprop`]).
    #[serde(rename = "label-prop")]
    LabelProp(LabelPropConfig),
}

impl ModelConfig {
    /// The model's name (`model_name`).
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::LoginMea(_) => "loginmea",
            ModelConfig::Structure(_) => "structure",
            ModelConfig::Mimea(_) => "mimea-style",
            ModelConfig::Ricea(_) => "ricea-style",
            ModelConfig::Mclea(_) => "mclea-style",
            ModelConfig::Eva(_) => "eva-style",
            ModelConfig::LabelProp(_) => "label-prop",
        }
    }

    /// The names every version knows, for error messages.
    pub const NAMES: &'static [&'static str] = &["loginmea", "structure", "mimea-style", "ricea-style", "mclea-style", "eva-style", "label-prop"];

    /// The width of the model's embedding blocks (`dim`).
    pub fn dim(&self) -> usize {
        match self {
            ModelConfig::LoginMea(c) => c.dim,
            ModelConfig::Structure(c) => c.dim,
            ModelConfig::Mimea(c) => c.dim,
            ModelConfig::Ricea(c) => c.dim,
            ModelConfig::Mclea(c) => c.views.dim,
            ModelConfig::Eva(c) => c.views.dim,
            ModelConfig::LabelProp(c) => c.dim,
        }
    }

    /// Each model's name with a line on what it is (for `--help` and `mmea` listings).
    pub const ABOUT: &'static [(&'static str, &'static str)] = &[
        ("loginmea", "LoginMEA (the default): modality encoders, low-rank local fusion, global reflection attention"),
        ("structure", "the structure-only baseline: LoginMEA's structure encoder alone (Dual-AMN-like)"),
        ("mimea-style", "MIMEA-style: Beta-gated fusion, OT modal alignment, modal-adaptive contrastive learning"),
        ("ricea-style", "RICEA-style: weights from the modalities' relative interaction, recalibrated by uncertainty"),
        ("mclea-style", "MCLEA-style: multi-head GAT and linear views, ICL and IAL with learned Kendall weights"),
        ("eva-style", "EVA-style: the same views, NCA loss on every view and on the joint"),
        ("label-prop", "training-free: LightEA's three-view label propagation with a bootstrapping round, sparse Sinkhorn"),
    ];

    /// The model `name` with its default settings, or None for an unknown name.
    pub fn default_for(name: &str) -> Option<ModelConfig> {
        Some(match name {
            "loginmea" => ModelConfig::LoginMea(LoginMeaConfig::default()),
            "structure" => ModelConfig::Structure(StructureConfig::default()),
            "mimea-style" => ModelConfig::Mimea(MimeaConfig::default()),
            "ricea-style" => ModelConfig::Ricea(RiceaConfig::default()),
            "mclea-style" => ModelConfig::Mclea(McleaConfig::default()),
            "eva-style" => ModelConfig::Eva(EvaConfig::default()),
            "label-prop" => ModelConfig::LabelProp(LabelPropConfig::default()),
            _ => return None,
        })
    }

    /// The keys of the training loop ([`crate::run::TrainConfig`]) that this model does not read: a run
    /// config that sets one is refused, and a resolved config leaves them out.
    pub fn unused_train_keys(&self) -> &'static [&'static str] {
        const NO_NEGATIVES_OR_DROPOUT: &[&str] = &["negatives", "dropout"];
        const NO_NEGATIVES: &[&str] = &["negatives"];
        const NOTHING_TO_LEARN: &[&str] = &[
            "lr",
            "weight_decay",
            "batch",
            "steps",
            "negatives",
            "dropout",
            "lr_schedule",
            "iterative",
            "il_start",
            "il_step",
            "il_lr_factor",
            "il_refresh",
            "il_csls",
            "select_last",
        ];
        // Extra negatives go with InfoNCE and NHS ([`AlignModel::supports_negatives`]); row dropout with
        // the models whose loss takes it ([`AlignModel::supports_dropout`]).
        let negatives = |loss: Loss| matches!(loss, Loss::InfoNce | Loss::Nhs);
        match self {
            ModelConfig::LoginMea(c) if negatives(c.loss) => &[],
            ModelConfig::Structure(c) if negatives(c.loss) => &[],
            ModelConfig::LoginMea(_) | ModelConfig::Structure(_) | ModelConfig::Ricea(_) => NO_NEGATIVES,
            ModelConfig::Mimea(_) | ModelConfig::Mclea(_) | ModelConfig::Eva(_) => NO_NEGATIVES_OR_DROPOUT,
            ModelConfig::LabelProp(_) => NOTHING_TO_LEARN,
        }
    }

    /// Builds the model for `inputs`.
    pub fn build(&self, inputs: &Inputs) -> Result<Box<dyn AlignModel>> {
        Ok(match self {
            ModelConfig::LoginMea(c) => Box::new(LoginMea::new(c.clone(), inputs)?),
            ModelConfig::Structure(c) => Box::new(LoginMea::structure_only(c)?),
            ModelConfig::Mimea(c) => Box::new(Mimea::new(c.clone(), inputs)?),
            ModelConfig::Ricea(c) => Box::new(Ricea::new(c.clone(), inputs)?),
            ModelConfig::Mclea(c) => Box::new(MultiView::mclea(c.clone(), inputs)?),
            ModelConfig::Eva(c) => Box::new(MultiView::eva(c.clone(), inputs)?),
            ModelConfig::LabelProp(c) => Box::new(LabelProp::new(c.clone(), inputs)?),
        })
    }
}

/// Puts every parameter on the tape, trainable (`train`) or constant, by name.
pub fn tape_vars(tape: &Tape, params: &Params, train: bool) -> (Vec<Var>, HashMap<String, Var>) {
    let vars: Vec<Var> = params.tensors().iter().map(|t| if train { tape.param(t) } else { tape.constant(t) }).collect();
    let map = params.names().iter().cloned().zip(vars.iter().cloned()).collect();
    (vars, map)
}

/// The joint embedding of all entities as `[N, d]` column blocks (inference: nothing is kept for backward).
pub fn embed_blocks(model: &dyn AlignModel, params: &Params, inputs: &Inputs) -> Result<Vec<Tensor>> {
    let tape = Tape::new();
    let (_, vars) = tape_vars(&tape, params, false);
    let out = model.forward(&tape, &vars, inputs)?;
    Ok(out.blocks.into_iter().map(|b| b.value).collect())
}

/// Identifies a dataset well enough to refuse a checkpoint trained on another one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub name: String,
    pub entities: [usize; 2],
    pub relations: usize,
    pub triples: [usize; 2],
    pub links: usize,
    /// FNV-1a over entity names and triples, hex.
    pub hash: String,
}

impl Fingerprint {
    pub fn of(ds: &Dataset) -> Fingerprint {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for name in &ds.entities.names {
            eat(name.as_bytes());
            eat(&[0]);
        }
        for t in ds.all_triples() {
            eat(&t.h.to_le_bytes());
            eat(&t.r.to_le_bytes());
            eat(&t.t.to_le_bytes());
        }
        Fingerprint {
            name: ds.name.clone(),
            entities: ds.num_entities,
            relations: ds.relations.len(),
            triples: [ds.triples[0].len(), ds.triples[1].len()],
            links: ds.links.len(),
            hash: format!("{h:016x}"),
        }
    }

    /// Why `self` (the checkpoint's) and `data` (the loaded dataset's) differ, if they do.
    pub fn mismatch(&self, data: &Fingerprint) -> Option<String> {
        if self == data {
            return None;
        }
        let mut why = Vec::new();
        if self.entities != data.entities {
            why.push(format!("entities {:?} vs {:?}", self.entities, data.entities));
        }
        if self.relations != data.relations {
            why.push(format!("relations {} vs {}", self.relations, data.relations));
        }
        if self.triples != data.triples {
            why.push(format!("triples {:?} vs {:?}", self.triples, data.triples));
        }
        if why.is_empty() {
            why.push(format!("content hash {} vs {}", self.hash, data.hash));
        }
        Some(format!("the checkpoint was trained on `{}`, the data given is `{}`: {}", self.name, data.name, why.join(", ")))
    }
}
