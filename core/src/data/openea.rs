//! The OpenEA layout: `rel_triples_1/2` (`head_uri \t relation_uri \t tail_uri`), optional
//! `attr_triples_1/2` (`entity_uri \t attribute_uri \t value`), `ent_links` (`uri1 \t uri2`) and
//! `721_5fold/<k>/{train,valid,test}_links`. There are no numeric ids: entities are numbered per KG in
//! first-seen order (relation triples, then attribute triples, then links); relations in first-seen order.

use super::diag::{Diagnostics, ProblemKind, Severity};
use super::files::{FileSource, MemFiles};
use super::{each_line, empty_file, fields, optional, required, Build, Dataset, LoadOptions};

pub(crate) fn read(src: &dyn FileSource, opts: &LoadOptions, diag: &mut Diagnostics) -> Option<Build> {
    let mut b = Build::default();
    let req = ["rel_triples_1", "rel_triples_2", "ent_links"];
    let files: Vec<_> = req.iter().map(|n| required(src, n, diag)).collect();
    if files.iter().any(|f| f.is_none()) {
        return None;
    }
    let mut files = files.into_iter().flatten();
    let (Some(r1), Some(r2), Some(links)) = (files.next(), files.next(), files.next()) else { return None };

    for (k, f) in [r1, r2].iter().enumerate() {
        let (kgs, rels) = (&mut b.kgs, &mut b.rels);
        let n = each_line(&f.path, &f.bytes, diag, |line, diag| {
            let Some([h, r, t]) = fields::<3>(&line, false, "head, relation, tail", &f.path, diag) else { return };
            let kg = &mut kgs[k];
            let lh = kg.intern(h);
            let lt = kg.intern(t);
            let ri = rels.intern_name(r, k);
            kg.triples.push([lh, ri, lt]);
        });
        if n == 0 {
            empty_file(&f.path, diag);
        }
    }
    for k in 0..2 {
        let Some(f) = optional(src, &format!("attr_triples_{}", k + 1), diag) else { continue };
        b.kgs[k].attr_file = true;
        each_line(&f.path, &f.bytes, diag, |line, diag| {
            let mut it = line.text.splitn(3, '\t');
            let (Some(e), Some(a)) = (it.next().map(str::trim), it.next().map(str::trim)) else {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "expected `entity<TAB>attribute<TAB>value`: truncated line?", line.raw);
                return;
            };
            if e.is_empty() || a.is_empty() {
                diag.line(Severity::Error, ProblemKind::MalformedLine, &f.path, line.no, "empty entity or attribute", line.raw);
                return;
            }
            let ai = b.attr(a);
            let kg = &mut b.kgs[k];
            let l = kg.intern(e) as usize;
            if kg.attrs.len() <= l {
                kg.attrs.resize(l + 1, Vec::new());
            }
            kg.attrs[l].push(ai);
        });
    }
    let n = each_line(&links.path, &links.bytes, diag, |line, diag| {
        let Some([a, c]) = fields::<2>(&line, false, "KG1 uri, KG2 uri", &links.path, diag) else { return };
        let la = b.kgs[0].intern(a);
        let lc = b.kgs[1].intern(c);
        b.links.push((la, lc));
    });
    if n == 0 {
        empty_file(&links.path, diag);
    }

    let fold = format!("721_5fold/{}", opts.openea_fold);
    let train = optional(src, &format!("{fold}/train_links"), diag);
    let valid = optional(src, &format!("{fold}/valid_links"), diag);
    let test = optional(src, &format!("{fold}/test_links"), diag);
    if let (Some(tr), Some(te)) = (&train, &test) {
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        parts[0] = read_uri_pairs(&mut b, &tr.path, &tr.bytes, diag);
        if let Some(v) = &valid {
            parts[1] = read_uri_pairs(&mut b, &v.path, &v.bytes, diag);
        }
        parts[2] = read_uri_pairs(&mut b, &te.path, &te.bytes, diag);
        b.split = Some((parts, fold));
    } else if let Some(f) = train.as_ref().or(test.as_ref()) {
        diag.file(Severity::Warning, ProblemKind::BadSplit, &f.path, "a fold needs both train_links and test_links; ignored");
    }
    Some(b)
}

/// Split pairs must name entities already known (from triples or links).
fn read_uri_pairs(b: &mut Build, path: &str, bytes: &[u8], diag: &mut Diagnostics) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    each_line(path, bytes, diag, |line, diag| {
        let Some([a, c]) = fields::<2>(&line, false, "KG1 uri, KG2 uri", path, diag) else { return };
        match (b.kgs[0].by_name.get(a), b.kgs[1].by_name.get(c)) {
            (Some(&la), Some(&lc)) => out.push((la, lc)),
            (ga, gc) => {
                let mut m = Vec::new();
                if ga.is_none() {
                    m.push(format!("'{a}' is not a KG1 entity"));
                }
                if gc.is_none() {
                    m.push(format!("'{c}' is not a KG2 entity"));
                }
                diag.line(Severity::Error, ProblemKind::UnknownId, path, line.no, m.join("; "), line.raw);
            }
        }
    });
    out
}

/// Writes a dataset in this layout (URIs are the entity names). Attribute values are not kept by the
/// reader, so attribute triples are written with an empty value.
pub fn write(ds: &Dataset) -> MemFiles {
    let mut out = MemFiles::new(ds.name.clone());
    let name = |i: u32| ds.entities.names[i as usize].as_str();
    for k in 0..2 {
        let mut s = String::new();
        for t in &ds.triples[k] {
            s.push_str(&format!("{}\t{}\t{}\n", name(t.h), ds.relations.names[t.r as usize], name(t.t)));
        }
        out.insert(format!("rel_triples_{}", k + 1), s.into_bytes());
        if let Some(a) = &ds.attributes {
            if a.files[k] {
                let mut s = String::new();
                for i in ds.kg_range(k) {
                    for &x in &a.per_entity[i] {
                        s.push_str(&format!("{}\t{}\t\n", ds.entities.names[i], a.vocab[x as usize]));
                    }
                }
                out.insert(format!("attr_triples_{}", k + 1), s.into_bytes());
            }
        }
    }
    let pairs = |v: &[(u32, u32)]| v.iter().map(|&(a, b)| format!("{}\t{}\n", name(a), name(b))).collect::<String>();
    out.insert("ent_links", pairs(&ds.links).into_bytes());
    if let Some(sp) = &ds.split {
        out.insert("721_5fold/1/train_links", pairs(&sp.train).into_bytes());
        out.insert("721_5fold/1/valid_links", pairs(&sp.dev).into_bytes());
        out.insert("721_5fold/1/test_links", pairs(&sp.test).into_bytes());
    }
    out
}
