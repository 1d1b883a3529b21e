//! `mmea data check`: counts per KG, then every problem found; usable or not.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use super::diag::{Diagnostics, ProblemKind, Severity};
use super::files::{DirFiles, FileSource};
use super::modality::{coverage, IdSource, RawFeatures};
use super::{load_lenient, Dataset, Format, LoadOptions};

/// Counts for one KG.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KgCounts {
    pub entities: usize,
    /// Relations declared (`rel_ids_N`) or used by this KG's triples.
    pub relations: usize,
    pub triples: usize,
    /// Distinct attribute names; `None` when the KG has no attribute file.
    pub attribute_names: Option<usize>,
    pub with_attributes: Option<usize>,
    /// Entities with a loaded name; `None` when no name file was given.
    pub with_names: Option<usize>,
    /// Entities with an image feature; `None` when no image file was given.
    pub with_images: Option<usize>,
    /// Entities in no triple.
    pub without_triple: usize,
}

/// A feature file to check against the dataset (e.g. images).
#[derive(Clone, Debug)]
pub struct ModalityInput {
    pub modality: String,
    pub path: String,
    pub bytes: Vec<u8>,
    /// An id list file (path, bytes); `None`: ids are in the feature file.
    pub ids: Option<(String, Vec<u8>)>,
}

impl ModalityInput {
    /// Reads the files from disk.
    pub fn from_paths(modality: &str, matrix: &Path, ids: Option<&Path>) -> crate::Result<Self> {
        let rd = |p: &Path| std::fs::read(p).map_err(|e| super::files::io_err(p, e));
        Ok(ModalityInput {
            modality: modality.to_string(),
            path: matrix.display().to_string(),
            bytes: rd(matrix)?,
            ids: match ids {
                Some(p) => Some((p.display().to_string(), rd(p)?)),
                None => None,
            },
        })
    }
}

/// The result of a check.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub path: String,
    pub format: Option<Format>,
    pub kgs: Option<[KgCounts; 2]>,
    pub links: usize,
    /// (train, dev, test, source) of a fixed split that came with the data.
    pub split: Option<(usize, usize, usize, String)>,
    pub names_source: Option<String>,
    pub diag: Diagnostics,
}

impl CheckReport {
    /// Usable: the dataset loaded and no problem is an error.
    pub fn usable(&self) -> bool {
        self.kgs.is_some() && !self.diag.has_errors()
    }

    /// The first error as `path:line: message`, for a one-line verdict.
    pub fn first_error_text(&self) -> String {
        self.diag.first_error().map(|p| p.to_error().to_string()).unwrap_or_else(|| "the dataset could not be read".into())
    }

    /// The report as text: counts, then problems grouped by kind with up to `max_examples` each
    /// (0 = all kept), then the verdict.
    pub fn render(&self, max_examples: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "dataset: {}", self.path);
        if let Some(f) = self.format {
            let _ = writeln!(s, "format:  {}", f.name());
        }
        if let Some(k) = &self.kgs {
            let _ = writeln!(s, "\n{:<28}{:>12}{:>12}", "", "KG1", "KG2");
            let row = |s: &mut String, label: &str, a: String, b: String, note: &str| {
                let _ = writeln!(s, "{label:<28}{a:>12}{b:>12}{}", if note.is_empty() { String::new() } else { format!("   {note}") });
            };
            let opt = |v: Option<usize>| v.map(thousands).unwrap_or_else(|| "absent".into());
            row(&mut s, "entities", thousands(k[0].entities), thousands(k[1].entities), "");
            row(&mut s, "relations", thousands(k[0].relations), thousands(k[1].relations), "");
            row(&mut s, "triples", thousands(k[0].triples), thousands(k[1].triples), "");
            row(&mut s, "entities with no triple", thousands(k[0].without_triple), thousands(k[1].without_triple), "");
            row(&mut s, "attribute names", opt(k[0].attribute_names), opt(k[1].attribute_names), "");
            row(&mut s, "entities with attributes", opt(k[0].with_attributes), opt(k[1].with_attributes), "");
            let names_note = match &self.names_source {
                Some(src) => format!("from {src}"),
                None => "absent (char-bigram features would use the URIs)".into(),
            };
            row(&mut s, "entities with names", opt(k[0].with_names), opt(k[1].with_names), &names_note);
            let img_note = if k[0].with_images.is_none() { "no image feature file given (--images)" } else { "" };
            row(&mut s, "entities with images", opt(k[0].with_images), opt(k[1].with_images), img_note);
            let _ = writeln!(s, "{:<28}{:>12}", "links", thousands(self.links));
            let mut lacking = Vec::new();
            if k[0].with_images.is_none() && k[1].with_images.is_none() {
                lacking.push(("image", "missing_images"));
            }
            if k[0].attribute_names.is_none() && k[1].attribute_names.is_none() {
                lacking.push(("attribute", "missing_attributes"));
            }
            for (m, key) in lacking {
                let _ = writeln!(
                    s,
                    "{:<28}{:>12}   a run applies `modalities.{key}`: absent (left out; clean default), zero-input (zero rows of the released width; reference default) or learned-constant",
                    format!("{m} modality"),
                    "lacking"
                );
            }
            match &self.split {
                Some((a, b, c, src)) => {
                    let _ = writeln!(s, "{:<28}{:>12}   train {} / dev {} / test {} ({src})", "fixed split", thousands(a + b + c), thousands(*a), thousands(*b), thousands(*c));
                }
                None => {
                    let _ = writeln!(s, "{:<28}{:>12}   (a seeded split is made when training)", "fixed split", "none");
                }
            }
        }
        let counts = self.diag.counts();
        if counts.is_empty() {
            let _ = writeln!(s, "\nproblems: none");
        } else {
            let errors: usize = counts.iter().filter(|((sv, _), _)| *sv == Severity::Error).map(|(_, c)| c).sum();
            let warnings: usize = counts.iter().filter(|((sv, _), _)| *sv == Severity::Warning).map(|(_, c)| c).sum();
            let _ = writeln!(s, "\nproblems: {} error(s), {} warning(s)", thousands(errors), thousands(warnings));
            for (&(sev, kind), &c) in counts.iter().rev() {
                let sv = if sev == Severity::Error { "error" } else { "warning" };
                let _ = writeln!(s, "  {sv}: {} ({})", kind.label(), thousands(c));
                let examples: Vec<_> = self.diag.problems().iter().filter(|p| p.severity == sev && p.kind == kind).collect();
                let shown = if max_examples == 0 { examples.len() } else { examples.len().min(max_examples) };
                for p in &examples[..shown] {
                    let mut line = String::new();
                    match (p.path.is_empty(), p.line) {
                        (true, _) => {}
                        (false, 0) => line.push_str(&format!("{}: ", p.path)),
                        (false, l) => line.push_str(&format!("{}:{}: ", p.path, l)),
                    }
                    line.push_str(&p.message);
                    if let Some(t) = &p.text {
                        line.push_str(&format!("  | {t}"));
                    }
                    let _ = writeln!(s, "    {line}");
                }
                if c > shown {
                    let _ = writeln!(s, "    ... and {} more{}", thousands(c - shown), if shown < examples.len() { " (--max-examples 0 lists all)" } else { "" });
                }
            }
        }
        if self.usable() {
            let _ = writeln!(s, "\nresult: usable{}", if self.diag.counts().is_empty() { "" } else { " (with warnings)" });
        } else {
            let _ = writeln!(s, "\nresult: NOT usable: {}", self.first_error_text());
        }
        s
    }
}

/// 19388 → "19,388".
pub fn thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks a dataset in `src`, plus feature files for extra modalities.
pub fn check(src: &dyn FileSource, opts: &LoadOptions, modalities: &[ModalityInput]) -> CheckReport {
    let (ds, mut diag) = load_lenient(src, opts);
    let mut report = CheckReport { path: src.describe(""), format: None, kgs: None, links: 0, split: None, names_source: None, diag: Diagnostics::new() };
    if let Some(ds) = &ds {
        report.format = Some(ds.format);
        let mut kgs = kg_counts(ds);
        report.links = ds.links.len();
        report.split = ds.split.as_ref().map(|s| (s.train.len(), s.dev.len(), s.test.len(), s.source.clone()));
        report.names_source = ds.names.as_ref().map(|n| n.source.clone());
        for m in modalities {
            let ids = m.ids.as_ref().map(|(p, b)| IdSource::List { path: p, bytes: b }).unwrap_or(IdSource::InFile);
            match RawFeatures::from_bytes(&m.path, &m.bytes, ids) {
                Ok(raw) => {
                    let (cov, unknown) = coverage(ds, &raw);
                    if m.modality == "images" {
                        kgs[0].with_images = Some(cov[0]);
                        kgs[1].with_images = Some(cov[1]);
                    }
                    if unknown > 0 {
                        diag.file(Severity::Warning, ProblemKind::UnknownId, &m.path, format!("{unknown} of {} rows have ids that are not entities of the dataset", raw.rows()));
                    }
                    if cov[0] + cov[1] == 0 {
                        diag.file(Severity::Error, ProblemKind::UnknownId, &m.path, "no row matches an entity of the dataset (ids are the dataset's original ids or URIs)");
                    }
                    modality_share(ds, &m.modality, cov, "their rows will be filled by the chosen fill policy", &mut diag);
                }
                Err(e) => diag.error(&e),
            }
        }
        report.kgs = Some(kgs);
    }
    report.diag = diag;
    report
}

/// Checks a directory.
pub fn check_dir(dir: &Path, modalities: &[ModalityInput]) -> CheckReport {
    let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let src = DirFiles::new(dir);
    let mut r = if dir.is_dir() {
        check(&src, &LoadOptions { name, ..Default::default() }, modalities)
    } else {
        let mut d = Diagnostics::new();
        d.file(Severity::Error, ProblemKind::MissingFile, &dir.display().to_string(), "not a directory");
        CheckReport { path: String::new(), format: None, kgs: None, links: 0, split: None, names_source: None, diag: d }
    };
    r.path = dir.display().to_string();
    r
}

fn kg_counts(ds: &Dataset) -> [KgCounts; 2] {
    let mut in_triple = vec![false; ds.entities.len()];
    for t in ds.all_triples() {
        in_triple[t.h as usize] = true;
        in_triple[t.t as usize] = true;
    }
    let mut out: [KgCounts; 2] = Default::default();
    for (k, c) in out.iter_mut().enumerate() {
        let range = ds.kg_range(k);
        c.entities = range.len();
        c.relations = ds.relation_kgs.iter().filter(|&&m| m & (1 << k) != 0).count();
        c.triples = ds.triples[k].len();
        c.without_triple = range.clone().filter(|&i| !in_triple[i]).count();
        if let Some(a) = &ds.attributes {
            if a.files[k] {
                let mut names = HashSet::new();
                let mut with = 0;
                for i in range.clone() {
                    if !a.per_entity[i].is_empty() {
                        with += 1;
                        names.extend(a.per_entity[i].iter().copied());
                    }
                }
                c.attribute_names = Some(names.len());
                c.with_attributes = Some(with);
            }
        }
        if let Some(n) = &ds.names {
            c.with_names = Some(range.filter(|&i| n.per_entity[i].is_some()).count());
        }
    }
    out
}

fn modality_share(ds: &Dataset, modality: &str, with: [usize; 2], consequence: &str, diag: &mut Diagnostics) {
    for (k, (&n, &have)) in ds.num_entities.iter().zip(with.iter()).enumerate() {
        if have < n {
            let miss = n - have;
            diag.dataset(
                Severity::Warning,
                ProblemKind::ModalityMissing,
                format!("{modality}: {} of {} KG{} entities ({:.1}%) have none; {consequence}", thousands(miss), thousands(n), k + 1, 100.0 * miss as f64 / n.max(1) as f64),
            );
        }
    }
}

/// Dataset-level checks run by every load: duplicate triples, links that are not one-to-one, entities
/// with no triple, modalities missing for part of the entities, the fixed split.
pub(crate) fn dataset_checks(ds: &Dataset, diag: &mut Diagnostics) {
    let show = |i: u32| {
        let e = ds.external(i);
        let n = &ds.entities.names[i as usize];
        if &e == n {
            e
        } else {
            format!("{e} ({n})")
        }
    };
    for k in 0..2 {
        let mut seen = HashSet::with_capacity(ds.triples[k].len());
        let mut dups = 0usize;
        let mut first = None;
        for t in &ds.triples[k] {
            if !seen.insert(*t) {
                dups += 1;
                first.get_or_insert(*t);
            }
        }
        if let Some(t) = first {
            diag.dataset(
                Severity::Warning,
                ProblemKind::DuplicateTriple,
                format!("KG{}: {dups} duplicate triple(s), kept as in the reference readers (first: {} {} {})", k + 1, show(t.h), ds.relations.external(t.r as usize), show(t.t)),
            );
        }
    }
    let mut deg: [HashMap<u32, usize>; 2] = [HashMap::new(), HashMap::new()];
    for &(a, b) in &ds.links {
        *deg[0].entry(a).or_insert(0) += 1;
        *deg[1].entry(b).or_insert(0) += 1;
    }
    for (k, deg_k) in deg.iter().enumerate() {
        let mut multi: Vec<(u32, usize)> = deg_k.iter().filter(|(_, &c)| c > 1).map(|(&e, &c)| (e, c)).collect();
        multi.sort_unstable();
        for &(e, c) in multi.iter() {
            diag.dataset(Severity::Warning, ProblemKind::LinkNotOneToOne, format!("KG{} entity {} is in {c} links", k + 1, show(e)));
        }
    }
    let mut in_triple = vec![false; ds.entities.len()];
    for t in ds.all_triples() {
        in_triple[t.h as usize] = true;
        in_triple[t.t as usize] = true;
    }
    for k in 0..2 {
        let isolated: Vec<usize> = ds.kg_range(k).filter(|&i| !in_triple[i]).collect();
        for &i in &isolated {
            diag.dataset(Severity::Warning, ProblemKind::EntityWithoutTriple, format!("KG{} entity {} is in no triple", k + 1, show(i as u32)));
        }
    }
    if let Some(n) = &ds.names {
        let with = [ds.kg_range(0).filter(|&i| n.per_entity[i].is_some()).count(), ds.kg_range(1).filter(|&i| n.per_entity[i].is_some()).count()];
        modality_share(ds, "names", with, "their name features fall back to the URI", diag);
    }
    if let Some(a) = &ds.attributes {
        let mut with = [0usize; 2];
        for (k, w) in with.iter_mut().enumerate() {
            *w = if a.files[k] {
                ds.kg_range(k).filter(|&i| !a.per_entity[i].is_empty()).count()
            } else {
                diag.dataset(Severity::Warning, ProblemKind::ModalityMissing, format!("attributes: KG{} has no attribute file; all its entities lack attributes", k + 1));
                ds.num_entities[k]
            };
        }
        modality_share(ds, "attributes", with, "their bag-of-attributes rows are zero", diag);
    }
    if ds.links.is_empty() {
        diag.dataset(Severity::Error, ProblemKind::EmptyFile, "no gold links were read: nothing to train or evaluate on");
    }
    if let Some(sp) = &ds.split {
        sp.check_into(ds, diag);
    }
}
