//! Feature matrices that users bring for a modality (image or text embeddings): `.npy` (float32, 2-D,
//! C order) or safetensors, with the entity of each row given by an id list file or an id column.
//!
//! Every entity gets a row; [`ModalityFeatures::has_feature`] says which rows came from the file. The
//! others are filled by a named [`FillPolicy`] (mmea-spec §1.5), and the [`FillReport`] says how many
//! were filled and how: filling is never silent.

use std::collections::HashMap;
use std::fmt;

use super::rng::Rng;
use super::Dataset;
use crate::error::{Error, Result};

/// How rows of entities without a feature are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillPolicy {
    /// A zero vector.
    Zero,
    /// LoginMEA: the mean of the vectors of its graph neighbours that have one (neighbours from the
    /// triples in both directions, repeats counted); where no neighbour has one, one Gaussian draw shared
    /// by all such entities.
    NeighbourMean,
    /// EVA/MCLEA/MEAformer: an independent draw per entity from N(mean_j, std_j), the per-dimension mean
    /// and (population) standard deviation of the available vectors.
    Gaussian,
}

impl FillPolicy {
    pub fn name(self) -> &'static str {
        match self {
            FillPolicy::Zero => "zero",
            FillPolicy::NeighbourMean => "neighbour-mean",
            FillPolicy::Gaussian => "gaussian",
        }
    }
}

impl std::str::FromStr for FillPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zero" => Ok(FillPolicy::Zero),
            "neighbour-mean" | "neighbor-mean" | "mean" => Ok(FillPolicy::NeighbourMean),
            "gaussian" => Ok(FillPolicy::Gaussian),
            _ => Err(Error::InvalidArgument { op: "fill policy", detail: format!("'{s}': expected zero, neighbour-mean or gaussian") }),
        }
    }
}

/// Where the entity of each feature row is given.
#[derive(Clone, Copy, Debug)]
pub enum IdSource<'a> {
    /// In the feature file itself: `.npy`: the first column holds integer ids (exact in float32 up to
    /// 2^24); safetensors: a 1-D integer tensor named `ids`.
    InFile,
    /// A separate file: text with one id (numeric id or URI) per line, or a 1-D integer `.npy`.
    List { path: &'a str, bytes: &'a [u8] },
}

/// A feature file as read: one external id and one vector per row.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFeatures {
    pub path: String,
    pub ids: Vec<String>,
    pub dim: usize,
    pub data: Vec<f32>,
}

fn fmt_err(path: &str, detail: impl Into<String>) -> Error {
    Error::Format { path: path.to_string(), detail: detail.into() }
}

impl RawFeatures {
    /// Reads `.npy`, a pickled `{id: vector}` dict (EVA/MCLEA/MEAformer, see [`super::pickle`]) or
    /// safetensors, told apart by the magic bytes. A pickle's ids are its dict's keys.
    pub fn from_bytes(path: &str, bytes: &[u8], ids: IdSource<'_>) -> Result<RawFeatures> {
        if bytes.starts_with(b"\x93NUMPY") {
            Self::from_npy(path, bytes, ids)
        } else if super::pickle::looks_like_pickle(bytes) {
            match ids {
                IdSource::InFile => super::pickle::read_feature_dict(path, bytes),
                IdSource::List { path: ip, .. } => Err(fmt_err(path, format!("a pickled feature dict's ids are the dict's keys; do not give an id list ({ip}; no --image-ids)"))),
            }
        } else {
            Self::from_safetensors(path, bytes, None, ids)
        }
    }

    pub fn from_npy(path: &str, bytes: &[u8], ids: IdSource<'_>) -> Result<RawFeatures> {
        let (rows, cols, data) = super::npy::read_f32_2d(path, bytes)?;
        match ids {
            IdSource::InFile => {
                if cols < 2 {
                    return Err(fmt_err(path, format!("an id column needs at least 2 columns, the matrix has {cols}")));
                }
                let mut idv = Vec::with_capacity(rows);
                let mut out = Vec::with_capacity(rows * (cols - 1));
                for r in 0..rows {
                    let row = &data[r * cols..(r + 1) * cols];
                    let v = row[0];
                    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 16_777_216.0) {
                        return Err(fmt_err(path, format!("row {r}: id column value {v} is not an integer id in 0..=2^24 (exact in float32); use an id list file")));
                    }
                    idv.push((v as u64).to_string());
                    out.extend_from_slice(&row[1..]);
                }
                Self::new(path, idv, cols - 1, out)
            }
            IdSource::List { path: ip, bytes: ib } => Self::new(path, read_id_list(ip, ib)?, cols, data),
        }
    }

    /// Reads a safetensors file: the tensor `tensor` (default: `features`, else the only 2-D float32
    /// tensor), ids from an `ids` tensor or a list.
    pub fn from_safetensors(path: &str, bytes: &[u8], tensor: Option<&str>, ids: IdSource<'_>) -> Result<RawFeatures> {
        use safetensors::{Dtype, SafeTensors};
        let st = SafeTensors::deserialize(bytes).map_err(|e| fmt_err(path, format!("not a readable safetensors file: {e}")))?;
        let names = st.names();
        let name = match tensor {
            Some(t) => t.to_string(),
            None if names.contains(&"features") => "features".to_string(),
            None => {
                let cands: Vec<&str> = st.iter().filter(|(_, v)| v.dtype() == Dtype::F32 && v.shape().len() == 2).map(|(n, _)| n).collect();
                match cands.as_slice() {
                    [one] => one.to_string(),
                    [] => return Err(fmt_err(path, format!("no 2-D float32 tensor (tensors: {})", names.join(", ")))),
                    many => return Err(fmt_err(path, format!("several 2-D float32 tensors ({}); name one `features`", many.join(", ")))),
                }
            }
        };
        let v = st.tensor(&name).map_err(|e| fmt_err(path, format!("tensor '{name}': {e}")))?;
        if v.dtype() != Dtype::F32 {
            return Err(fmt_err(path, format!("tensor '{name}' is {:?}, float32 is needed", v.dtype())));
        }
        if v.shape().len() != 2 {
            return Err(fmt_err(path, format!("tensor '{name}' has shape {:?}, a 2-D (entities, dim) matrix is needed", v.shape())));
        }
        let (rows, cols) = (v.shape()[0], v.shape()[1]);
        let data: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let idv = match ids {
            IdSource::List { path: ip, bytes: ib } => read_id_list(ip, ib)?,
            IdSource::InFile => {
                let t = st.tensor("ids").map_err(|_| fmt_err(path, "no `ids` tensor; give an id list file"))?;
                let d = t.data();
                let vals: Vec<u64> = match t.dtype() {
                    Dtype::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as u64).collect(),
                    Dtype::U64 => d.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
                    Dtype::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as u64).collect(),
                    Dtype::U32 => d.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as u64).collect(),
                    other => return Err(fmt_err(path, format!("tensor 'ids' is {other:?}, an integer type is needed"))),
                };
                if t.shape().len() != 1 {
                    return Err(fmt_err(path, format!("tensor 'ids' has shape {:?}, 1-D is needed", t.shape())));
                }
                vals.into_iter().map(|v| v.to_string()).collect()
            }
        };
        let _ = rows;
        Self::new(path, idv, cols, data)
    }

    fn new(path: &str, ids: Vec<String>, dim: usize, data: Vec<f32>) -> Result<RawFeatures> {
        let rows = data.len().checked_div(dim).unwrap_or(0);
        if ids.len() != rows {
            return Err(fmt_err(path, format!("{} ids for {rows} feature rows", ids.len())));
        }
        if dim == 0 {
            return Err(fmt_err(path, "the feature dimension is 0"));
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(fmt_err(path, format!("non-finite value at row {}, column {}", pos / dim, pos % dim)));
        }
        Ok(RawFeatures { path: path.to_string(), ids, dim, data })
    }

    pub fn rows(&self) -> usize {
        self.ids.len()
    }
}

/// One id per line (first tab/space-separated field), or a 1-D integer `.npy`.
pub fn read_id_list(path: &str, bytes: &[u8]) -> Result<Vec<String>> {
    if bytes.starts_with(b"\x93NUMPY") {
        return Ok(super::npy::read_ids(path, bytes)?.into_iter().map(|v| v.to_string()).collect());
    }
    let bytes = super::files::decode(path, bytes.into())?;
    let mut out = Vec::new();
    for (no, raw) in super::files::raw_lines(&bytes) {
        let text = std::str::from_utf8(raw).map_err(|_| Error::Parse { path: path.into(), line: no, detail: "not valid UTF-8 text".into() })?;
        let tok = text.split('\t').next().unwrap_or("").trim();
        if tok.is_empty() {
            return Err(Error::Parse { path: path.into(), line: no, detail: "empty id (every row needs one)".into() });
        }
        out.push(tok.to_string());
    }
    Ok(out)
}

/// What happened while attaching a feature file to a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct FillReport {
    pub modality: String,
    pub path: String,
    pub policy: FillPolicy,
    pub rows_in_file: usize,
    /// Rows whose id is not an entity of the dataset (ignored).
    pub unknown_ids: usize,
    /// Rows whose entity already had a row (the first one wins, as in MCLEA).
    pub duplicate_ids: usize,
    /// Entities with a feature from the file, per KG.
    pub with_feature: [usize; 2],
    /// Entities per KG.
    pub entities: [usize; 2],
    pub filled_zero: usize,
    pub filled_neighbour_mean: usize,
    /// Independent Gaussian draws (`gaussian` policy).
    pub filled_gaussian: usize,
    /// Entities that got the one shared Gaussian draw (`neighbour-mean` with no neighbour feature).
    pub filled_shared_gaussian: usize,
    pub l2_normalized: bool,
}

impl fmt::Display for FillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        write!(
            f,
            "{}: {} rows from {}; KG1 {}/{} ({:.1}%), KG2 {}/{} ({:.1}%) entities have one",
            self.modality,
            self.rows_in_file,
            self.path,
            self.with_feature[0],
            self.entities[0],
            pct(self.with_feature[0], self.entities[0]),
            self.with_feature[1],
            self.entities[1],
            pct(self.with_feature[1], self.entities[1])
        )?;
        if self.unknown_ids > 0 {
            write!(f, "; {} rows of unknown ids ignored", self.unknown_ids)?;
        }
        if self.duplicate_ids > 0 {
            write!(f, "; {} repeated ids ignored (first row kept)", self.duplicate_ids)?;
        }
        let filled = self.filled_zero + self.filled_neighbour_mean + self.filled_gaussian + self.filled_shared_gaussian;
        write!(f, "; {filled} filled by policy '{}'", self.policy.name())?;
        let mut parts = Vec::new();
        if self.filled_zero > 0 {
            parts.push(format!("{} zero", self.filled_zero));
        }
        if self.filled_neighbour_mean > 0 {
            parts.push(format!("{} neighbour mean", self.filled_neighbour_mean));
        }
        if self.filled_gaussian > 0 {
            parts.push(format!("{} gaussian draws", self.filled_gaussian));
        }
        if self.filled_shared_gaussian > 0 {
            parts.push(format!("{} with one shared gaussian draw (no neighbour had a feature)", self.filled_shared_gaussian));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        if self.l2_normalized {
            write!(f, "; rows L2-normalised")?;
        }
        Ok(())
    }
}

/// A modality's features for every entity of a dataset (dense index order).
#[derive(Clone, Debug, PartialEq)]
pub struct ModalityFeatures {
    pub modality: String,
    pub dim: usize,
    /// `num_entities × dim`, row-major.
    pub data: Vec<f32>,
    /// Whether each entity's row came from the file.
    pub has_feature: Vec<bool>,
    pub report: FillReport,
}

/// Matches a feature file's rows to the dataset's entities and fills the rest by `policy` (seeded).
/// With `l2_normalize`, every row is then scaled to unit length (as every reference code does for
/// images). Fails when no row matches an entity (almost always an id mismatch).
pub fn attach(ds: &Dataset, raw: &RawFeatures, modality: &str, policy: FillPolicy, seed: u64, l2_normalize: bool) -> Result<ModalityFeatures> {
    let n = ds.entities.len();
    let dim = raw.dim;
    let mut data = vec![0f32; n * dim];
    let mut has = vec![false; n];
    let mut unknown = 0usize;
    let mut dup = 0usize;
    let mut cache: HashMap<&str, Option<u32>> = HashMap::new();
    for (r, id) in raw.ids.iter().enumerate() {
        let e = *cache.entry(id.as_str()).or_insert_with(|| ds.resolve_any(id));
        match e {
            None => unknown += 1,
            Some(e) if has[e as usize] => dup += 1,
            Some(e) => {
                let e = e as usize;
                has[e] = true;
                data[e * dim..(e + 1) * dim].copy_from_slice(&raw.data[r * dim..(r + 1) * dim]);
            }
        }
    }
    let with_feature = [ds.kg_range(0).filter(|&i| has[i]).count(), ds.kg_range(1).filter(|&i| has[i]).count()];
    if with_feature[0] + with_feature[1] == 0 {
        return Err(fmt_err(
            &raw.path,
            format!(
                "none of its {} row ids is an entity of the dataset (first id '{}'; ids are the dataset's original ids or URIs)",
                raw.rows(),
                raw.ids.first().map(String::as_str).unwrap_or("")
            ),
        ));
    }
    let mut report = FillReport {
        modality: modality.to_string(),
        path: raw.path.clone(),
        policy,
        rows_in_file: raw.rows(),
        unknown_ids: unknown,
        duplicate_ids: dup,
        with_feature,
        entities: ds.num_entities,
        filled_zero: 0,
        filled_neighbour_mean: 0,
        filled_gaussian: 0,
        filled_shared_gaussian: 0,
        l2_normalized: l2_normalize,
    };
    let mut rng = Rng::new(seed);
    // Per-dimension mean and population std of the available vectors.
    let stats = || {
        let cnt = has.iter().filter(|&&h| h).count() as f64;
        let mut mean = vec![0f64; dim];
        let mut sq = vec![0f64; dim];
        for i in (0..n).filter(|&i| has[i]) {
            for j in 0..dim {
                let v = data[i * dim + j] as f64;
                mean[j] += v;
                sq[j] += v * v;
            }
        }
        for j in 0..dim {
            mean[j] /= cnt;
            sq[j] = (sq[j] / cnt - mean[j] * mean[j]).max(0.0).sqrt();
        }
        (mean, sq)
    };
    match policy {
        FillPolicy::Zero => report.filled_zero = n - with_feature[0] - with_feature[1],
        FillPolicy::Gaussian => {
            let (mean, std) = stats();
            for i in (0..n).filter(|&i| !has[i]) {
                for j in 0..dim {
                    data[i * dim + j] = (mean[j] + std[j] * rng.normal()) as f32;
                }
                report.filled_gaussian += 1;
            }
        }
        FillPolicy::NeighbourMean => {
            let (mean, std) = stats();
            let shared: Vec<f32> = (0..dim).map(|j| (mean[j] + std[j] * rng.normal()) as f32).collect();
            let mut sum = vec![0f64; dim];
            let nbrs = neighbour_lists(ds);
            let mut fills: Vec<(usize, Vec<f32>)> = Vec::new();
            for i in (0..n).filter(|&i| !has[i]) {
                sum.iter_mut().for_each(|s| *s = 0.0);
                let mut c = 0usize;
                for &nb in &nbrs[i] {
                    let nb = nb as usize;
                    if has[nb] {
                        c += 1;
                        for j in 0..dim {
                            sum[j] += data[nb * dim + j] as f64;
                        }
                    }
                }
                if c > 0 {
                    fills.push((i, sum.iter().map(|s| (s / c as f64) as f32).collect()));
                    report.filled_neighbour_mean += 1;
                } else {
                    fills.push((i, shared.clone()));
                    report.filled_shared_gaussian += 1;
                }
            }
            for (i, v) in fills {
                data[i * dim..(i + 1) * dim].copy_from_slice(&v);
            }
        }
    }
    if l2_normalize {
        l2_normalize_rows(&mut data, dim);
    }
    Ok(ModalityFeatures { modality: modality.to_string(), dim, data, has_feature: has, report })
}

/// Neighbours of each entity from the triples, both directions, repeats kept.
fn neighbour_lists(ds: &Dataset) -> Vec<Vec<u32>> {
    let mut nb = vec![Vec::new(); ds.entities.len()];
    for t in ds.all_triples() {
        nb[t.h as usize].push(t.t);
        nb[t.t as usize].push(t.h);
    }
    nb
}

/// Scales every row to unit L2 norm (rows of norm 0 stay 0).
pub fn l2_normalize_rows(data: &mut [f32], dim: usize) {
    if dim == 0 {
        return;
    }
    for row in data.chunks_mut(dim) {
        let norm = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt();
        if norm > 0.0 {
            let inv = (1.0 / norm) as f32;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Counts per KG of entities that a feature file covers, without filling (for `mmea data check`).
pub fn coverage(ds: &Dataset, raw: &RawFeatures) -> ([usize; 2], usize) {
    let mut has = vec![false; ds.entities.len()];
    let mut unknown = 0;
    for id in &raw.ids {
        match ds.resolve_any(id) {
            Some(e) => has[e as usize] = true,
            None => unknown += 1,
        }
    }
    ([ds.kg_range(0).filter(|&i| has[i]).count(), ds.kg_range(1).filter(|&i| has[i]).count()], unknown)
}
