//! A generated pair of knowledge graphs with a DBP15K-like degree distribution, for timing at sizes that no
//! bundled dataset has (the cost curve to 100k entities per side). Timing only: it has structure and
//! gold links and no other modality, and its accuracy means nothing beside the real datasets'.
//!
//! The construction: one latent graph over the aligned entities (77% of each side, DBP15K's 15,000 of
//! about 19,500) and the entities of each side that have no counterpart. Every latent entity draws a
//! degree from a Pareto law (minimum 5, tail index 1.7, capped at 1,000: edges grow linearly with the
//! entities) and the stubs are paired at random (the configuration model). Each side keeps, of the
//! latent edges between its own entities, each with probability 0.9; an entity left with no edge gets
//! one to a random entity of its side. Relations follow a Zipf law of exponent 0.8 over
//! `1500 · sqrt(N / 19,500)` types, named apart on each side. On zh-en sizes this gives a median degree
//! of 5, 90th percentile 14, 99th 59, mean 8.6 (DBP15K zh-en: 5 / 13 / 44 / 7.3 for zh, 7 / 18 / 63 /
//! 9.7 for en). Entity order and link order are shuffled. Deterministic in (entities, seed).

use super::rng::Rng;
use super::{Dataset, Triple};
use crate::error::{Error, Result};

/// Share of each side's entities that have a counterpart (DBP15K: 15,000 of about 19,500).
pub const ALIGNED_SHARE: f64 = 0.77;
const DEGREE_MIN: f64 = 5.0;
const DEGREE_TAIL: f64 = 1.7;
const DEGREE_CAP: usize = 1000;
const KEEP: f64 = 0.9;
const ZIPF: f64 = 0.8;

/// The synthetic pair with `entities` entities per side (at least 100).
pub fn synthetic_pair(entities: usize, seed: u64) -> Result<Dataset> {
    if entities < 100 {
        return Err(Error::InvalidArgument { op: "synthetic_pair", detail: format!("a synthetic pair needs at least 100 entities per side, not {entities}") });
    }
    let mut rng = Rng::new(seed ^ 0x5E17_0C0D_E5A1_0001);
    let aligned = (entities as f64 * ALIGNED_SHARE).round() as usize;
    let own = entities - aligned;
    // Latent ids: 0..aligned shared, then KG1's own, then KG2's own.
    let latent = aligned + 2 * own;
    let mut stubs = Vec::new();
    for i in 0..latent {
        let u = 1.0 - rng.next_f64(); // (0, 1]
        let d = (DEGREE_MIN * u.powf(-1.0 / DEGREE_TAIL)).min(DEGREE_CAP as f64) as usize;
        stubs.extend(std::iter::repeat_n(i as u32, d.max(1)));
    }
    rng.shuffle(&mut stubs);
    let num_rel = ((1500.0 * (entities as f64 / 19_500.0).sqrt()).round() as usize).max(20);
    let cdf: Vec<f64> = (1..=num_rel)
        .scan(0.0, |acc, k| {
            *acc += (k as f64).powf(-ZIPF);
            Some(*acc)
        })
        .collect();
    let total = cdf[num_rel - 1];
    let relation = |rng: &mut Rng| {
        let u = rng.next_f64() * total;
        cdf.partition_point(|&c| c < u).min(num_rel - 1) as u32
    };
    let latent_edges: Vec<(u32, u32, u32)> = stubs.chunks_exact(2).map(|p| (p[0], p[1], relation(&mut rng))).collect();

    // Each side: which latent entities it has, and their shuffled local order.
    let mut names: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut local: [Vec<Option<u32>>; 2] = [vec![None; latent], vec![None; latent]];
    for (k, side) in local.iter_mut().enumerate() {
        let mut members: Vec<u32> = (0..aligned as u32).chain((aligned + k * own) as u32..(aligned + (k + 1) * own) as u32).collect();
        rng.shuffle(&mut members);
        let offset = if k == 0 { 0 } else { entities as u32 };
        for (j, &e) in members.iter().enumerate() {
            side[e as usize] = Some(offset + j as u32);
        }
        names[k] = (0..entities).map(|j| format!("http://synthetic.mmea/kg{}/e{j}", k + 1)).collect();
    }
    // Side relation names: KG2 sees the latent relations under a permutation.
    let mut perm: Vec<u32> = (0..num_rel as u32).collect();
    rng.shuffle(&mut perm);
    let relations: Vec<String> = (0..num_rel).map(|r| format!("http://synthetic.mmea/kg1/r{r}")).chain((0..num_rel).map(|r| format!("http://synthetic.mmea/kg2/r{r}"))).collect();
    let mut triples: [Vec<Triple>; 2] = [Vec::new(), Vec::new()];
    for k in 0..2 {
        let mut degree = vec![0u32; entities];
        let base = if k == 0 { 0 } else { entities as u32 };
        for &(h, t, r) in &latent_edges {
            if let (Some(a), Some(b)) = (local[k][h as usize], local[k][t as usize]) {
                if a != b && rng.next_f64() < KEEP {
                    let r = if k == 0 { r } else { num_rel as u32 + perm[r as usize] };
                    triples[k].push(Triple { h: a, r, t: b });
                    degree[(a - base) as usize] += 1;
                    degree[(b - base) as usize] += 1;
                }
            }
        }
        for j in 0..entities {
            if degree[j] == 0 {
                let mut other = rng.below(entities as u64) as usize;
                if other == j {
                    other = (j + 1) % entities;
                }
                let r = relation(&mut rng);
                let r = if k == 0 { r } else { num_rel as u32 + perm[r as usize] };
                triples[k].push(Triple { h: base + j as u32, r, t: base + other as u32 });
                degree[j] += 1;
                degree[other] += 1;
            }
        }
    }
    // Keep only the relations some triple uses (rare Zipf types may never be drawn), in first-use order.
    let mut dense = vec![u32::MAX; relations.len()];
    let mut used = Vec::new();
    for t in triples.iter_mut().flatten() {
        if dense[t.r as usize] == u32::MAX {
            dense[t.r as usize] = used.len() as u32;
            used.push(relations[t.r as usize].clone());
        }
        t.r = dense[t.r as usize];
    }
    let mut links: Vec<(u32, u32)> = (0..aligned).filter_map(|e| Some((local[0][e]?, local[1][e]?))).collect();
    rng.shuffle(&mut links);
    Dataset::from_parts(format!("synthetic_{entities}"), names, None, used, triples, links)
}
