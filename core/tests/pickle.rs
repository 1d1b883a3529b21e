//! The restricted pickle reader (`data::pickle`) on the fixtures of `scripts/make-pickle-fixtures.py`:
//! image-feature dicts as EVA/MCLEA/MEAformer distribute them (protocols 2–5, Python 2 and 3, numpy 1.x
//! and 2.x module names, float64, str and numpy-integer keys) load bit-exactly; hostile pickles are
//! refused naming the global and its offset and run nothing; every truncated prefix and random or mutated
//! bytes give an error, never a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mmea_core::data::{self, files::MemFiles, pickle, FillPolicy, IdSource, LoadOptions, RawFeatures, Rng};
use mmea_core::Error;
use proptest::prelude::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle")
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e} (run scripts/make-pickle-fixtures.py)"))
}

fn read(name: &str) -> mmea_core::Result<RawFeatures> {
    pickle::read_feature_dict(name, &bytes(name))
}

/// The error's message (`path: detail`), checking it is a Format error naming `path`.
fn format_err(e: Error, path: &str) -> String {
    match &e {
        Error::Format { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected a Format error, got {other:?}"),
    }
    e.to_string()
}

fn expect_err(name: &str, needles: &[&str]) -> String {
    let msg = format_err(read(name).expect_err(name), name);
    for n in needles {
        assert!(msg.contains(n), "{name}: '{msg}' should contain '{n}'");
    }
    msg
}

struct Expected {
    ids: Vec<String>,
    dim: usize,
    bits: Vec<Vec<u32>>,
}

fn expected() -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(dir().join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    let mut out = BTreeMap::new();
    for (name, e) in v.as_object().expect("an object") {
        let ids = e["ids"].as_array().expect("ids").iter().map(|s| s.as_str().expect("str id").to_string()).collect();
        let dim = e["dim"].as_u64().expect("dim") as usize;
        let bits = e["bits"].as_array().expect("bits").iter().map(|r| r.as_array().expect("row").iter().map(|b| b.as_u64().expect("u32") as u32).collect()).collect();
        out.insert(name.clone(), Expected { ids, dim, bits });
    }
    out
}

/// The loadable fixtures the script must write (a regenerated expected.json may not drop any).
const REAL: [&str; 14] = [
    "p2.pkl",
    "p3.pkl",
    "p4.pkl",
    "p5.pkl",
    "p2_numpy1.pkl",
    "p5_numpy1.pkl",
    "py2_p2.pkl",
    "py2_p2_short.pkl",
    "p4_f64.pkl",
    "p4_strkeys.pkl",
    "p3_row2d.pkl",
    "p4_dim100.pkl",
    "p5_many.pkl",
    "p4_npkeys.pkl",
];

/// A protocol 4/5 pickle without its FRAME opcode (allowed: frames are optional), so that truncation
/// reaches every opcode instead of stopping at the frame's length.
fn unframed(b: &[u8]) -> Option<Vec<u8>> {
    (b.len() > 11 && b[2] == 0x95).then(|| [&b[..2], &b[11..]].concat())
}

// ----------------------------------------------------------------------------------------------------
// the real formats

#[test]
fn real_format_fixtures_load_bit_exactly() {
    let exp = expected();
    for name in REAL {
        assert!(exp.contains_key(name), "expected.json lacks {name}");
    }
    for (name, e) in &exp {
        let raw = read(name).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(raw.path, *name);
        assert_eq!(raw.ids, e.ids, "{name}: ids in insertion order");
        assert_eq!(raw.dim, e.dim, "{name}");
        assert_eq!(raw.rows(), e.bits.len(), "{name}");
        let got: Vec<u32> = raw.data.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = e.bits.iter().flatten().copied().collect();
        assert_eq!(got, want, "{name}: values bit for bit");
        // Without its frame it reads the same.
        if let Some(b) = unframed(&bytes(name)) {
            assert_eq!(pickle::read_feature_dict(name, &b).expect("unframed"), raw, "{name} unframed");
        }
    }
}

#[test]
fn fixtures_cover_what_numpy_and_python_write() {
    let has = |name: &str, needle: &[u8]| bytes(name).windows(needle.len()).any(|w| w == needle);
    // numpy 2.x and 1.x module names.
    assert!(has("p2.pkl", b"cnumpy._core.multiarray\n_reconstruct\n"));
    assert!(has("p2_numpy1.pkl", b"cnumpy.core.multiarray\n_reconstruct\n"));
    assert!(has("p2.pkl", b"c_codecs\nencode\n"), "Python 3 protocol 2 stores bytes through _codecs.encode");
    assert!(has("p5.pkl", b"numpy._core.numeric") && has("p5.pkl", b"_frombuffer") && has("p5.pkl", &[0x96]), "protocol 5: _frombuffer + BYTEARRAY8");
    assert!(has("p5_numpy1.pkl", b"numpy.core.numeric"));
    assert!(has("py2_p2.pkl", b"cnumpy.core.multiarray\n_reconstruct\n") && has("py2_p2.pkl", b"T\x18\x01\x00\x00"), "Python 2: the data as BINSTRING");
    assert!(has("p4_npkeys.pkl", b"scalar"));
    for (name, proto) in [("p2.pkl", 2), ("p3.pkl", 3), ("p4.pkl", 4), ("p5.pkl", 5), ("py2_p2.pkl", 2)] {
        assert_eq!(&bytes(name)[..2], &[0x80, proto], "{name}");
    }
}

#[test]
fn ids_are_the_keys_in_insertion_order() {
    let raw = read("p4.pkl").expect("p4");
    assert_eq!(raw.ids, ["7", "3", "300", "70000", "8589934592"]);
    assert_eq!(raw.dim, 7);
    // Row r, column j is r * 0.5 + j + j / 7 as float32.
    for r in 0..5 {
        for j in 0..7 {
            assert_eq!(raw.data[r * 7 + j], (r as f64 * 0.5 + j as f64 + j as f64 / 7.0) as f32);
        }
    }
    assert_eq!(read("py2_p2.pkl").expect("py2").ids, ["5", "1099511627776", "12"]);
    assert_eq!(read("p4_strkeys.pkl").expect("str keys").ids, ["http://dbpedia.org/resource/Paris", "Zürich", "京都", "e3"]);
    assert_eq!(read("p4_npkeys.pkl").expect("numpy keys").ids, ["9", "4", "123456789"]);
    let many = read("p5_many.pkl").expect("many");
    assert_eq!(many.rows(), 1001);
    assert_eq!(many.ids.first().map(String::as_str), Some("1000"));
    assert_eq!(many.ids.last().map(String::as_str), Some("0"));
}

#[test]
fn float64_is_read_as_float32() {
    let a = read("p4_f64.pkl").expect("f64");
    let b = read("p4.pkl").expect("f32");
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.data, b.data, "float64 values rounded to float32 equal the float32 fixture");
}

#[test]
fn through_from_bytes_and_attach() {
    let b = bytes("p3.pkl");
    let raw = RawFeatures::from_bytes("p3.pkl", &b, IdSource::InFile).expect("from_bytes");
    assert_eq!(raw, read("p3.pkl").expect("direct"));
    let e = RawFeatures::from_bytes("p3.pkl", &b, IdSource::List { path: "ids.txt", bytes: b"7\n3\n" }).expect_err("an id list with a pickle");
    let msg = format_err(e, "p3.pkl");
    assert!(msg.contains("keys") && msg.contains("ids.txt"), "{msg}");
    // Attached to a dataset whose ids are the keys: every entity gets its row.
    let mut m = MemFiles::new("mem");
    m.insert("ent_ids_1", b"7\thttp://zh/a\n3\thttp://zh/b\n".to_vec());
    m.insert("ent_ids_2", b"300\thttp://en/A\n70000\thttp://en/B\n8589934592\thttp://en/C\n".to_vec());
    m.insert("triples_1", b"7\t0\t3\n".to_vec());
    m.insert("triples_2", b"300\t1\t70000\n70000\t1\t8589934592\n".to_vec());
    m.insert("ill_ent_ids", b"7\t300\n3\t70000\n".to_vec());
    let ds = data::load(&m, &LoadOptions::default()).expect("dataset");
    let f = data::attach(&ds, &raw, "image", FillPolicy::Zero, 1, false).expect("attach");
    assert_eq!(f.has_feature, [true; 5]);
    assert_eq!(f.report.rows_in_file, 5);
    assert_eq!(f.data, raw.data, "the dataset's entity order is the dict's key order here");
    // A safetensors file whose header length starts with byte 0x80 is not taken for a pickle.
    let mut st = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
    st.extend(std::iter::once(b'{').chain(std::iter::repeat_n(b' ', 127)));
    assert!(!pickle::looks_like_pickle(&st));
    assert!(pickle::looks_like_pickle(&b));
}

// ----------------------------------------------------------------------------------------------------
// refused

/// Written into the hostile fixtures' payloads by the script.
const MARKER: &str = "/tmp/mmea-pickle-fixture-executed";

#[test]
fn hostile_globals_are_refused_naming_the_global_and_offset() {
    let _ = std::fs::remove_file(MARKER);
    for (name, global) in
        [("hostile_os_system.pkl", "os.system"), ("hostile_posix_system.pkl", "posix.system"), ("hostile_eval.pkl", "builtins.eval"), ("hostile_popen.pkl", "subprocess.Popen")]
    {
        let b = bytes(name);
        // The offset of the opcode that names it: a text GLOBAL, or the STACK_GLOBAL after the name.
        let text = format!("c{}\n", global.replacen('.', "\n", 1));
        let at = match b.windows(text.len()).position(|w| w == text.as_bytes()) {
            Some(p) => p,
            None => {
                let last = global.rsplit('.').next().unwrap_or("");
                let p = b.windows(last.len()).position(|w| w == last.as_bytes()).expect("the name is in the file");
                p + last.len() + b[p + last.len()..].iter().position(|&x| x == 0x93).expect("STACK_GLOBAL")
            }
        };
        let msg = expect_err(name, &[name, &format!("`{global}`"), &format!("offset {at} ")]);
        assert!(msg.contains("refused"), "{msg}");
    }
    assert!(!std::path::Path::new(MARKER).exists(), "a hostile payload ran");
}

#[test]
fn reduce_on_anything_but_an_allowed_global_is_refused() {
    expect_err("hostile_reduce_tuple.pkl", &["offset 10 (REDUCE)", "REDUCE calls a tuple"]);
    let p = |body: &[u8]| pickle::read_feature_dict("x.pkl", &[&[0x80, 4][..], body].concat()).expect_err("refused").to_string();
    // An allowed global called with what it does not take.
    assert!(p(b"cnumpy\nndarray\n)R.").contains("numpy.ndarray itself"));
    assert!(p(b"cbuiltins\nbytes\nK\x05\x85R.").contains("bytes() is only allowed without arguments"));
    assert!(p(b"c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf_8\x86R.").contains("only latin1"));
    assert!(p(b"cnumpy\ndtype\nX\x03\x00\x00\x00f4x\x85R.").contains("not a type string"));
    // Other globals, whichever opcode names them.
    for (body, global, at) in [
        (&b"cbuiltins\ngetattr\n."[..], "builtins.getattr", 2),
        (b"c__builtin__\neval\n.", "__builtin__.eval", 2),
        (b"\x8c\x02nt\x8c\x06system\x93.", "nt.system", 14),
        (b"cnumpy\nload\n.", "numpy.load", 2),
        (b"cnumpy.core.multiarray\n_reconstruct_x\n.", "numpy.core.multiarray._reconstruct_x", 2),
        (b"(ios\nsystem\nX\x02\x00\x00\x00hio.", "os.system", 3),
    ] {
        let msg = p(body);
        assert!(msg.contains(&format!("`{global}`")) && msg.contains(&format!("offset {at} ")), "{msg}");
    }
    // Opcodes that build class instances or reach outside the pickle.
    for (body, needle) in [
        (&b"cnumpy\nndarray\n)\x81."[..], "NEWOBJ"),
        (b"cnumpy\nndarray\n)}\x92.", "NEWOBJ_EX"),
        (b"(cnumpy\nndarray\no.", "OBJ"),
        (b"\x82\x01.", "extension"),
        (b"X\x01\x00\x00\x00a\x51.", "persistent"),
        (b"\x97.", "out-of-band"),
        (b"S'a'\n.", "STRING"),
        (b"\xff.", "unknown opcode 0xff"),
    ] {
        let msg = p(body);
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
}

#[test]
fn values_that_are_not_float_vectors_are_refused() {
    expect_err("bad_str_value.pkl", &["the value of key 2 is a str, not a numpy array"]);
    expect_err("bad_list_value.pkl", &["the value of key 2 is a list, not a numpy array", "offset"]);
    expect_err("bad_int32.pkl", &["dtype '<i4'", "float32", "offset"]);
    expect_err("bad_bigendian.pkl", &["'>f4'", "big-endian"]);
    expect_err("bad_mixed_dims.pkl", &["key 2 has 5 values, the first key's has 4"]);
    expect_err("bad_empty.pkl", &["the dict is empty"]);
    expect_err("bad_matrix.pkl", &["shape [2, 3]", "1-D vector"]);
    let msg = format_err(pickle::read_feature_dict("x.pkl", b"\x80\x04K\x01.").expect_err("an int"), "x.pkl");
    assert!(msg.contains("holds an int, not a dict"), "{msg}");
    let msg = format_err(pickle::read_feature_dict("x.pkl", b"(dp0\n.").expect_err("protocol 0"), "x.pkl");
    assert!(msg.contains("protocol 2 or later"), "{msg}");
    let msg = format_err(pickle::read_feature_dict("x.pkl", b"\x80\x06}.").expect_err("protocol 6"), "x.pkl");
    assert!(msg.contains("protocol 6 is not supported"), "{msg}");
}

// ----------------------------------------------------------------------------------------------------
// truncation, limits and random bytes

#[test]
fn every_truncated_prefix_is_an_error_naming_the_offset() {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in REAL {
        let b = bytes(name);
        if let Some(u) = unframed(&b) {
            files.push((format!("{name} unframed"), u));
        }
        files.push((name.to_string(), b));
    }
    for (name, b) in &files {
        // Every length; for the one large unframed copy (p5_many, 35 kB: 17 s for all of them) every
        // length within 1 KiB of either end and every 13th in between.
        let large = b.len() > 16_384 && name.ends_with("unframed");
        for n in (0..b.len()).filter(|&n| !large || n < 1024 || n + 1024 > b.len() || n % 13 == 0) {
            let e = pickle::read_feature_dict("t.pkl", &b[..n]).expect_err("a prefix is not a pickle");
            let msg = format_err(e, "t.pkl");
            if n > 0 {
                assert!(msg.contains("truncated at offset "), "{name}[..{n}]: {msg}");
            }
        }
    }
    expect_err("trunc_p4_half.pkl", &["truncated at offset 11: FRAME at offset 2 announces 420 bytes"]);
    let len = bytes("trunc_p2_nostop.pkl").len();
    expect_err("trunc_p2_nostop.pkl", &[&format!("truncated at offset {len}: the pickle ends without STOP")]);
}

#[test]
fn length_prefixes_and_nesting_are_bounded() {
    let p = |b: &[u8]| pickle::read_feature_dict("x.pkl", b).expect_err("refused").to_string();
    // Length prefixes far beyond the input.
    assert!(p(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff").contains("truncated at offset 11: BINBYTES8 at offset 2 announces 18446744073709551615 bytes, 0 are left"));
    assert!(p(b"\x80\x04\x96\xff\xff\xff\xff\xff\xff\xff\x7fab.").contains("truncated at offset 11"));
    assert!(p(b"\x80\x02X\xff\xff\xff\xffab.").contains("truncated at offset 7"));
    assert!(p(b"\x80\x02T\xff\xff\xff\xffab.").contains("negative length"));
    assert!(p(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x01\x00}.").contains("truncated at offset 11: FRAME"));
    assert!(p(b"\x80\x02\x8a\xff\x01.").contains("truncated at offset 4"));
    assert!(p(b"\x80\x02\x8a\x11\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01.").contains("too large"));
    // Deep nesting: an error, not a stack overflow (each TUPLE1 wraps the tuple below once more).
    let mut deep = vec![0x80, 4, b')'];
    deep.extend(std::iter::repeat_n(0x85, 1_000_000));
    deep.push(b'.');
    assert!(p(&deep).contains("nest more than"));
    // A million MARKs, a million DUPs, memo entries: bounded by the input, then an error.
    let mut marks = vec![0x80, 4];
    marks.extend(std::iter::repeat_n(b'(', 1_000_000));
    assert!(p(&marks).contains("ends without STOP"));
    let mut dups = vec![0x80, 4, b'}'];
    for _ in 0..200_000 {
        dups.extend_from_slice(&[b'2', 0x94]);
    }
    dups.push(b')');
    dups.push(b'.');
    assert!(p(&dups).contains("holds a tuple"));
    // Memo, stack and mark misuse.
    assert!(p(b"\x80\x04h\x05.").contains("memo entry 5 was never stored"));
    assert!(p(b"\x80\x040.").contains("stack underflow"));
    assert!(p(b"\x80\x04}(s.").contains("stack underflow"));
    assert!(p(b"\x80\x04t.").contains("no MARK"));
    // A dict inside a tuple, a list inside a list: nothing nests, so nothing can cycle.
    assert!(p(b"\x80\x04}\x85.").contains("dict inside a tuple"));
    assert!(p(b"\x80\x04]]a.").contains("list inside a list"));
    assert!(p(b"\x80\x04}\x94K\x01h\x00s.").contains("the value of key 1 is a dict"));
}

/// `fixture` (protocol 4, unframed) with `keys` more keys (BININT2 0..keys, offset by 40,000 past its
/// own), each pointing at its first array (memo entry 10, see pickletools).
fn sharing(fixture: &str, keys: u32) -> Vec<u8> {
    let b = unframed(&bytes(fixture)).expect("framed");
    let mut big = b[..b.len() - 2].to_vec(); // without SETITEMS and STOP
    big.extend_from_slice(b"u("); // close the first batch, open another
    for k in 0..keys {
        big.push(b'M');
        big.extend_from_slice(&(k as u16).to_le_bytes());
        big.extend_from_slice(b"h\x0a");
    }
    big.extend_from_slice(b"u.");
    big
}

#[test]
fn keys_sharing_one_array_cannot_blow_up_the_output() {
    // 60,000 keys sharing a 7-float array: 1.7 MB of floats from 300 kB, within the 64× bound.
    let raw = pickle::read_feature_dict("big.pkl", &sharing("p4.pkl", 60_000)).expect("shared arrays within the bound");
    assert_eq!(raw.rows(), 60_002, "keys 7, 3 and 300 are among 0..60,000 (and keep their places)");
    assert_eq!(&raw.ids[..6], ["7", "3", "300", "70000", "8589934592", "0"]);
    assert_eq!(&raw.data[5 * 7..6 * 7], &raw.data[..7]);
    // 65,536 keys sharing a 100-float array: 26 MB from 330 kB (80×) is refused, not allocated.
    let e = pickle::read_feature_dict("big.pkl", &sharing("p4_dim100.pkl", 65_536)).expect_err("over the bound");
    assert!(format_err(e, "big.pkl").contains("more than 64×"));
}

fn mutate_and_read(base: &[u8], rng: &mut Rng, rounds: usize) {
    for _ in 0..rounds {
        let mut b = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len() as u64) as usize;
            match rng.below(3) {
                0 => b[i] = rng.below(256) as u8,
                1 => b[i] ^= 1 << rng.below(8),
                _ => {
                    b.remove(i);
                }
            }
            if b.is_empty() {
                break;
            }
        }
        let _ = pickle::read_feature_dict("m.pkl", &b);
        let _ = RawFeatures::from_bytes("m.pkl", &b, IdSource::InFile);
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut rng = Rng::new(20);
    for name in ["p2.pkl", "p3.pkl", "p4.pkl", "p5.pkl", "py2_p2_short.pkl", "p4_npkeys.pkl", "p4_strkeys.pkl", "hostile_posix_system.pkl"] {
        let b = bytes(name);
        mutate_and_read(&b, &mut rng, 3000);
        if let Some(u) = unframed(&b) {
            mutate_and_read(&u, &mut rng, 3000);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_bytes_after_a_proto_header_never_panic(proto in 2u8..=5, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let b = [&[0x80, proto][..], &body].concat();
        let _ = pickle::read_feature_dict("r.pkl", &b);
        let _ = RawFeatures::from_bytes("r.pkl", &b, IdSource::InFile);
    }

    #[test]
    fn random_opcodes_never_panic(ops in proptest::collection::vec(prop_oneof![
        Just(&b"("[..]), Just(&b"t"[..]), Just(&b"\x85"[..]), Just(&b"\x86"[..]), Just(&b")"[..]), Just(&b"}"[..]), Just(&b"]"[..]),
        Just(&b"s"[..]), Just(&b"u"[..]), Just(&b"a"[..]), Just(&b"e"[..]), Just(&b"\x94"[..]), Just(&b"h\x00"[..]), Just(&b"h\x01"[..]),
        Just(&b"K\x01"[..]), Just(&b"C\x04\x00\x00\x80?"[..]), Just(&b"\x8c\x02f4"[..]), Just(&b"\x8c\x01<"[..]), Just(&b"R"[..]), Just(&b"b"[..]),
        Just(&b"cnumpy\ndtype\n"[..]), Just(&b"cnumpy\nndarray\n"[..]), Just(&b"cnumpy._core.multiarray\n_reconstruct\n"[..]),
        Just(&b"cnumpy._core.numeric\n_frombuffer\n"[..]), Just(&b"cnumpy._core.multiarray\nscalar\n"[..]), Just(&b"c_codecs\nencode\n"[..]),
        Just(&b"\x88"[..]), Just(&b"\x89"[..]), Just(&b"N"[..]), Just(&b"2"[..]), Just(&b"0"[..]), Just(&b"1"[..]), Just(&b"X\x06\x00\x00\x00latin1"[..]),
    ], 0..80)) {
        let mut b = vec![0x80, 4];
        for o in ops {
            b.extend_from_slice(o);
        }
        b.push(b'.');
        let _ = pickle::read_feature_dict("o.pkl", &b);
    }
}
