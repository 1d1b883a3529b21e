//! `mmea data …`: check a dataset, time its loading, make a seeded split.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use mmea_core::data::{self, check::ModalityInput, FeatureOptions, Split};

use crate::fsx;
use crate::setup::{self, DEMO};

#[derive(Subcommand)]
pub enum DataCommand {
    /// The bundled datasets (`--data NAME`): entities, relations, triples and gold links per KG, and the
    /// modalities each has.
    List,
    /// Check a dataset: counts per KG, then every problem found. Exits 0 when the dataset is usable
    /// (possibly with warnings), 1 when it is not.
    Check {
        /// A bundled dataset's name or a folder (MCLEA/EVA, OpenEA or mmea TSV layout; files may be gzip).
        dir: String,
        /// An image feature matrix to check against the entities (.npy float32 2-D, or safetensors).
        #[arg(long)]
        images: Option<PathBuf>,
        /// The ids of the image rows, one per line (or a 1-D integer .npy). Without it, the ids are the
        /// first column of the .npy / the `ids` tensor of the safetensors file.
        #[arg(long, requires = "images")]
        image_ids: Option<PathBuf>,
        /// At most this many examples per kind of problem (0: all).
        #[arg(long, default_value_t = 10)]
        max_examples: usize,
    },
    /// Time loading a dataset and building all its features (bag-of-relations, bag-of-attributes, the
    /// relation graph, the neighbour CSR; char bigrams with --char-bigrams). A benchmark, not a test.
    Bench {
        /// A bundled dataset's name or a folder.
        dir: String,
        /// Also build character-bigram name features.
        #[arg(long)]
        char_bigrams: bool,
        /// Repeat this many times and report each run.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Make a seeded train/dev/test split of a dataset's gold links and write it as TSV
    /// (`part<TAB>kg1_id<TAB>kg2_id`, original ids).
    Split {
        /// A bundled dataset's name or a folder.
        dir: String,
        /// Share of the links in the training pool (e.g. 0.3 for DBP15K; 0.2/0.5/0.8 for FB-DB).
        #[arg(long, default_value_t = 0.3)]
        train_ratio: f64,
        /// Share of the training pool moved to the dev split (for model selection).
        #[arg(long, default_value_t = 0.1)]
        dev_fraction: f64,
        /// The seed of the shuffle.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Generate a synthetic pair of graphs with a DBP15K-like degree distribution (structure and gold
    /// links only), in the mmea TSV layout, with a PROVENANCE.md that labels it timing only. For the cost
    /// curve at sizes no real dataset has; never an accuracy figure.
    Synth {
        /// Entities per side (77% of them aligned, as in DBP15K).
        #[arg(long)]
        entities: usize,
        /// The generator's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The folder to write (created; files in it are replaced).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The table of `mmea data list`: every bundled dataset, loaded, with its counts and modalities.
fn list() -> mmea_core::Result<String> {
    let mut sets: Vec<(String, String, mmea_core::data::Dataset)> = vec![(DEMO.to_string(), "embedded in the binary".to_string(), data::demo()?)];
    for (name, dir) in setup::bundled() {
        if name == "demo_dbp15k_zh_en_1k" {
            continue; // the embedded demo pair's source folder
        }
        let ds = data::load_dir(&dir)?;
        sets.push((name, dir.display().to_string(), ds));
    }
    let mut s = String::from(
        "| name | entities KG1 / KG2 | relations | triples KG1 / KG2 | gold links | own split | modalities besides structure | missing |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, _, ds) in &sets {
        let mut has = vec!["relations"];
        let mut missing = vec![];
        match &ds.attributes {
            Some(a) if a.files == [true, false] => has.push("attributes (KG1 only)"),
            Some(a) if a.files == [false, true] => has.push("attributes (KG2 only)"),
            Some(_) => has.push("attributes"),
            None => missing.push("attributes"),
        }
        match &ds.names {
            Some(_) => has.push("names (translated)"),
            None => has.push("names (URIs only)"),
        }
        missing.push("images");
        s += &format!(
            "| {name} | {} / {} | {} | {} / {} | {} | {} | {} | {} |\n",
            ds.num_entities[0],
            ds.num_entities[1],
            ds.relations.len(),
            ds.triples[0].len(),
            ds.triples[1].len(),
            ds.links.len(),
            ds.split.as_ref().map_or("no".to_string(), |sp| format!("{} / {}", sp.train.len(), sp.test.len())),
            has.join(", "),
            missing.join(", "),
        );
    }
    s += &format!(
        "\nFolders: {}. Provenance, licences and checksums: PROVENANCE.md in each folder. Use a name with `--data NAME`.\n",
        setup::data_root().map_or("(no data/ folder found)".to_string(), |p| p.display().to_string())
    );
    Ok(s)
}

/// Writes to stdout without panicking on a closed pipe.
fn out(s: &str) {
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

pub fn run(cmd: DataCommand) -> mmea_core::Result<ExitCode> {
    match cmd {
        DataCommand::List => {
            out(&list()?);
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Check { dir, images, image_ids, max_examples } => {
            // `demo` is checked in the folder it is embedded from.
            let path = if dir == DEMO { setup::data_root().unwrap_or_default().join("demo_dbp15k_zh_en_1k") } else { setup::resolve_data(&dir)? };
            let mut mods = Vec::new();
            if let Some(img) = images {
                mods.push(ModalityInput::from_paths("images", &img, image_ids.as_deref())?);
            }
            let report = data::check_dir(&path, &mods);
            out(&report.render(max_examples));
            if report.usable() {
                Ok(ExitCode::SUCCESS)
            } else {
                let shown = if dir == DEMO { dir } else { path.display().to_string() };
                eprintln!("error: {shown} is not usable: {}", report.first_error_text());
                Ok(ExitCode::FAILURE)
            }
        }
        DataCommand::Bench { dir, char_bigrams, repeat } => {
            let opts = FeatureOptions { char_bigrams, ..Default::default() };
            for run in 1..=repeat.max(1) {
                let t0 = Instant::now();
                let ds = setup::load_dataset(&dir)?;
                let t_load = t0.elapsed();
                let t1 = Instant::now();
                let f = data::build_features(&ds, &opts);
                let t_feat = t1.elapsed();
                out(&format!(
                    "run {run}: load {:.3} s ({} entities, {} triples), features {:.3} s (rel {}x{}, {} directed pairs, {} CSR entries{}), total {:.3} s\n",
                    t_load.as_secs_f64(),
                    ds.entities.len(),
                    ds.triples[0].len() + ds.triples[1].len(),
                    t_feat.as_secs_f64(),
                    f.relations.rows,
                    f.relations.cols,
                    f.rel_graph.edges.len(),
                    f.neighbours.cols.len(),
                    f.char_bigrams.as_ref().map(|c| format!(", char bigrams {}x{}", c.rows, c.cols)).unwrap_or_default(),
                    t0.elapsed().as_secs_f64()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Split { dir, train_ratio, dev_fraction, seed, output } => {
            let ds = setup::load_dataset(&dir)?;
            let sp = Split::seeded(&ds.links, train_ratio, dev_fraction, seed)?;
            let tsv = sp.to_tsv(&ds);
            match output {
                Some(p) => std::fs::write(&p, tsv).map_err(|e| mmea_core::Error::Io { path: p.display().to_string(), source: e })?,
                None => out(&tsv),
            }
            eprintln!("split: train {} / dev {} / test {} ({})", sp.train.len(), sp.dev.len(), sp.test.len(), sp.source);
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Synth { entities, seed, out: dir } => {
            let ds = data::synthetic::synthetic_pair(entities, seed)?;
            fsx::create_dir(&dir)?;
            for (name, bytes) in &data::tsv::write(&ds).files {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    fsx::create_dir(parent)?;
                }
                fsx::write_atomic(&path, bytes)?;
            }
            let provenance = format!(
                "# {name}: synthetic, timing only\n\nGenerated by `mmea data synth --entities {entities} --seed {seed}` (core::data::synthetic): a pair of\n\
                 graphs with a DBP15K-like degree distribution, {} / {} triples, {} relations, {} gold links. It has no\n\
                 attributes, names or images. Its alignment accuracy means nothing: use it to time the engine at sizes\n\
                 no bundled dataset has, never beside accuracy tables.\n",
                ds.triples[0].len(),
                ds.triples[1].len(),
                ds.relations.len(),
                ds.links.len(),
                name = ds.name,
            );
            fsx::write_atomic(&dir.join("PROVENANCE.md"), provenance.as_bytes())?;
            eprintln!(
                "synthetic pair: {entities} entities per side, {} / {} triples, {} gold links, written to {} (timing only)",
                ds.triples[0].len(),
                ds.triples[1].len(),
                ds.links.len(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
