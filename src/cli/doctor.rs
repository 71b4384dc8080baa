//! `wick doctor`: prints the appliance's findings as lines (or one JSON object) and fails when
//! one of them must be fixed.

use std::process::ExitCode;

use anyhow::Result;

use wick::appliance::assemble::Assembly;
use wick::appliance::doctor::{self, Level};

use super::args::DoctorArgs;

pub fn run(assembly: &Assembly, args: DoctorArgs) -> Result<ExitCode> {
    let report = doctor::run(assembly);
    if args.json {
        println!("{}", serde_json::json!({ "ok": !report.failed(), "findings": report.findings }));
    } else {
        for f in &report.findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Info => "    ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag} {:<7} {}", f.area, f.what);
            if let Some(fix) = &f.fix {
                println!("             -> {fix}");
            }
        }
    }
    if report.failed() {
        eprintln!("wick doctor: the configured appliance cannot run here; fix the FAIL lines above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
