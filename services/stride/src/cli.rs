//! The `stride` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stride",
    version,
    about = "Stride: CDS Hooks clinical decision support for running injuries"
)]
pub struct Cli {
    /// TOML configuration file; STRIDE_* environment variables override it.
    #[arg(long, global = true, env = "STRIDE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve HTTP until SIGTERM.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check and test rule sets.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Schema and semantic checks of rule-set files (default: every file under the guidelines folder).
    Validate { paths: Vec<PathBuf> },
    /// Run each rule set's vignettes (`<version>.vignettes.yaml` beside it).
    Test {
        paths: Vec<PathBuf>,
        /// Print each vignette's decision trace.
        #[arg(long)]
        verbose: bool,
    },
}
