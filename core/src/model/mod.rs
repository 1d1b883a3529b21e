//! Models: compositions of the ops on the autodiff tape.
//!
//! - [`inputs`]: what a model reads from a dataset (features of the modalities present, graphs), on a device.
//! - [`params`]: named parameters, initialisers, the safetensors checkpoint format.
//! - [`checkpoint`]: opening a checkpoint against a dataset (rebuilt inputs, checks) and evaluating it.
//! - [`loginmea`]: LoginMEA (mmea-spec §4.5) with its ablations; with no modality it is the
//!   structure-only baseline.
//!
//! Every model produces its joint embedding as a list of `[N, d]` column blocks (see [`loginmea`] for why),
//! and [`align::normalized_blocks`] turns rows of it into unit-length blocks for evaluation and alignment.

pub mod align;
pub mod checkpoint;
pub mod inputs;
pub mod loginmea;
pub mod params;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::{Tape, Var};
use crate::data::Dataset;
use crate::error::Result;
use crate::tensor::Tensor;

pub use inputs::{Inputs, Modality, ModalityChoice};
pub use loginmea::{Fusion, GraphLayer, LoginMea, LoginMeaConfig, Loss, Output};
#[cfg(not(target_arch = "wasm32"))]
pub use params::checkpoint_bytes;
pub use params::{CheckpointData, Params, CHECKPOINT_FORMAT};

/// Puts every parameter on the tape, trainable (`train`) or constant, by name.
pub fn tape_vars(tape: &Tape, params: &Params, train: bool) -> (Vec<Var>, HashMap<String, Var>) {
    let vars: Vec<Var> = params.tensors().iter().map(|t| if train { tape.param(t) } else { tape.constant(t) }).collect();
    let map = params.names().iter().cloned().zip(vars.iter().cloned()).collect();
    (vars, map)
}

/// The joint embedding of all entities as `[N, d]` column blocks (inference: nothing is kept for backward).
pub fn embed_blocks(model: &LoginMea, params: &Params, inputs: &Inputs) -> Result<Vec<Tensor>> {
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
