//! One module per command; `run` dispatches.

use crate::Failure;
use crate::cli::{Cli, Command};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let name = match &cli.command {
        Command::Add { .. } => "add",
        Command::Nar { .. } => "nar",
        Command::Info { .. } => "info",
        Command::Import { .. } => "import",
        Command::Serve(_) => "serve",
        Command::Mount(_) => "mount",
    };
    Err(not_built(name))
}

/// The answer of a command that does not exist yet: one line, exit 2.
fn not_built(name: &str) -> Failure {
    Failure {
        code: 2,
        message: format!("`storefs {name}` is not built yet in this version"),
    }
}
