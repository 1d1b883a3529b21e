//! The run configuration: one serde struct, [`RunSpec`], that every run is made of (data, modalities,
//! model and its own section, training loop, split). A run folder's `config.toml` is a resolved
//! `RunSpec`; the checkpoint carries the same in its metadata, so any run can be repeated from it.
//!
//! A configuration is resolved from layers of key trees (a file, then `--set key=value` overrides and
//! the CLI's shorthands) over the defaults of the chosen model and protocol ([`RunSpec::template`]). Every
//! key a layer sets must exist in that template: a key the chosen model does not use, or an unknown key,
//! is an error naming the key, where it came from, the model, and the keys that section takes. The
//! template leaves out the training keys a model does not use ([`ModelConfig::unused_train_keys`]), so a
//! resolved config names only knobs that act.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::evaluate::EvalOptions;
use crate::model::checkpoint::EvalSettings;
use crate::model::{LabelPropVariant, MissingPolicy, ModalityChoice, ModelConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Clean,
    Reference,
}

/// Settings of the loop (the model's own settings are in its config). Keys a config leaves out take the
/// clean protocol's values (the template of a run always writes them out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub protocol: Protocol,
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Train pairs per loss chunk (3500).
    pub batch: usize,
    /// Iterative learning (MNN bootstrapping, §3).
    pub iterative: bool,
    /// First epoch of iterative learning (and of the lr × `il_lr_factor` optimiser).
    pub il_start: usize,
    /// `semi_learn_step`: MNN check every `il_step` epochs, pairs added every `10·il_step`.
    pub il_step: usize,
    /// Evaluate every this many epochs (and after the last).
    pub eval_every: usize,
    pub seed: u64,
    /// CSLS k for evaluation (3); 0 turns CSLS off.
    pub csls_k: usize,
    pub sinkhorn_eps: f32,
    pub sinkhorn_iters: usize,
    /// Sinkhorn decoding over each query's k best candidates only (LightEA's sparse decoding: faster, and
    /// no score matrix beyond the similarity tiles); 0 (the default): dense over every candidate.
    #[serde(default)]
    pub sinkhorn_top_k: usize,
    /// Extra negatives per epoch for InfoNCE (0: in-batch negatives only, as LoginMEA): this many KG2
    /// entities drawn afresh each epoch from those in no training pair, shared by every chunk. For the NHS
    /// loss, 0 means every entity (Dual-AMN) and K > 0 this many entities of either KG in no training pair.
    #[serde(default)]
    pub negatives: usize,
    /// Iterative learning's mutual nearest neighbours on CSLS scores with this k (0: plain cosine, as the
    /// reference code).
    #[serde(default)]
    pub il_csls: usize,
    /// Dropout on the rows entering the loss, before normalisation (0: none, as LoginMEA; RREA and
    /// Dual-AMN use 0.3). Masks are seeded by (seed, epoch, chunk).
    #[serde(default)]
    pub dropout: f32,
    /// Optimiser steps per epoch (1, as LoginMEA): the epoch's shuffled pairs are cut into this many
    /// near-equal consecutive parts, and each part gets its own forward pass, loss (in chunks of
    /// `batch`), backward pass and AdamW step. Mini-batch training as RREA and Dual-AMN use.
    #[serde(default = "one")]
    pub steps: usize,
    /// Keep the last epoch's model instead of the best one on the evaluation split. With it the clean
    /// protocol needs no dev split, so every training pair trains (a refit: pick the epoch count on an
    /// earlier run's dev curve, then train on train + dev for that many epochs).
    #[serde(default)]
    pub select_last: bool,
    /// The learning rate over the epochs: constant (LoginMEA) or a cosine decay over `epochs`.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Dev evaluation (clean protocol): besides the dev pairs' own entities, this many KG1 and this many
    /// KG2 entities that are in no training or dev pair join the pool as distractors (0: none, as
    /// before). The test split's pool is the test pairs' entities (10,500 on DBP15K at 30%), so a 450-pair
    /// dev pool is far easier and saturates; distractors make dev H@1 track the test setting. Uses no
    /// labels beyond train and dev; clamped to the entities available.
    #[serde(default)]
    pub dev_distractors: usize,
    /// The rate from `il_start` on is `lr × il_lr_factor` (0.2: the reference code's lr/5, and the
    /// spec's clean variant); 1 keeps the rate. A new optimiser starts there either way.
    #[serde(default = "one_fifth")]
    pub il_lr_factor: f64,
    /// Iterative learning re-labels instead of accumulating: the mutual nearest neighbours are taken over
    /// every entity in no seed pair (pseudo-labelled ones included), and each addition round replaces the
    /// previous rounds' pairs with the current candidates, so a later model can drop an earlier mistake.
    /// Off: the reference procedure (pairs accumulate; their entities leave the pool).
    #[serde(default)]
    pub il_refresh: bool,
}

fn one_fifth() -> f64 {
    0.2
}

/// How the learning rate changes from epoch to epoch ([`TrainConfig::lr_schedule`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The protocol's rate every epoch (with iterative learning, lr/5 from `il_start`), as the papers.
    #[default]
    Constant,
    /// Epoch `e` of `E` uses the protocol's rate times `(1 + cos(π e / E)) / 2`: the full rate in epoch 0,
    /// falling smoothly towards 0 in the last epoch (SGDR without restarts). AdamW's decoupled weight
    /// decay scales with it, as PyTorch's schedulers do. One factor per epoch, shared by its steps.
    Cosine,
}

impl LrSchedule {
    /// The factor applied to the rate in epoch `e` of a run of `epochs` epochs.
    pub fn factor(self, e: usize, epochs: usize) -> f64 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / epochs.max(1) as f64).cos()),
        }
    }
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// The protocol's defaults (mmea-spec §4.5; the paper's supplementary Table 2 for clean).
    pub fn for_protocol(protocol: Protocol) -> TrainConfig {
        match protocol {
            Protocol::Clean => TrainConfig {
                protocol,
                epochs: 600,
                lr: 5e-3,
                weight_decay: 1e-2,
                batch: 3500,
                iterative: false,
                il_start: 50,
                il_step: 5,
                eval_every: 10,
                seed: 2023,
                csls_k: 3,
                sinkhorn_eps: 0.02,
                sinkhorn_iters: 10,
                sinkhorn_top_k: 0,
                negatives: 0,
                il_csls: 0,
                dropout: 0.0,
                steps: 1,
                select_last: false,
                lr_schedule: LrSchedule::Constant,
                dev_distractors: 0,
                il_lr_factor: 0.2,
                il_refresh: false,
            },
            // The released code differs in the rate, epochs, iterative learning and evaluation interval.
            Protocol::Reference => TrainConfig { protocol, epochs: 1000, lr: 5e-4, iterative: true, eval_every: 50, ..Self::for_protocol(Protocol::Clean) },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::invalid("train config", d));
        if self.epochs == 0 || self.batch == 0 || self.eval_every == 0 || self.il_step == 0 || self.steps == 0 {
            return bad("epochs, batch, eval-every, il-step and steps per epoch must be at least 1".into());
        }
        if !(self.il_lr_factor > 0.0 && self.il_lr_factor.is_finite()) {
            return bad(format!("the iterative-learning rate factor must be positive (got {})", self.il_lr_factor));
        }
        if self.lr.is_nan() || self.lr <= 0.0 || self.lr.is_infinite() || self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad(format!("lr must be positive and weight decay non-negative (got {}, {})", self.lr, self.weight_decay));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1) (got {})", self.dropout));
        }
        Ok(())
    }

    /// The evaluation options of this config.
    pub fn eval_options(&self, sinkhorn: bool) -> EvalOptions {
        EvalSettings { csls_k: self.csls_k, sinkhorn_eps: self.sinkhorn_eps, sinkhorn_iters: self.sinkhorn_iters, sinkhorn_top_k: self.sinkhorn_top_k }.options(sinkhorn)
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::for_protocol(Protocol::Clean)
    }
}

/// Parses a value of one of core's enums (model names aside) by its config spelling, e.g. `"clean"` for
/// [`Protocol::Clean`]: the CLI's parsers derive from this, so the names are defined once, by serde.
pub fn parse_enum<T: for<'de> Deserialize<'de>>(s: &str) -> std::result::Result<T, String> {
    serde_json::from_value(Value::String(s.to_string())).map_err(|e| e.to_string())
}

/// The config spelling of an enum value (the inverse of [`parse_enum`]).
pub fn enum_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// The name `data` takes for the embedded demo pair.
pub const DEMO: &str = "demo";

/// How the gold links are split into train, dev and test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitSpec {
    /// Share of the gold links in the training pool (dev included) when the split is drawn here (0.3, as
    /// DBP15K; 0.2 / 0.5 / 0.8 for the FB-DB sets).
    pub train_ratio: f64,
    /// Share of the training pool moved to the dev split. Left out: 0.1 in the clean protocol, 0 in the
    /// reference protocol and with `train.select_last` (a refit). A resolved config always states it.
    pub dev_fraction: Option<f64>,
    /// Use the dataset's own split (`train_ill`/`test_ill` or `split.tsv`) when it has one; false draws a
    /// seeded split anyway.
    pub dataset_split: bool,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec { train_ratio: 0.3, dev_fraction: None, dataset_split: true }
    }
}

impl SplitSpec {
    /// The dev fraction in force for `train`.
    pub fn dev_fraction_for(&self, train: &TrainConfig) -> f64 {
        self.dev_fraction.unwrap_or(match train.protocol {
            Protocol::Clean if !train.select_last => 0.1,
            _ => 0.0,
        })
    }
}

/// Everything a run is made of: stored as `config.toml` in the run folder and as `run_spec` in every
/// checkpoint's metadata, from which `eval`, `align`, `export` and the browser rebuild its inputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// A bundled dataset's name (`demo`, `dbp15k/zh_en`, …) or a dataset folder.
    pub data: String,
    /// Image features (.npy float32 2-D or safetensors) and the ids of their rows, if any.
    #[serde(default)]
    pub images: Option<String>,
    #[serde(default)]
    pub image_ids: Option<String>,
    /// Which of the dataset's modalities the model reads, and how the relation bag is built.
    #[serde(default)]
    pub modalities: ModalityChoice,
    /// `model_name` and `model` (its own settings), as in every run spec so far.
    #[serde(flatten)]
    pub model: ModelConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub split: SplitSpec,
    /// Records, written by the run (a config's values are replaced): how the split was made, the
    /// backend, the command line.
    #[serde(default)]
    pub split_source: String,
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub command: String,
}

/// Where a layer of keys came from, for error messages (a file's path, `--set`, `--epochs`, …).
#[derive(Clone, Debug)]
pub struct Layer {
    pub origin: String,
    pub tree: Map<String, Value>,
}

impl Layer {
    pub fn new(origin: impl Into<String>) -> Layer {
        Layer { origin: origin.into(), tree: Map::new() }
    }

    /// A layer from a parsed file (its top level must be a table).
    pub fn from_value(origin: impl Into<String>, v: Value) -> Result<Layer> {
        let origin = origin.into();
        match v {
            Value::Object(tree) => Ok(Layer { origin, tree }),
            _ => Err(Error::Format { path: origin, detail: "a run config is a table of keys".into() }),
        }
    }

    /// Sets the dotted `key` (e.g. `model.dim`) to `value`, creating sections on the way.
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(config_err(&self.origin, key, "a key is a dotted path such as `model.dim` or `train.lr`".into()));
        }
        let mut cur = &mut self.tree;
        for p in &parts[..parts.len() - 1] {
            let slot = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Object(m) => cur = m,
                _ => return Err(config_err(&self.origin, key, format!("`{p}` is a value, not a section"))),
            }
        }
        cur.insert(parts[parts.len() - 1].to_string(), value);
        Ok(())
    }

    /// Applies one `--set key=value`. The value is read as a boolean or a number when it is one, else as
    /// a string (quotes optional).
    pub fn set_arg(&mut self, arg: &str) -> Result<()> {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(config_err(&self.origin, arg, "expected KEY=VALUE, e.g. `--set model.dim=100`".into()));
        };
        self.set(key.trim(), scalar(raw.trim()))
    }
}

/// A `--set` value: bool, integer, float or string.
fn scalar(raw: &str) -> Value {
    match raw {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if f.is_finite() {
            return Value::from(f);
        }
    }
    let unquoted = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
    Value::String(unquoted.to_string())
}

fn config_err(origin: &str, key: &str, detail: String) -> Error {
    Error::Config { origin: origin.to_string(), key: key.to_string(), detail }
}

/// The top-level keys that are records of a run rather than settings (accepted, then overwritten).
const RECORD_KEYS: &[&str] = &["split_source", "backend", "command"];

impl RunSpec {
    /// The defaults for `model` (a [`ModelConfig::NAMES`] entry) under `protocol` on `data`: the
    /// protocol's loop settings (and for the reference protocol the released code's `zero-input` for a
    /// modality the data lacks), 80 epochs on the demo pair, one evaluated pass for a training-free model.
    pub fn template(model: &str, protocol: Protocol, data: &str, seed: Option<u64>) -> Result<RunSpec> {
        let mut model = ModelConfig::default_for(model)
            .ok_or_else(|| config_err("the run config", "model_name", format!("unknown model `{model}`; the models are {}", ModelConfig::NAMES.join(", "))))?;
        let mut train = TrainConfig::for_protocol(protocol);
        if let Some(s) = seed {
            train.seed = s;
        }
        if data == DEMO {
            train.epochs = DEMO_EPOCHS;
        }
        if let ModelConfig::LabelProp(c) = &mut model {
            // Nothing to train: one pass, evaluated; its random labels follow the run's seed.
            train.epochs = 1;
            train.eval_every = 1;
            train.iterative = false;
            c.seed = train.seed;
            if c.variant == LabelPropVariant::Lightea {
                // LightEA's decoding: sparse Sinkhorn over each query's top-k candidates, 15 iterations.
                train.sinkhorn_top_k = c.top_k;
                train.sinkhorn_iters = crate::model::labelprop::SPARSE_ITERS;
            }
        }
        let mut modalities = ModalityChoice::default();
        if protocol == Protocol::Reference {
            // The released code's treatment of a modality the data lacks: zero rows of its width.
            modalities.missing_images = MissingPolicy::ZeroInput;
            modalities.missing_attributes = MissingPolicy::ZeroInput;
        }
        Ok(RunSpec {
            data: data.to_string(),
            images: None,
            image_ids: None,
            modalities,
            model,
            train,
            split: SplitSpec::default(),
            split_source: String::new(),
            backend: String::new(),
            command: String::new(),
        })
    }

    /// The spec as a key tree: the training keys its model does not use are left out, and so are empty
    /// optional values (what `config.toml` holds).
    pub fn to_tree(&self) -> Value {
        // Through the JSON text, so that an f32 such as 0.1 reads back as 0.1, not 0.10000000149011612.
        let mut v: Value = serde_json::to_string(self).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
        if let Some(Value::Object(t)) = v.get_mut("train") {
            for k in self.model.unused_train_keys() {
                t.remove(*k);
            }
        }
        strip_nulls(&mut v);
        v
    }

    /// Resolves `layers` (later ones win) over the template of the model, protocol and data they name
    /// (default: LoginMEA, clean, the demo pair). Every key must exist in that template.
    pub fn resolve(layers: &[Layer]) -> Result<RunSpec> {
        let find = |path: &[&str]| -> Option<(Value, &str)> {
            layers.iter().rev().find_map(|l| {
                let mut cur = l.tree.get(path[0])?;
                for p in &path[1..] {
                    cur = cur.get(*p)?;
                }
                Some((cur.clone(), l.origin.as_str()))
            })
        };
        let string_at = |path: &[&str], default: &str| -> Result<String> {
            match find(path) {
                None => Ok(default.to_string()),
                Some((Value::String(s), _)) => Ok(s),
                Some((other, origin)) => Err(config_err(origin, &path.join("."), format!("expects a string, got {other}"))),
            }
        };
        let model = string_at(&["model_name"], "loginmea")?;
        let data = string_at(&["data"], DEMO)?;
        let protocol_name = string_at(&["train", "protocol"], "clean")?;
        let protocol: Protocol = parse_enum(&protocol_name).map_err(|e| config_err(find(&["train", "protocol"]).map_or("", |x| x.1), "train.protocol", e))?;
        let seed = match find(&["train", "seed"]) {
            None => None,
            Some((v, origin)) => Some(v.as_u64().ok_or_else(|| config_err(origin, "train.seed", format!("expects a non-negative integer, got {v}")))?),
        };
        let template = RunSpec::template(&model, protocol, &data, seed).map_err(|e| match e {
            Error::Config { key, detail, .. } => config_err(find(&["model_name"]).map_or("", |x| x.1), &key, detail),
            e => e,
        })?;
        let mut merged = template.to_tree();
        // Optional values are absent from the tree of the template but are keys all the same.
        if let Value::Object(m) = &mut merged {
            for k in ["images", "image_ids"] {
                m.entry(k.to_string()).or_insert(Value::Null);
            }
            if let Some(Value::Object(s)) = m.get_mut("split") {
                s.entry("dev_fraction".to_string()).or_insert(Value::Null);
            }
        }
        let base = merged.clone();
        for layer in layers {
            check_keys(&layer.tree, &merged, "", &layer.origin, &model)?;
            merge(&mut merged, &Value::Object(layer.tree.clone()));
        }
        let mut spec: RunSpec = match serde_json::from_value(merged) {
            Ok(s) => s,
            Err(e) => return Err(culprit(&base, layers).unwrap_or_else(|| config_err("the run config", "?", e.to_string()))),
        };
        spec.split.dev_fraction = Some(spec.split.dev_fraction_for(&spec.train));
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what no single key's type says (ranges, the loop settings).
    pub fn validate(&self) -> Result<()> {
        let r = self.split.train_ratio;
        if !(r > 0.0 && r < 1.0) {
            return Err(config_err("the run config", "split.train_ratio", format!("must be in (0, 1), got {r}")));
        }
        let d = self.split.dev_fraction_for(&self.train);
        if !(0.0..1.0).contains(&d) {
            return Err(config_err("the run config", "split.dev_fraction", format!("must be in [0, 1), got {d}")));
        }
        self.train.validate()
    }
}

/// Epochs of the default job on the demo pair (measured to finish well inside two minutes on 2 cores).
pub const DEMO_EPOCHS: usize = 80;

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            strip_nulls(x);
        }
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The key whose value serde refuses (e.g. an unknown enum variant), with serde's words: each key the
/// layers set is tried alone over the template.
fn culprit(base: &Value, layers: &[Layer]) -> Option<Error> {
    fn leaves(m: &Map<String, Value>, prefix: &str, out: &mut Vec<(String, Value)>) {
        for (k, v) in m {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                Value::Object(sub) => leaves(sub, &key, out),
                _ => out.push((key, v.clone())),
            }
        }
    }
    for layer in layers.iter().rev() {
        let mut found = Vec::new();
        leaves(&layer.tree, "", &mut found);
        for (key, v) in found {
            let mut one = Layer::new(&layer.origin);
            one.set(&key, v).ok()?;
            let mut tree = base.clone();
            merge(&mut tree, &Value::Object(one.tree));
            if let Err(e) = serde_json::from_value::<RunSpec>(tree) {
                return Some(config_err(&layer.origin, &key, e.to_string()));
            }
        }
    }
    None
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a section",
    }
}

/// Every key of `user` must be a key of `template` (at the same place) with a value of a fitting type.
fn check_keys(user: &Map<String, Value>, template: &Value, prefix: &str, origin: &str, model: &str) -> Result<()> {
    for (k, v) in user {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let section = if prefix.is_empty() { "the top level".to_string() } else { format!("[{prefix}]") };
        let takes = |t: &Value| -> String {
            let mut keys: Vec<String> = t.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            keys.retain(|k| !RECORD_KEYS.contains(&k.as_str()));
            keys.join(", ")
        };
        let Some(t) = template.get(k) else {
            let train_keys = serde_json::to_value(TrainConfig::default()).unwrap_or(Value::Null);
            let detail = match prefix {
                "model" => format!("model {model} has no such key; [model] of {model} takes: {}", takes(template)),
                "train" if train_keys.get(k).is_some() => format!("model {model} does not use it; [train] for {model} takes: {}", takes(template)),
                _ => format!("not a key of {section}; it takes: {}", takes(template)),
            };
            return Err(config_err(origin, &key, detail));
        };
        match (t, v) {
            (Value::Object(_), Value::Object(u)) => check_keys(u, t, &key, origin, model)?,
            (Value::Object(_), _) => return Err(config_err(origin, &key, format!("is a section; it takes: {}", takes(t)))),
            (_, Value::Object(_)) | (_, Value::Array(_)) => return Err(config_err(origin, &key, format!("expects {}, got {}", kind(t), kind(v)))),
            // An optional value (absent in the template) takes any scalar; serde checks it.
            (Value::Null, _) => {}
            (Value::Bool(_), Value::Bool(_)) | (Value::String(_), Value::String(_)) => {}
            (Value::Number(tn), Value::Number(un)) => {
                if !tn.is_f64() && !(un.is_u64()) {
                    return Err(config_err(origin, &key, format!("expects a non-negative integer, got {un}")));
                }
            }
            _ => return Err(config_err(origin, &key, format!("expects {}, got {} ({v})", kind(t), kind(v)))),
        }
    }
    Ok(())
}
