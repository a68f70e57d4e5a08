//! The CLI's commands (`docs/host-library.md`, "Command line"): each opens the driver, finds
//! the region, attaches with the access it needs and prints text or (`--json`) one JSON object
//! on stdout. Failures print the library's message (on stderr, and as the `error` object with
//! `--json`) and exit 2 for a usage or setup problem, 1 for a failed check; the printing and
//! the exit codes are the guest agent's, shared in `vmbmmio_cli_support::output`.

pub mod args;
mod commands;
mod failure;

use std::process::ExitCode;

use serde_json::{Value, json};
use vmbmmio_cli_support::output::{self, Style, Untexted};
use vmbmmio_host::{Error, Host};

use args::{Cli, Command};
use failure::{Failure, failure};

/// The environment variable that makes the CLI use the library's scripted fake driver instead
/// of `\\.\vmbmmio` (value `demo`): for tests of the command line on any system.
pub const TEST_DOUBLE_ENV: &str = "VMBMMIO_HOST_TEST_DOUBLE";

/// Opens the driver, or the test double named by [`TEST_DOUBLE_ENV`].
pub fn open_host() -> Result<Host, Error> {
    match std::env::var(TEST_DOUBLE_ENV) {
        Ok(name) if name == "demo" => Ok(vmbmmio_host::fake::demo_host()),
        Ok(name) => Err(Error::InvalidArgument {
            what: format!("{TEST_DOUBLE_ENV}={name}: the only test double is `demo`"),
        }),
        Err(_) => Host::open(),
    }
}

/// Runs the command with the host `open` gives; the process's exit code.
pub fn run(cli: &Cli, open: &dyn Fn() -> Result<Host, Error>) -> ExitCode {
    let (output, failure) = outcome(cli, open);
    let style = Style {
        json: cli.json,
        untexted: Untexted::Silent,
    };
    output::finish("vmbmmio-host", style, output, failure)
}

/// The command's output object and failure.
pub fn outcome(cli: &Cli, open: &dyn Fn() -> Result<Host, Error>) -> (Value, Option<Failure>) {
    let host = match open() {
        Ok(host) => host,
        Err(error) => return (json!({}), Some(failure(error))),
    };
    let result = match &cli.command {
        Command::List => commands::list(&host),
        Command::Map(args) => commands::map(cli, &host, args),
        Command::Read(args) => commands::read(cli, &host, args),
        Command::Write(args) => commands::write(cli, &host, args),
        Command::Verify(args) => commands::verify(cli, &host, args),
        Command::Wait(args) => commands::wait(cli, &host, args),
        Command::Ring(args) => commands::ring(cli, &host, args),
    };
    output::split(result)
}
