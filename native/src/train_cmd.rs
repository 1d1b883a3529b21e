//! `mmea train`: train a model, evaluate it honestly, keep a run directory.
//!
//! Run directory layout (every file written atomically; `train.jsonl` and `metrics.jsonl` are appended a
//! line at a time and trimmed back on resume):
//! - `config.json`: the [`RunSpec`] (data, modalities, model and training settings, split source).
//! - `split.tsv`: the train/dev/test pairs (original ids), as `mmea data split` writes them.
//! - `train.jsonl`: one line per epoch (loss, training pairs, iterative-learning events).
//! - `metrics.jsonl`: one line per evaluation (dev for clean, test for reference), then the final test.
//! - `checkpoint.safetensors` + `checkpoint.json`: the selected model with its config, the dataset
//!   fingerprint, the split and the metrics.
//! - `resume.safetensors` + `resume.json`: parameters, optimiser moments, best copy, loop state, written
//!   after every evaluation; `--resume DIR` continues from it.
//! - `curve.svg`: loss and the selection metric per epoch.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mmea_core::data::{Dataset, Split};
use mmea_core::evaluate::EvalReport;
use mmea_core::model::{checkpoint_bytes, CheckpointData, Fingerprint, Fusion, GraphLayer, EvaConfig, LabelPropConfig, LoginMeaConfig, Loss, McleaConfig, MimeaConfig, ModalityChoice, ModelConfig, Params, RiceaConfig, StructureConfig, ViewsConfig};
use mmea_core::train::{EvalRecord, LrSchedule, Protocol, TrainConfig, Trainer, TrainerState};
use mmea_core::{Backend, Device, Error, Result};
use serde_json::json;

use crate::bench::median;
use crate::fsx;
use crate::plot;
use crate::setup::{self, RunSpec, DEMO};

/// Epochs of the default job on the demo pair (measured to finish well inside two minutes on 2 cores).
pub const DEMO_EPOCHS: usize = 80;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    Clean,
    Reference,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LrScheduleArg {
    /// The protocol's rate every epoch (LoginMEA).
    Constant,
    /// Cosine decay from the rate in epoch 0 towards 0 in the last epoch.
    Cosine,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FusionArg {
    /// Low-rank multimodal fusion (LoginMEA).
    Lmf,
    /// Ablation: adaptively weighted sum instead of LMF.
    Sum,
    /// Ablation: globally weighted concatenation only (no local fusion, no joint graph encoder).
    Concat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphArg {
    /// Relational-reflection attention (LoginMEA).
    Reflection,
    /// Ablation: neighbour mean + tanh (no relations, no attention).
    Mean,
    /// Ablation "plain GAT": feature attention over the neighbours, no relations (tanh after).
    Gat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModelArg {
    /// LoginMEA (the default): modality encoders, local fusion, global reflection attention.
    Loginmea,
    /// The structure-only baseline: LoginMEA's structure encoder alone (Dual-AMN-like); modalities unused.
    Structure,
    /// MIMEA-style: Beta-gated fusion, OT modal alignment, modal-adaptive contrastive (docs/training.md).
    #[value(name = "mimea-style")]
    MimeaStyle,
    /// RICEA-style: weights from the modalities' relative interaction, recalibrated by uncertainty.
    #[value(name = "ricea-style")]
    RiceaStyle,
    /// MCLEA-style: multi-head GAT + Linear views, ICL and IAL with learned Kendall weights.
    #[value(name = "mclea-style")]
    McleaStyle,
    /// EVA-style: the same views, NCA loss on every view and on the joint.
    #[value(name = "eva-style")]
    EvaStyle,
    /// Training-free baseline: random seed labels propagated over the graph (LightEA-inspired); one epoch.
    #[value(name = "label-prop")]
    LabelProp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LossArg {
    /// One-direction InfoNCE (LoginMEA).
    Infonce,
    /// MCLEA's intra-modal contrastive loss (both directions, intra-KG negatives).
    Icl,
    /// Dual-AMN's normalised hard-sample mining: both directions against every entity, per-row standardised
    /// logits × 30, the positive outside the log-sum-exp (not in LoginMEA; τ unused).
    Nhs,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Dataset directory (MCLEA/EVA, OpenEA or mmea TSV layout), or `demo` for the embedded pair.
    #[arg(long, default_value = DEMO)]
    pub data: String,
    /// Image features (.npy float32 2-D or safetensors); entities without one get the mean of their
    /// neighbours' (LoginMEA's filling).
    #[arg(long)]
    pub images: Option<String>,
    /// Ids of the image rows (one per line, or a 1-D integer .npy).
    #[arg(long, requires = "images")]
    pub image_ids: Option<String>,
    /// Use character-bigram name features (off by default, as in the papers).
    #[arg(long)]
    pub names: bool,
    /// Columns of the bag-of-relations feature: the N most frequent relations (1000, as every reference
    /// code); 0 = one column per relation (DBP15K zh-en has 3,024; the top 1000 cover 96% of its triples)
    #[arg(long, default_value_t = 1000)]
    pub rel_columns: usize,
    /// Two bag-of-relations columns per relation, counting the entity as head and as tail (the reference
    /// codes count both ends in one column)
    #[arg(long)]
    pub rel_directed: bool,
    /// Ablation: leave out the bag-of-relations modality.
    #[arg(long)]
    pub no_relations: bool,
    /// Ablation: leave out the bag-of-attributes modality.
    #[arg(long)]
    pub no_attributes: bool,
    /// Ablation: leave out the image modality.
    #[arg(long)]
    pub no_images: bool,
    /// clean: one optimiser, paper hyper-parameters, model selected on the dev split. reference: the
    /// released code's loop (per-epoch optimiser reset after il_start, selection on test).
    #[arg(long, value_enum, default_value = "clean")]
    pub protocol: ProtocolArg,
    /// Epochs (default: 600 clean, 1000 reference; 80 on the demo pair).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// The learning rate over the epochs: constant (as LoginMEA), or cosine, decaying from the rate in
    /// the first epoch towards 0 in the last one (the horizon is --epochs, so a cosine run cannot be
    /// extended by --resume --epochs).
    #[arg(long, value_enum, default_value = "constant")]
    pub lr_schedule: LrScheduleArg,
    /// Training pairs per loss chunk.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Optimiser steps per epoch: the shuffled training pairs are cut into this many parts, each with its
    /// own forward, loss, backward and AdamW step (1 = one step per epoch, as LoginMEA).
    #[arg(long, default_value_t = 1)]
    pub steps_per_epoch: usize,
    /// Iterative learning (MNN bootstrapping); on by default in the reference protocol.
    #[arg(long, conflicts_with = "no_iterative")]
    pub iterative: bool,
    #[arg(long)]
    pub no_iterative: bool,
    /// First epoch of iterative learning.
    #[arg(long)]
    pub il_start: Option<usize>,
    /// Iterative learning period s (default 5, as the reference code): mutual nearest neighbours every s
    /// epochs; the candidate set is reset when (epoch + 1) mod 10s = s and the candidates that stayed
    /// mutual nearest neighbours join the training pairs every 10s epochs.
    #[arg(long)]
    pub il_step: Option<usize>,
    /// Iterative learning: the rate from --il-start on is lr times this (0.2 = lr/5, as the reference
    /// code and the paper's setting; 1 keeps the rate).
    #[arg(long, default_value_t = 0.2)]
    pub il_lr_factor: f64,
    /// Iterative learning re-labels each round instead of accumulating: mutual nearest neighbours over
    /// every entity in no seed pair, and each round's pairs replace the previous rounds' (so a later model
    /// can undo an earlier mistake). Off = the reference procedure.
    #[arg(long)]
    pub il_refresh: bool,
    /// Extra negatives for InfoNCE: each epoch, this many KG2 entities that are in no training pair join
    /// the in-batch candidates (not in LoginMEA, which uses in-batch negatives only; 0 = off).
    #[arg(long, default_value_t = 0)]
    pub negatives: usize,
    /// Iterative learning: find mutual nearest neighbours on CSLS scores with this k instead of plain
    /// cosine (0 = plain, as the reference code).
    #[arg(long, default_value_t = 0)]
    pub il_csls: usize,
    /// Dropout on the rows entering the loss, before they are normalised (0 = off, as LoginMEA; RREA and
    /// Dual-AMN use 0.3). LoginMEA, structure and RICEA-style only.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Evaluate every N epochs.
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long, default_value_t = 2023)]
    pub seed: u64,
    /// Share of the gold links used for training (incl. dev) when the split is made here.
    #[arg(long, default_value_t = 0.3)]
    pub train_ratio: f64,
    /// Share of the training pairs moved to the dev split (default 0.1 clean, 0 reference and with
    /// --select-last).
    #[arg(long)]
    pub dev_fraction: Option<f64>,
    /// Keep the last epoch's model instead of the best on dev (or on test, reference protocol). The clean
    /// protocol then needs no dev split and trains on every training pair: a refit for an epoch count
    /// picked on an earlier run's dev curve.
    #[arg(long)]
    pub select_last: bool,
    /// Dev evaluation with this many distractors per side: KG1 and KG2 entities in no training or dev
    /// pair join the dev pool, so dev H@1 is measured among as many candidates as the test split's (0 =
    /// the dev pairs' own entities only). 10050 makes the dev pool the size of the test pool on DBP15K at
    /// 30% seeds.
    #[arg(long, default_value_t = 0)]
    pub dev_distractors: usize,
    /// Make a seeded split even if the dataset comes with one (train_ill/test_ill, split.tsv).
    #[arg(long)]
    pub seeded_split: bool,
    /// The model to train.
    #[arg(long, value_enum, default_value = "loginmea")]
    pub model: ModelArg,
    /// MIMEA-style: weight of the optimal-transport modal-alignment term (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub ot_weight: f32,
    /// MIMEA-style ablation: no Beta gates (every modality weighs 1).
    #[arg(long)]
    pub no_gates: bool,
    /// MIMEA-, MCLEA- and EVA-style ablation: no per-modality (per-view) loss terms, joint only.
    #[arg(long)]
    pub no_modal_loss: bool,
    /// MCLEA-style ablation: no inter-modal alignment (IAL) term.
    #[arg(long)]
    pub no_ial: bool,
    /// MCLEA-style ablation: no learned Kendall weights (every view's term weighs 1).
    #[arg(long)]
    pub no_kendall: bool,
    /// MCLEA- and EVA-style ablation: uniform global view weights instead of learned ones.
    #[arg(long)]
    pub no_fusion_weights: bool,
    /// MCLEA- and EVA-style: width of each non-structure view's encoder.
    #[arg(long, default_value_t = 100)]
    pub modal_dim: usize,
    /// RICEA-style ablation: weights from each modality alone, not from their relative interaction.
    #[arg(long)]
    pub no_interaction: bool,
    /// RICEA-style ablation: no uncertainty-aware recalibration of the weights.
    #[arg(long)]
    pub no_calibration: bool,
    /// label-prop: also propagate through relation types (the bag-of-relations view).
    #[arg(long)]
    pub lp_relations: bool,
    #[arg(long, default_value_t = 300)]
    pub dim: usize,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 0.1)]
    pub tau: f32,
    #[arg(long, value_enum, default_value = "lmf")]
    pub fusion: FusionArg,
    /// Ablation: uniform modality weights instead of entity-specific ones.
    #[arg(long)]
    pub no_adaptive_weights: bool,
    #[arg(long, value_enum, default_value = "reflection")]
    pub graph: GraphArg,
    #[arg(long, value_enum, default_value = "infonce")]
    pub loss: LossArg,
    /// Run directory (default: runs/<dataset>-<model>-<protocol>-seed<seed>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last saved state (its config.json wins over flags,
    /// except --epochs, which may extend the run).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The defaults of `cargo run --release` (no subcommand): the demo pair.
    pub fn demo() -> TrainArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: TrainArgs,
        }
        Wrap::parse_from(["mmea"]).a
    }

    /// MCLEA- and EVA-style's shared encoder settings (GAT width and layers from --dim and --layers).
    fn views(&self) -> ViewsConfig {
        ViewsConfig { dim: self.dim, modal_dim: self.modal_dim, layers: self.layers, fusion_weights: !self.no_fusion_weights, ..Default::default() }
    }

    pub fn spec_for(&self, backend: Backend) -> RunSpec {
        let protocol = match self.protocol {
            ProtocolArg::Clean => Protocol::Clean,
            ProtocolArg::Reference => Protocol::Reference,
        };
        let mut t = TrainConfig::for_protocol(protocol);
        if self.data == DEMO {
            t.epochs = DEMO_EPOCHS;
        }
        if matches!(self.model, ModelArg::LabelProp) {
            // Nothing to train: one pass, evaluated.
            t.epochs = 1;
            t.eval_every = 1;
        }
        t.epochs = self.epochs.unwrap_or(t.epochs);
        t.lr = self.lr.unwrap_or(t.lr);
        t.weight_decay = self.weight_decay.unwrap_or(t.weight_decay);
        t.batch = self.batch.unwrap_or(t.batch);
        if self.iterative {
            t.iterative = true;
        }
        if self.no_iterative {
            t.iterative = false;
        }
        t.il_start = self.il_start.unwrap_or(t.il_start);
        t.il_step = self.il_step.unwrap_or(t.il_step);
        t.eval_every = self.eval_every.unwrap_or(t.eval_every);
        t.negatives = self.negatives;
        t.dropout = self.dropout;
        t.steps = self.steps_per_epoch;
        t.select_last = self.select_last;
        t.dev_distractors = self.dev_distractors;
        t.il_lr_factor = self.il_lr_factor;
        t.il_refresh = self.il_refresh;
        t.lr_schedule = match self.lr_schedule {
            LrScheduleArg::Constant => LrSchedule::Constant,
            LrScheduleArg::Cosine => LrSchedule::Cosine,
        };
        t.il_csls = self.il_csls;
        t.seed = self.seed;
        let lm = LoginMeaConfig {
            dim: self.dim,
            rank: self.rank,
            layers: self.layers,
            tau: self.tau,
            fusion: match self.fusion {
                FusionArg::Lmf => Fusion::LowRank,
                FusionArg::Sum => Fusion::WeightedSum,
                FusionArg::Concat => Fusion::Concat,
            },
            adaptive_weights: !self.no_adaptive_weights,
            graph_layer: match self.graph {
                GraphArg::Reflection => GraphLayer::Reflection,
                GraphArg::Mean => GraphLayer::Mean,
                GraphArg::Gat => GraphLayer::Gat,
            },
            loss: match self.loss {
                LossArg::Infonce => Loss::InfoNce,
                LossArg::Icl => Loss::Icl,
                LossArg::Nhs => Loss::Nhs,
            },
        };
        let model = match self.model {
            ModelArg::Loginmea => ModelConfig::LoginMea(lm),
            ModelArg::Structure => ModelConfig::Structure(StructureConfig { dim: lm.dim, layers: lm.layers, tau: lm.tau, graph_layer: lm.graph_layer, loss: lm.loss }),
            ModelArg::MimeaStyle => ModelConfig::Mimea(MimeaConfig {
                dim: lm.dim,
                layers: lm.layers,
                tau: lm.tau,
                gates: !self.no_gates,
                modal_loss: !self.no_modal_loss,
                ot_weight: self.ot_weight,
                ..Default::default()
            }),
            ModelArg::LabelProp => ModelConfig::LabelProp(LabelPropConfig { dim: lm.dim, layers: lm.layers, seed: self.seed, relations: self.lp_relations }),
            ModelArg::McleaStyle => ModelConfig::Mclea(McleaConfig {
                views: self.views(),
                tau: lm.tau,
                ial: !self.no_ial,
                kendall: !self.no_kendall,
                modal_loss: !self.no_modal_loss,
                ..Default::default()
            }),
            ModelArg::EvaStyle => ModelConfig::Eva(EvaConfig { views: self.views(), modal_loss: !self.no_modal_loss, ..Default::default() }),
            ModelArg::RiceaStyle => ModelConfig::Ricea(RiceaConfig {
                dim: lm.dim,
                layers: lm.layers,
                tau: lm.tau,
                interaction: !self.no_interaction,
                calibration: !self.no_calibration,
                ..Default::default()
            }),
        };
        RunSpec {
            data: self.data.clone(),
            images: self.images.clone(),
            image_ids: self.image_ids.clone(),
            modalities: ModalityChoice { images: !self.no_images, relations: !self.no_relations, attributes: !self.no_attributes, names: self.names, rel_columns: self.rel_columns, rel_directed: self.rel_directed },
            model,
            train: t,
            split_source: String::new(),
            backend: format!("{backend:?}").to_lowercase(),
            command: {
                let args: Vec<String> = std::env::args().skip(1).collect();
                if args.iter().any(|a| a == "train") { format!("mmea {}", args.join(" ")) } else { format!("mmea train {}", args.join(" ")).trim_end().to_string() }
            },
        }
    }

    fn dev_fraction(&self) -> f64 {
        self.dev_fraction.unwrap_or(match self.protocol {
            ProtocolArg::Clean if !self.select_last => 0.1,
            _ => 0.0,
        })
    }
}

/// Files of a run directory.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

fn setting_line(ds: &Dataset, spec: &RunSpec, trainer: &Trainer) -> String {
    // The modalities the model reads (the structure model reads none of those present).
    let mods: Vec<String> = trainer.model.modalities().iter().map(|m| spec.modalities.label(m.name())).collect();
    format!(
        "{} | {} | modalities: structure{}{} | names {} | {} protocol, {}{}{}{} | split: train {} / dev {}{} / test {} ({})",
        ds.name,
        spec.model.name(),
        if mods.is_empty() { "" } else { " + " },
        mods.join(" + "),
        if spec.modalities.names { "on" } else { "off" },
        match spec.train.protocol {
            Protocol::Clean => "clean",
            Protocol::Reference => "reference",
        },
        match (spec.train.iterative, spec.train.il_refresh) {
            (false, _) => "non-iterative",
            (true, false) => "iterative",
            (true, true) => "iterative (re-labelling each round)",
        },
        match spec.train.iterative || spec.train.protocol == Protocol::Reference {
            // The lr factor from `il_start` only shows when it is not the reference code's lr/5.
            true if spec.train.il_lr_factor != 0.2 => format!(", lr × {} from epoch {}", spec.train.il_lr_factor, spec.train.il_start),
            _ => String::new(),
        },
        if spec.train.select_last { ", last epoch kept" } else { "" },
        if spec.train.lr_schedule == LrSchedule::Cosine { ", cosine lr" } else { "" },
        trainer.split.train.len(),
        trainer.split.dev.len(),
        match trainer.dev_distractors().len() {
            0 => String::new(),
            k => format!(" (ranked among {k} distractors per side)"),
        },
        trainer.split.test.len(),
        spec.split_source
    )
}

/// One table of an evaluation report (l2r and r2l for each decoding).
pub fn render_report(r: &EvalReport) -> String {
    let mut s = format!("{:<10} {:>5} {:>7} {:>7} {:>7} {:>7} {:>8}\n", "decoding", "dir", "H@1", "H@10", "H@50", "MRR", "MR");
    let mut row = |name: &str, b: &mmea_core::evaluate::BothWays| {
        for (dir, m) in [("l2r", &b.l2r), ("r2l", &b.r2l)] {
            s += &format!("{:<10} {:>5} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.2}\n", name, dir, m.hits1, m.hits10, m.hits50, m.mrr, m.mr);
        }
    };
    row("plain", &r.plain);
    if let Some(c) = &r.csls {
        row("CSLS k=3", c);
    }
    if let Some(c) = &r.sinkhorn {
        row("Sinkhorn", c);
    }
    s
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Keeps the lines of a JSONL file whose `epoch` is at most `epoch` (used on resume).
fn trim_jsonl(path: &Path, epoch: usize) -> Result<()> {
    let kept: Vec<String> = read_jsonl(path)
        .into_iter()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) != Some("final") && v.get("epoch").and_then(|e| e.as_u64()).is_some_and(|e| e as usize <= epoch))
        .map(|v| v.to_string())
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    fsx::write_atomic(path, body.as_bytes())
}

fn write_curve(dir: &RunDir, title: &str, metric_label: &str) -> Result<()> {
    let loss: Vec<(f64, f64)> = read_jsonl(&dir.file("train.jsonl"))
        .iter()
        .filter_map(|v| Some((v.get("epoch")?.as_f64()? + 1.0, v.get("loss")?.as_f64()?)))
        .collect();
    let metric: Vec<(f64, f64)> = read_jsonl(&dir.file("metrics.jsonl"))
        .iter()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("eval"))
        .filter_map(|v| Some((v.get("epoch")?.as_f64()?, v.get("score")?.as_f64()?)))
        .collect();
    fsx::write_atomic(&dir.file("curve.svg"), plot::svg(&plot::Curves { title, loss: &loss, metric: &metric, metric_label }).as_bytes())
}

/// Checkpoint metadata shared by the `.safetensors` header and `checkpoint.json`.
fn checkpoint_meta(spec: &RunSpec, fp: &Fingerprint, split_tsv: &str, epoch: usize, metrics: &serde_json::Value) -> HashMap<String, String> {
    HashMap::from([
        ("model".to_string(), spec.model.name().to_string()),
        ("run_spec".to_string(), setup::json(spec)),
        ("dataset".to_string(), setup::json(fp)),
        ("split".to_string(), split_tsv.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("metrics".to_string(), metrics.to_string()),
    ])
}

fn write_checkpoint(dir: &RunDir, params: &Params, meta: HashMap<String, String>) -> Result<()> {
    let bytes = checkpoint_bytes(params, meta.clone())?;
    fsx::write_atomic(&dir.file("checkpoint.safetensors"), &bytes)?;
    let mut j = serde_json::Map::new();
    for (k, v) in meta {
        let val = if k == "split" { json!(format!("{} lines (see split.tsv)", v.lines().count())) } else { serde_json::from_str(&v).unwrap_or(json!(v)) };
        j.insert(k, val);
    }
    fsx::write_atomic(&dir.file("checkpoint.json"), serde_json::to_string_pretty(&j).unwrap_or_default().as_bytes())
}

fn write_resume(dir: &RunDir, trainer: &Trainer) -> Result<()> {
    let st = trainer.state();
    // Both files carry the epoch; resuming refuses a pair from different epochs (a crash between the
    // two renames).
    let meta = HashMap::from([("kind".to_string(), "resume".to_string()), ("epoch".to_string(), st.epoch.to_string())]);
    fsx::write_atomic(&dir.file("resume.safetensors"), &checkpoint_bytes(&trainer.state_tensors()?, meta)?)?;
    fsx::write_atomic(&dir.file("resume.json"), setup::json_pretty(&st).as_bytes())
}

pub fn run(args: TrainArgs, backend: Backend) -> Result<()> {
    let t_start = Instant::now();
    let device = backend.open_blocking()?;
    let (mut spec, dir, resume) = match &args.resume {
        Some(d) => {
            let cfg_path = d.join("config.json");
            let text = String::from_utf8_lossy(&fsx::read(&cfg_path)?).to_string();
            let mut spec: RunSpec = setup::parse_json(&cfg_path.display().to_string(), &text)?;
            if let Some(e) = args.epochs {
                if e != spec.train.epochs && spec.train.lr_schedule == LrSchedule::Cosine {
                    return Err(Error::InvalidArgument {
                        op: "train --resume",
                        detail: format!("{} uses a cosine learning-rate schedule over its {} epochs; extending it to {e} would change the rates it has already used (start a new run instead)", cfg_path.display(), spec.train.epochs),
                    });
                }
                if e != spec.train.epochs {
                    // Keep the results table's command honest: the run is the original command, extended.
                    spec.command = format!("{} ; mmea train --resume {} --epochs {e}", spec.command, d.display());
                }
                spec.train.epochs = e;
            }
            (spec, RunDir(d.clone()), true)
        }
        None => (args.spec_for(backend), RunDir(PathBuf::new()), false),
    };
    let ds = setup::load_dataset(&spec.data)?;
    let split = if resume {
        let p = dir.file("split.tsv");
        Split::from_tsv(&ds, &p.display().to_string(), &fsx::read(&p)?)?
    } else {
        let sp = setup::make_split(&ds, args.train_ratio, args.dev_fraction(), args.seed, !args.seeded_split)?;
        spec.split_source = sp.source.clone();
        sp
    };
    let inputs = setup::build_inputs(&device, &ds, &spec)?;
    let notes = inputs.notes.clone();
    let model = spec.model.build(&inputs)?;
    let params = model.init(&device, inputs.n, inputs.graph.num_rel(), spec.train.seed)?;
    let mut trainer = Trainer::new(model, inputs, spec.train.clone(), split, params)?;
    let dir = if resume { dir } else { RunDir(args.out.clone().unwrap_or_else(|| setup::default_run_dir(&ds, &spec))) };
    let fp = Fingerprint::of(&ds);
    let split_tsv = trainer.split.to_tsv(&ds);

    if resume {
        let st_path = dir.file("resume.json");
        let text = String::from_utf8_lossy(&fsx::read(&st_path)?).to_string();
        let st: TrainerState = setup::parse_json(&st_path.display().to_string(), &text)?;
        let tpath = dir.file("resume.safetensors");
        let data = CheckpointData::parse(&tpath.display().to_string(), &fsx::read(&tpath)?)?;
        if data.metadata.get("epoch").map(String::as_str) != Some(st.epoch.to_string().as_str()) {
            return Err(Error::Format { path: tpath.display().to_string(), detail: "resume.json and resume.safetensors are from different epochs".into() });
        }
        trainer.restore(&st, &data.params(&device)?, &tpath.display().to_string())?;
        trim_jsonl(&dir.file("train.jsonl"), st.epoch.saturating_sub(1))?;
        trim_jsonl(&dir.file("metrics.jsonl"), st.epoch)?;
        // The config may have been extended (--epochs).
        fsx::write_atomic(&dir.file("config.json"), setup::json_pretty(&spec).as_bytes())?;
        println!("resuming {} at epoch {} of {}", dir.0.display(), st.epoch, spec.train.epochs);
    } else {
        fsx::create_dir(&dir.0)?;
        fsx::write_atomic(&dir.file("config.json"), setup::json_pretty(&spec).as_bytes())?;
        fsx::write_atomic(&dir.file("split.tsv"), split_tsv.as_bytes())?;
        for f in ["train.jsonl", "metrics.jsonl"] {
            fsx::write_atomic(&dir.file(f), b"")?;
        }
    }

    let setting = setting_line(&ds, &spec, &trainer);
    println!("run directory: {}", dir.0.display());
    println!("device: {}", device_name(&device));
    println!("setting: {setting}");
    for n in &notes {
        println!("  {n}");
    }
    println!("parameters: {} scalars; {} entities, {} directed relation pairs", trainer.params.numel(), trainer.inputs.n, trainer.inputs.graph.num_edges());

    let interactive = !args.quiet && std::io::stderr().is_terminal();
    let pb = if interactive { ProgressBar::new(spec.train.epochs as u64) } else { ProgressBar::hidden() };
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} epochs [{elapsed_precise}<{eta_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb.set_position(trainer.epoch as u64);
    let metric_label = match spec.train.protocol {
        Protocol::Clean => "dev H@1 (CSLS)",
        Protocol::Reference => "test H@1 (CSLS)",
    };
    let (mut epoch_secs, mut eval_secs): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut last_metric = String::new();
    while !trainer.done() {
        let t0 = Instant::now();
        let stats = match trainer.run_epoch() {
            Ok(s) => s,
            Err(e @ Error::NonFinite { .. }) => {
                pb.abandon();
                eprintln!("stopped: {e}. The last good checkpoint is {}.", dir.file("checkpoint.safetensors").display());
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        epoch_secs.push(t0.elapsed().as_secs_f64());
        fsx::append_line(&dir.file("train.jsonl"), &setup::json(&stats))?;
        if let Some(il) = &stats.il {
            if il.added > 0 {
                log::info!("epoch {}: iterative learning added {} pairs ({} correct)", stats.epoch, il.added, il.added_correct);
            }
        }
        pb.set_position(trainer.epoch as u64);
        pb.set_message(format!("loss {:.4}{last_metric}", stats.loss));
        if trainer.eval_due() {
            // The metrics of a checkpoint to write now, if one is due.
            let checkpoint = if trainer.eval_split().1.is_empty() {
                // --select-last without a dev split: nothing to evaluate; the checkpoint follows the run.
                if !interactive && !args.quiet {
                    println!("epoch {:>4}: loss {:.4}", trainer.epoch, stats.loss);
                }
                Some(json!({}))
            } else {
                let t1 = Instant::now();
                let rec: EvalRecord = trainer.evaluate_and_select()?;
                eval_secs.push(t1.elapsed().as_secs_f64());
                let mut line = serde_json::to_value(&rec).unwrap_or(json!({}));
                line["kind"] = json!("eval");
                line["seconds"] = json!(t1.elapsed().as_secs_f64());
                fsx::append_line(&dir.file("metrics.jsonl"), &line.to_string())?;
                let m = rec.report.csls.as_ref().unwrap_or(&rec.report.plain).l2r;
                last_metric = format!(" | {} H@1 {:.4} MRR {:.4}", rec.split, m.hits1, m.mrr);
                if !interactive && !args.quiet {
                    println!("epoch {:>4}: loss {:.4}{last_metric}{}", trainer.epoch, stats.loss, if rec.improved { " *" } else { "" });
                }
                (rec.improved || spec.train.select_last).then(|| json!({ rec.split: rec.report }))
            };
            if let Some(metrics) = checkpoint {
                write_checkpoint(&dir, &trainer.params, checkpoint_meta(&spec, &fp, &split_tsv, trainer.epoch, &metrics))?;
            }
            write_resume(&dir, &trainer)?;
            write_curve(&dir, &format!("{} ({})", ds.name, metric_label), metric_label)?;
        }
    }
    pb.finish_and_clear();

    // The selected model on the test split (never used for selection in the clean protocol).
    let (selected, sel_epoch) = trainer.selected();
    let selected = selected.clone();
    let t1 = Instant::now();
    let test = trainer.evaluate_on(&selected, &trainer.split.test, true)?;
    let t_test = t1.elapsed().as_secs_f64();
    let dev = if trainer.split.dev.is_empty() { None } else { Some(trainer.evaluate_dev(&selected, false)?) };
    let metrics = json!({ "test": test, "dev": dev });
    fsx::append_line(
        &dir.file("metrics.jsonl"),
        &json!({
            "kind": "final", "epoch": sel_epoch, "epochs": trainer.epoch, "test": test, "dev": dev,
            "test_eval_seconds": t_test, "epoch_seconds_median": median(epoch_secs.clone()), "eval_seconds_median": median(eval_secs.clone()),
            "session_seconds": t_start.elapsed().as_secs_f64(), "resumed": resume,
            "device": device_name(&device), "peak_rss_bytes": setup::peak_rss_bytes(),
            "gpu_peak_bytes": match &device { Device::Gpu(c) => Some(c.pool_stats().peak_live_bytes), Device::Cpu => None },
            "final_train_pairs": trainer.train_pairs.len(),
            "dataset": ds.name, "setting": setting,
            "modalities": trainer.model.modalities().iter().map(|m| m.name()).collect::<Vec<_>>(),
            "split_counts": [trainer.split.train.len(), trainer.split.dev.len(), trainer.split.test.len()],
            "dev_distractors": trainer.dev_distractors().len(),
        })
        .to_string(),
    )?;
    write_checkpoint(&dir, &selected, checkpoint_meta(&spec, &fp, &split_tsv, sel_epoch, &metrics))?;

    println!();
    println!("setting: {setting}");
    println!(
        "model {}; test metrics ({} pairs, candidates = the test pairs' KG2 entities):",
        match spec.train.protocol {
            _ if spec.train.select_last => format!("of the last epoch, {sel_epoch} (--select-last)"),
            Protocol::Clean => format!("selected at epoch {sel_epoch} on the dev split"),
            Protocol::Reference => format!("selected at epoch {sel_epoch} on the TEST split (reference protocol: selection on test, as the released code)"),
        },
        test.pairs
    );
    print!("{}", render_report(&test));
    // A resumed run with nothing left to train times no epochs and no evaluations this session.
    let per = |v: Vec<f64>, what: &str| if v.is_empty() { format!("no {what} this session") } else { format!("{:.3} s per {what} (median)", median(v)) };
    println!(
        "time: {:.1} s total, {}, {}, {:.2} s for the final test evaluation",
        t_start.elapsed().as_secs_f64(),
        per(epoch_secs, "epoch"),
        per(eval_secs, "in-training evaluation"),
        t_test
    );
    println!("checkpoint: {}", dir.file("checkpoint.safetensors").display());
    Ok(())
}

pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "CPU".into(),
        Device::Gpu(ctx) => {
            let r = ctx.report();
            format!("{} ({}, {}{})", r.name, r.backend, r.device_type, if r.is_software { ", software" } else { "" })
        }
    }
}
