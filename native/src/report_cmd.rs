//! `mmea report RUN_DIR...`: the results table, generated from run directories (never typed by hand).
//!
//! Each row comes from a run's `config.json` and the `final` line of its `metrics.jsonl`; the setting is
//! spelled out in the columns, and the command that produced the run is printed beside it. With
//! `--readme FILE`, the table replaces the text between `<!-- results:begin -->` and
//! `<!-- results:end -->` in that file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mmea_core::{Error, Result};
use serde_json::Value;

use crate::fsx;
use crate::setup::{self, RunSpec};

const BEGIN: &str = "<!-- results:begin -->";
const END: &str = "<!-- results:end -->";

struct Row {
    dataset: String,
    spec: RunSpec,
    fin: Value,
}

fn load(dir: &Path) -> Result<Row> {
    let cfg = dir.join("config.json");
    let spec: RunSpec = setup::parse_json(&cfg.display().to_string(), &String::from_utf8_lossy(&fsx::read(&cfg)?))?;
    let mpath = dir.join("metrics.jsonl");
    let text = String::from_utf8_lossy(&fsx::read(&mpath)?).to_string();
    let fin = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "final")
        .ok_or_else(|| Error::Format { path: mpath.display().to_string(), detail: "no final evaluation: the run has not finished".into() })?;
    let dataset = fin["dataset"].as_str().unwrap_or("?").to_string();
    Ok(Row { dataset, spec, fin })
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

pub fn table(dirs: &[PathBuf]) -> Result<String> {
    let mut rows: Vec<Row> = dirs.iter().map(|d| load(d)).collect::<Result<_>>()?;
    rows.sort_by(|a, b| (a.dataset.as_str(), a.spec.model.name(), a.spec.train.iterative, &a.spec.command).cmp(&(b.dataset.as_str(), b.spec.model.name(), b.spec.train.iterative, &b.spec.command)));
    let mut s = String::new();
    s += "| dataset | model | seeds train/dev/test | modalities | names | iterative | protocol, selection | H@1 | H@10 | MRR | H@1 plain | H@1 Sinkhorn | epochs (selected) | s/epoch | run time | peak memory | device | command |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in &rows {
        let f = &r.fin;
        let counts = f["split_counts"].as_array().map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("/")).unwrap_or_default();
        let mods: Vec<String> = f["modalities"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(|m| r.spec.modalities.label(m))).collect()).unwrap_or_default();
        let modalities = if mods.is_empty() { "structure".to_string() } else { format!("structure + {}", mods.join(" + ")) };
        // The distractor count actually used (clamped to the unlabelled entities); older records lack it.
        let distractors = f["dev_distractors"].as_u64().map_or(r.spec.train.dev_distractors, |k| k as usize);
        let protocol = match (r.spec.train.protocol, r.spec.train.select_last, distractors) {
            (mmea_core::train::Protocol::Clean, true, _) => "clean, last epoch (--select-last)".to_string(),
            (mmea_core::train::Protocol::Clean, false, 0) => "clean, best on dev".to_string(),
            (mmea_core::train::Protocol::Clean, false, k) => format!("clean, best on dev among {k} distractors"),
            (mmea_core::train::Protocol::Reference, true, _) => "reference, last epoch".to_string(),
            (mmea_core::train::Protocol::Reference, false, _) => "reference, best on TEST".to_string(),
        };
        let csls = ["test", "csls", "l2r"];
        let _ = writeln!(
            s,
            "| {} | {} | {counts} | {modalities} | {} | {} | {protocol} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | `{}` |",
            label(&r.dataset),
            r.spec.model.name(),
            if r.spec.modalities.names { "on" } else { "off" },
            match (r.spec.train.iterative, r.spec.train.il_refresh) {
                (false, _) => "no",
                (true, false) => "yes",
                (true, true) => "yes (re-labelling, --il-refresh)",
            },
            m(f, &[csls[0], csls[1], csls[2], "hits1"]),
            m(f, &[csls[0], csls[1], csls[2], "hits10"]),
            m(f, &[csls[0], csls[1], csls[2], "mrr"]),
            m(f, &["test", "plain", "l2r", "hits1"]),
            m(f, &["test", "sinkhorn", "l2r", "hits1"]),
            f["epochs"],
            f["epoch"],
            // A run resumed only for its final evaluation timed no epoch.
            f["epoch_seconds_median"].as_f64().filter(|v| v.is_finite()).map_or("–".to_string(), |v| format!("{v:.1}")),
            run_time(f),
            peak_memory(f),
            f["device"].as_str().unwrap_or("?"),
            r.spec.command,
        );
    }
    s += "\nH@1, H@10, MRR: test split, l2r, CSLS (k = 3), candidates = the test pairs' KG2 entities (mmea-spec §2). \
          \"H@1 plain\" ranks by cosine; \"H@1 Sinkhorn\" by dense log-domain Sinkhorn (ε = 0.02, 10 iterations). \
          s/epoch is the median over the run's epochs on the device named (– when its last session trained no epoch). Run time: the whole training command \
          (its last session, marked \"resumed\", when the run was continued with --resume), evaluations included. \
          Peak memory: the process's peak resident memory (and the GPU buffers' peak on wgpu); \"–\" for runs \
          recorded before it was kept.\n";
    Ok(s)
}

pub fn run(dirs: &[PathBuf], readme: Option<&Path>) -> Result<()> {
    let t = table(dirs)?;
    match readme {
        None => print!("{t}"),
        Some(p) => {
            let text = String::from_utf8_lossy(&fsx::read(p)?).to_string();
            let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
                return Err(Error::Format { path: p.display().to_string(), detail: format!("no `{BEGIN}` … `{END}` section to replace") });
            };
            if b < a {
                return Err(Error::Format { path: p.display().to_string(), detail: "the results markers are out of order".into() });
            }
            let new = format!("{}{BEGIN}\n{t}{}", &text[..a], &text[b..]);
            fsx::write_atomic(p, new.as_bytes())?;
            eprintln!("updated the results table in {} from {} runs", p.display(), dirs.len());
        }
    }
    Ok(())
}
