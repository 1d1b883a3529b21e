//! The data layer: the bundled datasets in the repository's data/ folder, round
//! trips of every format, the OpenEA fixture, malformed inputs, features and structures on a tiny
//! hand-computed graph, splits, fill policies, and random bytes through every parser.

use std::path::PathBuf;

use mmea_core::data::{
    self, bag_of_attributes, bag_of_relations, bag_of_relations_directed, char_bigrams,
    files::{gzip, MemFiles},
    mclea, npy, openea, tsv, Dataset, FillPolicy, Format, IdSource, LoadOptions, NeighbourCsr, ProblemKind, RawFeatures, RelGraphLists, Split, Triple,
};
use mmea_core::Error;

// ----------------------------------------------------------------------------------------------------
// helpers

/// The repository's bundled datasets (data/dbp15k/*, data/fb237_db15k): always present in a clone.
fn bundled_data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data");
    assert!(p.join("dbp15k/zh_en").is_dir(), "{} lacks the bundled datasets", p.display());
    Some(p)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load_mem(m: &MemFiles) -> mmea_core::Result<Dataset> {
    data::load(m, &LoadOptions::default())
}

/// A small valid MCLEA dataset with non-contiguous, interleaved global ids.
fn small_mclea() -> MemFiles {
    let mut m = MemFiles::new("mem");
    m.insert("ent_ids_1", b"10\thttp://zh/a\n3\thttp://zh/b\n25\thttp://zh/c\n".to_vec());
    m.insert("ent_ids_2", b"4\thttp://en/A\n11\thttp://en/B\n2\thttp://en/C\n".to_vec());
    m.insert("triples_1", b"10\t7\t3\n3\t7\t25\n10\t8\t25\n".to_vec());
    m.insert("triples_2", b"4\t1\t11\n11\t1\t2\n".to_vec());
    m.insert("ill_ent_ids", b"10\t4\n3\t11\n25\t2\n".to_vec());
    m
}

fn expect_parse(e: Error, file_ends: &str, line: usize, needle: &str) {
    match e {
        Error::Parse { path, line: l, detail } => {
            assert!(path.ends_with(file_ends), "path {path} should end with {file_ends}");
            assert_eq!(l, line, "line number ({detail})");
            assert!(detail.contains(needle), "detail '{detail}' should contain '{needle}'");
        }
        other => panic!("expected a Parse error, got {other:?}"),
    }
}

fn expect_format(e: Error, needle: &str) {
    match e {
        Error::Format { detail, .. } => assert!(detail.contains(needle), "detail '{detail}' should contain '{needle}'"),
        other => panic!("expected a Format error, got {other:?}"),
    }
}

/// The parts of a dataset that a round trip must preserve.
fn same_structure(a: &Dataset, b: &Dataset) {
    assert_eq!(a.num_entities, b.num_entities);
    assert_eq!(a.entities.names, b.entities.names);
    assert_eq!(a.relations.names, b.relations.names);
    assert_eq!(a.triples, b.triples);
    assert_eq!(a.links, b.links);
    assert_eq!(a.attributes, b.attributes);
    assert_eq!(a.names.as_ref().map(|n| &n.per_entity), b.names.as_ref().map(|n| &n.per_entity));
    assert_eq!(a.split.as_ref().map(|s| (&s.train, &s.dev, &s.test)), b.split.as_ref().map(|s| (&s.train, &s.dev, &s.test)));
}

/// Entities a,b,c (KG1: 0,1,2), x,y (KG2: 3,4); relations r0,r1,r2.
/// KG1: (a,r0,b) (a,r1,b) (b,r0,c); KG2: (x,r2,y) (y,r2,x).
fn tiny() -> Dataset {
    let t = |h, r, t| Triple { h, r, t };
    Dataset::from_parts(
        "tiny",
        [vec!["a".into(), "b".into(), "c".into()], vec!["x".into(), "y".into()]],
        None,
        vec!["r0".into(), "r1".into(), "r2".into()],
        [vec![t(0, 0, 1), t(0, 1, 1), t(1, 0, 2)], vec![t(3, 2, 4), t(4, 2, 3)]],
        vec![(0, 3), (1, 4)],
    )
    .expect("tiny dataset")
}

// ----------------------------------------------------------------------------------------------------
// real datasets

struct Expect {
    dir: &'static str,
    ents: [usize; 2],
    rels: [usize; 2],
    triples: [usize; 2],
    links: usize,
    names: Option<usize>,
}

fn check_real(e: Expect) {
    let Some(root) = bundled_data() else { return };
    let ds = data::load_dir(root.join(e.dir)).unwrap_or_else(|err| panic!("{}: {err}", e.dir));
    assert_eq!(ds.format, Format::Mclea);
    assert_eq!(ds.num_entities, e.ents, "{}: entities", e.dir);
    assert_eq!([ds.triples[0].len(), ds.triples[1].len()], e.triples, "{}: triples", e.dir);
    assert_eq!(ds.links.len(), e.links, "{}: links", e.dir);
    let rels = [0, 1].map(|k| ds.relation_kgs.iter().filter(|&&m| m & (1 << k) != 0).count());
    assert_eq!(rels, e.rels, "{}: relations", e.dir);
    assert_eq!(ds.names.as_ref().map(|n| n.per_entity.iter().filter(|t| t.is_some()).count()), e.names, "{}: names", e.dir);
    // Ids are global and interleaved: every triple stays inside its KG's dense range.
    for k in 0..2 {
        let r = ds.kg_range(k);
        assert!(ds.triples[k].iter().all(|t| r.contains(&(t.h as usize)) && r.contains(&(t.t as usize))));
    }
    // Original ids survive: the dense KG2 block maps back to ids of ent_ids_2.
    let ids = ds.entities.ids.as_ref().expect("MCLEA keeps numeric ids");
    assert_eq!(ids.len(), e.ents[0] + e.ents[1]);
    for &(a, b) in ds.links.iter().take(5) {
        assert_eq!(ds.resolve(0, &ds.external(a)), Some(a));
        assert_eq!(ds.resolve(1, &ds.external(b)), Some(b));
    }
}

#[test]
fn real_dbp15k_zh_en_counts() {
    check_real(Expect { dir: "dbp15k/zh_en", ents: [19_388, 19_572], rels: [1_701, 1_323], triples: [70_414, 95_142], links: 15_000, names: Some(38_960) });
}

#[test]
fn real_dbp15k_ja_en_counts() {
    check_real(Expect { dir: "dbp15k/ja_en", ents: [19_814, 19_780], rels: [1_299, 1_153], triples: [77_214, 93_484], links: 15_000, names: Some(39_594) });
}

#[test]
fn real_dbp15k_fr_en_counts() {
    check_real(Expect { dir: "dbp15k/fr_en", ents: [19_661, 19_993], rels: [903, 1_208], triples: [105_998, 115_722], links: 15_000, names: Some(39_654) });
}

#[test]
fn real_fb237_db15k_counts() {
    check_real(Expect { dir: "fb237_db15k", ents: [14_541, 12_842], rels: [237, 279], triples: [310_116, 89_197], links: 12_658, names: None });
    let Some(root) = bundled_data() else { return };
    let ds = data::load_dir(root.join("fb237_db15k")).expect("load");
    let a = ds.attributes.as_ref().expect("training_attrs_1");
    assert_eq!(a.files, [true, false]);
    let with1 = ds.kg_range(0).filter(|&i| !a.per_entity[i].is_empty()).count();
    assert_eq!(with1, 12_402);
    // 4 DB15K entities occur in two links each: reported, not fatal.
    let multi = ds.report.iter().filter(|p| p.kind == ProblemKind::LinkNotOneToOne).count();
    assert_eq!(multi, 4);
    let f = bag_of_attributes(&ds, 1000, false).expect("attributes");
    assert!(f.cols > 0 && f.cols <= 1000);
}

#[test]
fn check_zh_en_reports_counts_and_absent_modalities() {
    let Some(root) = bundled_data() else { return };
    let r = data::check_dir(&root.join("dbp15k/zh_en"), &[]);
    let text = r.render(5);
    assert!(r.usable(), "{text}");
    for needle in ["19,388", "19,572", "70,414", "95,142", "15,000"] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    let line = |label: &str| text.lines().find(|l| l.starts_with(label)).unwrap_or_default().to_string();
    assert!(line("entities with attributes").contains("absent"), "{text}");
    assert!(line("entities with images").contains("absent"), "{text}");
}

// ----------------------------------------------------------------------------------------------------
// the demo

#[test]
fn demo_loads_without_files() {
    let ds = data::demo().expect("demo");
    assert_eq!(ds.num_entities, [1000, 1000]);
    assert_eq!([ds.triples[0].len(), ds.triples[1].len()], [3325, 5185]);
    assert_eq!(ds.links.len(), 1000);
    let rels = [0, 1].map(|k| ds.relation_kgs.iter().filter(|&&m| m & (1 << k) != 0).count());
    assert_eq!(rels, [129, 167]);
    let sp = ds.split.as_ref().expect("fixed split");
    assert_eq!((sp.train.len(), sp.dev.len(), sp.test.len()), (300, 0, 700));
    let isolated: Vec<usize> =
        (0..2).map(|k| ds.report.iter().filter(|p| p.kind == ProblemKind::EntityWithoutTriple && p.message.starts_with(&format!("KG{} ", k + 1))).count()).collect();
    assert_eq!(isolated, vec![66, 13]);
    assert!(ds.attributes.is_none() && ds.names.is_none());
    assert!(data::DEMO_MODALITIES.contains("no images"));
    // KG2 ids were shuffled: the gold pairs are not (i, 1000 + i).
    assert!(ds.links.iter().filter(|&&(a, b)| ds.external(b) == (1000 + a).to_string()).count() < 50);
}

// ----------------------------------------------------------------------------------------------------
// round trips

#[test]
fn mclea_round_trip_plain_and_gzip() {
    let mut ds = data::demo().expect("demo");
    ds.names = Some(data::Names { per_entity: (0..2000).map(|i| (i % 3 != 0).then(|| vec![format!("tok{i}"), "x".into()])).collect(), source: "t".into() });
    let files = mclea::write(&ds);
    let back = load_mem(&files).expect("reload");
    same_structure(&ds, &back);
    assert_eq!(back.entities.ids, ds.entities.ids);
    assert_eq!(back.relations.ids, ds.relations.ids);
    // Every file gzip'd, half of them keeping their plain name: detected by magic bytes.
    let mut gz = MemFiles::new("gz");
    for (i, (name, bytes)) in files.files.iter().enumerate() {
        let name = if i % 2 == 0 { format!("{name}.gz") } else { name.clone() };
        gz.insert(name, gzip(bytes));
    }
    let back = load_mem(&gz).expect("reload gz");
    same_structure(&ds, &back);
}

#[test]
fn mclea_small_interleaved_ids() {
    let ds = load_mem(&small_mclea()).expect("load");
    assert_eq!(ds.num_entities, [3, 3]);
    // Dense: KG1 in file order (10, 3, 25) then KG2 (4, 11, 2).
    assert_eq!(ds.entities.ids.as_deref(), Some(&[10, 3, 25, 4, 11, 2][..]));
    // Relations by ascending original id: 1, 7, 8.
    assert_eq!(ds.relations.ids.as_deref(), Some(&[1, 7, 8][..]));
    assert_eq!(ds.triples[0][0], Triple { h: 0, r: 1, t: 1 });
    assert_eq!(ds.triples[1][1], Triple { h: 4, r: 0, t: 5 });
    assert_eq!(ds.links, vec![(0, 3), (1, 4), (2, 5)]);
    assert_eq!(ds.resolve(1, "2"), Some(5));
    assert_eq!(ds.resolve(0, "2"), None, "id 2 is a KG2 id");
}

#[test]
fn openea_fixture_loads() {
    let ds = data::load_dir(fixture("openea_tiny")).expect("openea fixture");
    assert_eq!(ds.format, Format::OpenEa);
    assert_eq!(ds.num_entities, [4, 4]);
    assert_eq!(ds.entities.names[..4], ["http://a/e1", "http://a/e2", "http://a/e3", "http://a/e4"]);
    assert_eq!(ds.entities.names[4..], ["http://b/x1", "http://b/x2", "http://b/x3", "http://b/x4"]);
    assert_eq!(ds.relations.names, ["http://a/r1", "http://a/r2", "http://b/p1"]);
    assert_eq!(ds.triples[0], vec![Triple { h: 0, r: 0, t: 1 }, Triple { h: 1, r: 1, t: 2 }, Triple { h: 0, r: 0, t: 2 }]);
    assert_eq!(ds.triples[1], vec![Triple { h: 4, r: 2, t: 5 }, Triple { h: 6, r: 2, t: 5 }]);
    assert_eq!(ds.links, vec![(0, 4), (1, 5), (2, 6), (3, 7)]);
    let a = ds.attributes.as_ref().expect("attributes");
    assert_eq!(a.vocab, ["http://a/name", "http://a/age", "http://b/label"]);
    assert_eq!(a.per_entity[0], vec![0]);
    assert_eq!(a.per_entity[3], vec![1]);
    assert_eq!(a.per_entity[4], vec![2]);
    let sp = ds.split.as_ref().expect("fold 1");
    assert_eq!((sp.train.clone(), sp.dev.clone(), sp.test.clone()), (vec![(0, 4), (1, 5)], vec![(2, 6)], vec![(3, 7)]));
    // e4 (attributes only) and x4 (links only) are in no triple: warned, not fatal.
    assert_eq!(ds.report.iter().filter(|p| p.kind == ProblemKind::EntityWithoutTriple).count(), 2);
    let back = load_mem(&openea::write(&ds)).expect("reload");
    same_structure(&ds, &back);
}

#[test]
fn tsv_round_trip_and_hand_written() {
    let ds = data::demo().expect("demo");
    let back = load_mem(&tsv::write(&ds)).expect("reload");
    assert_eq!(back.format, Format::Tsv);
    same_structure(&ds, &back);
    let ds = data::load_dir(fixture("openea_tiny")).expect("fixture");
    let back = load_mem(&tsv::write(&ds)).expect("reload");
    same_structure(&ds, &back);

    let mut m = MemFiles::new("own");
    m.insert("triples_1.tsv", b"Paris\tcapital_of\tFrance\nLyon\tin\tFrance\n".to_vec());
    m.insert("triples_2.tsv", b"Parigi\tcapitale\tFrancia\n".to_vec());
    m.insert("links.tsv", b"Paris\tParigi\nFrance\tFrancia\n".to_vec());
    m.insert("attributes_2.tsv", b"Parigi\tpopolazione\t2100000\n".to_vec());
    let ds = load_mem(&m).expect("own format");
    assert_eq!(ds.num_entities, [3, 2]);
    // KG1: Paris 0, France 1, Lyon 2 (first seen, head before tail); KG2: Parigi 3, Francia 4.
    assert_eq!(ds.links, vec![(0, 3), (1, 4)]);
    assert_eq!(ds.attributes.as_ref().map(|a| a.files), Some([false, true]));
}

#[test]
fn split_round_trips_and_reads_other_tools_files() {
    let ds = data::demo().expect("demo");
    let sp = Split::seeded(&ds.links, 0.3, 0.1, 7).expect("split");
    let back = Split::from_tsv(&ds, "split.tsv", sp.to_tsv(&ds).as_bytes()).expect("reload");
    assert_eq!((&back.train, &back.dev, &back.test), (&sp.train, &sp.dev, &sp.test));
    // The demo's own files, read as another tool's split.
    let files = data::demo_files();
    let s2 = Split::from_pair_files(&ds, ("train_ill", files.get("train_ill").unwrap()), None, ("test_ill", files.get("test_ill").unwrap())).expect("pairs");
    let fixed = ds.split.as_ref().unwrap();
    assert_eq!((&s2.train, &s2.test), (&fixed.train, &fixed.test));
    // A split with a pair twice is refused.
    let mut bad = sp.clone();
    bad.test.push(bad.train[0]);
    assert!(bad.validate(&ds).is_err());
}

#[test]
fn npy_and_safetensors_round_trip() {
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
    let bytes = npy::write_f32_2d(3, 4, &data);
    assert_eq!(npy::read_f32_2d("a.npy", &bytes).unwrap(), (3, 4, data.clone()));
    assert_eq!(npy::read_ids("i.npy", &npy::write_ids(&[5, 0, 77])).unwrap(), vec![5, 0, 77]);
    // With an id list.
    let with_col: Vec<f32> = vec![2.0, 1.0, 0.0, 4.0, 0.0, 1.0];
    let raw = RawFeatures::from_bytes("f.npy", &npy::write_f32_2d(2, 3, &with_col), IdSource::List { path: "ids.txt", bytes: b"c\ny\n" }).unwrap();
    assert_eq!(raw.ids, ["c", "y"]);
    assert_eq!(raw.dim, 3);
    // safetensors written by the crate, read back by ours.
    let feat: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let ids: Vec<u8> = [10i64, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("features".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], &feat).unwrap()),
        ("ids".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![3], &ids).unwrap()),
    ];
    let st = safetensors::serialize(tensors, None).unwrap();
    let raw = RawFeatures::from_bytes("f.safetensors", &st, IdSource::InFile).unwrap();
    assert_eq!(raw.ids, ["10", "3", "4"]);
    assert_eq!(raw.data, data);
    let ds = load_mem(&small_mclea()).unwrap();
    let m = data::attach(&ds, &raw, "images", FillPolicy::Zero, 0, false).unwrap();
    assert_eq!(m.has_feature, vec![true, true, false, true, false, false]);
    assert_eq!(&m.data[4..8], &data[4..8], "id 3 is dense entity 1");
    assert_eq!(m.report.filled_zero, 3);
}

// ----------------------------------------------------------------------------------------------------
// malformed inputs: each a specific error, never a panic

#[test]
fn malformed_truncated_line() {
    let mut m = small_mclea();
    m.insert("triples_1", b"10\t7\t3\n3\t7\n".to_vec());
    expect_parse(load_mem(&m).unwrap_err(), "triples_1", 2, "truncated");
}

#[test]
fn malformed_non_numeric_id() {
    let mut m = small_mclea();
    m.insert("ent_ids_2", b"4\thttp://en/A\nB11\thttp://en/B\n".to_vec());
    expect_parse(load_mem(&m).unwrap_err(), "ent_ids_2", 2, "not a non-negative integer");
}

#[test]
fn malformed_unknown_ids() {
    let mut m = small_mclea();
    m.insert("triples_2", b"4\t1\t11\n11\t1\t999\n".to_vec());
    expect_parse(load_mem(&m).unwrap_err(), "triples_2", 2, "999 is in neither");
    let mut m = small_mclea();
    m.insert("triples_2", b"4\t1\t10\n".to_vec());
    expect_parse(load_mem(&m).unwrap_err(), "triples_2", 1, "belongs to KG1");
    let mut m = small_mclea();
    m.insert("ill_ent_ids", b"10\t4\n11\t3\n".to_vec());
    expect_parse(load_mem(&m).unwrap_err(), "ill_ent_ids", 2, "reversed");
    let mut m = small_mclea();
    m.insert("ent_ids_2", b"4\thttp://en/A\n10\thttp://en/B\n".to_vec());
    expect_parse(load_mem(&m).unwrap_err(), "ent_ids_2", 2, "also defined in ent_ids_1");
}

#[test]
fn malformed_empty_and_missing_files() {
    let mut m = small_mclea();
    m.insert("triples_1", Vec::new());
    expect_format(load_mem(&m).unwrap_err(), "no records");
    let mut m = small_mclea();
    m.insert("ill_ent_ids", b"\n\n".to_vec());
    expect_format(load_mem(&m).unwrap_err(), "no records");
    let mut m = small_mclea();
    m.remove("triples_2");
    expect_format(load_mem(&m).unwrap_err(), "required file triples_2");
    expect_format(load_mem(&MemFiles::new("x")).unwrap_err(), "no dataset found");
}

#[test]
fn malformed_binary_garbage() {
    let mut m = small_mclea();
    m.insert("triples_1", vec![0xff, 0xfe, 0x00, 0x12, b'\n', 0x80, 0x81]);
    expect_parse(load_mem(&m).unwrap_err(), "triples_1", 1, "UTF-8");
}

#[test]
fn malformed_gz_that_is_not_gzip() {
    let mut m = small_mclea();
    let plain = m.remove("triples_1").unwrap();
    m.insert("triples_1.gz", plain);
    expect_format(load_mem(&m).unwrap_err(), "not gzip");
    let mut m = small_mclea();
    let mut bad = gzip(b"10\t7\t3\n");
    bad.truncate(bad.len() - 6);
    bad[12] ^= 0xff;
    m.insert("triples_1", bad);
    expect_format(load_mem(&m).unwrap_err(), "gzip");
}

#[test]
fn malformed_npy() {
    let f64_bytes: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let wrong_dtype = npy::write(npy::NpyDtype::F64, &[1, 2], &f64_bytes);
    expect_format(npy::read_f32_2d("w.npy", &wrong_dtype).unwrap_err(), "<f8");
    let one_d = npy::write(npy::NpyDtype::F32, &[4], &[0u8; 16]);
    expect_format(npy::read_f32_2d("w.npy", &one_d).unwrap_err(), "2-D");
    let mut truncated = npy::write_f32_2d(2, 2, &[1.0, 2.0, 3.0, 4.0]);
    truncated.pop();
    expect_format(npy::read_f32_2d("w.npy", &truncated).unwrap_err(), "needs 16 data bytes");
    let mut fortran = npy::write_f32_2d(1, 1, &[1.0]);
    let pos = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran[pos..pos + 5].copy_from_slice(b"True ");
    expect_format(npy::read_f32_2d("w.npy", &fortran).unwrap_err(), "Fortran");
    expect_format(npy::read_f32_2d("w.npy", b"PK\x03\x04 not npy").unwrap_err(), "not a .npy");
    let ds = tiny();
    // Ids that match nothing: an error, not a matrix of fills.
    let raw = RawFeatures::from_bytes("f.npy", &npy::write_f32_2d(1, 2, &[1.0, 1.0]), IdSource::List { path: "ids", bytes: b"nobody\n" }).unwrap();
    expect_format(data::attach(&ds, &raw, "images", FillPolicy::Zero, 0, true).unwrap_err(), "none of its 1 row ids");
    // Row count and id count disagree.
    expect_format(RawFeatures::from_bytes("f.npy", &npy::write_f32_2d(2, 2, &[0.0; 4]), IdSource::List { path: "ids", bytes: b"a\n" }).unwrap_err(), "1 ids for 2 feature rows");
}

#[test]
fn check_names_file_and_line_of_a_corrupted_dir() {
    let dir = std::env::temp_dir().join(format!("mmea-data-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut m = small_mclea();
    m.insert("triples_2", b"4\t1\t11\n11\t1\n".to_vec());
    m.write_to_dir(&dir).unwrap();
    let r = data::check_dir(&dir, &[]);
    assert!(!r.usable());
    let text = r.render(10);
    assert!(text.contains("triples_2:2:"), "{text}");
    assert!(text.contains("NOT usable"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ----------------------------------------------------------------------------------------------------
// features and structures on the tiny graph (hand-computed)

#[test]
fn bag_of_relations_tiny() {
    let ds = tiny();
    // counts: r0 = 2 (first at triple 0), r1 = 1 (triple 1), r2 = 2 (triple 3): top-2 = [r0, r2].
    let f = bag_of_relations(&ds, 2, true);
    assert_eq!(f.columns, ["r0", "r2"]);
    #[rustfmt::skip]
    let want = vec![
        1.0, 0.0, // a: head of (a,r0,b)
        2.0, 0.0, // b: tail of (a,r0,b), head of (b,r0,c)
        1.0, 0.0, // c
        0.0, 2.0, // x: head of (x,r2,y), tail of (y,r2,x)
        0.0, 2.0, // y
    ];
    assert_eq!(f.data, want);
    // Top-4 padded: r1 third, a zero fourth column.
    let f = bag_of_relations(&ds, 4, true);
    assert_eq!(f.cols, 4);
    assert_eq!(f.columns, ["r0", "r2", "r1", ""]);
    assert_eq!(f.row(0), &[1.0, 0.0, 1.0, 0.0]);
    assert_eq!(f.row(1), &[2.0, 0.0, 1.0, 0.0]);
    assert_eq!(bag_of_relations(&ds, 4, false).cols, 3);
}

#[test]
fn directed_bag_of_relations_tiny() {
    let ds = tiny();
    // The same top-2 relations [r0, r2], each as head then as tail.
    let f = bag_of_relations_directed(&ds, 2, true);
    assert_eq!(f.columns, ["r0 (head)", "r0 (tail)", "r2 (head)", "r2 (tail)"]);
    #[rustfmt::skip]
    let want = vec![
        1.0, 0.0, 0.0, 0.0, // a: head of (a,r0,b)
        1.0, 1.0, 0.0, 0.0, // b: tail of (a,r0,b), head of (b,r0,c)
        0.0, 1.0, 0.0, 0.0, // c: tail of (b,r0,c)
        0.0, 0.0, 1.0, 1.0, // x: head of (x,r2,y), tail of (y,r2,x)
        0.0, 0.0, 1.0, 1.0, // y
    ];
    assert_eq!(f.data, want);
    // Padded to top-4: 8 columns; (a,r1,b) puts a in r1's head column and b in its tail column.
    let f = bag_of_relations_directed(&ds, 4, true);
    assert_eq!((f.cols, &f.columns[4..]), (8, &["r1 (head)".to_string(), "r1 (tail)".into(), "".into(), "".into()][..]));
    assert_eq!((f.row(0)[4], f.row(0)[5], f.row(1)[4], f.row(1)[5]), (1.0, 0.0, 0.0, 1.0));
    assert_eq!(bag_of_relations_directed(&ds, 4, false).cols, 6);
    // Folding each head/tail pair gives the undirected bag.
    let u = bag_of_relations(&ds, 4, true);
    let folded: Vec<f32> = f.data.chunks(2).map(|p| p[0] + p[1]).collect();
    assert_eq!(folded, u.data);
}

#[test]
fn bag_of_attributes_and_bigrams_tiny() {
    let ds = data::load_dir(fixture("openea_tiny")).unwrap();
    let f = bag_of_attributes(&ds, 2, true).unwrap();
    // Each attribute occurs once: ties in first-seen order (name, age).
    assert_eq!(f.columns, ["http://a/name", "http://a/age"]);
    assert_eq!(f.row(0), &[1.0, 0.0]);
    assert_eq!(f.row(3), &[0.0, 1.0]);
    assert_eq!(f.row(4), &[0.0, 0.0], "label is not in the top 2");
    assert!(bag_of_attributes(&tiny(), 10, true).is_none());
    // Bigrams from URIs: "e1" -> {e1}; "x4" -> {x4}; each row L2 = 1.
    let (m, zero) = char_bigrams(&ds, 100);
    assert_eq!(zero, 0);
    assert_eq!(m.cols, 8);
    for i in 0..8 {
        let n: f32 = m.row(i).iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-6);
    }
}

#[test]
fn relation_edge_list_tiny() {
    let g = RelGraphLists::build(&tiny());
    // R = 3, R' = 4: forward ids r+1 = 1,2,3; reverse r+1+4 = 5,6,7.
    assert_eq!(g.num_rel, 8);
    assert_eq!(g.edges, vec![(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]);
    assert_eq!(
        g.mixing,
        vec![
            vec![(1, 0.5), (2, 0.5)], // (a,b): r0, r1
            vec![(5, 0.5), (6, 0.5)], // (b,a): reverse r0, r1
            vec![(1, 1.0)],           // (b,c): r0
            vec![(5, 1.0)],           // (c,b): reverse r0
            vec![(3, 0.5), (7, 0.5)], // (x,y): r2 and reverse of (y,r2,x)
            vec![(3, 0.5), (7, 0.5)], // (y,x)
        ]
    );
    assert_eq!(g.head_offsets(), vec![0, 1, 3, 4, 5, 6]);
    let (off, idx) = g.by_tail();
    assert_eq!(off, vec![0, 1, 3, 4, 5, 6]);
    assert_eq!(idx, vec![1, 0, 3, 2, 5, 4]);
    let (roff, items) = g.mixing_by_relation();
    assert_eq!(roff.len(), 9);
    assert_eq!(&items[roff[1] as usize..roff[2] as usize], &[(0, 0.5), (2, 1.0)]);
    // A duplicate triple counts twice on its pair: weights 2/3 and 1/3.
    let t = |h, r, t| Triple { h, r, t };
    let g = RelGraphLists::from_triples(3, 3, &[t(0, 0, 1), t(0, 1, 1), t(0, 0, 1)]);
    assert_eq!(g.mixing[0], vec![(1, 2.0 / 3.0), (2, 1.0 / 3.0)]);
}

#[test]
fn neighbour_csr_tiny() {
    let n = NeighbourCsr::build(&tiny());
    assert_eq!(n.offsets, vec![0, 2, 5, 7, 9, 11]);
    assert_eq!(n.cols, vec![0, 1, 0, 1, 2, 1, 2, 3, 4, 3, 4]);
    assert_eq!(n.row(1), &[0, 1, 2]);
    let w = n.mean_weights();
    assert!((w[2] - 1.0 / 3.0).abs() < 1e-7);
    // Isolated node: only its self loop.
    let n = NeighbourCsr::from_triples(2, &[]);
    assert_eq!((n.offsets, n.cols), (vec![0, 1, 2], vec![0, 1]));
}

#[test]
fn build_features_on_demo() {
    let ds = data::demo().unwrap();
    let f = data::build_features(&ds, &data::FeatureOptions { char_bigrams: true, ..Default::default() });
    assert_eq!((f.relations.rows, f.relations.cols), (2000, 1000));
    assert!(f.attributes.is_none());
    assert!(f.char_bigrams.is_some());
    assert_eq!(f.rel_graph.num_rel, 2 * (296 + 1));
    // Every (h, t) of a triple and its reverse is an edge.
    for t in ds.all_triples() {
        assert!(f.rel_graph.edges.binary_search(&(t.h, t.t)).is_ok());
        assert!(f.rel_graph.edges.binary_search(&(t.t, t.h)).is_ok());
    }
    for m in &f.rel_graph.mixing {
        let s: f32 = m.iter().map(|x| x.1).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}

// ----------------------------------------------------------------------------------------------------
// splits and fill policies

#[test]
fn seeded_split_is_deterministic_with_dev_from_train() {
    let links: Vec<(u32, u32)> = (0..100).map(|i| (i, 100 + i)).collect();
    let a = Split::seeded(&links, 0.3, 0.1, 42).unwrap();
    let b = Split::seeded(&links, 0.3, 0.1, 42).unwrap();
    let c = Split::seeded(&links, 0.3, 0.1, 43).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.train, c.train);
    assert_eq!((a.train.len(), a.dev.len(), a.test.len()), (27, 3, 70));
    let mut all: Vec<_> = a.train.iter().chain(&a.dev).chain(&a.test).copied().collect();
    all.sort();
    assert_eq!(all, links);
    assert!(Split::seeded(&links, 1.5, 0.1, 0).is_err());
}

#[test]
fn carve_dev_moves_a_seeded_tenth_of_train_and_keeps_an_existing_dev() {
    let train: Vec<(u32, u32)> = (0..30).map(|i| (i, 100 + i)).collect();
    let fixed = Split { train: train.clone(), dev: vec![], test: vec![(50, 150)], source: "train_ill/test_ill".into() };
    let (mut a, mut b, mut c) = (fixed.clone(), fixed.clone(), fixed.clone());
    a.carve_dev(0.1, 7);
    b.carve_dev(0.1, 7);
    c.carve_dev(0.1, 8);
    assert_eq!(a, b);
    assert_ne!(a.dev, c.dev);
    assert_eq!((a.train.len(), a.dev.len(), &a.test), (27, 3, &fixed.test));
    let mut all: Vec<_> = a.train.iter().chain(&a.dev).copied().collect();
    all.sort();
    assert_eq!(all, train);
    assert!(a.source.contains("dev: 3 pairs"));
    // A split that has a dev part, or a zero fraction, is left alone.
    let before = a.clone();
    a.carve_dev(0.5, 1);
    assert_eq!(a, before);
    let mut z = fixed.clone();
    z.carve_dev(0.0, 1);
    assert_eq!(z, fixed);
}

#[test]
fn fill_policies() {
    let ds = tiny();
    let raw = RawFeatures { path: "f".into(), ids: vec!["a".into(), "c".into()], dim: 2, data: vec![1.0, 0.0, 0.0, 1.0] };
    let m = data::attach(&ds, &raw, "images", FillPolicy::NeighbourMean, 5, false).unwrap();
    // b's neighbours with repeats: a (twice: r0 and r1), c: mean = (2*[1,0] + [0,1]) / 3.
    assert!((m.data[2] - 2.0 / 3.0).abs() < 1e-6 && (m.data[3] - 1.0 / 3.0).abs() < 1e-6);
    // x and y have no neighbour with a feature: one shared draw.
    assert_eq!(m.data[6..8], m.data[8..10]);
    assert_eq!((m.report.filled_neighbour_mean, m.report.filled_shared_gaussian), (1, 2));
    assert!(m.report.to_string().contains("neighbour-mean"));
    let g1 = data::attach(&ds, &raw, "images", FillPolicy::Gaussian, 9, true).unwrap();
    let g2 = data::attach(&ds, &raw, "images", FillPolicy::Gaussian, 9, true).unwrap();
    assert_eq!(g1.data, g2.data, "seeded");
    assert_ne!(g1.data[6..8], g1.data[8..10], "independent draws");
    assert_eq!(g1.report.filled_gaussian, 3);
    for row in g1.data.chunks(2) {
        assert!(((row[0] * row[0] + row[1] * row[1]) - 1.0).abs() < 1e-5);
    }
    let z = data::attach(&ds, &raw, "images", FillPolicy::Zero, 0, true).unwrap();
    assert_eq!(z.data[2..4], [0.0, 0.0]);
    assert_eq!(z.report.filled_zero, 3);
    assert_eq!("neighbour-mean".parse::<FillPolicy>().unwrap(), FillPolicy::NeighbourMean);
    assert!("median".parse::<FillPolicy>().is_err());
}

// ----------------------------------------------------------------------------------------------------
// random bytes never panic the parsers

mod fuzzish {
    use super::*;
    use proptest::prelude::*;

    fn all_parsers(bytes: &[u8]) {
        for name in ["ent_ids_1", "triples_1", "ill_ent_ids", "rel_ids_2", "training_attrs_1", "translated_ent_name.json", "train_ill"] {
            let mut m = small_mclea();
            m.insert(name, bytes.to_vec());
            let _ = data::load(&m, &LoadOptions::default());
            let _ = data::check(&m, &LoadOptions::default(), &[]);
        }
        let mut m = MemFiles::new("o");
        m.insert("rel_triples_1", bytes.to_vec());
        m.insert("rel_triples_2", b"a\tb\tc\n".to_vec());
        m.insert("ent_links", bytes.to_vec());
        let _ = data::load(&m, &LoadOptions::default());
        let mut m = MemFiles::new("t");
        m.insert("triples_1.tsv", bytes.to_vec());
        m.insert("triples_2.tsv", b"a\tb\tc\n".to_vec());
        m.insert("links.tsv", b"x\ta\n".to_vec());
        m.insert("split.tsv", bytes.to_vec());
        let _ = data::load(&m, &LoadOptions::default());
        let _ = npy::read_f32_2d("f", bytes);
        let _ = npy::read_ids("f", bytes);
        let _ = RawFeatures::from_bytes("f", bytes, IdSource::InFile);
        let ds = tiny();
        let _ = Split::from_tsv(&ds, "s", bytes);
        let _ = data::split::read_pairs(&ds, "s", bytes);
        let _ = data::files::decode("x.gz", bytes.into());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            all_parsers(&bytes);
        }

        #[test]
        fn random_text_lines_never_panic(lines in proptest::collection::vec("[0-9a-z\\t \\-]{0,12}", 0..12)) {
            all_parsers(lines.join("\n").as_bytes());
        }

        #[test]
        fn npy_headers_never_panic(shape in proptest::collection::vec(0usize..5, 0..4), cut in 0usize..80, flip in 0usize..80) {
            let n: usize = shape.iter().product();
            let mut b = npy::write(npy::NpyDtype::F32, &shape, &vec![0u8; n * 4]);
            if flip < b.len() { b[flip] ^= 0x5a; }
            b.truncate(b.len().saturating_sub(cut));
            let _ = npy::read_f32_2d("f", &b);
            let _ = npy::read_ids("f", &b);
        }
    }
}

#[test]
fn relation_columns_follow_the_modality_choice() {
    use mmea_core::model::{checkpoint::build_inputs, ModalityChoice};
    let ds = data::demo().expect("demo");
    let nr = ds.relations.len();
    let cols = |choice: ModalityChoice| build_inputs(&mmea_core::Device::Cpu, &ds, &choice, None).unwrap().1.relations.cols;
    let default = ModalityChoice::default();
    assert_eq!((default.rel_columns, default.rel_directed), (1000, false), "the reference codes' bag");
    assert_eq!(cols(default.clone()), 1000);
    assert_eq!(cols(ModalityChoice { rel_columns: 0, ..default.clone() }), nr, "0 = one column per relation");
    assert_eq!(cols(ModalityChoice { rel_columns: 0, rel_directed: true, ..default.clone() }), 2 * nr);
    assert_eq!(cols(ModalityChoice { rel_columns: 10, rel_directed: true, ..default.clone() }), 20);
    // Run specs written before these fields existed read as the reference bag.
    let old: ModalityChoice = serde_json::from_str(r#"{"images":true,"relations":true,"attributes":true,"names":false}"#).unwrap();
    assert_eq!(old, default);
}

/// Sorted per-entity degrees of one side of a dataset.
fn degrees(ds: &Dataset, k: usize) -> Vec<usize> {
    let base = if k == 0 { 0 } else { ds.num_entities[0] };
    let mut d = vec![0usize; ds.num_entities[k]];
    for t in &ds.triples[k] {
        d[t.h as usize - base] += 1;
        d[t.t as usize - base] += 1;
    }
    d.sort_unstable();
    d
}

#[test]
fn synthetic_pair_has_dbp15k_like_structure_and_is_deterministic() {
    use mmea_core::data::synthetic::synthetic_pair;
    let n = 19_500;
    let ds = synthetic_pair(n, 7).expect("generate");
    assert_eq!(ds.num_entities, [n, n]);
    assert_eq!(ds.links.len(), (n as f64 * 0.77).round() as usize);
    // Links are one-to-one.
    let mut l: Vec<u32> = ds.links.iter().map(|p| p.0).collect();
    let mut r: Vec<u32> = ds.links.iter().map(|p| p.1).collect();
    l.sort_unstable();
    l.dedup();
    r.sort_unstable();
    r.dedup();
    assert_eq!((l.len(), r.len()), (ds.links.len(), ds.links.len()));
    // Degrees in DBP15K zh-en's range (zh: median 5, p90 13, p99 44, mean 7.3; en: 7, 18, 63, 9.7).
    for k in 0..2 {
        let d = degrees(&ds, k);
        let q = |p: f64| d[(p * (d.len() - 1) as f64) as usize];
        let mean = 2.0 * ds.triples[k].len() as f64 / n as f64;
        assert!(d[0] >= 1, "KG{}: an isolated entity", k + 1);
        assert!((4..=7).contains(&q(0.5)), "KG{} median degree {}", k + 1, q(0.5));
        assert!((11..=19).contains(&q(0.9)), "KG{} p90 degree {}", k + 1, q(0.9));
        assert!((40..=80).contains(&q(0.99)), "KG{} p99 degree {}", k + 1, q(0.99));
        assert!((7.0..=10.0).contains(&mean), "KG{} mean degree {mean}", k + 1);
        assert!(*d.last().unwrap() > 300, "KG{}: no heavy tail", k + 1);
    }
    // Every relation is used, by one side only; the pair is the same for the same seed, not for another.
    assert!(ds.relation_kgs.iter().all(|&b| b == 1 || b == 2));
    assert!(ds.relations.len() > 1000, "{} relations", ds.relations.len());
    let again = synthetic_pair(n, 7).expect("generate");
    assert_eq!((&again.triples, &again.links), (&ds.triples, &ds.links));
    let other = synthetic_pair(n, 8).expect("generate");
    assert_ne!(other.triples, ds.triples);
    // It loads back through the TSV reader unchanged.
    let back = load_mem(&tsv::write(&ds)).expect("reload");
    same_structure(&ds, &back);
    // Edges grow linearly: 5x the entities, about 5x the triples.
    let big = synthetic_pair(5 * n, 7).expect("generate");
    let ratio = big.triples[0].len() as f64 / ds.triples[0].len() as f64;
    assert!((4.5..5.5).contains(&ratio), "triples grew {ratio}x for 5x the entities");
    assert!(synthetic_pair(50, 1).is_err());
}
