//! `mmea data …`: dataset inspection. (Filled in by the data layer work.)

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check a dataset directory: counts per KG, then every problem found.
    Check {
        /// The dataset directory.
        dir: std::path::PathBuf,
    },
}

pub fn run(cmd: DataCommand) -> mmea_core::Result<ExitCode> {
    match cmd {
        DataCommand::Check { dir } => {
            eprintln!("mmea data check {}: not implemented yet", dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
