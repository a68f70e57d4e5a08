//! The agent's commands (`docs/guest-agent.md`): each finds the channel and the paired
//! function, opens the session when it needs one, and prints text or (`--json`) one JSON
//! object on stdout. Failures print the discovery module's message (on stderr, and as the
//! `error` object with `--json`) and exit 2 for a usage or setup problem, 1 for a failed check;
//! the printing and the exit codes are the host CLI's, shared in `vmbmmio_cli_support::output`.

pub mod args;
pub mod commands;
pub mod doorbells;
pub mod failure;
pub mod found;
pub mod session_json;

use std::process::ExitCode;

use vmbmmio_cli_support::output::{self, Style, Untexted, split};

use args::{Cli, Command};

/// Runs the command; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let (output, failure) = match &cli.command {
        Command::Status { discover_only } => commands::status(&cli, *discover_only),
        Command::Read(args) => split(commands::read(&cli, args)),
        Command::Write(args) => split(commands::write(&cli, args)),
        Command::Verify(args) => split(commands::verify(&cli, args)),
        Command::Serve => split(commands::serve(&cli)),
        Command::Ring(args) => split(doorbells::ring(&cli, args)),
        Command::Wait(args) => split(doorbells::wait(&cli, args)),
    };
    let style = Style {
        json: cli.json,
        untexted: Untexted::Rendered,
    };
    output::finish("vmbmmio-guest", style, output, failure)
}
