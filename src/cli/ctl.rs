//! `wick ctl`: one command to the running appliance's control socket, its answer on stdout.
//! An `error: ...` answer (or no appliance listening) exits non-zero, so scripts can branch.

use std::process::ExitCode;

use anyhow::Result;

use wick::config::Config;
use wick::input;

use super::args::CtlArgs;

pub fn run(config: &Config, args: CtlArgs) -> Result<ExitCode> {
    let path = args.socket.unwrap_or_else(|| config.input.socket_path());
    // The error already names the socket and asks whether `wick run` is running.
    let answer = input::send(&path, &args.command)?;
    println!("{answer}");
    Ok(if answer.starts_with("error:") { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
