//! Hand-crafted input features (mmea-spec §1.5), as dense row-major matrices indexed by dense entity
//! index: bag-of-relations, bag-of-attributes and character-bigram name features.

use std::collections::HashMap;

use super::graph::{NeighbourCsr, RelGraphLists};
use super::modality::l2_normalize_rows;
use super::Dataset;

/// A dense `rows × cols` f32 matrix, row-major, with a name per column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
    /// What each column counts (relation name, attribute name, bigram); padding columns are `""`.
    pub columns: Vec<String>,
}

impl FeatureMatrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        FeatureMatrix { rows, cols, data: vec![0.0; rows * cols], columns: vec![String::new(); cols] }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// Number of non-zero entries.
    pub fn nnz(&self) -> usize {
        self.data.iter().filter(|v| **v != 0.0).count()
    }
}

/// Indices of the `k` most frequent items: count descending, ties in first-seen order (as Python's
/// `Counter.most_common`). Items with count 0 are never chosen.
fn top_k(counts: &[u64], first_seen: &[usize], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    idx.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(first_seen[a].cmp(&first_seen[b])));
    idx.truncate(k);
    idx
}

/// Bag-of-relations `F_rel ∈ R^{N×K}`: the `top_k` most frequent relations over the triples of both KGs
/// (ties: first seen, KG1 triples first) get columns by rank; for every triple `(h, r, t)` with `r` kept,
/// `F[h, col(r)] += 1` and `F[t, col(r)] += 1`. Counts are not normalised. With `pad`, the matrix has
/// exactly `top_k` columns (zero padded when there are fewer relations, as MCLEA); otherwise one per
/// kept relation.
pub fn bag_of_relations(ds: &Dataset, top_k_rel: usize, pad: bool) -> FeatureMatrix {
    relation_bag(ds, top_k_rel, pad, false)
}

/// [`bag_of_relations`] with the direction kept: each kept relation gets two columns, `2c` counting the
/// triples where the entity is the head and `2c + 1` those where it is the tail (names `r (head)`,
/// `r (tail)`), so `2·top_k` columns with `pad`. Not in the reference codes, whose bag adds 1 to the same
/// column for both ends (a person's `birthPlace` and a city's look alike there).
pub fn bag_of_relations_directed(ds: &Dataset, top_k_rel: usize, pad: bool) -> FeatureMatrix {
    relation_bag(ds, top_k_rel, pad, true)
}

fn relation_bag(ds: &Dataset, top_k_rel: usize, pad: bool, directed: bool) -> FeatureMatrix {
    let nr = ds.relations.len();
    let mut counts = vec![0u64; nr];
    let mut first = vec![usize::MAX; nr];
    for (pos, t) in ds.all_triples().enumerate() {
        let r = t.r as usize;
        counts[r] += 1;
        if first[r] == usize::MAX {
            first[r] = pos;
        }
    }
    let kept = top_k(&counts, &first, top_k_rel);
    let per = if directed { 2 } else { 1 };
    let cols = per * if pad { top_k_rel } else { kept.len() };
    let mut col_of = vec![u32::MAX; nr];
    let mut m = FeatureMatrix::zeros(ds.entities.len(), cols);
    for (c, &r) in kept.iter().enumerate() {
        col_of[r] = (per * c) as u32;
        if directed {
            m.columns[2 * c] = format!("{} (head)", ds.relations.names[r]);
            m.columns[2 * c + 1] = format!("{} (tail)", ds.relations.names[r]);
        } else {
            m.columns[c] = ds.relations.names[r].clone();
        }
    }
    let tail = per - 1;
    for t in ds.all_triples() {
        let c = col_of[t.r as usize];
        if c != u32::MAX {
            m.data[t.h as usize * cols + c as usize] += 1.0;
            m.data[t.t as usize * cols + c as usize + tail] += 1.0;
        }
    }
    m
}

/// Bag-of-attributes `F_att ∈ {0,1}^{N×A}`: attribute names counted over both KGs' attribute lists
/// (every occurrence), the `top_k` most frequent (ties: first seen) get columns by rank;
/// `F[e, col(a)] = 1` when entity `e` has attribute `a`. `None` when the dataset has no attributes.
/// `pad` as in [`bag_of_relations`] (MCLEA pads to 1000; MEAformer uses `min(1000, #attributes)`).
pub fn bag_of_attributes(ds: &Dataset, top_k_attr: usize, pad: bool) -> Option<FeatureMatrix> {
    let a = ds.attributes.as_ref()?;
    let na = a.vocab.len();
    let mut counts = vec![0u64; na];
    let mut first = vec![usize::MAX; na];
    let mut pos = 0usize;
    for list in &a.per_entity {
        for &x in list {
            counts[x as usize] += 1;
            if first[x as usize] == usize::MAX {
                first[x as usize] = pos;
            }
            pos += 1;
        }
    }
    let kept = top_k(&counts, &first, top_k_attr);
    let cols = if pad { top_k_attr } else { kept.len() };
    let mut col_of = vec![u32::MAX; na];
    let mut m = FeatureMatrix::zeros(ds.entities.len(), cols);
    for (c, &x) in kept.iter().enumerate() {
        col_of[x] = c as u32;
        m.columns[c] = a.vocab[x].clone();
    }
    for (e, list) in a.per_entity.iter().enumerate() {
        for &x in list {
            let c = col_of[x as usize];
            if c != u32::MAX {
                m.data[e * cols + c as usize] = 1.0;
            }
        }
    }
    Some(m)
}

/// Character-bigram name features (EVA's `F_char`): counts of the bigrams inside each name token
/// (Unicode characters), over [`Dataset::name_tokens`] (loaded names, else URI-derived), then each row
/// L2-normalised. Columns: the `max_dim` most frequent bigrams (ties: first seen); EVA keeps all of them,
/// which is a few thousand for translated English names. Returns the matrix and the number of entities
/// whose row is all zero (EVA fills those with uniform noise; we leave them zero and report the count).
pub fn char_bigrams(ds: &Dataset, max_dim: usize) -> (FeatureMatrix, usize) {
    let n = ds.entities.len();
    let mut vocab: HashMap<(char, char), usize> = HashMap::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut per_entity: Vec<Vec<usize>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut list = Vec::new();
        for tok in ds.name_tokens(i) {
            let cs: Vec<char> = tok.chars().collect();
            for w in cs.windows(2) {
                let next = vocab.len();
                let id = *vocab.entry((w[0], w[1])).or_insert(next);
                if id == counts.len() {
                    counts.push(0);
                }
                counts[id] += 1;
                list.push(id);
            }
        }
        per_entity.push(list);
    }
    let first: Vec<usize> = (0..counts.len()).collect();
    let kept = top_k(&counts, &first, max_dim);
    let mut col_of = vec![u32::MAX; counts.len()];
    let mut m = FeatureMatrix::zeros(n, kept.len());
    let mut names = vec![(' ', ' '); counts.len()];
    for (&bg, &id) in &vocab {
        names[id] = bg;
    }
    for (c, &id) in kept.iter().enumerate() {
        col_of[id] = c as u32;
        m.columns[c] = format!("{}{}", names[id].0, names[id].1);
    }
    let cols = m.cols;
    for (e, list) in per_entity.iter().enumerate() {
        for &id in list {
            let c = col_of[id];
            if c != u32::MAX {
                m.data[e * cols + c as usize] += 1.0;
            }
        }
    }
    l2_normalize_rows(&mut m.data, cols);
    let zero_rows = if cols == 0 { n } else { m.data.chunks(cols).filter(|r| r.iter().all(|v| *v == 0.0)).count() };
    (m, zero_rows)
}

/// What to build in [`build_features`].
#[derive(Clone, Debug)]
pub struct FeatureOptions {
    /// Columns of the bag-of-relations (1000 in every reference code).
    pub rel_top_k: usize,
    /// Head and tail columns per relation ([`bag_of_relations_directed`]).
    pub rel_directed: bool,
    /// Columns of the bag-of-attributes (1000).
    pub attr_top_k: usize,
    /// Zero-pad both bags to exactly `top_k` columns (MCLEA/LoginMEA) instead of `min(top_k, #distinct)`
    /// (MEAformer).
    pub pad_to_top_k: bool,
    /// Build character-bigram name features. Off by default: papers leave names out for fairness.
    pub char_bigrams: bool,
    /// At most this many bigram columns.
    pub char_max_dim: usize,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions { rel_top_k: 1000, rel_directed: false, attr_top_k: 1000, pad_to_top_k: true, char_bigrams: false, char_max_dim: 2048 }
    }
}

/// Everything the models take from a dataset besides user feature files.
#[derive(Clone, Debug)]
pub struct Features {
    pub relations: FeatureMatrix,
    pub attributes: Option<FeatureMatrix>,
    pub char_bigrams: Option<FeatureMatrix>,
    /// The relation-aware edge list for the reflection attention (mmea-spec §1.6 B).
    pub rel_graph: RelGraphLists,
    /// `{i} ∪ nbr(i)` for neighbour averaging (symmetric, self loops).
    pub neighbours: NeighbourCsr,
    /// What was built and what is absent, for the run log (never silent about missing modalities).
    pub notes: Vec<String>,
}

/// Builds all features and graph structures of a dataset.
pub fn build_features(ds: &Dataset, opts: &FeatureOptions) -> Features {
    let mut notes = Vec::new();
    let relations = if opts.rel_directed { bag_of_relations_directed(ds, opts.rel_top_k, opts.pad_to_top_k) } else { bag_of_relations(ds, opts.rel_top_k, opts.pad_to_top_k) };
    notes.push(format!("bag-of-relations: {} x {} ({} relations in the data)", relations.rows, relations.cols, ds.relations.len()));
    let attributes = bag_of_attributes(ds, opts.attr_top_k, opts.pad_to_top_k);
    match &attributes {
        Some(a) => notes.push(format!("bag-of-attributes: {} x {}", a.rows, a.cols)),
        None => notes.push("bag-of-attributes: absent (the dataset has no attribute files)".into()),
    }
    let char_bigrams = if opts.char_bigrams {
        let (m, zero) = char_bigrams(ds, opts.char_max_dim);
        let src = ds.names.as_ref().map(|n| n.source.clone()).unwrap_or_else(|| "URIs".into());
        notes.push(format!("char bigrams: {} x {} from {src}; {zero} entities have no bigram (zero rows)", m.rows, m.cols));
        Some(m)
    } else {
        notes.push("char bigrams: off (names are left out by default)".into());
        None
    };
    let rel_graph = RelGraphLists::build(ds);
    let neighbours = NeighbourCsr::build(ds);
    notes.push(format!("relation graph: {} directed pairs, {} relation slots; neighbour CSR: {} entries", rel_graph.edges.len(), rel_graph.num_rel, neighbours.cols.len()));
    Features { relations, attributes, char_bigrams, rel_graph, neighbours, notes }
}
