//! `mmea data …`: check a dataset, time its loading, make a seeded split.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;
use mmea_core::data::{self, check::ModalityInput, FeatureOptions, Split};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check a dataset directory: counts per KG, then every problem found. Exits 0 when the dataset is
    /// usable (possibly with warnings), 1 when it is not.
    Check {
        /// The dataset directory (MCLEA/EVA, OpenEA or mmea TSV layout; files may be gzip).
        dir: PathBuf,
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
        /// The dataset directory.
        dir: PathBuf,
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
        /// The dataset directory.
        dir: PathBuf,
        /// Share of the links in the training pool (e.g. 0.3 for DBP15K; 0.2/0.5/0.8 for FB-DB).
        #[arg(long, default_value_t = 0.3)]
        train_ratio: f64,
        /// Share of the training pool moved to the dev split (for model selection).
        #[arg(long, default_value_t = 0.1)]
        dev_fraction: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Writes to stdout without panicking on a closed pipe.
fn out(s: &str) {
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

pub fn run(cmd: DataCommand) -> mmea_core::Result<ExitCode> {
    match cmd {
        DataCommand::Check { dir, images, image_ids, max_examples } => {
            let mut mods = Vec::new();
            if let Some(img) = images {
                mods.push(ModalityInput::from_paths("images", &img, image_ids.as_deref())?);
            }
            let report = data::check_dir(&dir, &mods);
            out(&report.render(max_examples));
            if report.usable() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: {} is not usable: {}", dir.display(), report.first_error_text());
                Ok(ExitCode::FAILURE)
            }
        }
        DataCommand::Bench { dir, char_bigrams, repeat } => {
            let opts = FeatureOptions { char_bigrams, ..Default::default() };
            for run in 1..=repeat.max(1) {
                let t0 = Instant::now();
                let ds = data::load_dir(&dir)?;
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
            let ds = data::load_dir(&dir)?;
            let sp = Split::seeded(&ds.links, train_ratio, dev_fraction, seed)?;
            let tsv = sp.to_tsv(&ds);
            match output {
                Some(p) => std::fs::write(&p, tsv).map_err(|e| mmea_core::Error::Io { path: p.display().to_string(), source: e })?,
                None => out(&tsv),
            }
            eprintln!("split: train {} / dev {} / test {} ({})", sp.train.len(), sp.dev.len(), sp.test.len(), sp.source);
            Ok(ExitCode::SUCCESS)
        }
    }
}
