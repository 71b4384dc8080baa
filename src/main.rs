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
    no_huge_pages();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wick: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc asks the kernel for transparent huge pages on its arenas. Faulting a 2 MB page in
/// means clearing it and, once another process has fragmented memory, compacting first: on
/// the 2-core test machine that made loading the 3B 2.4x slower (3.5 s against 8.4-13 s in
/// alternating runs of `wick bench llm`) and a spoken reply 0.4 s slower after another
/// program ran, with no gain in prompt or generation speed to pay for it. So the process opts
/// out, whatever the system's setting; the flag is the kernel's own, per process.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        // Only speed is at stake, and some kernels and emulators (qemu-user) refuse the call:
        // note it for whoever looks (-vv) and go on.
        tracing::debug!("transparent huge pages stay as the system has them: prctl refused ({e})");
    }
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
