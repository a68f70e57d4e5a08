//! `hvsim`: runs the simulated end-to-end demo (`cargo run -p hvsim -- demo`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => {
            eprintln!("hvsim demo: not implemented yet (see the open issues)");
            std::process::exit(2);
        }
        _ => {
            eprintln!("usage: hvsim demo");
            std::process::exit(2);
        }
    }
}
