//! The training loop (mmea-spec §3 and §4.5): full-graph forward every epoch, the loss over chunks of the
//! training pairs, one AdamW step per epoch (or one per part of the pairs with `steps` > 1), iterative
//! learning (mutual-nearest-neighbour bootstrapping), evaluation and model selection.
//!
//! Two protocols:
//! - **clean** (default): one AdamW with the paper's hyper-parameters (lr 5e-3, weight decay 1e-2); with
//!   iterative learning the lr drops to lr/5 once at `il_start` (one new optimiser, as the spec's clean
//!   variant); evaluation during training is on the **dev** split (carved from the training pairs) and the
//!   model is selected on it; the test split is evaluated once, on the selected model.
//! - **reference**: the released code's behaviour: lr 5e-4, weight decay 0.01, and from `il_start` on a
//!   fresh AdamW(lr/5) **every epoch** (the `epoch == epoch >= il_start` quirk: ≈ sign-SGD), evaluation on
//!   the **test** pairs every interval, best epoch chosen on test. For side-by-side comparisons only.
//!
//! Everything is deterministic for a seed: the per-epoch shuffle is seeded by `(seed, epoch)`, the kernels
//! use no atomics, so a resumed run (see [`TrainerState`]) repeats an uninterrupted one exactly.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::autodiff::Tape;
use crate::data::rng::Rng;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::evaluate::{EvalOptions, EvalReport};
use crate::gpu::BROWSER_BINDING_LIMIT;
use crate::model::align::normalized_blocks_blocking;
use crate::model::{embed_blocks, tape_vars, AlignModel, Inputs, LossArgs, Params, RowDropout};
use crate::ops::eval::{argmax_cols, argmax_rows, csls, mutual_nn, similarity_tiles_blocks};
use crate::ops::AdamW;
use crate::tensor::Tensor;

pub use crate::run::{LrSchedule, Protocol, TrainConfig};

/// What one epoch did.
#[derive(Clone, Debug, Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// The loss (the sum of its chunks' mean losses), summed over the epoch's optimiser steps.
    pub loss: f64,
    pub train_pairs: usize,
    /// Iterative learning this epoch: MNN pairs found, candidates kept, pairs added (and how many of
    /// those are gold test/dev pairs: reported for the log only, never used).
    pub il: Option<IlEvent>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IlEvent {
    pub mnn: usize,
    pub candidates: usize,
    pub added: usize,
    pub added_correct: usize,
}

/// One evaluation during training.
#[derive(Clone, Debug, Serialize)]
pub struct EvalRecord {
    /// Epochs completed when it ran.
    pub epoch: usize,
    /// `dev` (clean) or `test` (reference).
    pub split: &'static str,
    pub report: EvalReport,
    /// The selection score (l2r H@1 with CSLS if on, else plain).
    pub score: f64,
    pub improved: bool,
}

/// The best model so far.
#[derive(Clone, Debug)]
pub struct Best {
    pub epoch: usize,
    pub score: f64,
    pub params: Params,
}

/// Everything needed to continue a run exactly (see `mmea train --resume`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    /// Epochs completed.
    pub epoch: usize,
    pub train_pairs: Vec<(u32, u32)>,
    pub il_candidates: Vec<(u32, u32)>,
    pub adam_step: u64,
    pub adam_lr: f64,
    /// Step count per parameter (0 = no moments).
    pub adam_t: Vec<u64>,
    pub best_epoch: Option<usize>,
    pub best_score: Option<f64>,
    pub lr_dropped: bool,
}

pub struct Trainer {
    pub model: Box<dyn AlignModel>,
    pub inputs: Inputs,
    pub cfg: TrainConfig,
    pub split: Split,
    pub params: Params,
    pub adamw: AdamW,
    /// Epochs completed.
    pub epoch: usize,
    /// Seed pairs plus the pairs iterative learning added.
    pub train_pairs: Vec<(u32, u32)>,
    pub il_candidates: Vec<(u32, u32)>,
    pub best: Option<Best>,
    lr_dropped: bool,
    /// Distractor pairs appended to the dev pairs ([`TrainConfig::dev_distractors`]).
    dev_pool: Vec<(u32, u32)>,
}

/// `count` KG1 and `count` KG2 entities in no training or dev pair, each side shuffled by `seed`, zipped
/// into pseudo-pairs (their "gold" is never scored).
fn distractor_pairs(split: &Split, n1: usize, n: usize, count: usize, seed: u64) -> Vec<(u32, u32)> {
    if count == 0 {
        return Vec::new();
    }
    let used: HashSet<u32> = split.train.iter().chain(&split.dev).flat_map(|&(l, r)| [l, r]).collect();
    let mut left: Vec<u32> = (0..n1 as u32).filter(|i| !used.contains(i)).collect();
    let mut right: Vec<u32> = (n1 as u32..n as u32).filter(|i| !used.contains(i)).collect();
    Rng::new(seed ^ 0xD15C_0A11).shuffle(&mut left);
    Rng::new(seed ^ 0xD15C_0A12).shuffle(&mut right);
    left.into_iter().zip(right).take(count).collect()
}

fn selection_score(r: &EvalReport) -> f64 {
    let m = r.csls.as_ref().unwrap_or(&r.plain).l2r;
    // H@1 first; MRR breaks ties (scaled so it never outweighs one H@1 step on ≤ 10⁶ pairs).
    m.hits1 + 1e-7 * m.mrr
}

impl Trainer {
    pub fn new(mut model: Box<dyn AlignModel>, inputs: Inputs, cfg: TrainConfig, split: Split, params: Params) -> Result<Trainer> {
        cfg.validate()?;
        if split.train.is_empty() {
            return Err(Error::invalid("train", "the split has no training pairs"));
        }
        if cfg.steps > split.train.len() {
            return Err(Error::invalid("train", format!("{} steps per epoch need at least as many training pairs (the split has {})", cfg.steps, split.train.len())));
        }
        if cfg.protocol == Protocol::Clean && split.dev.is_empty() && !cfg.select_last {
            return Err(Error::invalid(
                "train",
                "the clean protocol selects the model on a dev split, and this split has none (use --dev-fraction > 0, or --select-last to keep the last epoch's model)",
            ));
        }
        if cfg.negatives > 0 && !model.supports_negatives() {
            return Err(Error::invalid("train", "extra negatives (--negatives) are implemented for LoginMEA's InfoNCE and NHS losses only"));
        }
        if cfg.dropout > 0.0 && !model.supports_dropout() {
            return Err(Error::invalid("train", format!("row dropout (--dropout) is not implemented for `{}`", model.name())));
        }
        if !model.trainable() && cfg.iterative {
            return Err(Error::invalid("train", format!("iterative learning is not available for `{}` (its checkpoints rebuild from the split's training pairs)", model.name())));
        }
        model.set_seeds(&split.train);
        let mut adamw = AdamW::new(cfg.lr);
        adamw.weight_decay = cfg.weight_decay;
        let train_pairs = split.train.clone();
        let dev_pool = if cfg.protocol == Protocol::Clean { distractor_pairs(&split, inputs.n1, inputs.n, cfg.dev_distractors, cfg.seed) } else { Vec::new() };
        Ok(Trainer { model, inputs, cfg, split, params, adamw, epoch: 0, train_pairs, il_candidates: Vec::new(), best: None, lr_dropped: false, dev_pool })
    }

    /// Runs one epoch: forward, loss, backward, optimiser step, then iterative learning if due.
    pub fn run_epoch(&mut self) -> Result<EpochStats> {
        let e = self.epoch;
        let cfg = &self.cfg;
        // Optimiser schedule (§3.3).
        let mut base = cfg.lr;
        if e >= cfg.il_start && (cfg.iterative || cfg.protocol == Protocol::Reference) {
            base = cfg.lr * cfg.il_lr_factor;
            match cfg.protocol {
                Protocol::Reference => self.adamw.reset_state(),
                Protocol::Clean if !self.lr_dropped => {
                    self.adamw.reset_state();
                    self.lr_dropped = true;
                }
                Protocol::Clean => {}
            }
        }
        self.adamw.lr = base * cfg.lr_schedule.factor(e, cfg.epochs);
        if !self.model.trainable() {
            // Nothing to learn: the epoch only counts (evaluation and selection work as for any model).
            self.epoch += 1;
            return Ok(EpochStats { epoch: e, loss: 0.0, train_pairs: self.train_pairs.len(), il: None });
        }
        let pairs = self.epoch_pairs(e);

        let negatives = self.sample_negatives(e);
        let mut loss_value = 0.0;
        for (step, part) in step_parts(&pairs, cfg.steps).enumerate() {
            let (step_loss, g) = self.loss_and_gradients_at(part, &negatives, self.dropout_at(step))?;
            if !step_loss.is_finite() {
                let at = if cfg.steps > 1 { format!("epoch {e}, step {}", step + 1) } else { format!("epoch {e}") };
                return Err(Error::NonFinite {
                    op: "train",
                    detail: format!("the loss is {step_loss} at {at}; the last good checkpoint is kept. Lower the learning rate (now {})", self.adamw.lr),
                });
            }
            let gr: Vec<Option<&Tensor>> = g.iter().map(Option::as_ref).collect();
            self.adamw.step_some(self.params.tensors_mut(), &gr)?;
            loss_value += step_loss;
        }
        self.epoch += 1;

        let il = if cfg.iterative && e >= cfg.il_start { self.iterative_step(e)? } else { None };
        Ok(EpochStats { epoch: e, loss: loss_value, train_pairs: self.train_pairs.len(), il })
    }

    /// The training pairs in epoch `e`'s order: shuffled with a generator seeded by (seed, epoch).
    pub fn epoch_pairs(&self, e: usize) -> Vec<(u32, u32)> {
        let mut pairs = self.train_pairs.clone();
        Rng::new(self.cfg.seed ^ (e as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut pairs);
        pairs
    }

    /// The row dropout of the current epoch's first step (None when [`TrainConfig::dropout`] is 0): seeded
    /// by (seed, epoch), so repeated calls within an epoch, a resumed run and both backends use the same
    /// masks.
    pub fn dropout(&self) -> Option<RowDropout> {
        self.dropout_at(0)
    }

    /// The row dropout of step `step` of the current epoch ([`TrainConfig::steps`]): step 0's masks are
    /// [`Trainer::dropout`]'s, later steps' are seeded by (seed, epoch, step).
    pub fn dropout_at(&self, step: usize) -> Option<RowDropout> {
        (self.cfg.dropout > 0.0).then(|| RowDropout {
            p: self.cfg.dropout,
            seed: self.cfg.seed ^ 0x6472_6f70_6f75_7421 ^ (self.epoch as u64 + 1).wrapping_mul(0xE703_7ED1_A0B4_28DB) ^ (step as u64).wrapping_mul(0x94D0_49BB_1331_11EB),
        })
    }

    /// Epoch `e`'s extra negatives ([`TrainConfig::negatives`]): KG2 entities in no current training pair,
    /// drawn with a generator seeded by (seed, epoch), so a resumed run draws the same ones.
    pub fn sample_negatives(&self, e: usize) -> Vec<u32> {
        if self.cfg.negatives == 0 {
            return Vec::new();
        }
        let both = self.model.negatives_from_both_kgs();
        let used: HashSet<u32> = self.train_pairs.iter().flat_map(|p| if both { vec![p.0, p.1] } else { vec![p.1] }).collect();
        let first = if both { 0 } else { self.inputs.n1 as u32 };
        let mut pool: Vec<u32> = (first..self.inputs.n as u32).filter(|j| !used.contains(j)).collect();
        Rng::new(self.cfg.seed ^ 0x6e65_6761_7469_7665 ^ (e as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)).shuffle(&mut pool);
        pool.truncate(self.cfg.negatives);
        pool
    }

    /// The loss over `pairs` (in chunks of the batch size, with the extra `negatives`, KG2 indices) and its
    /// gradient for every parameter, in the parameters' order, at the current parameters (nothing is
    /// updated), with the dropout of the epoch's first step.
    pub fn loss_and_gradients(&self, pairs: &[(u32, u32)], negatives: &[u32]) -> Result<(f64, Vec<Option<Tensor>>)> {
        self.loss_and_gradients_at(pairs, negatives, self.dropout())
    }

    fn loss_and_gradients_at(&self, pairs: &[(u32, u32)], negatives: &[u32], dropout: Option<RowDropout>) -> Result<(f64, Vec<Option<Tensor>>)> {
        let tape = Tape::new();
        let (vars, map) = tape_vars(&tape, &self.params, true);
        let out = self.model.forward(&tape, &map, &self.inputs)?;
        let args = LossArgs { pairs, negatives, batch: self.cfg.batch, n: self.inputs.n, dropout };
        let loss = self.model.loss(&tape, &out, &args)?;
        let loss_value = loss.value.to_vec_f32_blocking()?[0] as f64;
        if !loss_value.is_finite() {
            return Ok((loss_value, Vec::new()));
        }
        let mut grads = tape.backward(&loss)?;
        Ok((loss_value, vars.iter().map(|v| grads.take(v)).collect()))
    }

    /// §3 step 1–2 at the end of epoch `e`.
    fn iterative_step(&mut self, e: usize) -> Result<Option<IlEvent>> {
        let s = self.cfg.il_step;
        if (e + 1) % s != 0 {
            return Ok(None);
        }
        let mnn = self.mutual_nearest()?;
        let found = mnn.len();
        if (e + 1) % (10 * s) == s {
            self.il_candidates = mnn;
        } else {
            let set: HashSet<(u32, u32)> = mnn.into_iter().collect();
            self.il_candidates.retain(|p| set.contains(p));
        }
        let candidates = self.il_candidates.len();
        let (mut added, mut correct) = (0, 0);
        if (e + 1) % (10 * s) == 0 && !self.il_candidates.is_empty() {
            let gold: HashSet<(u32, u32)> = self.split.test.iter().chain(&self.split.dev).copied().collect();
            correct = self.il_candidates.iter().filter(|p| gold.contains(p)).count();
            added = self.il_candidates.len();
            if self.cfg.il_refresh {
                // The seeds stay; the pseudo-labels are this round's alone.
                self.train_pairs.truncate(self.split.train.len());
            }
            self.train_pairs.append(&mut self.il_candidates);
        }
        Ok(Some(IlEvent { mnn: found, candidates, added, added_correct: correct }))
    }

    /// Mutual nearest neighbours between the KG1 and KG2 entities not in any training pair (§3).
    pub fn mutual_nearest(&self) -> Result<Vec<(u32, u32)>> {
        // With `il_refresh` the pool keeps the pseudo-labelled entities (only the seeds leave it).
        let labelled = if self.cfg.il_refresh { &self.train_pairs[..self.split.train.len()] } else { &self.train_pairs[..] };
        let used_l: HashSet<u32> = labelled.iter().map(|p| p.0).collect();
        let used_r: HashSet<u32> = labelled.iter().map(|p| p.1).collect();
        let (n1, n) = (self.inputs.n1 as u32, self.inputs.n as u32);
        let left: Vec<u32> = (0..n1).filter(|i| !used_l.contains(i)).collect();
        let right: Vec<u32> = (n1..n).filter(|i| !used_r.contains(i)).collect();
        if left.is_empty() || right.is_empty() {
            return Ok(Vec::new());
        }
        let blocks = embed_blocks(self.model.as_ref(), &self.params, &self.inputs)?;
        let p = normalized_blocks_blocking(&blocks, &left)?;
        let q = normalized_blocks_blocking(&blocks, &right)?;
        let rows = (BROWSER_BINDING_LIMIT as usize / (4 * right.len())).clamp(1, left.len());
        let mut sim = similarity_tiles_blocks(&p, &q, rows)?;
        if self.cfg.il_csls > 0 {
            // CSLS discounts hub entities, which plain nearest neighbours tend to pick for many queries.
            sim = csls(&sim, self.cfg.il_csls.min(left.len()).min(right.len()))?;
        }
        let pl = argmax_rows(&sim)?.to_vec_u32_blocking()?;
        let pr = argmax_cols(&sim)?.to_vec_u32_blocking()?;
        Ok(mutual_nn(&pl, &pr).into_iter().map(|(i, j)| (left[i as usize], right[j as usize])).collect())
    }

    /// Evaluates the current parameters on `pairs`.
    pub fn evaluate_on(&self, params: &Params, pairs: &[(u32, u32)], sinkhorn: bool) -> Result<EvalReport> {
        evaluate_params(self.model.as_ref(), params, &self.inputs, pairs, &self.cfg.eval_options(sinkhorn))
    }

    /// The pairs of the in-training evaluation: dev (clean) or test (reference), with the split's name.
    pub fn eval_split(&self) -> (&'static str, &[(u32, u32)]) {
        match self.cfg.protocol {
            Protocol::Clean => ("dev", &self.split.dev),
            Protocol::Reference => ("test", &self.split.test),
        }
    }

    /// The distractor pseudo-pairs of the dev evaluation ([`TrainConfig::dev_distractors`]; empty when off
    /// or in the reference protocol).
    pub fn dev_distractors(&self) -> &[(u32, u32)] {
        &self.dev_pool
    }

    /// `params` on the dev split, with the distractors of [`TrainConfig::dev_distractors`] in the pool (the
    /// metrics count the dev pairs only).
    pub fn evaluate_dev(&self, params: &Params, sinkhorn: bool) -> Result<EvalReport> {
        if self.dev_pool.is_empty() || self.split.dev.is_empty() {
            return self.evaluate_on(params, &self.split.dev, sinkhorn);
        }
        let pairs: Vec<(u32, u32)> = self.split.dev.iter().chain(&self.dev_pool).copied().collect();
        let opts = EvalOptions { scored: Some(self.split.dev.len()), ..self.cfg.eval_options(sinkhorn) };
        evaluate_params(self.model.as_ref(), params, &self.inputs, &pairs, &opts)
    }

    /// The in-training evaluation on [`Trainer::eval_split`]; keeps the best parameters (unless
    /// [`TrainConfig::select_last`], where `improved` is always false and nothing is kept).
    pub fn evaluate_and_select(&mut self) -> Result<EvalRecord> {
        let (split, pairs) = self.eval_split();
        let report = if split == "dev" { self.evaluate_dev(&self.params, false)? } else { self.evaluate_on(&self.params, pairs, false)? };
        let score = selection_score(&report);
        let improved = !self.cfg.select_last && self.best.as_ref().is_none_or(|b| score > b.score);
        if improved {
            self.best = Some(Best { epoch: self.epoch, score, params: self.params.snapshot_blocking()? });
        }
        Ok(EvalRecord { epoch: self.epoch, split, report, score, improved })
    }

    /// Whether an evaluation is due after the epoch just completed.
    pub fn eval_due(&self) -> bool {
        self.epoch % self.cfg.eval_every == 0 || self.epoch == self.cfg.epochs
    }

    pub fn done(&self) -> bool {
        self.epoch >= self.cfg.epochs
    }

    /// The selected parameters (best on dev, or on test in the reference protocol), else the current (always
    /// with [`TrainConfig::select_last`]).
    pub fn selected(&self) -> (&Params, usize) {
        match &self.best {
            Some(b) if !self.cfg.select_last => (&b.params, b.epoch),
            _ => (&self.params, self.epoch),
        }
    }

    /// State for resuming (the tensors go separately: [`Trainer::state_tensors`]).
    pub fn state(&self) -> TrainerState {
        TrainerState {
            epoch: self.epoch,
            train_pairs: self.train_pairs.clone(),
            il_candidates: self.il_candidates.clone(),
            adam_step: self.adamw.step,
            adam_lr: self.adamw.lr,
            adam_t: (0..self.params.len()).map(|i| self.adamw.moments(i).map_or(0, |m| m.2)).collect(),
            best_epoch: self.best.as_ref().map(|b| b.epoch),
            best_score: self.best.as_ref().map(|b| b.score),
            lr_dropped: self.lr_dropped,
        }
    }

    /// Parameters, optimiser moments (`adam.m.NAME`, `adam.v.NAME`) and the best parameters
    /// (`best.NAME`), as named tensors for a resume file.
    pub fn state_tensors(&self) -> Result<Params> {
        let mut out = Params::new();
        for (i, (name, t)) in self.params.names().iter().zip(self.params.tensors()).enumerate() {
            out.push(name.clone(), t.clone());
            if let Some((m, v, _)) = self.adamw.moments(i) {
                out.push(format!("adam.m.{name}"), m.clone());
                out.push(format!("adam.v.{name}"), v.clone());
            }
        }
        if let Some(b) = &self.best {
            for (name, t) in b.params.names().iter().zip(b.params.tensors()) {
                out.push(format!("best.{name}"), t.clone());
            }
        }
        Ok(out)
    }

    /// Restores a state written by [`Trainer::state`] and [`Trainer::state_tensors`].
    pub fn restore(&mut self, st: &TrainerState, tensors: &Params, path: &str) -> Result<()> {
        let dev = self.inputs.device();
        let fmt = |d: String| Error::Format { path: path.into(), detail: d };
        if st.adam_t.len() != self.params.len() {
            return Err(fmt(format!("the resume state has {} parameters, the model {}", st.adam_t.len(), self.params.len())));
        }
        let names: Vec<String> = self.params.names().to_vec();
        let mut restored = Params::new();
        let mut best = Params::new();
        let copy = |t: &Tensor| -> Result<Tensor> { Tensor::from_f32(&dev, t.to_vec_f32_blocking()?, t.shape()) };
        let mut adamw = AdamW::new(st.adam_lr);
        adamw.weight_decay = self.cfg.weight_decay;
        adamw.step = st.adam_step;
        for (i, name) in names.iter().enumerate() {
            let t = tensors.get(name).map_err(|_| fmt(format!("the resume state lacks `{name}`")))?;
            if t.shape() != self.params.tensors()[i].shape() {
                return Err(fmt(format!("`{name}` has shape {:?}, the model needs {:?}", t.shape(), self.params.tensors()[i].shape())));
            }
            restored.push(name.clone(), copy(t)?);
            if st.adam_t[i] > 0 {
                let m = tensors.get(&format!("adam.m.{name}")).map_err(|_| fmt(format!("the resume state lacks the moments of `{name}`")))?;
                let v = tensors.get(&format!("adam.v.{name}")).map_err(|_| fmt(format!("the resume state lacks the moments of `{name}`")))?;
                adamw.restore_moments(names.len(), i, copy(m)?, copy(v)?, st.adam_t[i])?;
            }
            if st.best_epoch.is_some() {
                let b = tensors.get(&format!("best.{name}")).map_err(|_| fmt(format!("the resume state lacks the best copy of `{name}`")))?;
                best.push(name.clone(), copy(b)?);
            }
        }
        self.params = restored;
        self.adamw = adamw;
        self.epoch = st.epoch;
        self.train_pairs = st.train_pairs.clone();
        self.il_candidates = st.il_candidates.clone();
        self.lr_dropped = st.lr_dropped;
        self.best = match (st.best_epoch, st.best_score) {
            (Some(epoch), Some(score)) => Some(Best { epoch, score, params: best }),
            _ => None,
        };
        Ok(())
    }
}

/// `pairs` cut into `steps` consecutive parts whose lengths differ by at most one (the first
/// `len % steps` parts are one longer); `steps` is clamped to `1..=len`.
pub fn step_parts(pairs: &[(u32, u32)], steps: usize) -> impl Iterator<Item = &[(u32, u32)]> {
    let s = steps.clamp(1, pairs.len().max(1));
    let (q, r) = (pairs.len() / s, pairs.len() % s);
    (0..s).map(move |i| {
        let start = i * q + i.min(r);
        &pairs[start..start + q + usize::from(i < r)]
    })
}

/// Evaluates a model's parameters on `pairs` with the protocol of §2 (blocking).
pub fn evaluate_params(model: &dyn AlignModel, params: &Params, inputs: &Inputs, pairs: &[(u32, u32)], opts: &EvalOptions) -> Result<EvalReport> {
    pollster::block_on(crate::model::checkpoint::evaluate_model(model, params, inputs, pairs, opts))
}
