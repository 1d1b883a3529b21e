//! What a model reads from a dataset, uploaded to one device: the modality feature matrices that are
//! present (never invented: an absent modality is simply not in the list), the relation-aware graph for
//! the reflection attention, and the neighbour-mean operator of the structure encoder's input block.

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Features, ModalityFeatures};
use crate::error::Result;
use crate::ops::{Csr, GatGraph, RelGraph};
use crate::tensor::{Device, Tensor};

/// The input modalities a model can use besides the graph structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Image features (user-supplied `.npy`/safetensors; none of the bundled datasets has them).
    Image,
    /// Bag-of-relations counts (always available).
    Relation,
    /// Bag-of-attributes (MCLEA `training_attrs`).
    Attribute,
    /// Character bigrams of names (off by default: papers leave names out).
    Name,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Relation => "relation",
            Modality::Attribute => "attribute",
            Modality::Name => "name",
        }
    }
}

/// One modality's feature matrix on the device.
#[derive(Clone, Debug)]
pub struct ModalityInput {
    pub modality: Modality,
    /// `[N, D_m]`.
    pub features: Tensor,
}

/// Everything a model's forward pass reads, on one device.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub n: usize,
    pub n1: usize,
    pub modalities: Vec<ModalityInput>,
    pub graph: RelGraph,
    /// `Y_i = mean_{j ∈ {i} ∪ nbr(i)} X_j` and its transpose.
    pub nbr_mean: (Csr, Csr),
    /// The same pattern (`i → j` for `j ∈ {i} ∪ nbr(i)`, spec §1.6 (A)) as a graph for the feature-attention
    /// GAT layer (MCLEA-style, EVA-style, LoginMEA's plain-GAT ablation).
    pub gat_graph: GatGraph,
    /// Which modalities the dataset lacked (for the run log; e.g. "image: absent from the dataset").
    pub notes: Vec<String>,
}

/// Which modalities to use when present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalityChoice {
    pub images: bool,
    pub relations: bool,
    pub attributes: bool,
    pub names: bool,
    /// Columns of the bag-of-relations: the most frequent relations (1000, as every reference code); 0 =
    /// one column per relation. Older run specs lack it and mean 1000.
    #[serde(default = "default_rel_columns")]
    pub rel_columns: usize,
    /// Two bag-of-relations columns per relation, as head and as tail (not in the reference codes).
    #[serde(default)]
    pub rel_directed: bool,
}

fn default_rel_columns() -> usize {
    1000
}

impl ModalityChoice {
    /// How the bag-of-relations departs from the reference codes' (top 1000, both ends in one column),
    /// for setting lines and tables: e.g. "head/tail" or "every relation, head/tail"; None when it does not.
    pub fn relation_bag_note(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.rel_columns {
            1000 => {}
            0 => parts.push("every relation".to_string()),
            k => parts.push(format!("top {k}")),
        }
        if self.rel_directed {
            parts.push("head/tail".to_string());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// A modality's name (`Modality::name`) for setting lines and tables: the relation bag carries its
    /// [`relation_bag_note`](Self::relation_bag_note), e.g. "relation (head/tail)".
    pub fn label(&self, name: &str) -> String {
        match self.relation_bag_note() {
            Some(note) if name == Modality::Relation.name() => format!("{name} ({note})"),
            _ => name.to_string(),
        }
    }
}

impl Default for ModalityChoice {
    fn default() -> Self {
        ModalityChoice { images: true, relations: true, attributes: true, names: false, rel_columns: default_rel_columns(), rel_directed: false }
    }
}

impl Inputs {
    /// Uploads the chosen modalities that exist. `images` are user-supplied features (already filled and
    /// normalised by [`crate::data::attach`]); `features` comes from [`crate::data::build_features`] (with
    /// `char_bigrams` on if names are wanted).
    pub fn build(device: &Device, ds: &Dataset, features: &Features, images: Option<&ModalityFeatures>, choice: &ModalityChoice) -> Result<Inputs> {
        let n = ds.entities.len();
        let mut modalities = Vec::new();
        let mut notes = Vec::new();
        let mut add = |m: Modality, data: &[f32], cols: usize| -> Result<()> {
            modalities.push(ModalityInput { modality: m, features: Tensor::from_f32(device, data.to_vec(), &[n, cols])? });
            Ok(())
        };
        match (choice.images, images) {
            (true, Some(img)) => add(Modality::Image, &img.data, img.dim)?,
            (true, None) => notes.push("image: absent (no image features given for this dataset)".to_string()),
            (false, _) => notes.push("image: switched off".to_string()),
        }
        if choice.relations {
            add(Modality::Relation, &features.relations.data, features.relations.cols)?;
        } else {
            notes.push("relation: switched off".to_string());
        }
        match (choice.attributes, &features.attributes) {
            (true, Some(a)) => add(Modality::Attribute, &a.data, a.cols)?,
            (true, None) => notes.push("attribute: absent (the dataset has no attribute files)".to_string()),
            (false, _) => notes.push("attribute: switched off".to_string()),
        }
        match (choice.names, &features.char_bigrams) {
            (true, Some(c)) => add(Modality::Name, &c.data, c.cols)?,
            (true, None) => notes.push("name: requested but no bigram features were built".to_string()),
            (false, _) => notes.push("name: off (names are left out by default)".to_string()),
        }
        let rg = &features.rel_graph;
        let graph = RelGraph::new(device, n, rg.num_rel, &rg.edges, &rg.mixing)?;
        let nb = &features.neighbours;
        let mut pairs = Vec::with_capacity(nb.cols.len());
        for i in 0..nb.num_nodes() {
            pairs.extend(nb.row(i).iter().map(|&j| (i as u32, j)));
        }
        let nbr_mean = Csr::neighbour_mean(device, n, &pairs)?;
        let gat_graph = GatGraph::neighbourhood(device, n, &pairs)?;
        Ok(Inputs { n, n1: ds.num_entities[0], modalities, graph, nbr_mean, gat_graph, notes })
    }

    pub fn device(&self) -> Device {
        self.graph.device()
    }

    /// The modalities present, in order.
    pub fn modality_list(&self) -> Vec<Modality> {
        self.modalities.iter().map(|m| m.modality).collect()
    }
}
