//! `mmea bench --train DATA [--model M] [--protocol P] [--random-images W] [--set K=V]`: seconds per
//! training epoch and per full evaluation of a model (LoginMEA by default) on a real dataset, with each
//! epoch's loss (the backends' losses should agree), on each backend available (the CPU always; wgpu
//! when an adapter exists, unless `--backend cpu`). Medians of `--runs` epochs after one warm-up epoch;
//! the evaluation is the final one of a run (all entities forward, test pairs: plain, CSLS and
//! Sinkhorn, both directions), skipped with `--no-eval`. `--random-images W` gives every entity a
//! random W-wide image row (the released codes' inputs have an image feature for every entity; random
//! values, so that nothing can skip zero rows); timing only. With `MMEA_PROFILE=1` the CPU backend also
//! prints seconds per op. A benchmark, not a test.

use std::time::Instant;

use mmea_core::data::{self, Dataset, FillPolicy, ModalityFeatures, RawFeatures, Rng};
use mmea_core::model::checkpoint;
use mmea_core::run::enum_name;
use mmea_core::train::{Protocol, Trainer};
use mmea_core::{Backend, Device, Result};

use crate::bench::median;
use crate::setup;
use crate::train_cmd::{device_name, TrainArgs};

/// What `mmea bench --train` measures.
pub struct Options {
    pub runs: usize,
    pub model: String,
    pub with_eval: bool,
    pub protocol: Option<Protocol>,
    pub random_images: Option<usize>,
    pub set: Vec<String>,
}

/// Every entity gets a row of `width` uniform values in [-1, 1) (seeded), then the usual attachment
/// (L2-normalised rows, as every reference code does for images).
fn random_images(ds: &Dataset, width: usize, seed: u64) -> Result<ModalityFeatures> {
    let n = ds.entities.len();
    let mut rng = Rng::new(seed ^ 0x1A6E_5EED);
    let raw = RawFeatures {
        path: format!("random {width}-wide image rows (timing only)"),
        ids: (0..n as u32).map(|i| ds.external(i)).collect(),
        dim: width,
        data: (0..n * width).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32).collect(),
    };
    data::attach(ds, &raw, "image", FillPolicy::NeighbourMean, seed, true)
}

pub fn run(data: &str, backend: Backend, o: &Options) -> Result<()> {
    let runs = o.runs;
    let args = TrainArgs { data: Some(data.to_string()), model: Some(o.model.clone()), protocol: o.protocol, set: o.set.clone(), ..TrainArgs::demo() };
    let spec = args.spec_for(Backend::Cpu)?;
    let ds = setup::load_dataset(&spec.data)?;
    let images = match o.random_images {
        Some(w) => Some(random_images(&ds, w, spec.train.seed)?),
        None => setup::load_images(&ds, &spec)?,
    };
    let profile = std::env::var("MMEA_PROFILE").is_ok_and(|v| v == "1");
    let split = setup::make_split(&ds, spec.split.train_ratio, 0.1, spec.train.seed, true)?;
    let mut devices = vec![Device::Cpu];
    if backend != Backend::Cpu {
        match Backend::Wgpu.open_blocking() {
            Ok(d @ Device::Gpu(_)) => devices.push(d),
            Ok(_) => {}
            Err(e) => println!("wgpu: not available ({e}); CPU figures only"),
        }
    }
    println!(
        "training benchmark: {} (d = {}, {} protocol, batch {}{}) on {} ({} entities), train {} / test {} pairs; median of {runs} epochs after one warm-up",
        spec.model.name(),
        spec.model.dim(),
        enum_name(&spec.train.protocol),
        spec.train.batch,
        o.random_images.map_or_else(String::new, |w| format!(", random {w}-wide image rows (timing only)")),
        ds.name,
        ds.entities.len(),
        split.train.len(),
        split.test.len()
    );
    let mut rows = Vec::new();
    for dev in devices {
        let inputs = checkpoint::build_inputs(&dev, &ds, &spec.modalities, images.as_ref())?.0;
        let model = spec.model.build(&inputs)?;
        let params = model.init(&dev, inputs.n, inputs.graph.num_rel(), spec.train.seed)?;
        let mut tr = Trainer::new(model, inputs, spec.train.clone(), split.clone(), params)?;
        let sync = |d: &Device| -> Result<()> {
            if let Device::Gpu(c) = d {
                c.synchronize()?;
            }
            Ok(())
        };
        let warm = tr.run_epoch()?;
        sync(&dev)?;
        let profiling = profile && matches!(dev, Device::Cpu);
        mmea_core::profile::set_enabled(profiling);
        mmea_core::profile::take();
        eprintln!("  [{}] warm-up epoch: loss {:.6}", device_name(&dev), warm.loss);
        let mut epochs = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let stats = tr.run_epoch()?;
            sync(&dev)?;
            epochs.push(t0.elapsed().as_secs_f64());
            eprintln!("  [{}] epoch: {:.2} s, loss {:.6}", device_name(&dev), epochs.last().copied().unwrap_or_default(), stats.loss);
        }
        if profiling {
            print_profile("one training epoch", epochs.iter().sum::<f64>(), runs);
        }
        let eval = if o.with_eval {
            let t0 = Instant::now();
            let params = tr.params.clone();
            tr.evaluate_on(&params, &tr.split.test, true)?;
            let secs = t0.elapsed().as_secs_f64();
            eprintln!("  [{}] full evaluation: {secs:.2} s", device_name(&dev));
            if profiling {
                print_profile("the full evaluation", secs, 1);
            }
            // The scoring alone (similarity, CSLS, Sinkhorn, ranks) on embeddings computed beforehand.
            let blocks = mmea_core::model::embed_blocks(tr.model.as_ref(), &params, &tr.inputs)?;
            let (left, right): (Vec<u32>, Vec<u32>) = tr.split.test.iter().copied().unzip();
            let p = pollster::block_on(mmea_core::model::align::normalized_blocks(&blocks, &left))?;
            let q = pollster::block_on(mmea_core::model::align::normalized_blocks(&blocks, &right))?;
            sync(&dev)?;
            mmea_core::profile::take();
            let t0 = Instant::now();
            pollster::block_on(mmea_core::evaluate::evaluate_normalized_blocks(&p, &q, &tr.cfg.eval_options(true)))?;
            sync(&dev)?;
            let scoring = t0.elapsed().as_secs_f64();
            eprintln!(
                "  [{}] of which scoring the test pairs ({} x {}, d = {}): {scoring:.2} s",
                device_name(&dev),
                left.len(),
                right.len(),
                p.iter().map(|b| b.shape()[1]).sum::<usize>()
            );
            if profiling {
                print_profile("scoring the test pairs", scoring, 1);
            }
            Some((secs, scoring))
        } else {
            None
        };
        mmea_core::profile::set_enabled(false);
        rows.push((device_name(&dev), median(epochs), eval));
    }
    if let Some(rss) = setup::peak_rss_bytes() {
        println!("peak resident memory: {:.2} GB", rss as f64 / 1e9);
    }
    println!("{:<48} {:>12} {:>16} {:>12}", "backend", "s / epoch", "s / evaluation", "of which scoring");
    for (name, e, v) in &rows {
        let (v, sc) = v.map_or_else(|| ("skipped".to_string(), "skipped".to_string()), |(v, sc)| (format!("{v:.2}"), format!("{sc:.2}")));
        println!("{name:<48} {e:>12.2} {v:>16} {sc:>12}");
    }
    if let [cpu, gpu] = rows.as_slice() {
        print!("wgpu / CPU time: epoch {:.2}x", gpu.1 / cpu.1);
        match (cpu.2, gpu.2) {
            (Some(c), Some(g)) => println!(", evaluation {:.2}x", g.0 / c.0),
            _ => println!(),
        }
    }
    Ok(())
}

/// The profiler's table for `times` repetitions that took `wall` seconds in all: seconds per repetition of
/// each op and phase (exclusive), its calls, its share, and the time outside every op (host glue).
fn print_profile(what: &str, wall: f64, times: usize) {
    let ops = mmea_core::profile::take();
    let per = |s: f64| s / times.max(1) as f64;
    let wall = per(wall);
    println!("CPU time per op in {what} (exclusive, mean of {times}; {wall:.2} s in all):");
    println!("  {:<34} {:>9} {:>10} {:>7} {:>7}", "op", "phase", "s", "calls", "share");
    let mut inside = 0.0;
    for t in &ops {
        let s = per(t.seconds);
        inside += s;
        if s >= 0.005 {
            let phase = if t.backward { "backward" } else { "forward" };
            println!("  {:<34} {phase:>9} {s:>10.3} {:>7} {:>6.1}%", t.op, t.calls / times.max(1) as u64, 100.0 * s / wall);
        }
    }
    let outside = (wall - inside).max(0.0);
    println!("  {:<34} {:>9} {outside:>10.3} {:>7} {:>6.1}%", "(outside ops: host glue)", "", "", 100.0 * outside / wall);
}
