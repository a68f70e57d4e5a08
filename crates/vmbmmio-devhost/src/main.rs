//! `vmbmmio-devhost`: command-line entry point of the device host.

use clap::Parser;

/// The vmbmmio HDV device host.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("vmbmmio-devhost: no command implemented yet");
    std::process::exit(2);
}
