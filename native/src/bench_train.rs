//! `mmea bench --train DATA [--model M]`: seconds per training epoch and per full evaluation of a model
//! (LoginMEA by default) on a real dataset, with each epoch's loss (the backends' losses should agree), on
//! each backend available (the CPU always; wgpu when an adapter exists, unless `--backend
//! cpu`). Medians of `--runs` epochs after one warm-up epoch; the evaluation is the final one of a run
//! (all entities forward, test pairs: plain, CSLS and Sinkhorn, both directions), skipped with `--no-eval`. A
//! benchmark, not a test.

use std::time::Instant;

use mmea_core::train::Trainer;
use mmea_core::{Backend, Device, Result};

use crate::bench::median;
use crate::setup;
use crate::train_cmd::{device_name, TrainArgs};

pub fn run(data: &str, backend: Backend, runs: usize, model: &str, with_eval: bool) -> Result<()> {
    let args = TrainArgs { data: Some(data.to_string()), model: Some(model.to_string()), ..TrainArgs::demo() };
    let spec = args.spec_for(Backend::Cpu)?;
    let ds = setup::load_dataset(&spec.data)?;
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
        "training benchmark: {} (d = {}, clean protocol) on {} ({} entities), train {} / test {} pairs; median of {runs} epochs after one warm-up",
        spec.model.name(),
        spec.model.dim(),
        ds.name,
        ds.entities.len(),
        split.train.len(),
        split.test.len()
    );
    let mut rows = Vec::new();
    for dev in devices {
        let inputs = setup::build_inputs(&dev, &ds, &spec)?;
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
        eprintln!("  [{}] warm-up epoch: loss {:.6}", device_name(&dev), warm.loss);
        let mut epochs = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let stats = tr.run_epoch()?;
            sync(&dev)?;
            epochs.push(t0.elapsed().as_secs_f64());
            eprintln!("  [{}] epoch: {:.2} s, loss {:.6}", device_name(&dev), epochs.last().copied().unwrap_or_default(), stats.loss);
        }
        let eval = if with_eval {
            let t0 = Instant::now();
            let params = tr.params.clone();
            tr.evaluate_on(&params, &tr.split.test, true)?;
            let secs = t0.elapsed().as_secs_f64();
            eprintln!("  [{}] full evaluation: {secs:.2} s", device_name(&dev));
            Some(secs)
        } else {
            None
        };
        rows.push((device_name(&dev), median(epochs), eval));
    }
    println!("{:<48} {:>12} {:>16}", "backend", "s / epoch", "s / evaluation");
    for (name, e, v) in &rows {
        let v = v.map_or_else(|| "skipped".to_string(), |v| format!("{v:.2}"));
        println!("{name:<48} {e:>12.2} {v:>16}");
    }
    if let [cpu, gpu] = rows.as_slice() {
        print!("wgpu / CPU time: epoch {:.2}x", gpu.1 / cpu.1);
        match (cpu.2, gpu.2) {
            (Some(c), Some(g)) => println!(", evaluation {:.2}x", g / c),
            _ => println!(),
        }
    }
    Ok(())
}
