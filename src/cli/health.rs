//! `wick health`: the health gate at boot (see `wick::appliance::gate`), or with `--self-test`
//! only the self-test turn, for a person checking a device by hand.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use wick::appliance::assemble::Assembly;
use wick::appliance::{gate, selftest};

use super::args::HealthArgs;

pub fn run(assembly: &Assembly, args: HealthArgs) -> Result<ExitCode> {
    if args.self_test {
        let test = selftest::run(assembly)?;
        println!("{}", serde_json::to_string_pretty(&test)?);
        return Ok(if test.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let gate = gate::Gate { ready_timeout: Duration::from_secs(args.ready_timeout), ..Default::default() };
    let mut device = gate::Device { assembly, socket: assembly.config.input.socket_path() };
    let report = gate.run(&mut device)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.verdict == "failed" { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
