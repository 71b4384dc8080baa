//! `wick run`: the appliance itself. Models are loaded (and systemd told so) before the sound
//! devices and the button are opened by the service loop.

use std::process::ExitCode;

use anyhow::Result;

use wick::appliance::assemble::Assembly;
use wick::appliance::notify::Notifier;
use wick::appliance::service;

use super::args::RunArgs;

pub fn run(assembly: &Assembly, args: RunArgs) -> Result<ExitCode> {
    let notifier = Notifier::from_env();
    notifier.status("loading models");
    let engines = assembly.engines()?;
    service::run(&assembly.config, engines, notifier, args.stdin)?;
    Ok(ExitCode::SUCCESS)
}
