//! What a model reads from a dataset, uploaded to one device: the modality feature matrices that are
//! present (never invented: an absent modality is simply not in the list), the relation-aware graph for
//! the reflection attention, and the neighbour-mean operator of the structure encoder's input block.

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Features, ModalityFeatures, Triple};
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

/// What a model does with a modality that the dataset lacks entirely (no image features given, no
/// attribute file). Entities that lack a modality the dataset has are filled by
/// [`crate::data::FillPolicy`] instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingPolicy {
    /// Left out of fusion (the clean protocol's default).
    #[default]
    Absent,
    /// The encoder reads all-zero rows of the released codes' width ([`released_width`]): what the released
    /// codes compute on zero-valued image files and empty attribute files. The encoder's output is then its
    /// bias, a learned constant vector (the reference protocol's default).
    ZeroInput,
    /// The same function as `zero-input` without the product over zero rows: one trainable vector per
    /// modality on every row. Initialised from the same random stream, so a seed gives `zero-input`'s run.
    LearnedConstant,
}

impl MissingPolicy {
    pub fn name(self) -> &'static str {
        match self {
            MissingPolicy::Absent => "absent",
            MissingPolicy::ZeroInput => "zero-input",
            MissingPolicy::LearnedConstant => "learned-constant",
        }
    }
}

/// The feature width the released codes use for a modality (EVA/MCLEA/LoginMEA: 2048-d ResNet-152 image
/// features, a bag of the 1000 most frequent attributes), which `zero-input` feeds as zeros.
pub fn released_width(m: Modality) -> usize {
    match m {
        Modality::Image => 2048,
        _ => 1000,
    }
}

/// One modality's feature matrix on the device.
#[derive(Clone, Debug)]
pub struct ModalityInput {
    pub modality: Modality,
    /// `[N, D_m]`; for a learned constant, a column of ones `[N, 1]` that carries the vector to every row.
    pub features: Tensor,
    /// The encoder's input width `D_m` (for a learned constant, the width whose zeros it stands for).
    pub width: usize,
    /// How the modality was filled when the dataset lacks it (None: real features).
    pub filled: Option<MissingPolicy>,
}

impl ModalityInput {
    /// Whether the encoder is a learned constant (no weight matrix, no product over zero rows).
    pub fn is_constant(&self) -> bool {
        self.filled == Some(MissingPolicy::LearnedConstant)
    }
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
    /// Every triple of both graphs (global entity indices, dense relation indices), host side: the
    /// training-free aligner builds its own views of the graph from them.
    pub triples: Vec<Triple>,
    /// Number of relations (both graphs).
    pub num_relations: usize,
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
    /// What the model does when the dataset has no image features at all ([`MissingPolicy`]; older run
    /// specs lack it and mean `absent`).
    #[serde(default)]
    pub missing_images: MissingPolicy,
    /// The same for a dataset without attribute files.
    #[serde(default)]
    pub missing_attributes: MissingPolicy,
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
        ModalityChoice {
            images: true,
            relations: true,
            attributes: true,
            names: false,
            rel_columns: default_rel_columns(),
            rel_directed: false,
            missing_images: MissingPolicy::Absent,
            missing_attributes: MissingPolicy::Absent,
        }
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
        let add = |modalities: &mut Vec<ModalityInput>, m: Modality, data: &[f32], cols: usize| -> Result<()> {
            modalities.push(ModalityInput { modality: m, features: Tensor::from_f32(device, data.to_vec(), &[n, cols])?, width: cols, filled: None });
            Ok(())
        };
        // A modality the dataset lacks entirely, under `policy`: left out, zero rows, or a learned constant.
        let fill = |modalities: &mut Vec<ModalityInput>, notes: &mut Vec<String>, m: Modality, policy: MissingPolicy, why: &str| -> Result<()> {
            let w = released_width(m);
            match policy {
                MissingPolicy::Absent => notes.push(format!("{}: absent ({why}); left out (policy absent)", m.name())),
                MissingPolicy::ZeroInput => {
                    notes.push(format!("{}: absent ({why}); policy zero-input: the encoder reads {w} zero columns, as the released codes", m.name()));
                    modalities.push(ModalityInput { modality: m, features: Tensor::from_f32(device, vec![0.0; n * w], &[n, w])?, width: w, filled: Some(policy) });
                }
                MissingPolicy::LearnedConstant => {
                    notes.push(format!("{}: absent ({why}); policy learned-constant: one trainable vector on every row", m.name()));
                    modalities.push(ModalityInput { modality: m, features: Tensor::from_f32(device, vec![1.0; n], &[n, 1])?, width: w, filled: Some(policy) });
                }
            }
            Ok(())
        };
        match (choice.images, images) {
            (true, Some(img)) => add(&mut modalities, Modality::Image, &img.data, img.dim)?,
            (true, None) => fill(&mut modalities, &mut notes, Modality::Image, choice.missing_images, "no image features given for this dataset")?,
            (false, _) => notes.push("image: switched off".to_string()),
        }
        if choice.relations {
            add(&mut modalities, Modality::Relation, &features.relations.data, features.relations.cols)?;
        } else {
            notes.push("relation: switched off".to_string());
        }
        match (choice.attributes, &features.attributes) {
            (true, Some(a)) => add(&mut modalities, Modality::Attribute, &a.data, a.cols)?,
            (true, None) => fill(&mut modalities, &mut notes, Modality::Attribute, choice.missing_attributes, "the dataset has no attribute files")?,
            (false, _) => notes.push("attribute: switched off".to_string()),
        }
        match (choice.names, &features.char_bigrams) {
            (true, Some(c)) => add(&mut modalities, Modality::Name, &c.data, c.cols)?,
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
        let triples = ds.triples.iter().flatten().copied().collect();
        Ok(Inputs { n, n1: ds.num_entities[0], modalities, graph, nbr_mean, gat_graph, notes, triples, num_relations: ds.relations.len() })
    }

    pub fn device(&self) -> Device {
        self.graph.device()
    }

    /// The modalities present, in order.
    pub fn modality_list(&self) -> Vec<Modality> {
        self.modalities.iter().map(|m| m.modality).collect()
    }

    /// The encoders' input widths, in order.
    pub fn modality_widths(&self) -> Vec<usize> {
        self.modalities.iter().map(|m| m.width).collect()
    }

    /// The modalities filled because the dataset lacks them, with their policy (for setting lines and
    /// records).
    pub fn filled(&self) -> Vec<(Modality, MissingPolicy)> {
        self.modalities.iter().filter_map(|m| m.filled.map(|p| (m.modality, p))).collect()
    }
}

/// A modality's linear encoder `h = F W + b` (`w`, `b`: parameter names), or, for a learned constant, the
/// bias vector on every row (a `[N, 1] × [1, d]` product with the column of ones; there is no `w`).
pub fn encode_linear(
    tape: &crate::autodiff::Tape,
    vars: &std::collections::HashMap<String, crate::autodiff::Var>,
    input: &ModalityInput,
    w: &str,
    b: &str,
) -> Result<crate::autodiff::Var> {
    use crate::autodiff::ad;
    let get = |name: &str| vars.get(name).ok_or_else(|| crate::error::Error::invalid("encode_linear", format!("no parameter `{name}`")));
    let bias = get(b)?;
    let f = tape.constant(&input.features);
    if input.is_constant() {
        let d = bias.value.shape()[0];
        let row = ad::reshape(tape, bias, &[1, d])?;
        return ad::linear(tape, &f, &row, None);
    }
    ad::linear(tape, &f, get(w)?, Some(bias))
}

/// Puts a modality encoder's weight `[width, d]` in `p`, drawn from `init` (a learned constant draws it
/// too, so that the parameters after it are those of `zero-input`, but keeps none).
pub(crate) fn put_encoder_weight(
    init: &mut super::params::Init,
    device: &Device,
    p: &mut super::params::Params,
    input_is_constant: bool,
    name: String,
    width: usize,
    d: usize,
) -> Result<()> {
    let w = init.linear_default(width * d, width);
    if !input_is_constant {
        p.put(device, name, w, &[width, d])?;
    }
    Ok(())
}
