//! `wick models`: fetch, list and check the model files, and import a CTranslate2 Whisper.

use std::process::ExitCode;

use anyhow::Result;

use wick::appliance::assemble::Assembly;
use wick::models::Check;

use super::args::ModelsCommand;

pub fn run(assembly: &Assembly, cmd: ModelsCommand) -> Result<ExitCode> {
    if let ModelsCommand::ImportCt2 { src, dst } = &cmd {
        let report = wick::stt::ct2::import(src, dst)?;
        for f in &report.files {
            println!("{}  {}", f.sha256, f.path.display());
        }
        eprintln!("imported {} ({} tensors, {}) into {}", src.display(), report.tensors, report.dtype, dst.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = assembly.store()?;
    match cmd {
        ModelsCommand::Pull { set } => {
            store.pull(&set)?;
            eprintln!("model set {set:?} is ready in {}", store.role_dir(&set, "").display());
        }
        ModelsCommand::List { set, json } => {
            for f in store.list(set.as_deref())? {
                if json {
                    println!("{}", serde_json::to_string(&f)?);
                } else {
                    println!(
                        "{:<8} {:<4} {:<7} {:<40} {}",
                        f.set,
                        f.role,
                        if f.present { "present" } else { "missing" },
                        f.name,
                        f.path.display()
                    );
                }
            }
        }
        ModelsCommand::Verify { set } => {
            let outcomes = store.verify(set.as_deref())?;
            let mut bad = 0;
            for o in &outcomes {
                let status = match &o.check {
                    Check::Ok => "ok".to_string(),
                    Check::Missing => "MISSING".to_string(),
                    Check::Mismatch { expected, actual } => {
                        format!("MISMATCH (expected sha256 {expected}, found {actual})")
                    }
                    Check::Unpinned { actual } => format!("unpinned (sha256 {actual})"),
                };
                println!("{:<8} {:<4} {:<40} {status}", o.set, o.role, o.name);
                bad += usize::from(!o.is_ok());
            }
            if bad > 0 {
                eprintln!("wick: {bad} model file(s) missing or damaged; run `wick models pull` to fetch them again");
                return Ok(ExitCode::FAILURE);
            }
        }
        ModelsCommand::ImportCt2 { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
