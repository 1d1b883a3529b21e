//! The training-free aligner, `--model label-prop`: random labels for the seed pairs, propagated over the
//! graphs, decoded by Sinkhorn. No parameters, no gradient, no epochs. Two variants:
//!
//! **`lightea`** (the default): LightEA's three-view label propagation (Mao et al., EMNLP 2022 Findings),
//! implemented from the paper and its released notebook:
//!
//! ```text
//! graph     every triple also read backwards: (h, 2r, t) and (t, 2r+1, h); duplicates removed
//! labels    E⁰ [N, d]: seed pair k gives both its entities one z_k ~ N(0, I), row-normalised (shared by the
//!           two sides; near-orthogonal for large d); every other entity a 10⁻³-scaled label of its own
//! views     R^l = n̂(A_re E^{l-1})                   A_re [2R × N]: relation r → its head entities (0/1)
//!           E^l = n̂(A_ee E^{l-1} + A_er R^{l-1})     A_ee: 2·deg on the diagonal, triple counts off it
//!                                                    A_er [N × 2R]: entity ← the relations it is tail of
//!           R⁰ = 0; E = n̂[E⁰ | … | E^L], R = n̂[R⁰ | … | R^L]
//! heads     w = A_tr (R P_r)    [T, H]: per (h, t) tuple, the sum of its relations' H random projections
//!           F = n̂(Σ_{(i,j)} w_(i,j),h · (E P_h)_j)   per head h a fresh [·, m] projection P_h; F [N, H·m]
//! decode    per query the top-k candidates by cosine (k = 500), then 15 Sinkhorn iterations (ε = 0.02)
//!           over the kept entries only: never an N × N matrix
//! rounds    bootstrapping: among the entities in no seed pair, a pair whose normalised Sinkhorn score
//!           (m · exp ℓ, columns summing to one) passes 0.5 joins the seeds; then propagate again
//! ```
//!
//! The projections P_r, P_h have rows normalised over their output columns, as the notebook's. Departures:
//! the non-seed entities' tiny labels and a 10⁻⁶ random head output for an entity in no triple (without them an entity that no seed reaches ends as a zero row, tied
//! with every candidate, and the gold-wins-ties protocol would count it as a hit), the bootstrapping pool
//! (every entity in no seed pair, not only the test entities the notebook draws from), and self-loop
//! triples (the notebook's table resets the diagonal count on meeting one; here they add to it).
//!
//! **`simple`** (the project's earlier baseline, kept for its checkpoints): `E^l = n̂(M E^{l-1})` with M the
//! neighbour mean, optionally plus the bag-of-relations view; the embedding is `[E¹ | … | E^L]`.
//!
//! The seeds come from the trainer (its training pairs) or from a checkpoint's split; the bootstrapping
//! rounds are deterministic, so a checkpoint rebuilds the same features. `mmea train --model label-prop`
//! runs one "epoch" with a zero loss, evaluates and writes the run directory as for any model.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::autodiff::{Tape, Var};
use crate::data::rng::Rng;
use crate::error::{Error, Result};
use crate::ops::sinkhorn::{sinkhorn_topk_indexed, TiledMatrix, TopkIndex};
use crate::ops::{add, concat_cols, gather_rows, l2_normalize, matmul_ex, similarity_tiles, spmm, spmm_heads, topk_select_rows, Csr};
use crate::tensor::{Device, Tensor};

use super::inputs::{Inputs, Modality};
use super::params::Params;
use super::{AlignModel, LossArgs, Output};

/// Scale of the non-seed entities' own labels relative to the seed labels.
const NOISE: f64 = 1e-3;
/// LightEA's decoding: Sinkhorn temperature and iterations over the kept candidates.
pub const SPARSE_EPS: f32 = 0.02;
pub const SPARSE_ITERS: usize = 15;

/// Which label propagation (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelPropVariant {
    /// LightEA's three views and relation heads, with bootstrapping rounds.
    Lightea,
    /// The earlier neighbour-mean baseline (what run specs without a `variant` key mean).
    Simple,
}

fn legacy_variant() -> LabelPropVariant {
    LabelPropVariant::Simple
}
fn default_heads() -> usize {
    LabelPropConfig::default().heads
}
fn default_head_dim() -> usize {
    LabelPropConfig::default().head_dim
}
fn default_top_k() -> usize {
    LabelPropConfig::default().top_k
}
fn default_rounds() -> usize {
    LabelPropConfig::default().rounds
}
fn default_threshold() -> f32 {
    LabelPropConfig::default().threshold
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelPropConfig {
    /// `lightea` (default) or `simple`; run specs written before the LightEA variant lack the key and mean
    /// `simple`.
    #[serde(default = "legacy_variant")]
    pub variant: LabelPropVariant,
    /// Width of the random labels.
    pub dim: usize,
    /// Propagation steps (2).
    pub layers: usize,
    /// Seed of the random labels and projections.
    pub seed: u64,
    /// `simple` only: also propagate through the bag-of-relations view (off: on the demo pair it lowers
    /// Sinkhorn H@1 from 0.549 to 0.139).
    pub relations: bool,
    /// `lightea`: relation heads H (the notebook: d/2).
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// `lightea`: columns per head m (16).
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// `lightea`: candidates kept per entity by the bootstrapping's sparse Sinkhorn (500).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// `lightea`: propagations in all; each but the last is followed by a bootstrapping round (1 = none).
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// `lightea`: the normalised Sinkhorn score a bootstrapped pair must pass (0.5).
    #[serde(default = "default_threshold")]
    pub threshold: f32,
}

impl Default for LabelPropConfig {
    fn default() -> Self {
        LabelPropConfig { variant: LabelPropVariant::Lightea, dim: 128, layers: 2, seed: 2023, relations: false, heads: 128, head_dim: 8, top_k: 500, rounds: 2, threshold: 0.5 }
    }
}

/// The features of one propagation (cached: the trainer evaluates the same seeds more than once).
#[derive(Debug)]
struct Propagated {
    device_is_cpu: bool,
    blocks: Vec<Tensor>,
    notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LabelProp {
    pub config: LabelPropConfig,
    /// `[Relation]` when the simple variant's relation view is used, else empty.
    modalities: Vec<Modality>,
    seeds: Vec<(u32, u32)>,
    cache: Rc<OnceCell<Propagated>>,
}

/// LightEA's sparse views of both graphs, built on the host from the triples (see the module docs).
struct Views {
    ent_ent: Csr,
    rel_ent: Csr,
    ent_rel: Csr,
    /// `[T × 2R]`: tuple → its relations (0/1).
    tuple_rel: Csr,
    /// `[N × N]` pattern of the (h, t) tuples, in tuple order (values unused).
    tuples: Csr,
    num_rel: usize,
    /// Entities in no triple (their head output is zero).
    isolated: Vec<u32>,
}

impl Views {
    fn build(device: &Device, inputs: &Inputs) -> Result<Views> {
        const OP: &str = "label-prop";
        let (n, nr) = (inputs.n, 2 * inputs.num_relations.max(1));
        let mut doubled: Vec<(u32, u32, u32)> = Vec::with_capacity(2 * inputs.triples.len());
        for t in &inputs.triples {
            if t.h as usize >= n || t.t as usize >= n || t.r as usize >= inputs.num_relations {
                return Err(Error::invalid(OP, format!("triple ({}, {}, {}) is outside {n} entities / {} relations", t.h, t.r, t.t, inputs.num_relations)));
            }
            doubled.push((t.h, t.t, 2 * t.r));
            doubled.push((t.t, t.h, 2 * t.r + 1));
        }
        doubled.sort_unstable();
        doubled.dedup();
        let mut diag = vec![0f32; n];
        let mut pair_count: BTreeMap<(u32, u32), f32> = BTreeMap::new();
        let mut rel_ent = HashSet::new();
        let mut ent_rel = HashSet::new();
        let mut tuple_rel = Vec::with_capacity(doubled.len());
        let mut tuples: Vec<(u32, u32, f32)> = Vec::new();
        for &(h, t, r) in &doubled {
            diag[h as usize] += 1.0;
            diag[t as usize] += 1.0;
            if tuples.last().is_none_or(|&(a, b, _)| (a, b) != (h, t)) {
                tuples.push((h, t, 1.0));
            }
            if h != t {
                *pair_count.entry((h, t)).or_default() += 1.0;
            }
            tuple_rel.push(((tuples.len() - 1) as u32, r, 1.0));
            rel_ent.insert((r, h));
            ent_rel.insert((t, r));
        }
        let isolated = (0..n as u32).filter(|&i| diag[i as usize] == 0.0).collect();
        let mut ee: Vec<(u32, u32, f32)> = (0..n as u32).map(|i| (i, i, diag[i as usize])).collect();
        ee.extend(pair_count.into_iter().map(|((h, t), c)| (h, t, c)));
        let bin = |s: HashSet<(u32, u32)>| -> Vec<(u32, u32, f32)> { s.into_iter().map(|(a, b)| (a, b, 1.0)).collect() };
        Ok(Views {
            ent_ent: Csr::from_triplets(device, n, n, &ee)?,
            rel_ent: Csr::from_triplets(device, nr, n, &bin(rel_ent))?,
            ent_rel: Csr::from_triplets(device, n, nr, &bin(ent_rel))?,
            tuple_rel: Csr::from_triplets(device, tuples.len().max(1), nr, &tuple_rel)?,
            tuples: Csr::from_triplets(device, n, n, &tuples)?,
            num_rel: nr,
            isolated,
        })
    }
}

/// `[rows, cols]` Gaussian rows, each normalised to unit length (the notebook's projections and labels).
fn unit_rows(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let row: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.extend(row.iter().map(|x| (x / norm) as f32));
    }
    v
}

/// A tensor's values on the host: CPU tensors directly, GPU ones by a blocking readback (native only; in the
/// browser the bootstrapping rounds run on the CPU device).
fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    match t.device() {
        Device::Cpu => Ok(t.cpu_f32("label-prop")?.to_vec()),
        #[cfg(not(target_arch = "wasm32"))]
        Device::Gpu(_) => t.to_vec_f32_blocking(),
        #[cfg(target_arch = "wasm32")]
        Device::Gpu(_) => Err(Error::invalid("label-prop", "bootstrapping rounds need the CPU device in the browser (or rounds = 1)")),
    }
}

fn host_u32(t: &Tensor) -> Result<Vec<u32>> {
    match t.device() {
        Device::Cpu => Ok(t.cpu_u32("label-prop")?.to_vec()),
        #[cfg(not(target_arch = "wasm32"))]
        Device::Gpu(_) => t.to_vec_u32_blocking(),
        #[cfg(target_arch = "wasm32")]
        Device::Gpu(_) => Err(Error::invalid("label-prop", "bootstrapping rounds need the CPU device in the browser (or rounds = 1)")),
    }
}

/// Seconds between laps for the run log (natively; the browser has no `Instant`).
struct Clock {
    #[cfg(not(target_arch = "wasm32"))]
    last: std::time::Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            #[cfg(not(target_arch = "wasm32"))]
            last: std::time::Instant::now(),
        }
    }

    /// `", 1.23 s"` since the last lap (empty in the browser).
    fn lap(&mut self) -> String {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let now = std::time::Instant::now();
            let s = format!(", {:.2} s", (now - self.last).as_secs_f64());
            self.last = now;
            s
        }
        #[cfg(target_arch = "wasm32")]
        String::new()
    }
}

impl LabelProp {
    pub fn new(config: LabelPropConfig, inputs: &Inputs) -> Result<LabelProp> {
        if config.dim == 0 || config.layers == 0 {
            return Err(Error::invalid("label-prop", "dim and layers must be at least 1"));
        }
        if config.variant == LabelPropVariant::Lightea && (config.heads == 0 || config.head_dim == 0 || config.top_k == 0 || config.rounds == 0) {
            return Err(Error::invalid("label-prop", "heads, head_dim, top_k and rounds must be at least 1"));
        }
        if !(config.threshold.is_finite() && config.threshold > 0.0 && config.threshold <= 1.0) {
            return Err(Error::invalid("label-prop", format!("threshold must be in (0, 1], got {}", config.threshold)));
        }
        let has_rel = inputs.modalities.iter().any(|m| m.modality == Modality::Relation);
        let modalities = if config.variant == LabelPropVariant::Simple && config.relations && has_rel { vec![Modality::Relation] } else { Vec::new() };
        Ok(LabelProp { config, modalities, seeds: Vec::new(), cache: Rc::new(OnceCell::new()) })
    }

    /// What the last propagation did (the bootstrapping rounds), for the run log.
    pub fn notes(&self) -> Vec<String> {
        self.cache.get().map(|p| p.notes.clone()).unwrap_or_default()
    }

    /// The propagated embedding blocks (plain tensors: nothing to differentiate): LightEA's one feature
    /// block, or the simple variant's `[E¹, …, E^L]`. Cached per seed set.
    pub fn propagate(&self, inputs: &Inputs) -> Result<Vec<Tensor>> {
        let dev = inputs.device();
        let is_cpu = matches!(dev, Device::Cpu);
        if let Some(p) = self.cache.get().filter(|p| p.device_is_cpu == is_cpu && p.blocks.first().is_some_and(|b| b.shape()[0] == inputs.n)) {
            return Ok(p.blocks.clone());
        }
        let (blocks, notes) = match self.config.variant {
            LabelPropVariant::Simple => (self.propagate_simple(inputs)?, Vec::new()),
            LabelPropVariant::Lightea => self.lightea(inputs)?,
        };
        if self.cache.get().is_none() {
            let _ = self.cache.set(Propagated { device_is_cpu: is_cpu, blocks: blocks.clone(), notes });
        }
        Ok(blocks)
    }

    fn check_seeds(&self, n: usize) -> Result<()> {
        const OP: &str = "label-prop";
        if self.seeds.is_empty() {
            return Err(Error::invalid(OP, "no seed pairs (the model needs the training pairs)"));
        }
        if let Some(&(l, r)) = self.seeds.iter().find(|(l, r)| *l as usize >= n || *r as usize >= n) {
            return Err(Error::invalid(OP, format!("seed pair ({l}, {r}) is beyond the {n} entities")));
        }
        Ok(())
    }

    /// LightEA's labels: unit Gaussian rows shared by the two sides of each seed pair; tiny own labels
    /// elsewhere.
    fn labels(&self, rng: &mut Rng, n: usize, d: usize, seeds: &[(u32, u32)]) -> Vec<f32> {
        let scale = NOISE / (d as f64).sqrt();
        let mut y: Vec<f32> = (0..n * d).map(|_| (rng.normal() * scale) as f32).collect();
        let z = unit_rows(rng, seeds.len(), d);
        for (k, &(l, r)) in seeds.iter().enumerate() {
            y[l as usize * d..(l as usize + 1) * d].copy_from_slice(&z[k * d..(k + 1) * d]);
            y[r as usize * d..(r as usize + 1) * d].copy_from_slice(&z[k * d..(k + 1) * d]);
        }
        y
    }

    /// One LightEA propagation from `seeds`: the normalised relation-head features `[N, H·m]`.
    fn lightea_features(&self, views: &Views, inputs: &Inputs, seeds: &[(u32, u32)], round: usize) -> Result<Tensor> {
        let c = &self.config;
        let (n, d) = (inputs.n, c.dim);
        let dev = inputs.device();
        let mut rng = Rng::new(c.seed ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut e = Tensor::from_f32(&dev, self.labels(&mut rng, n, d, seeds), &[n, d])?;
        let mut r = Tensor::zeros(&dev, &[views.num_rel, d])?;
        let (mut es, mut rs) = (vec![e.clone()], vec![r.clone()]);
        for _ in 0..c.layers {
            let r_next = l2_normalize(&spmm(&views.rel_ent, &e)?)?;
            let e_next = l2_normalize(&add(&spmm(&views.ent_ent, &e)?, &spmm(&views.ent_rel, &r)?)?)?;
            e = e_next;
            r = r_next;
            es.push(e.clone());
            rs.push(r.clone());
        }
        let e_cat = l2_normalize(&concat_cols(&es.iter().collect::<Vec<_>>())?)?;
        let r_cat = l2_normalize(&concat_cols(&rs.iter().collect::<Vec<_>>())?)?;
        let width = (c.layers + 1) * d;
        let p_rel = Tensor::from_f32(&dev, unit_rows(&mut rng, width, c.heads), &[width, c.heads])?;
        let adj = spmm(&views.tuple_rel, &matmul_ex(&r_cat, &p_rel, None, false, false, 1.0)?)?;
        // One fresh [width, m] projection per head, rows normalised over the head's m columns.
        let mut p_ent = vec![0f32; width * c.heads * c.head_dim];
        for h in 0..c.heads {
            let ph = unit_rows(&mut rng, width, c.head_dim);
            for i in 0..width {
                p_ent[i * c.heads * c.head_dim + h * c.head_dim..][..c.head_dim].copy_from_slice(&ph[i * c.head_dim..(i + 1) * c.head_dim]);
            }
        }
        let p_ent = Tensor::from_f32(&dev, p_ent, &[width, c.heads * c.head_dim])?;
        let y = matmul_ex(&e_cat, &p_ent, None, false, false, 1.0)?;
        // An entity in no triple gets no head output: a 10⁻⁶ random row keeps it from being a zero row (which
        // would tie with every candidate); next to any real output it is negligible.
        let hw = c.heads * c.head_dim;
        let mut tiny = vec![0f32; n * hw];
        for &i in &views.isolated {
            tiny[i as usize * hw..(i as usize + 1) * hw].iter_mut().for_each(|v| *v = (rng.normal() * 1e-6) as f32);
        }
        let tiny = Tensor::from_f32(&dev, tiny, &[n, hw])?;
        l2_normalize(&add(&spmm_heads(&views.tuples, &adj, &y, c.head_dim)?, &tiny)?)
    }

    fn lightea(&self, inputs: &Inputs) -> Result<(Vec<Tensor>, Vec<String>)> {
        let n = inputs.n;
        self.check_seeds(n)?;
        let dev = inputs.device();
        let views = Views::build(&dev, inputs)?;
        let mut seeds = self.seeds.clone();
        let mut notes = Vec::new();
        let mut clock = Clock::start();
        let mut features = self.lightea_features(&views, inputs, &seeds, 0)?;
        notes.push(format!("propagation 1 from {} seeds{}", seeds.len(), clock.lap()));
        for round in 1..self.config.rounds {
            let added = self.bootstrap(&features, inputs, &seeds)?;
            notes.push(format!("bootstrapping round {round}: {} pairs pass the normalised Sinkhorn score {}{}", added.len(), self.config.threshold, clock.lap()));
            if added.is_empty() {
                break;
            }
            seeds.extend(added);
            features = self.lightea_features(&views, inputs, &seeds, round)?;
            notes.push(format!("propagation {} from {} seeds{}", round + 1, seeds.len(), clock.lap()));
        }
        Ok((vec![features], notes))
    }

    /// One bootstrapping round: sparse Sinkhorn between the KG1 and KG2 entities in no seed pair; each
    /// KG1 entity whose best candidate's normalised score passes the threshold gives a pair. Columns are
    /// normalised last, so at most one row passes 0.5 in any column: the pairs are one-to-one.
    fn bootstrap(&self, features: &Tensor, inputs: &Inputs, seeds: &[(u32, u32)]) -> Result<Vec<(u32, u32)>> {
        let used_l: HashSet<u32> = seeds.iter().map(|p| p.0).collect();
        let used_r: HashSet<u32> = seeds.iter().map(|p| p.1).collect();
        let (n1, n) = (inputs.n1 as u32, inputs.n as u32);
        let left: Vec<u32> = (0..n1).filter(|i| !used_l.contains(i)).collect();
        let right: Vec<u32> = (n1..n).filter(|i| !used_r.contains(i)).collect();
        if left.is_empty() || right.is_empty() {
            return Ok(Vec::new());
        }
        let dev = features.device();
        let p = gather_rows(features, &Tensor::from_u32(&dev, left.clone(), &[left.len()])?)?;
        let q = gather_rows(features, &Tensor::from_u32(&dev, right.clone(), &[right.len()])?)?;
        // One tile of rows at a time, keeping only each row's k best: memory grows as N·k, not N².
        let rows = (crate::gpu::BROWSER_BINDING_LIMIT as usize / (4 * right.len())).clamp(1, left.len());
        let k = self.config.top_k.min(right.len());
        let (mut cols, mut vals) = (Vec::with_capacity(left.len() * k), Vec::with_capacity(left.len() * k));
        let mut r0 = 0;
        while r0 < left.len() {
            let len = rows.min(left.len() - r0);
            let s: TiledMatrix = similarity_tiles(&crate::ops::slice_rows(&p, r0, len)?, &q, len)?;
            let top = topk_select_rows(&s, k)?;
            // The column ids are read once: for the transposed index and for the pairs.
            cols.extend(host_u32(&top.indices)?);
            vals.extend(host_f32(&top.values)?);
            r0 += len;
        }
        let values = Tensor::from_f32(&dev, vals, &[left.len(), k])?;
        let index = TopkIndex::new(&dev, &cols, left.len(), k, right.len())?;
        let plan = host_f32(&sinkhorn_topk_indexed(&index, &values, SPARSE_EPS, SPARSE_ITERS)?)?;
        // Normalised score m · exp ℓ > threshold  ⇔  ℓ > ln(threshold / m).
        let bar = (self.config.threshold as f64 / right.len() as f64).ln() as f32;
        let mut out = Vec::new();
        for (i, (pl, cl)) in plan.chunks(k).zip(cols.chunks(k)).enumerate() {
            let (best, &v) = pl.iter().enumerate().fold((0, &f32::NEG_INFINITY), |b, (j, v)| if *v > *b.1 { (j, v) } else { b });
            if v > bar {
                out.push((left[i], right[cl[best] as usize]));
            }
        }
        Ok(out)
    }

    /// The simple variant: neighbour means (and optionally the bag-of-relations view).
    fn propagate_simple(&self, inputs: &Inputs) -> Result<Vec<Tensor>> {
        let n = inputs.n;
        self.check_seeds(n)?;
        let d = self.config.dim;
        let dev = inputs.device();
        let mut rng = Rng::new(self.config.seed);
        let scale = 1.0 / (d as f64).sqrt();
        // Every other entity starts from its own tiny random label (see the module docs).
        let mut y: Vec<f32> = (0..n * d).map(|_| (rng.normal() * scale * NOISE) as f32).collect();
        for &(l, r) in &self.seeds {
            for k in 0..d {
                let z = (rng.normal() * scale) as f32;
                y[l as usize * d + k] = z;
                y[r as usize * d + k] = z;
            }
        }
        let mut e = Tensor::from_f32(&dev, y, &[n, d])?;
        let rel = inputs.modalities.iter().find(|m| m.modality == Modality::Relation).filter(|_| !self.modalities.is_empty());
        let mut blocks = Vec::with_capacity(self.config.layers);
        for _ in 0..self.config.layers {
            let mut next = spmm(&inputs.nbr_mean.0, &e)?;
            if let Some(f) = rel {
                let r = l2_normalize(&matmul_ex(&f.features, &e, None, true, false, 1.0)?)?;
                next = add(&next, &matmul_ex(&f.features, &r, None, false, false, 1.0)?)?;
            }
            e = l2_normalize(&next)?;
            blocks.push(e.clone());
        }
        Ok(blocks)
    }
}
impl AlignModel for LabelProp {
    fn name(&self) -> &'static str {
        "label-prop"
    }

    fn modalities(&self) -> &[Modality] {
        &self.modalities
    }

    fn init(&self, _device: &Device, _n: usize, _num_rel: usize, _seed: u64) -> Result<Params> {
        Ok(Params::new())
    }

    fn forward(&self, tape: &Tape, _vars: &HashMap<String, Var>, inputs: &Inputs) -> Result<Output> {
        let blocks: Vec<Var> = self.propagate(inputs)?.iter().map(|b| tape.constant(b)).collect();
        let block_names = match self.config.variant {
            LabelPropVariant::Lightea => vec!["labels.heads".to_string()],
            LabelPropVariant::Simple => (1..=blocks.len()).map(|l| format!("labels.e{l}")).collect(),
        };
        Ok(Output { blocks, block_names, omega: None, sigma: None, attention: Vec::new(), extra: Vec::new() })
    }

    /// Nothing to learn: a zero loss.
    fn loss(&self, tape: &Tape, out: &Output, _args: &LossArgs) -> Result<Var> {
        Ok(tape.constant(&Tensor::zeros(&out.blocks[0].value.device(), &[1])?))
    }

    fn set_seeds(&mut self, pairs: &[(u32, u32)]) {
        self.seeds = pairs.to_vec();
        self.cache = Rc::new(OnceCell::new());
    }

    fn notes(&self) -> Vec<String> {
        LabelProp::notes(self)
    }

    fn trainable(&self) -> bool {
        false
    }
}
