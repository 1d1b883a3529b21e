//! # The data layer
//!
//! Reads entity-alignment datasets, checks them, builds the hand-crafted features and graph structures of
//! mmea-spec §1.5–§1.6, and splits the gold links. Pure Rust, no GPU: it parses bytes ([`files`]), so it
//! also runs in wasm32 (the browser demo reads the embedded [`demo()`] pair).
//!
//! Formats (see `docs/data.md`):
//! - [`Format::Mclea`]: the MCLEA/EVA/MEAformer layout (`ent_ids_1/2`, `triples_1/2`, `ill_ent_ids`, ...),
//!   numeric ids that are global over both KGs and not contiguous.
//! - [`Format::OpenEa`]: `rel_triples_1/2`, `attr_triples_1/2`, `ent_links`, `721_5fold/k/...`, URIs.
//! - [`Format::Tsv`]: our own plain format for people's own KGs (`triples_1.tsv`, `links.tsv`, ...).
//!
//! Inside a [`Dataset`] every entity has a dense index: KG1 entities are `0..n1`, KG2 entities
//! `n1..n1+n2`, in file order. The original ids and URIs are kept for output ([`Vocab::external`]).

pub mod check;
mod demo;
pub mod diag;
pub mod features;
pub mod files;
pub mod graph;
pub mod mclea;
pub mod modality;
pub mod npy;
pub mod openea;
pub mod pickle;
pub mod rng;
pub mod split;
pub mod synthetic;
pub mod tsv;

use std::collections::HashMap;
use std::path::Path;

pub use check::{check, check_dir, CheckReport, KgCounts, ModalityInput};
pub use demo::{demo, demo_files, DEMO_MODALITIES};
pub use diag::{Diagnostics, Problem, ProblemKind, Severity};
pub use features::{bag_of_attributes, bag_of_relations, bag_of_relations_directed, build_features, char_bigrams, FeatureMatrix, FeatureOptions, Features};
pub use files::{DirFiles, FileSource, MemFiles};
pub use graph::{NeighbourCsr, RelGraphLists};
pub use modality::{attach, FillPolicy, FillReport, IdSource, ModalityFeatures, RawFeatures};
pub use rng::Rng;
pub use split::Split;

use crate::error::{Error, Result};

/// The on-disk layout a dataset was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Mclea,
    OpenEa,
    Tsv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Mclea => "MCLEA/EVA (ent_ids, triples, ill_ent_ids)",
            Format::OpenEa => "OpenEA (rel_triples, attr_triples, ent_links)",
            Format::Tsv => "mmea TSV (triples_N.tsv, links.tsv)",
        }
    }
}

/// A relation triple in dense indices (entities: dataset-wide; relation: [`Dataset::relations`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triple {
    pub h: u32,
    pub r: u32,
    pub t: u32,
}

/// Names and (where the format has them) numeric ids of entities or relations, by dense index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocab {
    /// The original numeric ids (MCLEA layout); `None` for formats keyed by names.
    pub ids: Option<Vec<u64>>,
    /// The URI or name of each item (for MCLEA relations without `rel_ids_*`, the id as text).
    pub names: Vec<String>,
}

impl Vocab {
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// The id to write in output files: the original numeric id where there is one, else the name.
    pub fn external(&self, i: usize) -> String {
        match &self.ids {
            Some(ids) => ids.get(i).map(|v| v.to_string()).unwrap_or_default(),
            None => self.names.get(i).cloned().unwrap_or_default(),
        }
    }
}

/// Attribute names per entity (values are dropped, as in every reference code).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    /// Attribute names, in first-seen order.
    pub vocab: Vec<String>,
    /// For each entity (dense index), its attributes as indices into `vocab`, in file order, repeats
    /// kept (frequencies count every occurrence, as MCLEA's counter does).
    pub per_entity: Vec<Vec<u32>>,
    /// Which KGs had an attribute file.
    pub files: [bool; 2],
}

/// Name tokens per entity (the surface-name modality).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names {
    /// Tokens of each entity's name, `None` where the entity has none.
    pub per_entity: Vec<Option<Vec<String>>>,
    /// Where they came from (e.g. `translated_ent_name.json`).
    pub source: String,
}

/// A loaded entity-alignment dataset: two KGs, their triples, the gold links.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub format: Format,
    /// All entities, KG1 first.
    pub entities: Vocab,
    /// Entities per KG: KG1 is `0..num_entities[0]`, KG2 follows.
    pub num_entities: [usize; 2],
    /// All relations (dense index). MCLEA: ascending original id; other formats: first-seen order.
    pub relations: Vocab,
    /// For each relation, bit 0 set when KG1 uses or declares it, bit 1 for KG2.
    pub relation_kgs: Vec<u8>,
    /// The triples of each KG, in file order (duplicates kept, as the reference readers keep them).
    pub triples: [Vec<Triple>; 2],
    /// Gold links (KG1 index, KG2 index), in file order, duplicates removed.
    pub links: Vec<(u32, u32)>,
    pub attributes: Option<Attributes>,
    pub names: Option<Names>,
    /// A fixed split that came with the data (`train_ill`/`test_ill`, OpenEA folds, `split.tsv`).
    pub split: Option<Split>,
    /// Warnings found while loading (the errors made the load fail).
    pub report: Vec<Problem>,
    id_index: HashMap<u64, u32>,
    name_index: [HashMap<String, u32>; 2],
}

impl Dataset {
    /// Builds a dataset from parts in dense indices (KG1 entities first). Checks that every index is in
    /// range. `entity_ids`, when given, are the original numeric ids.
    pub fn from_parts(
        name: impl Into<String>,
        entities: [Vec<String>; 2],
        entity_ids: Option<[Vec<u64>; 2]>,
        relations: Vec<String>,
        triples: [Vec<Triple>; 2],
        links: Vec<(u32, u32)>,
    ) -> Result<Dataset> {
        let n1 = entities[0].len();
        let n = n1 + entities[1].len();
        let nr = relations.len();
        let err = |d: String| Error::Format { path: "dataset".into(), detail: d };
        for (k, ts) in triples.iter().enumerate() {
            let range = if k == 0 { 0..n1 } else { n1..n };
            for t in ts {
                if !range.contains(&(t.h as usize)) || !range.contains(&(t.t as usize)) || t.r as usize >= nr {
                    return Err(err(format!("triple {t:?} of KG{} is out of range", k + 1)));
                }
            }
        }
        for &(a, b) in &links {
            if a as usize >= n1 || (b as usize) < n1 || b as usize >= n {
                return Err(err(format!("link ({a}, {b}) is out of range")));
            }
        }
        let ids = match entity_ids {
            Some([a, b]) => {
                if a.len() != n1 || a.len() + b.len() != n {
                    return Err(err("entity id lists do not match the entity lists".into()));
                }
                Some(a.into_iter().chain(b).collect())
            }
            None => None,
        };
        let mut relation_kgs = vec![0u8; nr];
        for (k, ts) in triples.iter().enumerate() {
            for t in ts {
                relation_kgs[t.r as usize] |= 1 << k;
            }
        }
        let num_entities = [n1, n - n1];
        let mut ds = Dataset {
            name: name.into(),
            format: Format::Tsv,
            entities: Vocab { ids, names: entities.into_iter().flatten().collect() },
            num_entities,
            relations: Vocab { ids: None, names: relations },
            relation_kgs,
            triples,
            links,
            attributes: None,
            names: None,
            split: None,
            report: Vec::new(),
            id_index: HashMap::new(),
            name_index: [HashMap::new(), HashMap::new()],
        };
        ds.reindex();
        Ok(ds)
    }

    fn reindex(&mut self) {
        self.id_index.clear();
        if let Some(ids) = &self.entities.ids {
            for (i, &id) in ids.iter().enumerate() {
                self.id_index.entry(id).or_insert(i as u32);
            }
        }
        let n1 = self.num_entities[0];
        self.name_index = [HashMap::new(), HashMap::new()];
        for (i, name) in self.entities.names.iter().enumerate() {
            let k = usize::from(i >= n1);
            self.name_index[k].entry(name.clone()).or_insert(i as u32);
        }
    }

    /// Total number of entities (both KGs).
    pub fn num_entities_total(&self) -> usize {
        self.entities.len()
    }
    /// Which KG (0 or 1) entity `i` belongs to.
    pub fn kg_of(&self, i: u32) -> usize {
        usize::from(i as usize >= self.num_entities[0])
    }
    /// The dense index range of KG `k` (0 or 1).
    pub fn kg_range(&self, k: usize) -> std::ops::Range<usize> {
        if k == 0 {
            0..self.num_entities[0]
        } else {
            self.num_entities[0]..self.entities.len()
        }
    }
    /// All triples, KG1 then KG2.
    pub fn all_triples(&self) -> impl Iterator<Item = &Triple> {
        self.triples[0].iter().chain(self.triples[1].iter())
    }
    /// Finds an entity of KG `k` by its external id: a numeric original id (where the format has them)
    /// or its URI/name.
    pub fn resolve(&self, k: usize, token: &str) -> Option<u32> {
        if self.entities.ids.is_some() {
            if let Ok(id) = token.parse::<u64>() {
                if let Some(&i) = self.id_index.get(&id) {
                    return (self.kg_of(i) == k).then_some(i);
                }
            }
        }
        self.name_index.get(k)?.get(token).copied()
    }
    /// Finds an entity in either KG (KG1 first).
    pub fn resolve_any(&self, token: &str) -> Option<u32> {
        self.resolve(0, token).or_else(|| self.resolve(1, token))
    }
    /// The external id of entity `i` (see [`Vocab::external`]).
    pub fn external(&self, i: u32) -> String {
        self.entities.external(i as usize)
    }
    /// Name tokens for entity `i`: its loaded name when there is one, else tokens derived from its URI
    /// (the last path segment, `_` as a space, lower-cased).
    pub fn name_tokens(&self, i: usize) -> Vec<String> {
        if let Some(Some(t)) = self.names.as_ref().and_then(|n| n.per_entity.get(i)) {
            return t.clone();
        }
        self.entities.names.get(i).map(|u| uri_tokens(u)).unwrap_or_default()
    }
    /// The modalities this dataset has, for messages (e.g. `structure, names`).
    pub fn modalities(&self) -> Vec<&'static str> {
        let mut m = vec!["structure (relations)"];
        if self.names.is_some() {
            m.push("names");
        } else {
            m.push("names from URIs");
        }
        if self.attributes.is_some() {
            m.push("attributes");
        }
        m
    }
}

/// Tokens of a URI's last segment: `http://dbpedia.org/resource/Kim_Dae-jung` → `["kim", "dae-jung"]`.
pub fn uri_tokens(uri: &str) -> Vec<String> {
    let trimmed = uri.trim_matches(|c| c == '<' || c == '>').trim_end_matches('/');
    let last = trimmed.rsplit(['/', '#']).next().unwrap_or(trimmed);
    last.split(|c: char| c == '_' || c.is_whitespace()).filter(|s| !s.is_empty()).map(|s| s.to_lowercase()).collect()
}

/// Options for loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The dataset's name in reports; the directory name when loading a directory.
    pub name: String,
    /// OpenEA: which fold of `721_5fold/` becomes the fixed split (1..=5), when that folder exists.
    pub openea_fold: usize,
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { name: "dataset".into(), openea_fold: 1, format: None }
    }
}

/// Tells the layout from the files present.
pub fn detect_format(src: &dyn FileSource) -> Result<Format> {
    let has = |n: &str| src.exists(n) || src.exists(&format!("{n}.gz"));
    if has("ent_ids_1") {
        Ok(Format::Mclea)
    } else if has("rel_triples_1") {
        Ok(Format::OpenEa)
    } else if has("triples_1.tsv") {
        Ok(Format::Tsv)
    } else {
        Err(Error::Format {
            path: src.describe(""),
            detail: "no dataset found: expected ent_ids_1 (MCLEA/EVA layout), rel_triples_1 (OpenEA) or \
                     triples_1.tsv (mmea TSV), each optionally .gz"
                .into(),
        })
    }
}

/// Loads a dataset, failing on the first error. Warnings are in [`Dataset::report`].
pub fn load(src: &dyn FileSource, opts: &LoadOptions) -> Result<Dataset> {
    let (ds, diag) = load_lenient(src, opts);
    diag.into_result()?;
    ds.ok_or_else(|| Error::Format { path: src.describe(""), detail: "the dataset could not be read".into() })
}

/// Loads a dataset directory (format detected).
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Dataset> {
    let dir = dir.as_ref();
    let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    if !dir.is_dir() {
        return Err(Error::Format { path: dir.display().to_string(), detail: "not a directory".into() });
    }
    load(&DirFiles::new(dir), &LoadOptions { name, ..Default::default() })
}

/// Loads as much as can be read, recording every problem. The dataset is `None` only when a required
/// file is missing or unreadable.
pub fn load_lenient(src: &dyn FileSource, opts: &LoadOptions) -> (Option<Dataset>, Diagnostics) {
    let mut diag = Diagnostics::new();
    let format = match opts.format {
        Some(f) => f,
        None => match detect_format(src) {
            Ok(f) => f,
            Err(e) => {
                diag.push(Problem { severity: Severity::Error, kind: ProblemKind::MissingFile, path: src.describe(""), line: 0, message: e.to_string(), text: None });
                return (None, diag);
            }
        },
    };
    let built = match format {
        Format::Mclea => mclea::read(src, opts, &mut diag),
        Format::OpenEa => openea::read(src, opts, &mut diag),
        Format::Tsv => tsv::read(src, opts, &mut diag),
    };
    let mut ds = match built {
        Some(b) => b.finish(&opts.name, format, &mut diag),
        None => return (None, diag),
    };
    check::dataset_checks(&ds, &mut diag);
    ds.report = diag.warnings().cloned().collect();
    (Some(ds), diag)
}

// ---------------------------------------------------------------------------------------------------
// Shared reading machinery: readers fill a `Build` in per-KG local indices; `finish` lays KG1 first.

/// One KG while reading, in local indices.
#[derive(Default)]
pub(crate) struct KgBuild {
    pub ids: Vec<u64>,
    pub names: Vec<String>,
    pub by_name: HashMap<String, u32>,
    /// (local head, provisional relation, local tail)
    pub triples: Vec<[u32; 3]>,
    pub attrs: Vec<Vec<u32>>,
    pub attr_file: bool,
    pub tokens: Vec<Option<Vec<String>>>,
}

impl KgBuild {
    /// Adds an entity by name (first-seen), returning its local index.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.by_name.insert(name.to_string(), i);
        i
    }
}

/// Relations while reading: provisional index in first-seen order.
#[derive(Default)]
pub(crate) struct RelBuild {
    pub numeric: bool,
    pub ids: Vec<u64>,
    pub names: Vec<String>,
    pub by_id: HashMap<u64, u32>,
    pub by_name: HashMap<String, u32>,
    pub kgs: Vec<u8>,
}

impl RelBuild {
    pub fn intern_id(&mut self, id: u64, kg: usize) -> u32 {
        let i = match self.by_id.get(&id) {
            Some(&i) => i,
            None => {
                let i = self.ids.len() as u32;
                self.ids.push(id);
                self.names.push(id.to_string());
                self.kgs.push(0);
                self.by_id.insert(id, i);
                i
            }
        };
        self.kgs[i as usize] |= 1 << kg;
        i
    }
    pub fn intern_name(&mut self, name: &str, kg: usize) -> u32 {
        let i = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                let i = self.names.len() as u32;
                self.names.push(name.to_string());
                self.kgs.push(0);
                self.by_name.insert(name.to_string(), i);
                i
            }
        };
        self.kgs[i as usize] |= 1 << kg;
        i
    }
}

#[derive(Default)]
pub(crate) struct Build {
    pub kgs: [KgBuild; 2],
    pub rels: RelBuild,
    pub attr_vocab: Vec<String>,
    pub attr_by_name: HashMap<String, u32>,
    pub has_names: Option<String>,
    pub has_ids: bool,
    /// (local KG1, local KG2)
    pub links: Vec<(u32, u32)>,
    /// train, dev, test in local pairs, and where they came from.
    pub split: Option<(SplitPairs, String)>,
}

/// Train, dev and test pairs (local KG1, local KG2 indices).
pub type SplitPairs = [Vec<(u32, u32)>; 3];

impl Build {
    pub fn attr(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.attr_by_name.get(name) {
            return i;
        }
        let i = self.attr_vocab.len() as u32;
        self.attr_vocab.push(name.to_string());
        self.attr_by_name.insert(name.to_string(), i);
        i
    }

    pub fn finish(self, name: &str, format: Format, diag: &mut Diagnostics) -> Dataset {
        let Build { kgs, rels, attr_vocab, has_names, has_ids, links, split, .. } = self;
        let [k1, k2] = kgs;
        let n1 = k1.names.len() as u32;
        // Relation order: ascending original id for numeric relations, else first-seen.
        let nr = rels.names.len();
        let mut order: Vec<u32> = (0..nr as u32).collect();
        if rels.numeric {
            order.sort_by_key(|&i| rels.ids[i as usize]);
        }
        let mut new_of = vec![0u32; nr];
        for (new, &old) in order.iter().enumerate() {
            new_of[old as usize] = new as u32;
        }
        let relations =
            Vocab { ids: rels.numeric.then(|| order.iter().map(|&o| rels.ids[o as usize]).collect()), names: order.iter().map(|&o| rels.names[o as usize].clone()).collect() };
        let relation_kgs = order.iter().map(|&o| rels.kgs[o as usize]).collect();
        let conv = |ts: &[[u32; 3]], off: u32| -> Vec<Triple> { ts.iter().map(|&[h, r, t]| Triple { h: h + off, r: new_of[r as usize], t: t + off }).collect() };
        let triples = [conv(&k1.triples, 0), conv(&k2.triples, n1)];
        let attributes = (k1.attr_file || k2.attr_file).then(|| {
            let mut per_entity = k1.attrs.clone();
            per_entity.resize(k1.names.len(), Vec::new());
            let mut a2 = k2.attrs.clone();
            a2.resize(k2.names.len(), Vec::new());
            per_entity.extend(a2);
            Attributes { vocab: attr_vocab, per_entity, files: [k1.attr_file, k2.attr_file] }
        });
        let names = has_names.map(|source| {
            let mut per_entity = k1.tokens.clone();
            per_entity.resize(k1.names.len(), None);
            let mut t2 = k2.tokens.clone();
            t2.resize(k2.names.len(), None);
            per_entity.extend(t2);
            Names { per_entity, source }
        });
        let mut seen = std::collections::HashSet::new();
        let mut glinks = Vec::with_capacity(links.len());
        let mut dups = 0usize;
        for (a, b) in links {
            if seen.insert((a, b)) {
                glinks.push((a, b + n1));
            } else {
                dups += 1;
            }
        }
        if dups > 0 {
            diag.dataset(Severity::Warning, ProblemKind::DuplicateLink, format!("{dups} duplicate link(s) ignored"));
        }
        let split = split.map(|(parts, source)| {
            let g = |v: &Vec<(u32, u32)>| v.iter().map(|&(a, b)| (a, b + n1)).collect::<Vec<_>>();
            Split { train: g(&parts[0]), dev: g(&parts[1]), test: g(&parts[2]), source }
        });
        let num_entities = [k1.names.len(), k2.names.len()];
        let ids = has_ids.then(|| k1.ids.iter().chain(k2.ids.iter()).copied().collect());
        let mut ds = Dataset {
            name: name.to_string(),
            format,
            entities: Vocab { ids, names: k1.names.into_iter().chain(k2.names).collect() },
            num_entities,
            relations,
            relation_kgs,
            triples,
            links: glinks,
            attributes,
            names,
            split,
            report: Vec::new(),
            id_index: HashMap::new(),
            name_index: [HashMap::new(), HashMap::new()],
        };
        ds.reindex();
        ds
    }
}

/// One record (non-blank line) of a text file, with its 1-based line number.
pub(crate) struct Line<'a> {
    pub no: usize,
    pub text: &'a str,
    pub raw: &'a [u8],
}

/// Calls `f` for each non-blank line; lines that are not UTF-8 are reported and skipped. Returns the
/// number of non-blank lines seen (valid or not).
pub(crate) fn each_line<'a>(path: &str, bytes: &'a [u8], diag: &mut Diagnostics, mut f: impl FnMut(Line<'a>, &mut Diagnostics)) -> usize {
    let mut n = 0;
    for (no, raw) in files::raw_lines(bytes) {
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        n += 1;
        match std::str::from_utf8(raw) {
            Ok(text) => f(Line { no, text, raw }, diag),
            Err(_) => diag.line(Severity::Error, ProblemKind::MalformedLine, path, no, "not valid UTF-8 text", raw),
        }
    }
    n
}

/// Splits a line into exactly `N` fields (on tabs, or on any whitespace when `ws`), reporting a malformed
/// line otherwise.
pub(crate) fn fields<'a, const N: usize>(line: &Line<'a>, ws: bool, what: &str, path: &str, diag: &mut Diagnostics) -> Option<[&'a str; N]> {
    let mut out = [""; N];
    let mut n = 0;
    let mut push = |s: &'a str| {
        if n < N {
            out[n] = s;
        }
        n += 1;
    };
    if ws {
        line.text.split_whitespace().for_each(&mut push);
    } else {
        line.text.split('\t').for_each(&mut push);
    }
    if n != N || (!ws && out.iter().any(|s| s.trim().is_empty())) {
        let msg = if n < N {
            format!("expected {N} fields ({what}), found {n}: truncated line?")
        } else if n > N {
            format!("expected {N} fields ({what}), found {n}")
        } else {
            format!("empty field; expected {what}")
        };
        diag.line(Severity::Error, ProblemKind::MalformedLine, path, line.no, msg, line.raw);
        return None;
    }
    if !ws {
        for s in out.iter_mut() {
            *s = s.trim();
        }
    }
    Some(out)
}

/// Parses a non-negative integer id, reporting a malformed line otherwise.
pub(crate) fn parse_id(s: &str, what: &str, path: &str, line: &Line<'_>, diag: &mut Diagnostics) -> Option<u64> {
    match s.parse::<u64>() {
        Ok(v) => Some(v),
        Err(_) => {
            diag.line(Severity::Error, ProblemKind::MalformedLine, path, line.no, format!("{what} '{}' is not a non-negative integer id", diag::excerpt(s.as_bytes())), line.raw);
            None
        }
    }
}

/// Reads a required file, recording a problem when it is absent or unreadable.
pub(crate) fn required<'a>(src: &'a dyn FileSource, name: &str, diag: &mut Diagnostics) -> Option<files::TextFile<'a>> {
    match files::open(src, name) {
        Ok(Some(f)) => Some(f),
        Ok(None) => {
            diag.file(Severity::Error, ProblemKind::MissingFile, &src.describe(name), format!("required file {name} (or {name}.gz) is missing"));
            None
        }
        Err(e) => {
            diag.error(&e);
            None
        }
    }
}

/// Reads an optional file; unreadable is still an error.
pub(crate) fn optional<'a>(src: &'a dyn FileSource, name: &str, diag: &mut Diagnostics) -> Option<files::TextFile<'a>> {
    match files::open(src, name) {
        Ok(f) => f,
        Err(e) => {
            diag.error(&e);
            None
        }
    }
}

pub(crate) fn empty_file(path: &str, diag: &mut Diagnostics) {
    diag.file(Severity::Error, ProblemKind::EmptyFile, path, "the file has no records");
}
