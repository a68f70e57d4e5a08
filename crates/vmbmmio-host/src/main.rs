//! `vmbmmio-host`: the host library's command line. Lists the VMs whose regions a host program
//! can attach to, and reads, writes, checks and rings a region by name
//! (`docs/host-library.md`, "Command line").

mod cli;

fn main() -> std::process::ExitCode {
    use clap::Parser;
    cli::run(&cli::args::Cli::parse(), &cli::open_host)
}
