//! The MCLEA/EVA/MEAformer layout (mmea-spec §1.2): `ent_ids_1/2` (`id \t uri`), `triples_1/2`
//! (`head \t rel \t tail`, numeric), `ill_ent_ids` (`id1 \t id2`), optional `rel_ids_1/2`,
//! `training_attrs_1/2` (`uri \t attr \t attr ...`), `translated_ent_name.json` (`[[id, [tokens]], ...]`)
//! and a fixed split `train_ill`/`dev_ill` (or `valid_ill`)/`test_ill`. Each file may be gzip.
//!
//! Ids are global over both KGs and not contiguous: the KG of an id is looked up, never guessed from
//! its value.

use std::collections::{HashMap, HashSet};

use super::diag::{Diagnostics, ProblemKind, Severity};
use super::files::{FileSource, MemFiles};
use super::{each_line, empty_file, fields, optional, parse_id, required, Build, Dataset, Line, LoadOptions};

/// Reads the layout into a [`Build`]; `None` when required files are missing.
pub(crate) fn read(src: &dyn FileSource, _opts: &LoadOptions, diag: &mut Diagnostics) -> Option<Build> {
    let mut b = Build { has_ids: true, ..Default::default() };
    b.rels.numeric = true;
    let req = ["ent_ids_1", "ent_ids_2", "triples_1", "triples_2", "ill_ent_ids"];
    let mut files = Vec::new();
    for name in req {
        files.push(required(src, name, diag));
    }
    if files.iter().any(|f| f.is_none()) {
        return None;
    }
    let mut files = files.into_iter().flatten();
    let (Some(e1), Some(e2), Some(t1), Some(t2), Some(ill)) = (files.next(), files.next(), files.next(), files.next(), files.next()) else {
        return None;
    };

    // Entities: id -> (kg, local).
    let mut global: HashMap<u64, (usize, u32)> = HashMap::new();
    for (k, f) in [e1, e2].iter().enumerate() {
        let kg = &mut b.kgs[k];
        let n = each_line(&f.path, &f.bytes, diag, |line, diag| {
            let Some((id_s, uri)) = split_id_rest(&line) else {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "expected `id<TAB>uri`: truncated line?", line.raw);
                return;
            };
            let Some(id) = parse_id(id_s, "entity id", &f.path, &line, diag) else { return };
            match global.get(&id) {
                Some(&(kk, _)) if kk == k => {
                    diag.line(Severity::Error, ProblemKind::DuplicateId, &f.path, line.no, format!("entity id {id} is defined twice in this file"), line.raw);
                }
                Some(_) => {
                    diag.line(
                        Severity::Error,
                        ProblemKind::IdInBothKgs,
                        &f.path,
                        line.no,
                        format!("entity id {id} is also defined in ent_ids_1: ids must be unique across both KGs"),
                        line.raw,
                    );
                }
                None => {
                    let local = kg.names.len() as u32;
                    global.insert(id, (k, local));
                    kg.ids.push(id);
                    kg.names.push(uri.to_string());
                    if let Some(&other) = kg.by_name.get(uri) {
                        diag.line(
                            Severity::Warning,
                            ProblemKind::DuplicateId,
                            &f.path,
                            line.no,
                            format!("URI also has id {}; both kept as separate entities", kg.ids[other as usize]),
                            line.raw,
                        );
                    } else {
                        kg.by_name.insert(uri.to_string(), local);
                    }
                }
            }
        });
        if n == 0 {
            empty_file(&f.path, diag);
        }
    }

    // Relation names (optional).
    let mut declared: [HashSet<u64>; 2] = [HashSet::new(), HashSet::new()];
    let mut has_rel_ids = [false; 2];
    for k in 0..2 {
        let Some(f) = optional(src, &format!("rel_ids_{}", k + 1), diag) else { continue };
        has_rel_ids[k] = true;
        let rels = &mut b.rels;
        each_line(&f.path, &f.bytes, diag, |line, diag| {
            let Some((id_s, uri)) = split_id_rest(&line) else {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "expected `id<TAB>relation uri`: truncated line?", line.raw);
                return;
            };
            let Some(id) = parse_id(id_s, "relation id", &f.path, &line, diag) else { return };
            if !declared[k].insert(id) {
                diag.line(Severity::Warning, ProblemKind::DuplicateId, &f.path, line.no, format!("relation id {id} is defined twice; the first name is kept"), line.raw);
                return;
            }
            let existed = rels.by_id.contains_key(&id);
            let i = rels.intern_id(id, k) as usize;
            if !existed {
                rels.names[i] = uri.to_string();
            } else if rels.names[i] != uri {
                diag.line(
                    Severity::Warning,
                    ProblemKind::DuplicateId,
                    &f.path,
                    line.no,
                    format!("relation id {id} is also defined in rel_ids_1 with another name; the first name is kept"),
                    line.raw,
                );
            }
        });
    }

    // Triples.
    for (k, f) in [t1, t2].iter().enumerate() {
        let mut undeclared: HashSet<u64> = HashSet::new();
        let (kgs, rels) = (&mut b.kgs, &mut b.rels);
        let n = each_line(&f.path, &f.bytes, diag, |line, diag| {
            let Some([hs, rs, ts]) = fields::<3>(&line, true, "head, relation, tail", &f.path, diag) else { return };
            let (Some(h), Some(r), Some(t)) =
                (parse_id(hs, "head id", &f.path, &line, diag), parse_id(rs, "relation id", &f.path, &line, diag), parse_id(ts, "tail id", &f.path, &line, diag))
            else {
                return;
            };
            let lh = entity_in(&global, h, k, "head", &f.path, &line, diag);
            let lt = entity_in(&global, t, k, "tail", &f.path, &line, diag);
            if has_rel_ids[k] && !declared[k].contains(&r) && undeclared.insert(r) {
                diag.line(
                    Severity::Warning,
                    ProblemKind::UnknownId,
                    &f.path,
                    line.no,
                    format!("relation id {r} is not in rel_ids_{}; it is used with its id as name", k + 1),
                    line.raw,
                );
            }
            let ri = rels.intern_id(r, k);
            if let (Some(lh), Some(lt)) = (lh, lt) {
                kgs[k].triples.push([lh, ri, lt]);
            }
        });
        if n == 0 {
            empty_file(&f.path, diag);
        }
    }

    // Links.
    b.links = read_id_pairs(&ill.path, &ill.bytes, &global, diag, true);

    // Attributes (optional), keyed by URI.
    for k in 0..2 {
        let Some(f) = optional(src, &format!("training_attrs_{}", k + 1), diag) else { continue };
        b.kgs[k].attr_file = true;
        read_attr_lines(&mut b, k, &f.path, &f.bytes, diag);
    }

    // Translated names (optional).
    if let Some(f) = optional(src, "translated_ent_name.json", diag) {
        match serde_json::from_slice::<Vec<(u64, Vec<String>)>>(&f.bytes) {
            Ok(list) => {
                let mut unknown = 0usize;
                for (id, toks) in list {
                    match global.get(&id) {
                        Some(&(k, l)) => {
                            let kg = &mut b.kgs[k];
                            if kg.tokens.len() < kg.names.len() {
                                kg.tokens.resize(kg.names.len(), None);
                            }
                            kg.tokens[l as usize] = Some(toks);
                        }
                        None => unknown += 1,
                    }
                }
                if unknown > 0 {
                    diag.file(Severity::Warning, ProblemKind::Skipped, &f.path, format!("{unknown} name(s) of unknown entity ids skipped"));
                }
                b.has_names = Some("translated_ent_name.json".into());
            }
            Err(e) => {
                diag.push(super::Problem {
                    severity: Severity::Error,
                    kind: ProblemKind::MalformedLine,
                    path: f.path.clone(),
                    line: e.line().max(1),
                    message: format!("expected a JSON list of [id, [token, ...]] pairs: {e}"),
                    text: None,
                });
            }
        }
    }

    // Fixed split (optional).
    let train = optional(src, "train_ill", diag);
    let test = optional(src, "test_ill", diag);
    let dev = optional(src, "dev_ill", diag).or_else(|| optional(src, "valid_ill", diag));
    match (train, test) {
        (Some(tr), Some(te)) => {
            let mut parts = [Vec::new(), Vec::new(), Vec::new()];
            parts[0] = read_id_pairs(&tr.path, &tr.bytes, &global, diag, false);
            if let Some(d) = &dev {
                parts[1] = read_id_pairs(&d.path, &d.bytes, &global, diag, false);
            }
            parts[2] = read_id_pairs(&te.path, &te.bytes, &global, diag, false);
            let source = if dev.is_some() { "train_ill/dev_ill/test_ill" } else { "train_ill/test_ill" };
            b.split = Some((parts, source.to_string()));
        }
        (Some(f), None) | (None, Some(f)) => {
            diag.file(Severity::Warning, ProblemKind::BadSplit, &f.path, "a fixed split needs both train_ill and test_ill; this file is ignored");
        }
        (None, None) => {}
    }
    Some(b)
}

/// `id<TAB>rest` (or `id rest` split at the first whitespace when there is no tab).
fn split_id_rest<'a>(line: &Line<'a>) -> Option<(&'a str, &'a str)> {
    let t = line.text;
    let (a, b) = t.split_once('\t').or_else(|| t.trim().split_once(char::is_whitespace))?;
    let (a, b) = (a.trim(), b.trim());
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

fn entity_in(global: &HashMap<u64, (usize, u32)>, id: u64, k: usize, role: &str, path: &str, line: &Line<'_>, diag: &mut Diagnostics) -> Option<u32> {
    match global.get(&id) {
        Some(&(kk, l)) if kk == k => Some(l),
        Some(&(kk, _)) => {
            diag.line(Severity::Error, ProblemKind::UnknownId, path, line.no, format!("{role} id {id} belongs to KG{} (ent_ids_{}), not to KG{}", kk + 1, kk + 1, k + 1), line.raw);
            None
        }
        None => {
            diag.line(Severity::Error, ProblemKind::UnknownId, path, line.no, format!("{role} id {id} is in neither ent_ids_1 nor ent_ids_2"), line.raw);
            None
        }
    }
}

/// Reads `id1 \t id2` pairs (KG1 first). Unknown or swapped ids are errors for the gold links and the
/// split files alike.
fn read_id_pairs(path: &str, bytes: &[u8], global: &HashMap<u64, (usize, u32)>, diag: &mut Diagnostics, required: bool) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let n = each_line(path, bytes, diag, |line, diag| {
        let Some([a, b]) = fields::<2>(&line, true, "KG1 id, KG2 id", path, diag) else { return };
        let (Some(a), Some(b)) = (parse_id(a, "KG1 id", path, &line, diag), parse_id(b, "KG2 id", path, &line, diag)) else { return };
        match (global.get(&a), global.get(&b)) {
            (Some(&(0, la)), Some(&(1, lb))) => out.push((la, lb)),
            (Some(&(1, _)), Some(&(0, _))) => {
                diag.line(
                    Severity::Error,
                    ProblemKind::UnknownId,
                    path,
                    line.no,
                    format!("the pair is reversed: {a} is a KG2 id and {b} a KG1 id (the KG1 id comes first)"),
                    line.raw,
                );
            }
            (ga, gb) => {
                let which = |g: Option<&(usize, u32)>, id: u64, want: usize| match g {
                    None => Some(format!("{id} is in neither entity list")),
                    Some(&(k, _)) if k != want => Some(format!("{id} is a KG{} id, expected KG{}", k + 1, want + 1)),
                    _ => None,
                };
                let msg: Vec<String> = [which(ga, a, 0), which(gb, b, 1)].into_iter().flatten().collect();
                diag.line(Severity::Error, ProblemKind::UnknownId, path, line.no, msg.join("; "), line.raw);
            }
        }
    });
    if n == 0 && required {
        empty_file(path, diag);
    }
    out
}

/// `uri \t attr \t attr ...` lines into KG `k`'s attribute lists (lines of unknown URIs are skipped, as
/// MCLEA skips them).
pub(crate) fn read_attr_lines(b: &mut Build, k: usize, path: &str, bytes: &[u8], diag: &mut Diagnostics) {
    let mut skipped = 0usize;
    let mut first_skipped = None;
    each_line(path, bytes, diag, |line, _diag| {
        let mut it = line.text.split('\t');
        let uri = it.next().unwrap_or("").trim();
        let Some(&local) = b.kgs[k].by_name.get(uri) else {
            skipped += 1;
            if first_skipped.is_none() {
                first_skipped = Some((line.no, line.raw));
            }
            return;
        };
        let ids: Vec<u32> = it.map(str::trim).filter(|a| !a.is_empty()).map(|a| b.attr(a)).collect();
        let kg = &mut b.kgs[k];
        if kg.attrs.len() < kg.names.len() {
            kg.attrs.resize(kg.names.len(), Vec::new());
        }
        kg.attrs[local as usize].extend(ids);
    });
    if let Some((no, raw)) = first_skipped {
        diag.line(
            Severity::Warning,
            ProblemKind::Skipped,
            path,
            no,
            format!("{skipped} line(s) name an entity that is not in ent_ids_{} and were skipped (first shown)", k + 1),
            raw,
        );
    }
}

/// Writes a dataset in this layout (ids: the original numeric ids, or the dense index when the dataset
/// has none). Attributes, names and the fixed split are written when present.
pub fn write(ds: &Dataset) -> MemFiles {
    let mut out = MemFiles::new(ds.name.clone());
    let eid = |i: usize| ds.entities.ids.as_ref().map(|v| v[i]).unwrap_or(i as u64);
    let rid = |r: usize| ds.relations.ids.as_ref().map(|v| v[r]).unwrap_or(r as u64);
    for k in 0..2 {
        let mut s = String::new();
        for i in ds.kg_range(k) {
            s.push_str(&format!("{}\t{}\n", eid(i), ds.entities.names[i]));
        }
        out.insert(format!("ent_ids_{}", k + 1), s.into_bytes());
        let mut s = String::new();
        for t in &ds.triples[k] {
            s.push_str(&format!("{}\t{}\t{}\n", eid(t.h as usize), rid(t.r as usize), eid(t.t as usize)));
        }
        out.insert(format!("triples_{}", k + 1), s.into_bytes());
        let mut s = String::new();
        for (r, name) in ds.relations.names.iter().enumerate() {
            if ds.relation_kgs[r] & (1 << k) != 0 {
                s.push_str(&format!("{}\t{}\n", rid(r), name));
            }
        }
        out.insert(format!("rel_ids_{}", k + 1), s.into_bytes());
        if let Some(a) = &ds.attributes {
            if a.files[k] {
                let mut s = String::new();
                for i in ds.kg_range(k) {
                    if !a.per_entity[i].is_empty() {
                        s.push_str(&ds.entities.names[i]);
                        for &x in &a.per_entity[i] {
                            s.push('\t');
                            s.push_str(&a.vocab[x as usize]);
                        }
                        s.push('\n');
                    }
                }
                out.insert(format!("training_attrs_{}", k + 1), s.into_bytes());
            }
        }
    }
    let pairs = |v: &[(u32, u32)]| v.iter().map(|&(a, b)| format!("{}\t{}\n", eid(a as usize), eid(b as usize))).collect::<String>();
    out.insert("ill_ent_ids", pairs(&ds.links).into_bytes());
    if let Some(n) = &ds.names {
        let list: Vec<(u64, &Vec<String>)> = n.per_entity.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (eid(i), t))).collect();
        out.insert("translated_ent_name.json", serde_json::to_vec(&list).unwrap_or_default());
    }
    if let Some(sp) = &ds.split {
        out.insert("train_ill", pairs(&sp.train).into_bytes());
        out.insert("test_ill", pairs(&sp.test).into_bytes());
        if !sp.dev.is_empty() {
            out.insert("dev_ill", pairs(&sp.dev).into_bytes());
        }
    }
    out
}
