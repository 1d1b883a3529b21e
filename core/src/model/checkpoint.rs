//! Opening a checkpoint against a dataset, on any target: what `mmea eval | align | export` and the
//! browser demo share. A checkpoint (see [`super::params`]) carries its run spec (modalities, model
//! config, evaluation settings), the dataset's fingerprint and the split, so the inputs it was trained on
//! can be rebuilt exactly, and data that does not match is refused with the reason.

use std::collections::HashMap;

use serde::Deserialize;

use crate::data::{self, Dataset, FeatureOptions, Features, ModalityFeatures, Split};
use crate::error::{Error, Result};
use crate::evaluate::{EvalOptions, EvalReport, SinkhornDecoding};
use crate::tensor::Device;

use super::{AlignModel, CheckpointData, Fingerprint, Inputs, ModalityChoice, ModelConfig, Params};

/// The evaluation settings a run used (a subset of the trainer's config).
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct EvalSettings {
    pub csls_k: usize,
    pub sinkhorn_eps: f32,
    pub sinkhorn_iters: usize,
    /// Sinkhorn over each query's k best candidates only (0: dense; checkpoints written before it lack
    /// the key and mean dense).
    #[serde(default)]
    pub sinkhorn_top_k: usize,
}

impl EvalSettings {
    /// The evaluation options of these settings (Sinkhorn decoding only if `sinkhorn`).
    pub fn options(&self, sinkhorn: bool) -> EvalOptions {
        EvalOptions {
            csls_k: (self.csls_k > 0).then_some(self.csls_k),
            sinkhorn: sinkhorn.then_some(SinkhornDecoding { eps: self.sinkhorn_eps, iters: self.sinkhorn_iters, top_k: (self.sinkhorn_top_k > 0).then_some(self.sinkhorn_top_k) }),
            block_rows: None,
            scored: None,
        }
    }
}

/// What a checkpoint's `run_spec` metadata says about rebuilding its model (the native run spec has more
/// fields; unknown ones are ignored here).
#[derive(Clone, Debug, Deserialize)]
pub struct CheckpointSpec {
    /// `demo` or the dataset directory the run was given.
    pub data: String,
    /// The image feature file, if the run had one.
    #[serde(default)]
    pub images: Option<String>,
    pub modalities: ModalityChoice,
    /// `model_name` and `model` (its settings).
    #[serde(flatten)]
    pub model: ModelConfig,
    /// The trainer's config; only its evaluation settings are read here.
    pub train: EvalSettings,
    /// The command line that produced the checkpoint.
    #[serde(default)]
    pub command: String,
}

impl CheckpointSpec {
    /// Reads the run spec of a parsed checkpoint (`path` names it in errors) and checks the model is known.
    pub fn read(path: &str, ck: &CheckpointData) -> Result<CheckpointSpec> {
        let fmt = |d: String| Error::Format { path: path.into(), detail: d };
        let model_name = ck.meta(path, "model")?;
        if !ModelConfig::NAMES.contains(&model_name) {
            return Err(fmt(format!("model `{model_name}` is not known to this version (it knows {})", ModelConfig::NAMES.join(", "))));
        }
        serde_json::from_str(ck.meta(path, "run_spec")?).map_err(|e| fmt(format!("bad run_spec metadata: {e}")))
    }
}

/// A checkpoint with everything rebuilt around it, on one device.
pub struct Opened {
    pub spec: CheckpointSpec,
    pub metadata: HashMap<String, String>,
    pub split: Split,
    /// The dataset's features (host), e.g. the relation graph lists for explanations.
    pub features: Features,
    pub inputs: Inputs,
    pub model: Box<dyn AlignModel>,
    /// In the model's parameter order.
    pub params: Params,
}

/// Rebuilds the inputs of `spec` for `ds` (`images`: the run's image features, already attached) on
/// `device`, returning them with the host features they came from.
pub fn build_inputs(device: &Device, ds: &Dataset, modalities: &ModalityChoice, images: Option<&ModalityFeatures>) -> Result<(Inputs, Features)> {
    let mut opts = FeatureOptions { char_bigrams: modalities.names, rel_directed: modalities.rel_directed, ..Default::default() };
    if modalities.rel_columns == 0 {
        // One column per relation (padding to the relation count pads nothing but unused relations).
        opts.rel_top_k = ds.relations.len();
    } else {
        opts.rel_top_k = modalities.rel_columns;
    }
    let features = data::build_features(ds, &opts);
    let mut inputs = Inputs::build(device, ds, &features, images, modalities)?;
    if let Some(img) = images {
        inputs.notes.push(format!("image: {}", img.report));
    }
    Ok((inputs, features))
}

/// Opens checkpoint `ck` (parsed from `path`) against dataset `ds`: checks the fingerprint, reads the
/// split, rebuilds the inputs and checks every parameter's shape against the model they imply.
pub fn open(path: &str, ck: &CheckpointData, ds: &Dataset, images: Option<&ModalityFeatures>, device: &Device) -> Result<Opened> {
    let fmt = |d: String| Error::Format { path: path.into(), detail: d };
    let spec = CheckpointSpec::read(path, ck)?;
    let fp: Fingerprint = serde_json::from_str(ck.meta(path, "dataset")?).map_err(|e| fmt(format!("bad dataset metadata: {e}")))?;
    if let Some(why) = fp.mismatch(&Fingerprint::of(ds)) {
        return Err(fmt(format!("does not match the data: {why}")));
    }
    if spec.images.is_some() && images.is_none() {
        return Err(fmt(format!("the run used image features (`{}`), which were not given", spec.images.as_deref().unwrap_or(""))));
    }
    let split = Split::from_tsv(ds, &format!("{path} (split metadata)"), ck.meta(path, "split")?.as_bytes())?;
    let (inputs, features) = build_inputs(device, ds, &spec.modalities, images)?;
    let mut model = spec.model.build(&inputs)?;
    model.set_seeds(&split.train);
    // The shapes a model built from this data needs (values unused; small on the host).
    let expected = model.init(&Device::Cpu, inputs.n, inputs.graph.num_rel(), 0)?;
    let params = ck.params(device)?;
    expected.check_compatible(&params, path)?;
    let mut ordered = Params::new();
    for name in expected.names() {
        ordered.push(name.clone(), params.get(name)?.clone());
    }
    Ok(Opened { spec, metadata: ck.metadata.clone(), split, features, inputs, model, params: ordered })
}

/// Evaluates a model's parameters on `pairs` with the protocol of mmea-spec §2 (async: runs in a browser).
pub async fn evaluate_model(model: &dyn AlignModel, params: &Params, inputs: &Inputs, pairs: &[(u32, u32)], opts: &EvalOptions) -> Result<EvalReport> {
    if pairs.is_empty() {
        return Err(Error::invalid("evaluate", "no pairs to evaluate"));
    }
    let blocks = super::embed_blocks(model, params, inputs)?;
    let left: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    let right: Vec<u32> = pairs.iter().map(|p| p.1).collect();
    let p = super::align::normalized_blocks(&blocks, &left).await?;
    let q = super::align::normalized_blocks(&blocks, &right).await?;
    crate::evaluate::evaluate_normalized_blocks(&p, &q, opts).await
}
