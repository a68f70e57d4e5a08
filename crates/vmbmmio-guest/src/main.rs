//! `vmbmmio-guest`: the Linux guest agent's command line (work in progress, issue 11).

fn main() {
    eprintln!("vmbmmio-guest: not implemented yet");
    std::process::exit(2);
}
