//! `vmbmmio-guest`: the Linux guest agent's command line. Finds vmbmmio's VMBus channel and its
//! paired PCI function, opens the guest-protocol session over `uio_hv_generic` and reads,
//! writes and checks the shared regions through the BAR (`docs/guest-agent.md`).

#[cfg(target_os = "linux")]
mod cli;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    cli::run(cli::args::Cli::parse())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("vmbmmio-guest: the agent runs in a Linux guest only");
    std::process::exit(2);
}
