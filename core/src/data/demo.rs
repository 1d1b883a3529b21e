//! The bundled demo pair: 1,000 gold pairs of DBP15K zh-en (`data/demo_dbp15k_zh_en_1k/`, see its
//! PROVENANCE.md), compiled into the binary so the CLI and the browser need no files.

use super::files::MemFiles;
use super::{load, Dataset, Format, LoadOptions};
use crate::error::Result;

/// What the demo pair has.
pub const DEMO_MODALITIES: &str = "structure (relation triples, relation names) and names via the entity URIs; no attributes, no images";

macro_rules! demo_file {
    ($name:literal) => {
        ($name, include_bytes!(concat!("../../../data/demo_dbp15k_zh_en_1k/", $name)) as &'static [u8])
    };
}

const FILES: [(&str, &[u8]); 9] = [
    demo_file!("ent_ids_1"),
    demo_file!("ent_ids_2"),
    demo_file!("rel_ids_1"),
    demo_file!("rel_ids_2"),
    demo_file!("triples_1"),
    demo_file!("triples_2"),
    demo_file!("ill_ent_ids"),
    demo_file!("train_ill"),
    demo_file!("test_ill"),
];

/// The demo's files, in memory.
pub fn demo_files() -> MemFiles {
    let mut m = MemFiles::new("demo");
    for (name, bytes) in FILES {
        m.insert(name, bytes);
    }
    m
}

/// The demo pair, loaded from the embedded bytes. Its `split` is the fixed 300/700 split of
/// `train_ill`/`test_ill`.
pub fn demo() -> Result<Dataset> {
    load(&demo_files(), &LoadOptions { name: "demo_dbp15k_zh_en_1k".into(), format: Some(Format::Mclea), ..Default::default() })
}
