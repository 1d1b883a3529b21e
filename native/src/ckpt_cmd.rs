//! `mmea eval | align | export`: use a checkpoint written by `mmea train`.
//!
//! A checkpoint carries its run spec (data, modalities, model config), the dataset fingerprint and the
//! split, so these commands rebuild exactly the inputs it was trained on, and refuse data that does not
//! match (a different dataset, other modalities, other dimensions).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use mmea_core::data::{Dataset, Split};
use mmea_core::model::align::{normalized_blocks_blocking, sinkhorn_rerank_blocking, top_candidates_blocking};
use mmea_core::model::{checkpoint, embed_blocks, AlignModel, CheckpointData, Inputs, Params};
use mmea_core::train::evaluate_params;
use mmea_core::{Backend, Device, Error, Result};

use crate::fsx;
use crate::setup::{self, RunSpec};
use crate::train_cmd::render_report;

#[derive(Args, Debug)]
pub struct CkptArgs {
    /// The checkpoint (`checkpoint.safetensors` of a run directory).
    pub checkpoint: PathBuf,
    /// The dataset (a bundled name such as `dbp15k/zh_en`, `demo`, or a folder), if not the one the
    /// checkpoint names.
    #[arg(long)]
    pub data: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Part {
    Train,
    Dev,
    Test,
}

/// A checkpoint with everything rebuilt around it.
pub struct Loaded {
    pub spec: RunSpec,
    pub ds: Dataset,
    pub split: Split,
    pub inputs: Inputs,
    pub model: Box<dyn AlignModel>,
    pub params: Params,
    pub device: Device,
}

pub fn load(args: &CkptArgs, backend: Backend) -> Result<Loaded> {
    let path = args.checkpoint.display().to_string();
    let ck = CheckpointData::parse(&path, &fsx::read(&args.checkpoint)?)?;
    // The full native run spec (data path, image files); core's `open` checks the rest.
    let mut spec: RunSpec = setup::parse_json(&path, ck.meta(&path, "run_spec")?)?;
    match &args.data {
        Some(d) => spec.data = d.clone(),
        None => spec.data = setup::recorded_data(&spec.data)?,
    }
    let ds = setup::load_dataset(&spec.data)?;
    let images = setup::load_images(&ds, &spec)?;
    let device = backend.open_blocking()?;
    let o = checkpoint::open(&path, &ck, &ds, images.as_ref(), &device).map_err(|e| match e {
        Error::Format { path, detail } => Error::Format { path, detail: format!("{detail} (data: `{}`)", spec.data) },
        other => other,
    })?;
    Ok(Loaded { spec, ds, split: o.split, inputs: o.inputs, model: o.model, params: o.params, device })
}

pub fn eval(args: CkptArgs, part: Part, sinkhorn: bool, json: bool, backend: Backend) -> Result<()> {
    let l = load(&args, backend)?;
    let (name, pairs) = match part {
        Part::Train => ("train", &l.split.train),
        Part::Dev => ("dev", &l.split.dev),
        Part::Test => ("test", &l.split.test),
    };
    let report = evaluate_params(l.model.as_ref(), &l.params, &l.inputs, pairs, &l.spec.train.eval_options(sinkhorn))?;
    if json {
        println!("{}", setup::json_pretty(&report));
    } else {
        println!("{}: {} split, {} pairs (candidates = the split's KG2 entities)", args.checkpoint.display(), name, report.pairs);
        print!("{}", render_report(&report));
    }
    Ok(())
}

pub struct AlignOpts {
    pub top_k: usize,
    pub sinkhorn: bool,
    pub candidates: usize,
    pub eps: f32,
    pub iters: usize,
    pub output: Option<PathBuf>,
}

pub fn align(args: CkptArgs, o: AlignOpts, backend: Backend) -> Result<()> {
    let l = load(&args, backend)?;
    let blocks = embed_blocks(l.model.as_ref(), &l.params, &l.inputs)?;
    let (n1, n) = (l.inputs.n1 as u32, l.inputs.n as u32);
    let src: Vec<u32> = (0..n1).collect();
    let tgt: Vec<u32> = (n1..n).collect();
    let p = normalized_blocks_blocking(&blocks, &src)?;
    let q = normalized_blocks_blocking(&blocks, &tgt)?;
    if o.top_k == 0 || (o.sinkhorn && o.candidates < o.top_k) {
        return Err(Error::InvalidArgument { op: "align", detail: format!("--top-k must be at least 1 and at most --candidates (got {} and {})", o.top_k, o.candidates) });
    }
    // Sinkhorn re-ranks within the kept candidates.
    let keep = if o.sinkhorn { o.candidates } else { o.top_k }.min(tgt.len());
    let mut cands = top_candidates_blocking(&p, &q, keep)?;
    if o.sinkhorn {
        cands = sinkhorn_rerank_blocking(&l.device, &cands, tgt.len(), o.eps, o.iters)?;
    }
    let gold: HashMap<u32, u32> = l.ds.links.iter().copied().collect();
    let train: std::collections::HashSet<u32> = l.split.train.iter().chain(&l.split.dev).map(|p| p.0).collect();
    let mut out = String::with_capacity(src.len() * o.top_k * 80);
    let score_name = if o.sinkhorn { "sinkhorn_log_plan" } else { "cosine" };
    let _ = writeln!(out, "source_id\tsource\trank\tcandidate_id\tcandidate\t{score_name}\tgold\tsource_in_training");
    let k = o.top_k.min(cands.k);
    for (i, &s) in src.iter().enumerate() {
        for j in 0..k {
            let c = tgt[cands.cols[i * cands.k + j] as usize];
            let g = match gold.get(&s) {
                Some(&g) if g == c => "1",
                Some(_) => "0",
                None => "",
            };
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{:.6}\t{g}\t{}",
                l.ds.external(s),
                l.ds.entities.names[s as usize],
                j + 1,
                l.ds.external(c),
                l.ds.entities.names[c as usize],
                cands.scores[i * cands.k + j],
                u8::from(train.contains(&s))
            );
        }
    }
    match &o.output {
        Some(p) => {
            fsx::write_atomic(p, out.as_bytes())?;
            eprintln!("wrote {} rows for {} source entities to {}", src.len() * k, src.len(), p.display());
        }
        None => {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
        }
    }
    Ok(())
}

pub fn export(args: CkptArgs, dir: &Path, limit: Option<usize>, backend: Backend) -> Result<()> {
    let l = load(&args, backend)?;
    let blocks = embed_blocks(l.model.as_ref(), &l.params, &l.inputs)?;
    let n = l.inputs.n;
    let ids: Vec<u32> = (0..n as u32).take(limit.unwrap_or(n)).collect();
    let rows = normalized_blocks_blocking(&blocks, &ids)?;
    let host: Vec<Vec<f32>> = rows.iter().map(|t| t.to_vec_f32_blocking()).collect::<Result<_>>()?;
    let d: Vec<usize> = rows.iter().map(|t| t.shape()[1]).collect();
    let gold: HashMap<u32, u32> = l.ds.links.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
    let mut vec_tsv = String::new();
    let mut meta = String::from("kg\tid\tname\tgold_match\n");
    for (r, &i) in ids.iter().enumerate() {
        let mut first = true;
        for (b, h) in host.iter().enumerate() {
            for v in &h[r * d[b]..(r + 1) * d[b]] {
                if !first {
                    vec_tsv.push('\t');
                }
                first = false;
                let _ = write!(vec_tsv, "{v:.6}");
            }
        }
        vec_tsv.push('\n');
        let clean = |s: String| s.replace(['\t', '\n'], " ");
        let _ = writeln!(
            meta,
            "KG{}\t{}\t{}\t{}",
            l.ds.kg_of(i) + 1,
            clean(l.ds.external(i)),
            clean(l.ds.entities.names[i as usize].clone()),
            gold.get(&i).map(|&g| clean(l.ds.external(g))).unwrap_or_default()
        );
    }
    fsx::create_dir(dir)?;
    fsx::write_atomic(&dir.join("tensors.tsv"), vec_tsv.as_bytes())?;
    fsx::write_atomic(&dir.join("metadata.tsv"), meta.as_bytes())?;
    let dim: usize = d.iter().sum();
    let config = serde_json::json!({
        "embeddings": [{
            "tensorName": format!("{} joint embedding ({})", l.ds.name, l.spec.model.name()),
            "tensorShape": [ids.len(), dim],
            "tensorPath": "tensors.tsv",
            "metadataPath": "metadata.tsv",
        }]
    });
    fsx::write_atomic(&dir.join("projector_config.json"), serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes())?;
    eprintln!(
        "wrote {} embeddings of dimension {dim} (rows L2-normalised) to {}: tensors.tsv, metadata.tsv, projector_config.json \
         (load them at the TensorFlow Embedding Projector with \"Load\")",
        ids.len(),
        dir.display()
    );
    Ok(())
}
