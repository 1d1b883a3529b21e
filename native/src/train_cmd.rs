//! `mmea train`: train a model, evaluate it honestly, keep a run directory.
//!
//! Run directory layout (every file written atomically; `train.jsonl` and `metrics.jsonl` are appended a
//! line at a time and trimmed back on resume):
//! - `config.json`: the [`RunSpec`] (data, modalities, model and training settings, split source).
//! - `split.tsv`: the train/dev/test pairs (original ids), as `mmea data split` writes them.
//! - `train.jsonl`: one line per epoch (loss, training pairs, iterative-learning events).
//! - `metrics.jsonl`: one line per evaluation (dev for clean, test for reference), then the final test.
//! - `checkpoint.safetensors` + `checkpoint.json`: the selected model with its config, the dataset
//!   fingerprint, the split and the metrics.
//! - `resume.safetensors` + `resume.json`: parameters, optimiser moments, best copy, loop state, written
//!   after every evaluation; `--resume DIR` continues from it.
//! - `curve.svg`: loss and the selection metric per epoch.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mmea_core::data::{Dataset, Split};
use mmea_core::evaluate::EvalReport;
use mmea_core::model::{checkpoint_bytes, CheckpointData, Fingerprint, ModelConfig, Params};
use mmea_core::run::{enum_name, parse_enum, Layer};
use mmea_core::train::{EvalRecord, LrSchedule, Protocol, Trainer, TrainerState};
use mmea_core::{Backend, Device, Error, Result};
use serde_json::json;

use crate::bench::median;
use crate::fsx;
use crate::plot;
use crate::setup::{self, RunSpec};

/// A model name, checked against core's list (the one definition of the names).
pub fn model_name(s: &str) -> std::result::Result<String, String> {
    if ModelConfig::NAMES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("unknown model `{s}`; the models are {}", ModelConfig::NAMES.join(", ")))
    }
}

/// The `--model` help, from core's table of models.
fn models_help() -> String {
    let mut s = String::from("The model (default loginmea; also the config key `model_name`):");
    for (name, about) in ModelConfig::ABOUT {
        s += &format!("\n  {name}: {about}");
    }
    s
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// A run config (TOML; a run folder's config.toml repeats that run). Flags and --set override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides one config key by its dotted path, e.g. `--set model.dim=100 --set train.lr=0.01`
    /// (repeatable; later ones win). An unknown key, or one the model does not use, is an error naming
    /// the keys it takes. Keys: docs/training.md.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Dataset: a bundled name (`mmea data list`: `demo`, `dbp15k/zh_en`, `fb237_db15k`, ...) or a folder
    /// (MCLEA/EVA, OpenEA or mmea TSV layout). Key `data`; default `demo`.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, value_parser = model_name, long_help = models_help(), help = "The model: loginmea (default), structure, mimea-style, ricea-style, mclea-style, eva-style, label-prop")]
    pub model: Option<String>,
    /// clean (default): one optimiser, the paper's settings, model selected on a dev split. reference:
    /// the released code's loop, selection on TEST (for comparison only). Key `train.protocol`.
    #[arg(long, value_parser = parse_enum::<Protocol>)]
    pub protocol: Option<Protocol>,
    /// Epochs (default 600 clean, 1000 reference, 80 on the demo pair). Key `train.epochs`; with --resume,
    /// extends the run.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// The seed of the split, the initialisation and the shuffles. Key `train.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Iterative learning (mutual-nearest-neighbour bootstrapping). Key `train.iterative`.
    #[arg(long)]
    pub iterative: bool,
    /// Image features (.npy float32 2-D or safetensors); entities without one get the mean of their
    /// neighbours'. Key `images`.
    #[arg(long, value_name = "FILE")]
    pub images: Option<String>,
    /// Ids of the image rows (one per line, or a 1-D integer .npy). Key `image_ids`.
    #[arg(long, value_name = "FILE", requires = "images")]
    pub image_ids: Option<String>,
    /// Run folder (default: runs/<dataset>-<model>-<protocol>-seed<seed>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last saved state (its config.toml is the config; only
    /// --epochs may change, to extend the run).
    #[arg(long, conflicts_with_all = ["out", "config", "set", "data", "model", "protocol", "seed", "iterative", "images", "image_ids", "print_config"])]
    pub resume: Option<PathBuf>,
    /// Print the resolved config (TOML) and exit without training.
    #[arg(long)]
    pub print_config: bool,
    /// No progress bar and no per-evaluation lines.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The defaults of `cargo run --release` (no subcommand): the demo pair.
    pub fn demo() -> TrainArgs {
        TrainArgs::default()
    }

    /// The layers of keys these arguments make: the config file, then `--set`, then the shorthands.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        let mut layers = Vec::new();
        if let Some(p) = &self.config {
            layers.push(setup::read_config(p)?);
        }
        let mut set = Layer::new("--set");
        for a in &self.set {
            set.set_arg(a)?;
        }
        layers.push(set);
        let mut flags = Layer::new("the command line");
        if let Some(d) = &self.data {
            flags.set("data", json!(d))?;
        }
        if let Some(m) = &self.model {
            flags.set("model_name", json!(m))?;
        }
        if let Some(p) = self.protocol {
            flags.set("train.protocol", json!(enum_name(&p)))?;
        }
        if let Some(e) = self.epochs {
            flags.set("train.epochs", json!(e))?;
        }
        if let Some(s) = self.seed {
            flags.set("train.seed", json!(s))?;
        }
        if self.iterative {
            flags.set("train.iterative", json!(true))?;
        }
        if let Some(i) = &self.images {
            flags.set("images", json!(i))?;
        }
        if let Some(i) = &self.image_ids {
            flags.set("image_ids", json!(i))?;
        }
        layers.push(flags);
        Ok(layers)
    }

    /// The resolved run spec of these arguments.
    pub fn spec_for(&self, backend: Backend) -> Result<RunSpec> {
        let mut spec = RunSpec::resolve(&self.layers()?)?;
        spec.backend = format!("{backend:?}").to_lowercase();
        spec.command = {
            let args: Vec<String> = std::env::args().skip(1).collect();
            if args.iter().any(|a| a == "train") {
                format!("mmea {}", args.join(" "))
            } else {
                format!("mmea train {}", args.join(" ")).trim_end().to_string()
            }
        };
        Ok(spec)
    }
}

/// Files of a run directory.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

fn setting_line(ds: &Dataset, spec: &RunSpec, trainer: &Trainer) -> String {
    // The modalities the model reads (the structure model reads none of those present).
    let filled = trainer.inputs.filled();
    let mods: Vec<String> = trainer
        .model
        .modalities()
        .iter()
        .map(|m| match filled.iter().find(|(f, _)| f == m) {
            Some((_, p)) => format!("{} (absent from the data: {})", m.name(), p.name()),
            None => spec.modalities.label(m.name()),
        })
        .collect();
    format!(
        "{} | {} | modalities: structure{}{} | names {} | {} protocol, {}{}{}{} | split: train {} / dev {}{} / test {} ({})",
        ds.name,
        spec.model.name(),
        if mods.is_empty() { "" } else { " + " },
        mods.join(" + "),
        if spec.modalities.names { "on" } else { "off" },
        match spec.train.protocol {
            Protocol::Clean => "clean",
            Protocol::Reference => "reference",
        },
        match (spec.train.iterative, spec.train.il_refresh) {
            (false, _) => "non-iterative",
            (true, false) => "iterative",
            (true, true) => "iterative (re-labelling each round)",
        },
        match spec.train.iterative || spec.train.protocol == Protocol::Reference {
            // The lr factor from `il_start` only shows when it is not the reference code's lr/5.
            true if spec.train.il_lr_factor != 0.2 => format!(", lr × {} from epoch {}", spec.train.il_lr_factor, spec.train.il_start),
            _ => String::new(),
        },
        if spec.train.select_last { ", last epoch kept" } else { "" },
        if spec.train.lr_schedule == LrSchedule::Cosine { ", cosine lr" } else { "" },
        trainer.split.train.len(),
        trainer.split.dev.len(),
        match trainer.dev_distractors().len() {
            0 => String::new(),
            k => format!(" (ranked among {k} distractors per side)"),
        },
        trainer.split.test.len(),
        spec.split_source
    )
}

/// One table of an evaluation report (l2r and r2l for each decoding).
pub fn render_report(r: &EvalReport) -> String {
    let mut s = format!("{:<10} {:>5} {:>7} {:>7} {:>7} {:>7} {:>8}\n", "decoding", "dir", "H@1", "H@10", "H@50", "MRR", "MR");
    let mut row = |name: &str, b: &mmea_core::evaluate::BothWays| {
        for (dir, m) in [("l2r", &b.l2r), ("r2l", &b.r2l)] {
            s += &format!("{:<10} {:>5} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.2}\n", name, dir, m.hits1, m.hits10, m.hits50, m.mrr, m.mr);
        }
    };
    row("plain", &r.plain);
    if let Some(c) = &r.csls {
        row("CSLS k=3", c);
    }
    if let Some(c) = &r.sinkhorn {
        row("Sinkhorn", c);
    }
    if let Some(k) = r.sinkhorn_top_k {
        s += &format!("(Sinkhorn: sparse, over each query's {k} best candidates)\n");
    }
    s
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Keeps the lines of a JSONL file whose `epoch` is at most `epoch` (used on resume).
fn trim_jsonl(path: &Path, epoch: usize) -> Result<()> {
    let kept: Vec<String> = read_jsonl(path)
        .into_iter()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) != Some("final") && v.get("epoch").and_then(|e| e.as_u64()).is_some_and(|e| e as usize <= epoch))
        .map(|v| v.to_string())
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    fsx::write_atomic(path, body.as_bytes())
}

fn write_curve(dir: &RunDir, title: &str, metric_label: &str) -> Result<()> {
    let loss: Vec<(f64, f64)> = read_jsonl(&dir.file("train.jsonl")).iter().filter_map(|v| Some((v.get("epoch")?.as_f64()? + 1.0, v.get("loss")?.as_f64()?))).collect();
    let metric: Vec<(f64, f64)> = read_jsonl(&dir.file("metrics.jsonl"))
        .iter()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("eval"))
        .filter_map(|v| Some((v.get("epoch")?.as_f64()?, v.get("score")?.as_f64()?)))
        .collect();
    fsx::write_atomic(&dir.file("curve.svg"), plot::svg(&plot::Curves { title, loss: &loss, metric: &metric, metric_label }).as_bytes())
}

/// Checkpoint metadata shared by the `.safetensors` header and `checkpoint.json`.
fn checkpoint_meta(spec: &RunSpec, fp: &Fingerprint, split_tsv: &str, epoch: usize, metrics: &serde_json::Value) -> HashMap<String, String> {
    HashMap::from([
        ("model".to_string(), spec.model.name().to_string()),
        ("run_spec".to_string(), setup::json(spec)),
        ("dataset".to_string(), setup::json(fp)),
        ("split".to_string(), split_tsv.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("metrics".to_string(), metrics.to_string()),
    ])
}

fn write_checkpoint(dir: &RunDir, params: &Params, meta: HashMap<String, String>) -> Result<()> {
    let bytes = checkpoint_bytes(params, meta.clone())?;
    fsx::write_atomic(&dir.file("checkpoint.safetensors"), &bytes)?;
    let mut j = serde_json::Map::new();
    for (k, v) in meta {
        let val = if k == "split" { json!(format!("{} lines (see split.tsv)", v.lines().count())) } else { serde_json::from_str(&v).unwrap_or(json!(v)) };
        j.insert(k, val);
    }
    fsx::write_atomic(&dir.file("checkpoint.json"), serde_json::to_string_pretty(&j).unwrap_or_default().as_bytes())
}

fn write_resume(dir: &RunDir, trainer: &Trainer) -> Result<()> {
    let st = trainer.state();
    // Both files carry the epoch; resuming refuses a pair from different epochs (a crash between the
    // two renames).
    let meta = HashMap::from([("kind".to_string(), "resume".to_string()), ("epoch".to_string(), st.epoch.to_string())]);
    fsx::write_atomic(&dir.file("resume.safetensors"), &checkpoint_bytes(&trainer.state_tensors()?, meta)?)?;
    fsx::write_atomic(&dir.file("resume.json"), setup::json_pretty(&st).as_bytes())
}

pub fn run(args: TrainArgs, backend: Backend) -> Result<()> {
    let t_start = Instant::now();
    let (mut spec, dir, resume) = match &args.resume {
        Some(d) => {
            let cfg_path = setup::run_config_path(d);
            let mut spec = setup::read_run_spec(&cfg_path)?;
            spec.data = setup::recorded_data(&spec.data)?;
            if let Some(e) = args.epochs {
                if e != spec.train.epochs && spec.train.lr_schedule == LrSchedule::Cosine {
                    return Err(Error::InvalidArgument {
                        op: "train --resume",
                        detail: format!(
                            "{} uses a cosine learning-rate schedule over its {} epochs; extending it to {e} would change the rates it has already used (start a new run instead)",
                            cfg_path.display(),
                            spec.train.epochs
                        ),
                    });
                }
                if e != spec.train.epochs {
                    // Keep the record honest: the run is the original command, extended.
                    spec.command = format!("{} ; mmea train --resume {} --epochs {e}", spec.command, d.display());
                }
                spec.train.epochs = e;
            }
            (spec, RunDir(d.clone()), true)
        }
        None => (args.spec_for(backend)?, RunDir(PathBuf::new()), false),
    };
    if args.print_config {
        print!("{}", setup::to_toml(&spec)?);
        return Ok(());
    }
    let device = backend.open_blocking()?;
    let ds = setup::load_dataset(&spec.data)?;
    let split = if resume {
        let p = dir.file("split.tsv");
        Split::from_tsv(&ds, &p.display().to_string(), &fsx::read(&p)?)?
    } else {
        let sp = setup::make_split(&ds, spec.split.train_ratio, spec.split.dev_fraction_for(&spec.train), spec.train.seed, spec.split.dataset_split)?;
        spec.split_source = sp.source.clone();
        sp
    };
    let inputs = setup::build_inputs(&device, &ds, &spec)?;
    let notes = inputs.notes.clone();
    let model = spec.model.build(&inputs)?;
    let params = model.init(&device, inputs.n, inputs.graph.num_rel(), spec.train.seed)?;
    let mut trainer = Trainer::new(model, inputs, spec.train.clone(), split, params)?;
    let dir = if resume { dir } else { RunDir(args.out.clone().unwrap_or_else(|| setup::default_run_dir(&ds, &spec))) };
    let fp = Fingerprint::of(&ds);
    let split_tsv = trainer.split.to_tsv(&ds);

    if resume {
        let st_path = dir.file("resume.json");
        let text = String::from_utf8_lossy(&fsx::read(&st_path)?).to_string();
        let st: TrainerState = setup::parse_json(&st_path.display().to_string(), &text)?;
        let tpath = dir.file("resume.safetensors");
        let data = CheckpointData::parse(&tpath.display().to_string(), &fsx::read(&tpath)?)?;
        if data.metadata.get("epoch").map(String::as_str) != Some(st.epoch.to_string().as_str()) {
            return Err(Error::Format { path: tpath.display().to_string(), detail: "resume.json and resume.safetensors are from different epochs".into() });
        }
        trainer.restore(&st, &data.params(&device)?, &tpath.display().to_string())?;
        trim_jsonl(&dir.file("train.jsonl"), st.epoch.saturating_sub(1))?;
        trim_jsonl(&dir.file("metrics.jsonl"), st.epoch)?;
        // The config may have been extended (--epochs).
        fsx::write_atomic(&setup::run_config_path(&dir.0), setup::run_config_text(&spec)?.as_bytes())?;
        println!("resuming {} at epoch {} of {}", dir.0.display(), st.epoch, spec.train.epochs);
    } else {
        fsx::create_dir(&dir.0)?;
        fsx::write_atomic(&dir.file("config.toml"), setup::run_config_text(&spec)?.as_bytes())?;
        fsx::write_atomic(&dir.file("split.tsv"), split_tsv.as_bytes())?;
        for f in ["train.jsonl", "metrics.jsonl"] {
            fsx::write_atomic(&dir.file(f), b"")?;
        }
    }

    let setting = setting_line(&ds, &spec, &trainer);
    println!("run directory: {}", dir.0.display());
    println!("device: {}", device_name(&device));
    println!("setting: {setting}");
    for n in &notes {
        println!("  {n}");
    }
    println!("parameters: {} scalars; {} entities, {} directed relation pairs", trainer.params.numel(), trainer.inputs.n, trainer.inputs.graph.num_edges());

    let interactive = !args.quiet && std::io::stderr().is_terminal();
    let pb = if interactive { ProgressBar::new(spec.train.epochs as u64) } else { ProgressBar::hidden() };
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} epochs [{elapsed_precise}<{eta_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb.set_position(trainer.epoch as u64);
    let metric_label = match spec.train.protocol {
        Protocol::Clean => "dev H@1 (CSLS)",
        Protocol::Reference => "test H@1 (CSLS)",
    };
    let (mut epoch_secs, mut eval_secs): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut last_metric = String::new();
    while !trainer.done() {
        let t0 = Instant::now();
        let stats = match trainer.run_epoch() {
            Ok(s) => s,
            Err(e @ Error::NonFinite { .. }) => {
                pb.abandon();
                eprintln!("stopped: {e}. The last good checkpoint is {}.", dir.file("checkpoint.safetensors").display());
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        epoch_secs.push(t0.elapsed().as_secs_f64());
        fsx::append_line(&dir.file("train.jsonl"), &setup::json(&stats))?;
        if let Some(il) = &stats.il {
            if il.added > 0 {
                log::info!("epoch {}: iterative learning added {} pairs ({} correct)", stats.epoch, il.added, il.added_correct);
            }
        }
        pb.set_position(trainer.epoch as u64);
        pb.set_message(format!("loss {:.4}{last_metric}", stats.loss));
        if trainer.eval_due() {
            // The metrics of a checkpoint to write now, if one is due.
            let checkpoint = if trainer.eval_split().1.is_empty() {
                // train.select_last without a dev split: nothing to evaluate; the checkpoint follows the run.
                if !interactive && !args.quiet {
                    println!("epoch {:>4}: loss {:.4}", trainer.epoch, stats.loss);
                }
                Some(json!({}))
            } else {
                let t1 = Instant::now();
                let rec: EvalRecord = trainer.evaluate_and_select()?;
                eval_secs.push(t1.elapsed().as_secs_f64());
                let mut line = serde_json::to_value(&rec).unwrap_or(json!({}));
                line["kind"] = json!("eval");
                line["seconds"] = json!(t1.elapsed().as_secs_f64());
                fsx::append_line(&dir.file("metrics.jsonl"), &line.to_string())?;
                let m = rec.report.csls.as_ref().unwrap_or(&rec.report.plain).l2r;
                last_metric = format!(" | {} H@1 {:.4} MRR {:.4}", rec.split, m.hits1, m.mrr);
                if !interactive && !args.quiet {
                    println!("epoch {:>4}: loss {:.4}{last_metric}{}", trainer.epoch, stats.loss, if rec.improved { " *" } else { "" });
                }
                (rec.improved || spec.train.select_last).then(|| json!({ rec.split: rec.report }))
            };
            if let Some(metrics) = checkpoint {
                write_checkpoint(&dir, &trainer.params, checkpoint_meta(&spec, &fp, &split_tsv, trainer.epoch, &metrics))?;
            }
            write_resume(&dir, &trainer)?;
            write_curve(&dir, &format!("{} ({})", ds.name, metric_label), metric_label)?;
        }
    }
    pb.finish_and_clear();

    // The selected model on the test split (never used for selection in the clean protocol).
    let (selected, sel_epoch) = trainer.selected();
    let selected = selected.clone();
    let t1 = Instant::now();
    let test = trainer.evaluate_on(&selected, &trainer.split.test, true)?;
    let t_test = t1.elapsed().as_secs_f64();
    if !args.quiet {
        for note in trainer.model.notes() {
            println!("{note}");
        }
    }
    let dev = if trainer.split.dev.is_empty() { None } else { Some(trainer.evaluate_dev(&selected, false)?) };
    let metrics = json!({ "test": test, "dev": dev });
    fsx::append_line(
        &dir.file("metrics.jsonl"),
        &json!({
            "kind": "final", "epoch": sel_epoch, "epochs": trainer.epoch, "test": test, "dev": dev,
            "test_eval_seconds": t_test, "epoch_seconds_median": median(epoch_secs.clone()), "eval_seconds_median": median(eval_secs.clone()),
            "session_seconds": t_start.elapsed().as_secs_f64(), "resumed": resume,
            "device": device_name(&device), "peak_rss_bytes": setup::peak_rss_bytes(),
            "gpu_peak_bytes": match &device { Device::Gpu(c) => Some(c.pool_stats().peak_live_bytes), Device::Cpu => None },
            "final_train_pairs": trainer.train_pairs.len(),
            "dataset": ds.name, "setting": setting,
            "modalities": trainer.model.modalities().iter().map(|m| m.name()).collect::<Vec<_>>(),
            "filled": trainer.inputs.filled().iter().filter(|(m, _)| trainer.model.modalities().contains(m)).map(|(m, p)| (m.name().to_string(), json!(p.name()))).collect::<serde_json::Map<_, _>>(),
            "split_counts": [trainer.split.train.len(), trainer.split.dev.len(), trainer.split.test.len()],
            "dev_distractors": trainer.dev_distractors().len(),
            "model_notes": trainer.model.notes(),
        })
        .to_string(),
    )?;
    write_checkpoint(&dir, &selected, checkpoint_meta(&spec, &fp, &split_tsv, sel_epoch, &metrics))?;

    println!();
    println!("setting: {setting}");
    println!(
        "model {}; test metrics ({} pairs, candidates = the test pairs' KG2 entities):",
        match spec.train.protocol {
            _ if spec.train.select_last => format!("of the last epoch, {sel_epoch} (train.select_last)"),
            Protocol::Clean => format!("selected at epoch {sel_epoch} on the dev split"),
            Protocol::Reference => format!("selected at epoch {sel_epoch} on the TEST split (reference protocol: selection on test, as the released code)"),
        },
        test.pairs
    );
    print!("{}", render_report(&test));
    // A resumed run with nothing left to train times no epochs and no evaluations this session.
    let per = |v: Vec<f64>, what: &str| if v.is_empty() { format!("no {what} this session") } else { format!("{:.3} s per {what} (median)", median(v)) };
    println!(
        "time: {:.1} s total, {}, {}, {:.2} s for the final test evaluation",
        t_start.elapsed().as_secs_f64(),
        per(epoch_secs, "epoch"),
        per(eval_secs, "in-training evaluation"),
        t_test
    );
    println!("checkpoint: {}", dir.file("checkpoint.safetensors").display());
    Ok(())
}

pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "CPU".into(),
        Device::Gpu(ctx) => {
            let r = ctx.report();
            format!("{} ({}, {}{})", r.name, r.backend, r.device_type, if r.is_software { ", software" } else { "" })
        }
    }
}
