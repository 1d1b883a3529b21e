//! mmea's own TSV format for people's own KGs (documented in `docs/data.md`). UTF-8, tab separated, no
//! header, one record per line; blank lines are ignored; any file may be gzip.
//!
//! | file | columns | |
//! |---|---|---|
//! | `entities_1.tsv`, `entities_2.tsv` | `key` or `key \t name` | optional: when present, the complete entity list of that KG (other files may only use these keys); the name (words) is the surface-name modality |
//! | `triples_1.tsv`, `triples_2.tsv` | `head \t relation \t tail` (keys and relation names) | required |
//! | `links.tsv` | `key1 \t key2` (KG1 key first) | required: the gold alignment |
//! | `attributes_1.tsv`, `attributes_2.tsv` | `key \t attribute` or `key \t attribute \t value` | optional; values are ignored |
//! | `split.tsv` | `train\|dev\|test \t key1 \t key2` | optional: a fixed split (what [`Split::to_tsv`] writes) |
//!
//! Without `entities_N.tsv`, entities are numbered in first-seen order over `triples_N.tsv` (head before
//! tail), then `attributes_N.tsv`, then `links.tsv`.

use super::diag::{Diagnostics, ProblemKind, Severity};
use super::files::{FileSource, MemFiles};
use super::split::Split;
use super::{each_line, empty_file, fields, optional, required, Build, Dataset, LoadOptions};

// The loops over the two KGs index several per-KG arrays (`closed`, `b.kgs`) by k, inside closures too.
#[allow(clippy::needless_range_loop)]
pub(crate) fn read(src: &dyn FileSource, _opts: &LoadOptions, diag: &mut Diagnostics) -> Option<Build> {
    let mut b = Build::default();
    let req = ["triples_1.tsv", "triples_2.tsv", "links.tsv"];
    let files: Vec<_> = req.iter().map(|n| required(src, n, diag)).collect();
    if files.iter().any(|f| f.is_none()) {
        return None;
    }
    let mut files = files.into_iter().flatten();
    let (Some(t1), Some(t2), Some(links)) = (files.next(), files.next(), files.next()) else { return None };

    let mut closed = [false; 2];
    for k in 0..2 {
        let Some(f) = optional(src, &format!("entities_{}.tsv", k + 1), diag) else { continue };
        closed[k] = true;
        let kg = &mut b.kgs[k];
        let mut any_name = false;
        each_line(&f.path, &f.bytes, diag, |line, diag| {
            let (key, name) = match line.text.split_once('\t') {
                Some((a, n)) => (a.trim(), Some(n.trim())),
                None => (line.text.trim(), None),
            };
            if key.is_empty() {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "empty entity key", line.raw);
                return;
            }
            if kg.by_name.contains_key(key) {
                diag.line(Severity::Error, ProblemKind::DuplicateId, &f.path, line.no, format!("entity '{key}' is listed twice"), line.raw);
                return;
            }
            let l = kg.intern(key) as usize;
            if let Some(n) = name.filter(|n| !n.is_empty()) {
                any_name = true;
                kg.tokens.resize(l + 1, None);
                kg.tokens[l] = Some(n.split_whitespace().map(str::to_string).collect());
            }
        });
        if any_name {
            b.has_names = Some("entities_N.tsv name column".into());
        }
    }

    for (k, f) in [t1, t2].iter().enumerate() {
        let (kgs, rels) = (&mut b.kgs, &mut b.rels);
        let n = each_line(&f.path, &f.bytes, diag, |line, diag| {
            let Some([h, r, t]) = fields::<3>(&line, false, "head, relation, tail", &f.path, diag) else { return };
            let kg = &mut kgs[k];
            let (lh, lt) = if closed[k] {
                let lh = lookup(kg, h, k, &f.path, &line, diag);
                let lt = lookup(kg, t, k, &f.path, &line, diag);
                match (lh, lt) {
                    (Some(a), Some(c)) => (a, c),
                    _ => return,
                }
            } else {
                (kg.intern(h), kg.intern(t))
            };
            let ri = rels.intern_name(r, k);
            kg.triples.push([lh, ri, lt]);
        });
        if n == 0 {
            empty_file(&f.path, diag);
        }
    }

    for k in 0..2 {
        let Some(f) = optional(src, &format!("attributes_{}.tsv", k + 1), diag) else { continue };
        b.kgs[k].attr_file = true;
        let mut skipped = 0usize;
        each_line(&f.path, &f.bytes, diag, |line, diag| {
            let mut it = line.text.splitn(3, '\t');
            let (Some(e), Some(a)) = (it.next().map(str::trim), it.next().map(str::trim)) else {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "expected `entity<TAB>attribute[<TAB>value]`", line.raw);
                return;
            };
            if e.is_empty() || a.is_empty() {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "empty entity or attribute", line.raw);
                return;
            }
            let l = if closed[k] {
                match b.kgs[k].by_name.get(e) {
                    Some(&l) => l as usize,
                    None => {
                        skipped += 1;
                        return;
                    }
                }
            } else {
                b.kgs[k].intern(e) as usize
            };
            let ai = b.attr(a);
            let kg = &mut b.kgs[k];
            if kg.attrs.len() <= l {
                kg.attrs.resize(l + 1, Vec::new());
            }
            kg.attrs[l].push(ai);
        });
        if skipped > 0 {
            diag.file(Severity::Warning, ProblemKind::Skipped, &f.path, format!("{skipped} line(s) of entities not in entities_{}.tsv skipped", k + 1));
        }
    }

    let n = each_line(&links.path, &links.bytes, diag, |line, diag| {
        let Some([a, c]) = fields::<2>(&line, false, "KG1 key, KG2 key", &links.path, diag) else { return };
        let la = if closed[0] { lookup(&b.kgs[0], a, 0, &links.path, &line, diag) } else { Some(b.kgs[0].intern(a)) };
        let lc = if closed[1] { lookup(&b.kgs[1], c, 1, &links.path, &line, diag) } else { Some(b.kgs[1].intern(c)) };
        if let (Some(la), Some(lc)) = (la, lc) {
            b.links.push((la, lc));
        }
    });
    if n == 0 {
        empty_file(&links.path, diag);
    }

    if let Some(f) = optional(src, "split.tsv", diag) {
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        each_line(&f.path, &f.bytes, diag, |line, diag| {
            let Some([part, a, c]) = fields::<3>(&line, false, "train|dev|test, KG1 key, KG2 key", &f.path, diag) else { return };
            let Some(p) = Split::part_index(part) else {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, format!("unknown split part '{part}' (train, dev or test)"), line.raw);
                return;
            };
            let la = lookup(&b.kgs[0], a, 0, &f.path, &line, diag);
            let lc = lookup(&b.kgs[1], c, 1, &f.path, &line, diag);
            if let (Some(la), Some(lc)) = (la, lc) {
                parts[p].push((la, lc));
            }
        });
        b.split = Some((parts, "split.tsv".into()));
    }
    Some(b)
}

fn lookup(kg: &super::KgBuild, key: &str, k: usize, path: &str, line: &super::Line<'_>, diag: &mut Diagnostics) -> Option<u32> {
    let l = kg.by_name.get(key).copied();
    if l.is_none() {
        diag.line(Severity::Error, ProblemKind::UnknownId, path, line.no, format!("'{key}' is not a KG{} entity", k + 1), line.raw);
    }
    l
}

/// Writes a dataset in this format, with `entities_N.tsv` (and the name column when names exist).
pub fn write(ds: &Dataset) -> MemFiles {
    let mut out = MemFiles::new(ds.name.clone());
    let name = |i: u32| ds.entities.names[i as usize].as_str();
    for k in 0..2 {
        let mut s = String::new();
        for i in ds.kg_range(k) {
            s.push_str(&ds.entities.names[i]);
            if let Some(Some(t)) = ds.names.as_ref().map(|n| &n.per_entity[i]) {
                if !t.is_empty() {
                    s.push('\t');
                    s.push_str(&t.join(" "));
                }
            }
            s.push('\n');
        }
        out.insert(format!("entities_{}.tsv", k + 1), s.into_bytes());
        let mut s = String::new();
        for t in &ds.triples[k] {
            s.push_str(&format!("{}\t{}\t{}\n", name(t.h), ds.relations.names[t.r as usize], name(t.t)));
        }
        out.insert(format!("triples_{}.tsv", k + 1), s.into_bytes());
        if let Some(a) = &ds.attributes {
            if a.files[k] {
                let mut s = String::new();
                for i in ds.kg_range(k) {
                    for &x in &a.per_entity[i] {
                        s.push_str(&format!("{}\t{}\n", ds.entities.names[i], a.vocab[x as usize]));
                    }
                }
                out.insert(format!("attributes_{}.tsv", k + 1), s.into_bytes());
            }
        }
    }
    let links: String = ds.links.iter().map(|&(a, b)| format!("{}\t{}\n", name(a), name(b))).collect();
    out.insert("links.tsv", links.into_bytes());
    if let Some(sp) = &ds.split {
        let mut s = String::new();
        for (p, v) in [("train", &sp.train), ("dev", &sp.dev), ("test", &sp.test)] {
            for &(a, b) in v.iter() {
                s.push_str(&format!("{p}\t{}\t{}\n", name(a), name(b)));
            }
        }
        out.insert("split.tsv", s.into_bytes());
    }
    out
}
