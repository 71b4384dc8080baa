//! The `wick` command line: one binary for the appliance and for every tool around it. This
//! file parses the arguments, sets up logging and hands over to `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// Inference allocates and frees tensors of many megabytes per layer; glibc's malloc hands
// those back to the kernel and page-faults them in again every time, which cost about a
// tenth of the encoder's time. mimalloc keeps and reuses them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    init_logging(args.verbose);
    huge_pages_for_weights_only();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wick: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Transparent huge pages only where they pay: the LLM's weights, which every token streams
/// whole, and not the rest (see `wick::huge_pages`).
fn huge_pages_for_weights_only() {
    let policy = wick::huge_pages::limit_to_advised();
    tracing::debug!("transparent huge pages: {policy:?}");
}

fn init_logging(verbose: u8) {
    use std::io::IsTerminal;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
