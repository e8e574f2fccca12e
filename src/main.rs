//! `storefs`: the command line. Parses flags, builds services from store
//! URLs, and runs one command. Errors end as one line on stderr with exit
//! status 1 (2 for usage errors and commands not built yet).

mod cli;
mod commands;
mod malloc;
mod metrics;
mod services;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// What a command that failed reports: a message and an exit status.
pub struct Failure {
    /// 1 for an error, 2 for a usage error.
    pub code: u8,
    /// The whole chain, on one line.
    pub message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: one_line(&e),
        }
    }
}

/// The error and its causes on one line, joined by ": " (each error's text
/// says only its own part; none repeats its cause).
pub fn one_line(e: &anyhow::Error) -> String {
    error_chain(e.as_ref())
}

/// A library error and its causes on one line, joined by ": ".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    storefs_castore::Report(e).to_string().replace('\n', " ")
}

fn main() -> ExitCode {
    malloc::limit_arenas();
    let cli = Cli::parse();
    init_logging();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("storefs: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,fuser=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
