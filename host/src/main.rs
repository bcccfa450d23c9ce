//! The `pulsehost` binary: server and CLI.

fn main() {
    std::process::exit(pulsehost::cli::main());
}
