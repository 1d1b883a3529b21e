//! Every text and binary parser of the data layer on arbitrary bytes. The first byte picks where the
//! bytes go; none of them may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmea_core::data::{self, files::MemFiles, modality::IdSource, npy, pickle, LoadOptions, RawFeatures, Split};

fn mclea_base() -> MemFiles {
    let mut m = MemFiles::new("fuzz");
    m.insert("ent_ids_1", b"10\thttp://zh/a\n3\thttp://zh/b\n25\thttp://zh/c\n".to_vec());
    m.insert("ent_ids_2", b"4\thttp://en/A\n11\thttp://en/B\n2\thttp://en/C\n".to_vec());
    m.insert("triples_1", b"10\t7\t3\n3\t7\t25\n".to_vec());
    m.insert("triples_2", b"4\t1\t11\n11\t1\t2\n".to_vec());
    m.insert("ill_ent_ids", b"10\t4\n3\t11\n25\t2\n".to_vec());
    m
}

const MCLEA_FILES: [&str; 9] =
    ["ent_ids_1", "ent_ids_2", "triples_1", "ill_ent_ids", "rel_ids_1", "training_attrs_2", "translated_ent_name.json", "train_ill", "test_ill"];

fuzz_target!(|input: &[u8]| {
    let Some((&sel, bytes)) = input.split_first() else { return };
    let opts = LoadOptions::default();
    // 17 arms: 0..=15 as before the pickle reader, 16 the pickle reader.
    match sel % 17 {
        s @ 0..=8 => {
            let mut m = mclea_base();
            m.insert(MCLEA_FILES[s as usize], bytes.to_vec());
            if s == 8 {
                m.insert("train_ill", b"10\t4\n".to_vec());
            }
            let _ = data::load(&m, &opts);
            let _ = data::check(&m, &opts, &[]);
        }
        9 => {
            let mut m = MemFiles::new("fuzz");
            m.insert("rel_triples_1", bytes.to_vec());
            m.insert("rel_triples_2", b"a\tb\tc\n".to_vec());
            m.insert("ent_links", bytes.to_vec());
            m.insert("attr_triples_1", bytes.to_vec());
            m.insert("721_5fold/1/train_links", bytes.to_vec());
            m.insert("721_5fold/1/test_links", b"x\ta\n".to_vec());
            let _ = data::load(&m, &opts);
        }
        10 => {
            let mut m = MemFiles::new("fuzz");
            m.insert("triples_1.tsv", bytes.to_vec());
            m.insert("triples_2.tsv", b"a\tb\tc\n".to_vec());
            m.insert("links.tsv", b"x\ta\n".to_vec());
            m.insert("entities_2.tsv", b"a\tAlpha\nc\n".to_vec());
            m.insert("split.tsv", bytes.to_vec());
            let _ = data::load(&m, &opts);
        }
        11 => {
            let _ = npy::read_f32_2d("f.npy", bytes);
            let _ = npy::read_ids("f.npy", bytes);
        }
        12 => {
            let _ = RawFeatures::from_bytes("f", bytes, IdSource::InFile);
            let _ = RawFeatures::from_bytes("f", bytes, IdSource::List { path: "ids", bytes });
        }
        13 => {
            if let Ok(ds) = data::load(&mclea_base(), &opts) {
                let _ = Split::from_tsv(&ds, "split.tsv", bytes);
                let _ = data::split::read_pairs(&ds, "pairs", bytes);
            }
        }
        14 => {
            let mut m = mclea_base();
            m.insert("triples_1.gz", bytes.to_vec());
            m.remove("triples_1");
            let _ = data::load(&m, &opts);
        }
        16 => {
            // As given, and after a PROTO header (protocol 2..=5 from the first byte) so that most inputs
            // reach the opcodes.
            let _ = pickle::read_feature_dict("f.pkl", bytes);
            if let Some((&p, rest)) = bytes.split_first() {
                let b = [&[0x80, 2 + p % 4][..], rest].concat();
                let _ = pickle::read_feature_dict("f.pkl", &b);
            }
        }
        _ => {
            let _ = data::files::decode("x", bytes.into());
            let _ = data::check::thousands(bytes.len());
        }
    }
});
