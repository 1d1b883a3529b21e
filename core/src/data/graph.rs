//! Graph structures built from the triples (mmea-spec §1.6), as plain sorted lists in dense entity
//! indices, ready to be uploaded for the kernels.

use super::{Dataset, Triple};

/// The relation-aware edge list of RREA/Dual-AMN/LoginMEA (`get_matrix`, §1.6 B):
/// relation ids shifted by +1 (0 is reserved), `R' = max(shifted) + 1 = R + 1`; every triple `(h, r, t)`
/// gives the directed pairs `(h, t)` with relation `r + 1` and `(t, h)` with the reverse relation
/// `r + 1 + R'`. `edges` are the distinct directed pairs in row-major order (by head, then tail);
/// `mixing[e]` lists the relations on pair `e` with weight `count / total` (so each pair's weights sum to
/// 1; a relation seen twice on a pair counts twice, as the sparse tensors of the reference code sum
/// duplicates). Relations within a pair are sorted by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelGraphLists {
    pub num_nodes: usize,
    pub edges: Vec<(u32, u32)>,
    pub mixing: Vec<Vec<(u32, f32)>>,
    /// `2 R'`: the size of the relation vocabulary the mixing ids index.
    pub num_rel: usize,
}

impl RelGraphLists {
    pub fn build(ds: &Dataset) -> Self {
        let triples: Vec<Triple> = ds.all_triples().copied().collect();
        Self::from_triples(ds.entities.len(), ds.relations.len(), &triples)
    }

    /// From triples in dense indices over `num_relations` relations.
    pub fn from_triples(num_nodes: usize, num_relations: usize, triples: &[Triple]) -> Self {
        let r_prime = num_relations as u32 + 1;
        let mut items: Vec<(u32, u32, u32)> = Vec::with_capacity(triples.len() * 2);
        for t in triples {
            items.push((t.h, t.t, t.r + 1));
            items.push((t.t, t.h, t.r + 1 + r_prime));
        }
        items.sort_unstable();
        let mut edges = Vec::new();
        let mut mixing: Vec<Vec<(u32, f32)>> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            let (h, t) = (items[i].0, items[i].1);
            let mut j = i;
            while j < items.len() && items[j].0 == h && items[j].1 == t {
                j += 1;
            }
            let total = (j - i) as f32;
            let mut mix: Vec<(u32, f32)> = Vec::new();
            for it in &items[i..j] {
                match mix.last_mut() {
                    Some(last) if last.0 == it.2 => last.1 += 1.0,
                    _ => mix.push((it.2, 1.0)),
                }
            }
            mix.iter_mut().for_each(|m| m.1 /= total);
            edges.push((h, t));
            mixing.push(mix);
            i = j;
        }
        RelGraphLists { num_nodes, edges, mixing, num_rel: 2 * r_prime as usize }
    }

    /// CSR row offsets over `edges` by head: the edges of node `i` are `offsets[i]..offsets[i+1]`.
    pub fn head_offsets(&self) -> Vec<u32> {
        offsets_by(self.num_nodes, self.edges.iter().map(|e| e.0))
    }

    /// The transposed form backward needs: edge indices sorted by (tail, head), with CSR offsets by tail.
    pub fn by_tail(&self) -> (Vec<u32>, Vec<u32>) {
        let mut idx: Vec<u32> = (0..self.edges.len() as u32).collect();
        idx.sort_by_key(|&e| (self.edges[e as usize].1, self.edges[e as usize].0));
        let offsets = offsets_by(self.num_nodes, idx.iter().map(|&e| self.edges[e as usize].1));
        (offsets, idx)
    }

    /// The mixing as a flat CSR over edges: (offsets, relation ids, weights).
    pub fn mixing_csr(&self) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let mut off = Vec::with_capacity(self.mixing.len() + 1);
        let (mut rel, mut w) = (Vec::new(), Vec::new());
        off.push(0u32);
        for m in &self.mixing {
            for &(r, x) in m {
                rel.push(r);
                w.push(x);
            }
            off.push(rel.len() as u32);
        }
        (off, rel, w)
    }

    /// The mixing transposed (what a relation-embedding gradient gathers): for each relation id, the
    /// (edge, weight) pairs, sorted by edge, with CSR offsets (length `num_rel + 1`).
    pub fn mixing_by_relation(&self) -> (Vec<u32>, Vec<(u32, f32)>) {
        let mut items: Vec<(u32, u32, f32)> = Vec::new();
        for (e, m) in self.mixing.iter().enumerate() {
            for &(r, w) in m {
                items.push((r, e as u32, w));
            }
        }
        items.sort_by_key(|x| (x.0, x.1));
        let offsets = offsets_by(self.num_rel, items.iter().map(|x| x.0));
        (offsets, items.into_iter().map(|x| (x.1, x.2)).collect())
    }
}

/// CSR offsets of length `n + 1` for a sorted key sequence with keys `< n`.
fn offsets_by(n: usize, keys: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut off = vec![0u32; n + 1];
    for k in keys {
        if (k as usize) < n {
            off[k as usize + 1] += 1;
        }
    }
    for i in 0..n {
        off[i + 1] += off[i];
    }
    off
}

/// The neighbour-average structure: row `i` lists `{i} ∪ nbr(i)` (neighbours through triples in either
/// direction), sorted, without repeats. Symmetric, so it is its own transpose.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NeighbourCsr {
    /// Length `num_nodes + 1`.
    pub offsets: Vec<u32>,
    pub cols: Vec<u32>,
}

impl NeighbourCsr {
    pub fn build(ds: &Dataset) -> Self {
        let triples: Vec<Triple> = ds.all_triples().copied().collect();
        Self::from_triples(ds.entities.len(), &triples)
    }

    pub fn from_triples(num_nodes: usize, triples: &[Triple]) -> Self {
        let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(triples.len() * 2 + num_nodes);
        for i in 0..num_nodes as u32 {
            pairs.push((i, i));
        }
        for t in triples {
            pairs.push((t.h, t.t));
            pairs.push((t.t, t.h));
        }
        pairs.sort_unstable();
        pairs.dedup();
        let offsets = offsets_by(num_nodes, pairs.iter().map(|p| p.0));
        NeighbourCsr { offsets, cols: pairs.into_iter().map(|p| p.1).collect() }
    }

    pub fn num_nodes(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// The row of node `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.cols[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
    /// `1 / |row|` per entry: averaging weights.
    pub fn mean_weights(&self) -> Vec<f32> {
        let mut w = Vec::with_capacity(self.cols.len());
        for i in 0..self.num_nodes() {
            let len = (self.offsets[i + 1] - self.offsets[i]) as f32;
            w.extend(std::iter::repeat_n(1.0 / len, len as usize));
        }
        w
    }
}
