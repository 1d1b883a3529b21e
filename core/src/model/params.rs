//! Named parameter tensors, their initialisers, and the safetensors checkpoint format.
//!
//! A [`Params`] is an ordered list of `(name, tensor)`; the order is the optimiser's parameter order, so
//! it is fixed by the model's constructor. Checkpoints are safetensors files: every parameter as an F32
//! tensor under its name, plus string metadata (`format`, `model`, `config`, `dataset`, `metrics`, ... as
//! JSON strings) in the `__metadata__` header, so one file is self-describing (the browser demo loads it
//! alone).

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::data::rng::Rng;
use crate::error::{Error, Result};
use crate::tensor::{Device, Tensor};

/// A tensor on the host: name, shape, data.
pub type HostTensor = (String, Vec<usize>, Vec<f32>);

/// The `format` metadata value of our checkpoints.
pub const CHECKPOINT_FORMAT: &str = "mmea-checkpoint-1";

#[derive(Clone, Debug, Default)]
pub struct Params {
    names: Vec<String>,
    tensors: Vec<Tensor>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, name: impl Into<String>, t: Tensor) {
        self.names.push(name.into());
        self.tensors.push(t);
    }
    /// Uploads `data` with `shape` to `device` and appends it as `name` (the models' initialisers).
    pub fn put(&mut self, device: &Device, name: impl Into<String>, data: Vec<f32>, shape: &[usize]) -> Result<()> {
        self.push(name, Tensor::from_f32(device, data, shape)?);
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    pub fn names(&self) -> &[String] {
        &self.names
    }
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
    pub fn tensors_mut(&mut self) -> &mut [Tensor] {
        &mut self.tensors
    }
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
    /// The tensor called `name` (an error naming it if absent).
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.index_of(name).map(|i| &self.tensors[i]).ok_or_else(|| Error::invalid("Params::get", format!("no parameter named `{name}`")))
    }
    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(Tensor::len).sum()
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// A deep copy (GPU tensors are read back and uploaded again, so later updates of `self` do not show).
    pub fn snapshot_blocking(&self) -> Result<Params> {
        let mut out = Params::new();
        for (n, t) in self.names.iter().zip(&self.tensors) {
            let dev = t.device();
            out.push(n.clone(), Tensor::from_f32(&dev, t.to_vec_f32_blocking()?, t.shape())?);
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Host copies of every tensor, in order.
    pub fn to_host_blocking(&self) -> Result<Vec<HostTensor>> {
        self.names.iter().zip(&self.tensors).map(|(n, t)| Ok((n.clone(), t.shape().to_vec(), t.to_vec_f32_blocking()?))).collect()
    }

    /// Checks that `other` has the same names and shapes (a checkpoint against a freshly built model).
    pub fn check_compatible(&self, other: &Params, what: &str) -> Result<()> {
        for (n, t) in self.names.iter().zip(&self.tensors) {
            let Some(i) = other.index_of(n) else {
                return Err(Error::Format { path: what.into(), detail: format!("the checkpoint has no parameter `{n}` that this model needs") });
            };
            if other.tensors[i].shape() != t.shape() {
                return Err(Error::Format {
                    path: what.into(),
                    detail: format!(
                        "parameter `{n}` has shape {:?} in the checkpoint but the model built from this data needs {:?} \
                         (different dataset, modalities or dimensions?)",
                        other.tensors[i].shape(),
                        t.shape()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Serialises host tensors and metadata to safetensors bytes.
pub fn to_safetensors(tensors: &[HostTensor], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, d)| bytemuck::cast_slice(d).to_vec()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let v = TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| Error::Format { path: "checkpoint".into(), detail: format!("tensor `{name}`: {e}") })?;
        views.push((name.clone(), v));
    }
    safetensors::tensor::serialize(views, Some(metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        .map_err(|e| Error::Format { path: "checkpoint".into(), detail: format!("serialising: {e}") })
}

/// A parsed checkpoint: tensors (host) in file order and the metadata.
pub struct CheckpointData {
    pub tensors: Vec<HostTensor>,
    pub metadata: HashMap<String, String>,
}

impl CheckpointData {
    /// Parses safetensors bytes; `path` names the file in errors.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<CheckpointData> {
        let fmt = |detail: String| Error::Format { path: path.into(), detail };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| fmt(format!("not a safetensors checkpoint: {e}")))?;
        let metadata: HashMap<String, String> = meta.metadata().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        match metadata.get("format") {
            Some(f) if f == CHECKPOINT_FORMAT => {}
            Some(f) => return Err(fmt(format!("checkpoint format `{f}` is not supported (expected `{CHECKPOINT_FORMAT}`)"))),
            None => return Err(fmt(format!("a safetensors file, but not an mmea checkpoint (no `format: {CHECKPOINT_FORMAT}` metadata)"))),
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| fmt(format!("corrupt safetensors data: {e}")))?;
        let mut names: Vec<(usize, String)> = Vec::new();
        // Keep the parameter order of the writer (recorded in metadata) when present.
        let order: Vec<String> = metadata.get("order").map(|o| o.split(',').map(str::to_string).collect()).unwrap_or_default();
        for name in st.names() {
            let pos = order.iter().position(|o| o == name).unwrap_or(usize::MAX);
            names.push((pos, name.to_string()));
        }
        names.sort();
        let mut tensors = Vec::with_capacity(names.len());
        for (_, name) in names {
            let v = st.tensor(&name).map_err(|e| fmt(format!("tensor `{name}`: {e}")))?;
            if v.dtype() != Dtype::F32 {
                return Err(fmt(format!("tensor `{name}` is {:?}; checkpoints hold F32 tensors", v.dtype())));
            }
            let data: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(fmt(format!("tensor `{name}` holds a non-finite value at element {i}")));
            }
            tensors.push((name, v.shape().to_vec(), data));
        }
        Ok(CheckpointData { tensors, metadata })
    }

    /// The metadata entry `key` (an error naming the file if missing).
    pub fn meta(&self, path: &str, key: &str) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| Error::Format { path: path.into(), detail: format!("checkpoint metadata lacks `{key}`") })
    }

    /// The tensors as [`Params`] on `device`.
    pub fn params(&self, device: &Device) -> Result<Params> {
        let mut p = Params::new();
        for (n, shape, data) in &self.tensors {
            p.push(n.clone(), Tensor::from_f32(device, data.clone(), shape)?);
        }
        Ok(p)
    }
}

/// Builds `Params::to_host_blocking` + metadata (with the parameter order) into checkpoint bytes.
#[cfg(not(target_arch = "wasm32"))]
pub fn checkpoint_bytes(params: &Params, mut metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    metadata.insert("format".into(), CHECKPOINT_FORMAT.into());
    metadata.insert("order".into(), params.names().join(","));
    to_safetensors(&params.to_host_blocking()?, &metadata)
}

/// Initialisers with PyTorch's formulas (the reference code's `nn.init` and `nn.Linear` defaults).
pub struct Init<'a> {
    pub rng: &'a mut Rng,
}

impl Init<'_> {
    /// Uniform in `[-b, b)`.
    pub fn uniform(&mut self, len: usize, b: f64) -> Vec<f32> {
        (0..len).map(|_| ((self.rng.next_f64() * 2.0 - 1.0) * b) as f32).collect()
    }
    /// Normal with standard deviation `std`.
    pub fn normal(&mut self, len: usize, std: f64) -> Vec<f32> {
        (0..len).map(|_| (self.rng.normal() * std) as f32).collect()
    }
    /// `xavier_uniform_` of a `[fan_out, fan_in]`-like tensor: `b = sqrt(6 / (fan_in + fan_out))`.
    pub fn xavier_uniform(&mut self, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        self.uniform(len, (6.0 / (fan_in + fan_out) as f64).sqrt())
    }
    /// `xavier_normal_`: `std = sqrt(2 / (fan_in + fan_out))`.
    pub fn xavier_normal(&mut self, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        self.normal(len, (2.0 / (fan_in + fan_out) as f64).sqrt())
    }
    /// `nn.Linear(fan_in, ·)` default (kaiming-uniform with a = √5 for the weight, and the bias): both
    /// uniform in `±1/sqrt(fan_in)`.
    pub fn linear_default(&mut self, len: usize, fan_in: usize) -> Vec<f32> {
        self.uniform(len, 1.0 / (fan_in.max(1) as f64).sqrt())
    }
}
