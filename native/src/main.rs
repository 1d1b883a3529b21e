//! `mmea`: multi-modal entity alignment on any GPU (or the CPU).

mod bench;
mod bench_train;
mod ckpt_cmd;
mod data_cmd;
mod fsx;
mod info;
mod plot;
mod report_cmd;
mod setup;
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mmea_core::run::parse_enum;
use mmea_core::train::Protocol;
use mmea_core::Backend;

#[derive(Parser)]
#[command(name = "mmea", version, about = "Multi-modal entity alignment on WebGPU-class GPUs, with a CPU fallback")]
struct Cli {
    /// Compute backend: auto (a hardware GPU if present, else CPU), wgpu (any adapter, even a software
    /// one such as lavapipe), or cpu.
    #[arg(long, global = true, default_value = "auto")]
    backend: Backend,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter (name, backend, device type, limits) and run a short self-check of the
    /// kernels against their CPU twins.
    Info {
        /// Skip the self-check.
        #[arg(long)]
        no_check: bool,
    },
    /// Kernel throughput on every available backend (GFLOP/s, GB/s, medians, wgpu/CPU ratio).
    Bench {
        /// Small sizes instead of the real workload's (for a quick look on slow adapters).
        #[arg(long, conflicts_with = "train")]
        quick: bool,
        /// Timed runs per kernel (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Instead of kernels: seconds per training epoch and per full evaluation on this dataset
        /// directory (or `demo`), on each backend, with each epoch's loss.
        #[arg(long)]
        train: Option<String>,
        /// The model for --train.
        #[arg(long, value_parser = train_cmd::model_name, default_value = "loginmea", requires = "train")]
        model: String,
        /// With --train: epochs only, no full evaluation (on a software adapter the evaluation of a
        /// DBP15K pair takes longer than the epochs).
        #[arg(long, requires = "train")]
        no_eval: bool,
        /// With --train: the protocol (clean or reference: the released code's loop, batch and
        /// missing-modality treatment).
        #[arg(long, value_parser = parse_enum::<Protocol>, requires = "train")]
        protocol: Option<Protocol>,
        /// With --train: a random image feature of this width for every entity (timing only: values
        /// that allow no shortcut on zero rows; never an accuracy figure).
        #[arg(long, value_name = "WIDTH", requires = "train")]
        random_images: Option<usize>,
        /// With --train: overrides one config key, as `mmea train --set` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "train")]
        set: Vec<String>,
    },
    /// Train a model (LoginMEA) on a dataset or the embedded demo pair; evaluate; keep a run directory
    /// with the config, split, metrics, checkpoint and training curve.
    Train(Box<train_cmd::TrainArgs>),
    /// Evaluate a checkpoint on its test split (or dev/train) with the protocol of training.
    Eval {
        #[command(flatten)]
        ck: ckpt_cmd::CkptArgs,
        /// The split to evaluate on (test: never used for selection in the clean protocol).
        #[arg(long, value_enum, default_value = "test")]
        split: ckpt_cmd::Part,
        /// Skip Sinkhorn decoding.
        #[arg(long)]
        no_sinkhorn: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Align every source (KG1) entity: its top-k KG2 candidates with scores, as TSV.
    Align {
        #[command(flatten)]
        ck: ckpt_cmd::CkptArgs,
        /// Candidates listed per source entity.
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Re-rank by sparse Sinkhorn (LightEA style) over each entity's best `--candidates` targets.
        #[arg(long)]
        sinkhorn: bool,
        /// Targets kept per source entity for `--sinkhorn` (LightEA keeps 500); at least `--top-k`.
        #[arg(long, default_value_t = 500)]
        candidates: usize,
        /// Entropy of the `--sinkhorn` re-ranking (smaller is sharper).
        #[arg(long, default_value_t = 0.02)]
        sinkhorn_eps: f32,
        /// Sinkhorn iterations of the `--sinkhorn` re-ranking.
        #[arg(long, default_value_t = 15)]
        sinkhorn_iters: usize,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Export the joint embedding for the TensorFlow Embedding Projector.
    Export {
        #[command(flatten)]
        ck: ckpt_cmd::CkptArgs,
        /// Output directory (tensors.tsv, metadata.tsv, projector_config.json).
        #[arg(long)]
        projector: std::path::PathBuf,
        /// Only the first N entities (KG1 first).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Results tables from run folders. With folders: their table on stdout. Without: regenerate
    /// docs/results.md and the README's headline table from results/manifest.toml.
    Report {
        /// Run folders to tabulate (instead of the manifest).
        runs: Vec<std::path::PathBuf>,
        /// The manifest naming the run behind each row.
        #[arg(long, default_value = "results/manifest.toml", conflicts_with = "runs")]
        manifest: std::path::PathBuf,
        /// Write nothing; fail when docs/results.md or the README's table differs from what the runs give.
        #[arg(long, conflicts_with = "runs")]
        check: bool,
    },
    /// Inspect and validate datasets.
    Data {
        #[command(subcommand)]
        command: data_cmd::DataCommand,
    },
}

/// Keeps freed memory in the process (glibc): the CPU backend allocates and frees tensors of up to
/// hundreds of MB every step, and glibc serves each from a fresh `mmap` (its mmap threshold tops out at
/// 32 MB), so every step paid page faults and zeroing of fresh pages and TLB shootdowns on `munmap`:
/// 38% of a LoginMEA epoch on zh-en (docs/performance.md). With no mmap and no trimming, freed blocks
/// are reused. Peak memory is unchanged; memory is returned to the system when the process exits.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        // The default job: train on the embedded demo pair and print the metrics.
        None => train_cmd::run(train_cmd::TrainArgs::demo(), cli.backend).map(|_| ExitCode::SUCCESS),
        Some(Command::Train(args)) => train_cmd::run(*args, cli.backend).map(|_| ExitCode::SUCCESS),
        Some(Command::Info { no_check }) => info::run(cli.backend, !no_check),
        Some(Command::Bench { runs, train: Some(data), model, no_eval, protocol, random_images, set, .. }) => {
            let opts = bench_train::Options { runs: runs.max(1), model, with_eval: !no_eval, protocol, random_images, set };
            bench_train::run(&data, cli.backend, &opts).map(|_| ExitCode::SUCCESS)
        }
        Some(Command::Bench { quick, runs, train: None, .. }) => bench::run(cli.backend, quick, runs.max(1)).map(|_| ExitCode::SUCCESS),
        Some(Command::Eval { ck, split, no_sinkhorn, json }) => ckpt_cmd::eval(ck, split, !no_sinkhorn, json, cli.backend).map(|_| ExitCode::SUCCESS),
        Some(Command::Align { ck, top_k, sinkhorn, candidates, sinkhorn_eps, sinkhorn_iters, output }) => {
            ckpt_cmd::align(ck, ckpt_cmd::AlignOpts { top_k, sinkhorn, candidates, eps: sinkhorn_eps, iters: sinkhorn_iters, output }, cli.backend).map(|_| ExitCode::SUCCESS)
        }
        Some(Command::Export { ck, projector, limit }) => ckpt_cmd::export(ck, &projector, limit, cli.backend).map(|_| ExitCode::SUCCESS),
        Some(Command::Report { runs, .. }) if !runs.is_empty() => report_cmd::print(&runs).map(|_| ExitCode::SUCCESS),
        Some(Command::Report { manifest, check, .. }) => report_cmd::generate(&manifest, check).map(|ok| if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
        Some(Command::Data { command }) => data_cmd::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
