//! What `train`, `eval`, `align` and `export` share: reading a dataset (a directory or the embedded demo
//! pair), building the model inputs for the chosen modalities, and the stored description of a run
//! (`RunSpec`) from which a checkpoint's inputs are rebuilt exactly.

use std::path::{Path, PathBuf};

use mmea_core::data::{self, Dataset, FillPolicy, IdSource, ModalityFeatures, RawFeatures, Split};
use mmea_core::model::{checkpoint, Inputs, ModalityChoice, ModelConfig};
use mmea_core::train::TrainConfig;
use mmea_core::{Device, Error, Result};
use serde::{Deserialize, Serialize};

use crate::fsx;

/// The name `--data` takes for the embedded demo pair.
pub const DEMO: &str = "demo";

/// Everything needed to rebuild a run's inputs and model: stored as `config.json` in the run directory
/// and in every checkpoint's metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// `demo` or a dataset directory (as given on the command line).
    pub data: String,
    /// Image features and their id list, if any.
    pub images: Option<String>,
    pub image_ids: Option<String>,
    pub modalities: ModalityChoice,
    /// `model_name` and `model` (its settings), as in every run spec so far.
    #[serde(flatten)]
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// How the split was made (train ratio, dev fraction, seed, or the dataset's own).
    pub split_source: String,
    pub backend: String,
    /// The command line that started the run (for the results table).
    #[serde(default)]
    pub command: String,
}

/// Loads `demo` or a directory.
pub fn load_dataset(data: &str) -> Result<Dataset> {
    if data == DEMO {
        data::demo()
    } else {
        data::load_dir(data)
    }
}

/// The image features of `spec` (attached to `ds` with LoginMEA's filling), if the run has any.
pub fn load_images(ds: &Dataset, spec: &RunSpec) -> Result<Option<ModalityFeatures>> {
    let Some(path) = &spec.images else { return Ok(None) };
    let bytes = fsx::read(Path::new(path))?;
    let ids_bytes = match &spec.image_ids {
        Some(p) => Some((p.clone(), fsx::read(Path::new(p))?)),
        None => None,
    };
    let ids = match &ids_bytes {
        Some((p, b)) => IdSource::List { path: p, bytes: b },
        None => IdSource::InFile,
    };
    let raw = RawFeatures::from_bytes(path, &bytes, ids)?;
    // LoginMEA's filling: neighbour mean, rows L2-normalised (mmea-spec §1.5).
    Ok(Some(data::attach(ds, &raw, "image", FillPolicy::NeighbourMean, spec.train.seed, true)?))
}

/// Builds the inputs of `spec` for `ds` on `device` (the notes list absent modalities).
pub fn build_inputs(device: &Device, ds: &Dataset, spec: &RunSpec) -> Result<Inputs> {
    let images = load_images(ds, spec)?;
    Ok(checkpoint::build_inputs(device, ds, &spec.modalities, images.as_ref())?.0)
}

/// The split of a run: the dataset's own (if it has one and `use_own`), else seeded.
pub fn make_split(ds: &Dataset, train_ratio: f64, dev_fraction: f64, seed: u64, use_own: bool) -> Result<Split> {
    match (&ds.split, use_own) {
        (Some(own), true) => {
            let mut sp = own.clone();
            sp.carve_dev(dev_fraction, seed);
            Ok(sp)
        }
        _ => Split::seeded(&ds.links, train_ratio, dev_fraction, seed),
    }
}

/// A run directory's path for a new run.
pub fn default_run_dir(ds: &Dataset, spec: &RunSpec) -> PathBuf {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let name: String = ds.name.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let il = if spec.train.iterative { "-il" } else { "" };
    PathBuf::from("runs").join(format!(
        "{name}-{}-{}{il}-seed{}-{stamp}",
        spec.model.name(),
        match spec.train.protocol {
            mmea_core::train::Protocol::Clean => "clean",
            mmea_core::train::Protocol::Reference => "reference",
        },
        spec.train.seed
    ))
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("\"unserialisable: {e}\""))
}

pub fn json_pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("\"unserialisable: {e}\""))
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(path: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Format { path: path.into(), detail: format!("bad JSON: {e}") })
}
