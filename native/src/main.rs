//! `mmea`: multi-modal entity alignment on any GPU (or the CPU).

mod bench;
mod data_cmd;
mod info;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
        #[arg(long)]
        quick: bool,
        /// Timed runs per kernel (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Inspect and validate datasets.
    Data {
        #[command(subcommand)]
        command: data_cmd::DataCommand,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        // Until the trainer lands, the default job is the adapter report plus the kernel self-check.
        None => info::run(cli.backend, true),
        Some(Command::Info { no_check }) => info::run(cli.backend, !no_check),
        Some(Command::Bench { quick, runs }) => bench::run(cli.backend, quick, runs.max(1)).map(|_| ExitCode::SUCCESS),
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
