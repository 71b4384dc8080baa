//! The commands behind the command line. `args` holds their words; each command has a file
//! of its own that turns parsed arguments into calls on the library and prints the result.
//! Loading models goes through [`wick::appliance::assemble`], the same as for the appliance.

pub mod args;
mod ask;
mod bench;
mod chat;
mod ctl;
mod doctor;
mod health;
mod models;
mod run;
mod say;
mod status;
mod transcribe;
mod update;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;

use wick::appliance::assemble::{Assembly, ModelsLocation};
use wick::config::Config;

use args::{BenchCommand, Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    set_threads(cli.threads.unwrap_or(config.runtime.threads));
    let location = ModelsLocation { dir: cli.models_dir, manifest: cli.manifest };
    let assembly = Assembly::new(config, location, cli.device);
    match cli.command {
        Command::Transcribe(args) => transcribe::run(&assembly, args),
        Command::Chat(args) => chat::run(&assembly, args),
        Command::Say(args) => say::run(&assembly, args),
        Command::Ask(args) => ask::run(&assembly, args),
        Command::Run(args) => run::run(&assembly, args),
        Command::Ctl(args) => ctl::run(&assembly.config, args),
        Command::Doctor(args) => doctor::run(&assembly, args),
        Command::Status(args) => status::run(&assembly.config, args),
        Command::Update(args) => update::run(args),
        Command::Health(args) => health::run(&assembly, args),
        Command::Bench(BenchCommand::Stt(args)) => bench::stt(&assembly, args),
        Command::Bench(BenchCommand::Tts { voice, json }) => bench::tts(&assembly, &voice, json),
        Command::Bench(BenchCommand::Llm { model, synthetic, vocab, prompt_tokens, gen_tokens, json }) => {
            bench::llm(&assembly, model, synthetic, vocab, prompt_tokens, gen_tokens, json)
        }
        Command::Models(cmd) => models::run(&assembly, cmd),
    }
}

/// Caps inference threads: `n`, or every core for 0 (RAYON_NUM_THREADS, when set, counts as
/// every core).
fn set_threads(n: usize) {
    let threads = match n {
        0 => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    };
    // Candle sizes every CPU matmul from this variable, and without it asks the OS for the
    // core count on each call (reading /proc), which cost a quarter of the decoder's time.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
}

/// A text argument that must be UTF-8; the error names the flag.
fn utf8_arg(flag: &str, value: OsString) -> Result<String> {
    value
        .into_string()
        .map_err(|raw| anyhow::anyhow!("{flag} is not valid UTF-8 text ({:?}); pass the text in UTF-8", raw))
}

/// Writes streamed text at once (stdout is line-buffered and answers arrive mid-line).
fn print_now(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
