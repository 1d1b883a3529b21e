//! What `train`, `eval`, `align` and `export` share: reading a dataset (a directory or the embedded demo
//! pair), building the model inputs for the chosen modalities, and the stored description of a run
//! (`RunSpec`) from which a checkpoint's inputs are rebuilt exactly.

use std::path::{Path, PathBuf};

use mmea_core::data::{self, Dataset, FillPolicy, IdSource, ModalityFeatures, RawFeatures, Split};
use mmea_core::model::{checkpoint, Inputs};
use mmea_core::run::Layer;
use mmea_core::{Device, Error, Result};
use serde::{Deserialize, Serialize};

use crate::fsx;

pub use mmea_core::run::{RunSpec, DEMO};

/// The folder of the bundled datasets: `data/` of the source tree this binary was built from, or else
/// `data/` in the working directory.
pub fn data_root() -> Option<PathBuf> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.join("data")).unwrap_or_default();
    [built, PathBuf::from("data")].into_iter().find(|p| p.is_dir())
}

/// Whether `dir` holds a dataset (any layout's entity or triple file).
fn is_dataset(dir: &Path) -> bool {
    ["ent_ids_1", "ent_ids_1.gz", "triples_1", "triples_1.gz", "rel_triples_1", "rel_triples_1.gz", "entities_1.tsv", "entities_1.tsv.gz"].iter().any(|f| dir.join(f).is_file())
}

/// The bundled datasets: (name, folder), names as `--data` takes them (`dbp15k/zh_en`), sorted.
pub fn bundled() -> Vec<(String, PathBuf)> {
    let Some(root) = data_root() else { return Vec::new() };
    let mut found = Vec::new();
    let mut visit = |dir: &Path, name: String| {
        if is_dataset(dir) {
            found.push((name, dir.to_path_buf()));
        }
    };
    let Ok(entries) = std::fs::read_dir(&root) else { return Vec::new() };
    let mut top: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    top.sort();
    for d in top {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if is_dataset(&d) {
            visit(&d, name);
            continue;
        }
        let mut sub: Vec<PathBuf> = std::fs::read_dir(&d).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect()).unwrap_or_default();
        sub.sort();
        for s in sub {
            let sname = s.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            visit(&s, format!("{name}/{sname}"));
        }
    }
    found
}

/// The folder `data` names: an existing folder, or a bundled dataset's name.
pub fn resolve_data(data: &str) -> Result<PathBuf> {
    let p = Path::new(data);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    let sets = bundled();
    if let Some((_, dir)) = sets.iter().find(|(n, _)| n == data.trim_end_matches('/')) {
        return Ok(dir.clone());
    }
    let names: Vec<String> = sets.into_iter().map(|(n, _)| n).collect();
    Err(Error::InvalidArgument {
        op: "--data",
        detail: format!("`{data}` is neither a folder nor a bundled dataset; bundled: {DEMO} (embedded){}{}", if names.is_empty() { "" } else { ", " }, names.join(", ")),
    })
}

/// The dataset a checkpoint or run folder recorded: as [`resolve_data`], and for a folder recorded by an
/// older version that is gone here (e.g. `<somewhere>/dbp15k/zh_en`), the bundled set with the same last
/// path components, with a warning. User input never takes this path.
pub fn recorded_data(data: &str) -> Result<String> {
    if data == DEMO {
        return Ok(data.to_string());
    }
    let strict = resolve_data(data);
    if strict.is_ok() {
        return Ok(data.to_string());
    }
    let parts: Vec<&str> = data.trim_end_matches('/').rsplit('/').take(2).collect();
    let tail = if parts.len() == 2 { format!("{}/{}", parts[1], parts[0]) } else { String::new() };
    match bundled().into_iter().find(|(n, _)| *n == tail || (parts.len() == 2 && n == parts[0])) {
        Some((n, _)) => {
            log::warn!("the recorded dataset `{data}` is not a folder here; using the bundled `{n}` (the fingerprint check still applies)");
            Ok(n)
        }
        None => strict.map(|_| data.to_string()),
    }
}

/// Loads `demo` (the embedded pair), a bundled dataset by name, or a folder.
pub fn load_dataset(data: &str) -> Result<Dataset> {
    if data == DEMO {
        data::demo()
    } else {
        data::load_dir(resolve_data(data)?)
    }
}

/// A run config file as a layer of keys: TOML, or JSON for a `.json` file (the run folders of older
/// versions).
pub fn read_config(path: &Path) -> Result<Layer> {
    let text = String::from_utf8(fsx::read(path)?).map_err(|_| Error::Format { path: path.display().to_string(), detail: "not UTF-8 text".into() })?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        parse_json(&path.display().to_string(), &text)?
    } else {
        toml::from_str(&text).map_err(|e| Error::Format { path: path.display().to_string(), detail: format!("bad TOML: {}", e.to_string().trim_end()) })?
    };
    Layer::from_value(path.display().to_string(), value)
}

/// The resolved config of a run folder: `config.toml`, or the `config.json` of older versions.
pub fn run_config_path(dir: &Path) -> PathBuf {
    let toml = dir.join("config.toml");
    let json = dir.join("config.json");
    if !toml.exists() && json.exists() {
        json
    } else {
        toml
    }
}

/// Reads a run folder's config as it was resolved, checking it as a config (its records, such as the
/// command, are keys of the template and come through the resolution).
pub fn read_run_spec(path: &Path) -> Result<RunSpec> {
    RunSpec::resolve(&[read_config(path)?])
}

/// `spec` as TOML.
pub fn to_toml(spec: &RunSpec) -> Result<String> {
    toml::to_string(&spec.to_tree()).map_err(|e| Error::InvalidArgument { op: "config", detail: format!("the config cannot be written as TOML: {e}") })
}

/// The text of a run folder's `config.toml`.
pub fn run_config_text(spec: &RunSpec) -> Result<String> {
    Ok(format!("# The resolved config of this run: `mmea train --config <this file>` repeats it (keys: docs/training.md).\n{}", to_toml(spec)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_names_resolve_and_recorded_paths_fall_back_only_when_recorded() {
        assert!(resolve_data("dbp15k/zh_en").is_ok());
        assert!(resolve_data("fb237_db15k").is_ok());
        // User input is strict: a missing folder is an error, whatever its last components.
        assert!(resolve_data("/no/such/place/dbp15k/zh_en").is_err());
        // A path an older version recorded falls back to the bundled set of the same name.
        assert_eq!(recorded_data("/no/such/place/dbp15k/zh_en").unwrap(), "dbp15k/zh_en");
        assert_eq!(recorded_data("/no/such/place/fb237_db15k").unwrap(), "fb237_db15k");
        assert_eq!(recorded_data("dbp15k/ja_en").unwrap(), "dbp15k/ja_en");
        assert_eq!(recorded_data(DEMO).unwrap(), DEMO);
        assert!(recorded_data("/no/such/place/unknown_pair").is_err());
        let names: Vec<String> = bundled().into_iter().map(|(n, _)| n).collect();
        for n in ["dbp15k/fr_en", "dbp15k/ja_en", "dbp15k/zh_en", "fb237_db15k"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        // A run folder's config keeps its records.
        let spec = read_run_spec(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/zh_en/loginmea/default/config.toml")).unwrap();
        assert!(spec.command.starts_with("mmea --backend cpu train --data dbp15k/zh_en"), "{}", spec.command);
        assert_eq!((spec.backend.as_str(), spec.split_source.as_str()), ("cpu", "seed 2023, train ratio 0.3, dev fraction 0.1"));
    }
}
