//! `mmea report`: the results tables, generated from run folders (never typed by hand).
//!
//! Each row comes from a run's `config.toml` (or an older folder's `config.json`) and the `final` line of
//! its `metrics.jsonl`; the setting is spelled out in the columns and the row links the config that
//! repeats it. `mmea report DIR...` prints the table of any run folders. `mmea report` alone reads
//! `results/manifest.toml`, which names the run behind each row of each table, and writes
//! `docs/results.md` and the README's headline table (between `<!-- results:begin -->` and
//! `<!-- results:end -->`); with `--check` it writes nothing and fails when either is stale.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mmea_core::model::{LabelPropVariant, ModelConfig};
use mmea_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::fsx;
use crate::setup::{self, RunSpec};

const BEGIN: &str = "<!-- results:begin -->";
const END: &str = "<!-- results:end -->";

struct Row {
    dir: PathBuf,
    dataset: String,
    spec: RunSpec,
    fin: Value,
}

fn load(dir: &Path) -> Result<Row> {
    if !dir.is_dir() {
        return Err(Error::Format { path: dir.display().to_string(), detail: "not a run folder (no such directory)".into() });
    }
    let spec: RunSpec = setup::read_run_spec(&setup::run_config_path(dir))?;
    let mpath = dir.join("metrics.jsonl");
    let text = String::from_utf8_lossy(&fsx::read(&mpath)?).to_string();
    let fin = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "final")
        .ok_or_else(|| Error::Format { path: mpath.display().to_string(), detail: "no final evaluation: the run has not finished".into() })?;
    let dataset = fin["dataset"].as_str().unwrap_or("?").to_string();
    Ok(Row { dir: dir.to_path_buf(), dataset, spec, fin })
}

fn label(dataset: &str) -> String {
    if dataset.contains("fb237") {
        format!("{dataset} (derived stand-in for FB15K-DB15K, not comparable to published FB15K-DB15K)")
    } else {
        dataset.to_string()
    }
}

fn m(v: &Value, path: &[&str]) -> String {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64().map(|f| format!("{f:.3}")).unwrap_or_else(|| "–".into())
}

fn run_time(f: &Value) -> String {
    match f["session_seconds"].as_f64() {
        Some(t) if f["resumed"].as_bool() == Some(true) => format!("{t:.0} s (resumed)"),
        Some(t) => format!("{t:.0} s"),
        None => "–".into(),
    }
}

fn peak_memory(f: &Value) -> String {
    let gb = |v: &Value| v.as_f64().map(|b| format!("{:.1} GB", b / 1e9));
    match (gb(&f["peak_rss_bytes"]), gb(&f["gpu_peak_bytes"])) {
        (Some(r), Some(g)) => format!("{r} RSS, {g} GPU"),
        (Some(r), None) => format!("{r} RSS"),
        (None, Some(g)) => format!("{g} GPU"),
        (None, None) => "–".into(),
    }
}

/// The model column: the name, and for the training-free aligner its variant.
fn model_label(m: &ModelConfig) -> String {
    match m {
        ModelConfig::LabelProp(c) if c.variant == LabelPropVariant::Lightea => "label-prop (LightEA)".to_string(),
        ModelConfig::LabelProp(_) => "label-prop (simple)".to_string(),
        other => other.name().to_string(),
    }
}

/// What a row says of the image and attribute modalities it does not read: absent from the data (left
/// out, never faked) or turned off in the config.
fn missing(r: &Row, read: &[&str]) -> String {
    if read.is_empty() && matches!(r.spec.model.name(), "structure" | "label-prop") {
        return "not read by this model".into();
    }
    let mut parts = Vec::new();
    for (m, on) in [("image", r.spec.modalities.images), ("attribute", r.spec.modalities.attributes)] {
        if let Some(p) = r.fin["filled"][m].as_str() {
            parts.push(format!("{m}: absent, {p}"));
            continue;
        }
        if read.contains(&m) {
            continue;
        }
        parts.push(if on { format!("{m}: absent, left out") } else { format!("{m}: off (modalities.{m}s = false)") });
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

/// The table of `dirs`, each row linking its config file at the path `link` gives for it.
pub fn table(dirs: &[PathBuf], link: &dyn Fn(&Path) -> String, sort: bool) -> Result<String> {
    let mut rows: Vec<Row> = dirs.iter().map(|d| load(d)).collect::<Result<_>>()?;
    if sort {
        rows.sort_by(|a, b| {
            (a.dataset.as_str(), a.spec.model.name(), a.spec.train.iterative, &a.spec.command).cmp(&(
                b.dataset.as_str(),
                b.spec.model.name(),
                b.spec.train.iterative,
                &b.spec.command,
            ))
        });
    }
    let mut s = String::new();
    s += "| dataset | model | seeds (train/dev/test) | modalities | missing modalities | names | iterative | protocol, selection | H@1 | H@10 | MRR | H@1 plain | H@1 Sinkhorn | epochs (selected) | s/epoch | run time | peak memory | device | config |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in &rows {
        let f = &r.fin;
        let counts = f["split_counts"].as_array().map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("/")).unwrap_or_default();
        let read: Vec<&str> = f["modalities"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        // The modalities read from the data (a filled one is in the next column, with its policy).
        let mods: Vec<String> = read.iter().filter(|m| f["filled"][**m].is_null()).map(|m| r.spec.modalities.label(m)).collect();
        let modalities = if mods.is_empty() { "structure".to_string() } else { format!("structure + {}", mods.join(" + ")) };
        // The distractor count actually used (clamped to the unlabelled entities); older records lack it.
        let distractors = f["dev_distractors"].as_u64().map_or(r.spec.train.dev_distractors, |k| k as usize);
        let protocol = match (r.spec.train.protocol, r.spec.train.select_last, distractors) {
            (mmea_core::train::Protocol::Clean, true, _) => "clean, last epoch (train.select_last)".to_string(),
            (mmea_core::train::Protocol::Clean, false, 0) => "clean, best on dev".to_string(),
            (mmea_core::train::Protocol::Clean, false, k) => format!("clean, best on dev among {k} distractors"),
            (mmea_core::train::Protocol::Reference, true, _) => "reference, last epoch".to_string(),
            (mmea_core::train::Protocol::Reference, false, _) => "reference, best on TEST".to_string(),
        };
        let csls = ["test", "csls", "l2r"];
        let _ = writeln!(
            s,
            "| {} | {} | {:.0}% ({counts}) | {modalities} | {} | {} | {} | {protocol} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | [config]({}) |",
            label(&r.dataset),
            model_label(&r.spec.model),
            r.spec.split.train_ratio * 100.0,
            missing(r, &read),
            if r.spec.modalities.names { "on" } else { "off" },
            match (r.spec.train.iterative, r.spec.train.il_refresh, &r.spec.model) {
                (false, _, ModelConfig::LabelProp(c)) if c.variant == LabelPropVariant::Lightea && c.rounds > 1 =>
                    format!("bootstrapping ({} round{})", c.rounds - 1, if c.rounds == 2 { "" } else { "s" }),
                (false, _, _) => "no".to_string(),
                (true, false, _) => "yes".to_string(),
                (true, true, _) => "yes (re-labelling, --il-refresh)".to_string(),
            },
            m(f, &[csls[0], csls[1], csls[2], "hits1"]),
            m(f, &[csls[0], csls[1], csls[2], "hits10"]),
            m(f, &[csls[0], csls[1], csls[2], "mrr"]),
            m(f, &["test", "plain", "l2r", "hits1"]),
            match f["test"]["sinkhorn_top_k"].as_u64() {
                Some(k) => format!("{} (top-{k})", m(f, &["test", "sinkhorn", "l2r", "hits1"])),
                None => m(f, &["test", "sinkhorn", "l2r", "hits1"]),
            },
            f["epochs"],
            f["epoch"],
            // A run resumed only for its final evaluation timed no epoch.
            f["epoch_seconds_median"].as_f64().filter(|v| v.is_finite()).map_or("–".to_string(), |v| format!("{v:.1}")),
            run_time(f),
            peak_memory(f),
            f["device"].as_str().unwrap_or("?"),
            link(&setup::run_config_path(&r.dir)),
        );
    }
    s += "\nH@1, H@10, MRR: test split, l2r, CSLS (k = 3), candidates = the test pairs' KG2 entities, as the reference codes evaluate. \
          \"H@1 plain\" ranks by cosine; \"H@1 Sinkhorn\" by dense log-domain Sinkhorn (ε = 0.02, 10 iterations), or, marked top-k, by sparse Sinkhorn over each query's k best \
          candidates (LightEA's decoding, 15 iterations). \
          s/epoch is the median over the run's epochs on the device named (– when its last session trained no epoch). Run time: the whole training command \
          (its last session, marked \"resumed\", when the run was continued with --resume), evaluations included. \
          Peak memory: the process's peak resident memory (and the GPU buffers' peak on wgpu); \"–\" for runs \
          recorded before it was kept.\n";
    Ok(s)
}

/// `mmea report DIR...`: the table of these run folders on stdout.
pub fn print(dirs: &[PathBuf]) -> Result<()> {
    print!("{}", table(dirs, &|p| p.display().to_string(), true)?);
    Ok(())
}

/// `results/manifest.toml`: the tables of docs/results.md and the README's headline rows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// The README's headline table: run folders under results/.
    headline: Vec<String>,
    /// A sentence stating the headline table's setting.
    headline_setting: String,
    table: Vec<ManifestTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestTable {
    title: String,
    /// What the table shows and how to read it.
    #[serde(default)]
    about: String,
    runs: Vec<String>,
}

fn results_md(m: &Manifest, root: &Path) -> Result<String> {
    let mut s = String::from(
        "# Results\n\nGenerated by `mmea report` from the run folders under `results/` (their `config.toml` and \
         `metrics.jsonl`) and `results/manifest.toml`, which names the run behind each row. Do not edit by hand: \
         CI runs `mmea report --check` and fails when this file is stale. Each row links the config that repeats \
         the run: `cargo run --release -- train --config results/<run>/config.toml`. What was tried besides \
         these runs, with its numbers: [experiments.md](experiments.md).\n",
    );
    for t in &m.table {
        s += &format!("\n## {}\n\n", t.title);
        if !t.about.is_empty() {
            s += &format!("{}\n\n", t.about.trim());
        }
        let dirs: Vec<PathBuf> = t.runs.iter().map(|r| root.join("results").join(r)).collect();
        // Links relative to docs/.
        let link = |p: &Path| format!("../{}", p.strip_prefix(root).unwrap_or(p).display());
        s += &table(&dirs, &link, false)?;
    }
    Ok(s)
}

/// The README's headline table: a few columns, the setting stated above it.
fn headline(manifest: &Manifest, root: &Path) -> Result<String> {
    let mut s = format!("{}\n\n", manifest.headline_setting.trim());
    s += "| dataset | model | iterative | selection | test H@1 (CSLS) | MRR | H@1 (Sinkhorn) | config |\n|---|---|---|---|---|---|---|---|\n";
    for r in &manifest.headline {
        let dir = root.join("results").join(r);
        let row = load(&dir)?;
        let f = &row.fin;
        let sel = if row.spec.train.select_last { "refit, epoch count from a dev run" } else { "best on dev" };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {sel} | {} | {} | {} | [config](results/{r}/{}) |",
            label(&row.dataset),
            row.spec.model.name(),
            if row.spec.train.iterative { "yes" } else { "no" },
            m(f, &["test", "csls", "l2r", "hits1"]),
            m(f, &["test", "csls", "l2r", "mrr"]),
            m(f, &["test", "sinkhorn", "l2r", "hits1"]),
            setup::run_config_path(&dir).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        );
    }
    s += "\nAll tables, with every column of the setting: [docs/results.md](docs/results.md).\n";
    Ok(s)
}

fn replace_between(path: &Path, text: &str, body: &str) -> Result<String> {
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        return Err(Error::Format { path: path.display().to_string(), detail: format!("no `{BEGIN}` … `{END}` section to replace") });
    };
    if b < a {
        return Err(Error::Format { path: path.display().to_string(), detail: "the results markers are out of order".into() });
    }
    Ok(format!("{}{BEGIN}\n{body}{}", &text[..a], &text[b..]))
}

/// `mmea report` without run folders: regenerate (or, with `check`, verify) docs/results.md and the
/// README's headline table from `manifest` (default results/manifest.toml; paths relative to the folder
/// above results/). Returns false when `check` found a stale file.
pub fn generate(manifest: &Path, check: bool) -> Result<bool> {
    let text = String::from_utf8_lossy(&fsx::read(manifest)?).to_string();
    let m: Manifest = toml::from_str(&text).map_err(|e| Error::Format { path: manifest.display().to_string(), detail: format!("bad manifest: {}", e.to_string().trim_end()) })?;
    let root = manifest.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
    let results = root.join("docs/results.md");
    let readme = root.join("README.md");
    let new_results = results_md(&m, &root)?;
    let old_readme = String::from_utf8_lossy(&fsx::read(&readme)?).to_string();
    let new_readme = replace_between(&readme, &old_readme, &headline(&m, &root)?)?;
    let old_results = std::fs::read_to_string(&results).unwrap_or_default();
    let runs: usize = m.table.iter().map(|t| t.runs.len()).sum();
    if check {
        let mut ok = true;
        for (p, old, new) in [(&results, &old_results, &new_results), (&readme, &old_readme, &new_readme)] {
            if old != new {
                eprintln!("error: {} is stale: regenerate it with `cargo run --release -- report`", p.display());
                ok = false;
            }
        }
        if ok {
            println!("{} and {}'s headline table are current ({runs} runs in {} tables)", results.display(), readme.display(), m.table.len());
        }
        return Ok(ok);
    }
    fsx::write_atomic(&results, new_results.as_bytes())?;
    fsx::write_atomic(&readme, new_readme.as_bytes())?;
    println!("wrote {} ({runs} runs in {} tables) and the headline table of {}", results.display(), m.table.len(), readme.display());
    Ok(true)
}
