//! Train/dev/test splits of the gold links.
//!
//! [`Split::seeded`] shuffles the links with a seeded [`Rng`] and cuts them: the first
//! `floor(n * train_ratio)` pairs are the training pool, of which the last `floor(pool * dev_fraction)`
//! become the **dev** split (for model selection: mmea-spec §1.4 notes that the reference code selects
//! on the test pairs); the rest are test. Saved as TSV with original ids ([`Split::to_tsv`]) so a run can
//! be repeated, and pair files of other tools can be read ([`read_pairs`]).

use std::collections::HashSet;

use super::diag::{Diagnostics, ProblemKind, Severity};
use super::rng::Rng;
use super::{each_line, fields, Dataset};
use crate::error::{Error, Result};

/// A split of gold links into train, dev and test pairs (dense indices: KG1 entity, KG2 entity).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub train: Vec<(u32, u32)>,
    pub dev: Vec<(u32, u32)>,
    pub test: Vec<(u32, u32)>,
    /// Where it came from (`seed 42, train 0.3, dev 0.1`, `train_ill/test_ill`, a file path...).
    pub source: String,
}

impl Split {
    /// `train`, `dev` (also `valid`), `test` → 0, 1, 2.
    pub fn part_index(s: &str) -> Option<usize> {
        match s.trim() {
            "train" => Some(0),
            "dev" | "valid" | "validation" => Some(1),
            "test" => Some(2),
            _ => None,
        }
    }

    /// A seeded split: shuffle `links`, take `floor(n * train_ratio)` as the training pool, move the last
    /// `floor(pool * dev_fraction)` of the pool to dev, the rest of the links are test. Deterministic
    /// given the seed. `train_ratio` and `dev_fraction` must lie in [0, 1].
    pub fn seeded(links: &[(u32, u32)], train_ratio: f64, dev_fraction: f64, seed: u64) -> Result<Split> {
        if !(0.0..=1.0).contains(&train_ratio) || !(0.0..=1.0).contains(&dev_fraction) {
            return Err(Error::InvalidArgument { op: "split", detail: format!("train ratio {train_ratio} and dev fraction {dev_fraction} must lie in [0, 1]") });
        }
        let mut v = links.to_vec();
        Rng::new(seed).shuffle(&mut v);
        let n_pool = ((v.len() as f64) * train_ratio).floor() as usize;
        let n_dev = ((n_pool as f64) * dev_fraction).floor() as usize;
        let test = v.split_off(n_pool.min(v.len()));
        let dev = v.split_off(n_pool - n_dev);
        Ok(Split { train: v, dev, test, source: format!("seed {seed}, train ratio {train_ratio}, dev fraction {dev_fraction}") })
    }

    /// For a split that came without a dev part (e.g. `train_ill`/`test_ill`): moves the last
    /// `floor(len · dev_fraction)` pairs of a seeded shuffle of the training pairs to dev. Does nothing when
    /// a dev part exists or the fraction is 0.
    pub fn carve_dev(&mut self, dev_fraction: f64, seed: u64) {
        if !self.dev.is_empty() || dev_fraction <= 0.0 {
            return;
        }
        let mut train = std::mem::take(&mut self.train);
        Rng::new(seed).shuffle(&mut train);
        let n_dev = ((train.len() as f64) * dev_fraction.min(1.0)).floor() as usize;
        self.dev = train.split_off(train.len() - n_dev);
        self.train = train;
        self.source = format!("{} (dev: {n_dev} pairs of its training pairs, seed {seed})", self.source);
    }

    /// Writes `part \t kg1_id \t kg2_id` lines (part: train, dev, test) with the dataset's external ids.
    pub fn to_tsv(&self, ds: &Dataset) -> String {
        let mut s = String::new();
        for (p, v) in [("train", &self.train), ("dev", &self.dev), ("test", &self.test)] {
            for &(a, b) in v.iter() {
                s.push_str(&format!("{p}\t{}\t{}\n", ds.external(a), ds.external(b)));
            }
        }
        s
    }

    /// Reads what [`Split::to_tsv`] writes. Ids are resolved against `ds` (numeric ids or URIs).
    pub fn from_tsv(ds: &Dataset, path: &str, bytes: &[u8]) -> Result<Split> {
        let bytes = super::files::decode(path, bytes.into())?;
        let mut diag = Diagnostics::new();
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        let n = each_line(path, &bytes, &mut diag, |line, diag| {
            let ws = !line.text.contains('\t');
            let Some([p, a, b]) = fields::<3>(&line, ws, "train|dev|test, KG1 id, KG2 id", path, diag) else { return };
            let Some(pi) = Split::part_index(p) else {
                diag.line(Severity::Error, ProblemKind::MalformedLine, path, line.no, format!("unknown split part '{p}' (train, dev or test)"), line.raw);
                return;
            };
            if let Some(pair) = resolve_pair(ds, a, b, path, &line, diag) {
                parts[pi].push(pair);
            }
        });
        if n == 0 {
            super::empty_file(path, &mut diag);
        }
        diag.into_result()?;
        let [train, dev, test] = parts;
        let s = Split { train, dev, test, source: path.to_string() };
        s.validate(ds)?;
        Ok(s)
    }

    /// Builds a split from pair files of another tool (`train_links`, `valid_links`, `test_links`,
    /// `train_ill`...): each `(path, bytes)` holds `kg1_id \t kg2_id` lines. `dev` may be absent.
    pub fn from_pair_files(ds: &Dataset, train: (&str, &[u8]), dev: Option<(&str, &[u8])>, test: (&str, &[u8])) -> Result<Split> {
        let tr = read_pairs(ds, train.0, train.1)?;
        let dv = match dev {
            Some((p, b)) => read_pairs(ds, p, b)?,
            None => Vec::new(),
        };
        let te = read_pairs(ds, test.0, test.1)?;
        let s = Split { train: tr, dev: dv, test: te, source: format!("{} / {}", train.0, test.0) };
        s.validate(ds)?;
        Ok(s)
    }

    /// Checks that no pair is in two parts and every entity is in range and on the right side.
    pub fn validate(&self, ds: &Dataset) -> Result<()> {
        let mut diag = Diagnostics::new();
        self.check_into(ds, &mut diag);
        diag.into_result()
    }

    /// Records split problems: errors for out-of-range or repeated pairs, a warning for pairs that are
    /// not gold links.
    pub fn check_into(&self, ds: &Dataset, diag: &mut Diagnostics) {
        let n1 = ds.num_entities[0] as u32;
        let n = ds.entities.len() as u32;
        let mut seen = HashSet::new();
        let gold: HashSet<(u32, u32)> = ds.links.iter().copied().collect();
        let mut not_gold = 0usize;
        for (name, v) in [("train", &self.train), ("dev", &self.dev), ("test", &self.test)] {
            for &(a, b) in v.iter() {
                if a >= n1 || b < n1 || b >= n {
                    diag.dataset(Severity::Error, ProblemKind::BadSplit, format!("{name} pair ({a}, {b}) is not a (KG1, KG2) pair of this dataset"));
                    continue;
                }
                if !seen.insert((a, b)) {
                    diag.dataset(Severity::Error, ProblemKind::BadSplit, format!("pair ({}, {}) occurs twice in the split (again in {name})", ds.external(a), ds.external(b)));
                }
                if !gold.contains(&(a, b)) {
                    not_gold += 1;
                }
            }
        }
        if not_gold > 0 {
            diag.dataset(Severity::Warning, ProblemKind::BadSplit, format!("{not_gold} split pair(s) are not among the gold links"));
        }
    }

    pub fn len(&self) -> usize {
        self.train.len() + self.dev.len() + self.test.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn resolve_pair(ds: &Dataset, a: &str, b: &str, path: &str, line: &super::Line<'_>, diag: &mut Diagnostics) -> Option<(u32, u32)> {
    match (ds.resolve(0, a), ds.resolve(1, b)) {
        (Some(x), Some(y)) => Some((x, y)),
        (x, y) => {
            let mut m = Vec::new();
            if x.is_none() {
                m.push(format!("'{a}' is not a KG1 entity"));
            }
            if y.is_none() {
                m.push(format!("'{b}' is not a KG2 entity"));
            }
            if ds.resolve(1, a).is_some() && ds.resolve(0, b).is_some() {
                m.push("the pair looks reversed (KG1 id first)".into());
            }
            diag.line(Severity::Error, ProblemKind::UnknownId, path, line.no, m.join("; "), line.raw);
            None
        }
    }
}

/// Reads `kg1_id \t kg2_id` pairs (numeric ids or URIs, whitespace separated) against `ds`.
pub fn read_pairs(ds: &Dataset, path: &str, bytes: &[u8]) -> Result<Vec<(u32, u32)>> {
    let bytes = super::files::decode(path, bytes.into())?;
    let mut diag = Diagnostics::new();
    let mut out = Vec::new();
    let n = each_line(path, &bytes, &mut diag, |line, diag| {
        let ws = !line.text.contains('\t');
        let Some([a, b]) = fields::<2>(&line, ws, "KG1 id, KG2 id", path, diag) else { return };
        if let Some(p) = resolve_pair(ds, a, b, path, &line, diag) {
            out.push(p);
        }
    });
    if n == 0 {
        super::empty_file(path, &mut diag);
    }
    diag.into_result()?;
    Ok(out)
}
