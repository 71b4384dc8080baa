//! `wick transcribe`: speech in WAV files to text, one line (or JSON object) per file. A file
//! that cannot be read is reported and the others are still transcribed.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use wick::appliance::assemble::Assembly;
use wick::measure::round3;
use wick::stt::{Transcriber, Transcript};

use super::args::SttFilesArgs;

pub fn run(assembly: &Assembly, args: SttFilesArgs) -> Result<ExitCode> {
    let transcriber = assembly.transcriber(args.model.model_dir.as_deref(), args.model.language.as_deref())?;
    let mut failed = 0;
    for file in &args.files {
        let start = Instant::now();
        match transcribe_file(&transcriber, file) {
            Ok((transcript, audio_s)) => {
                let elapsed_s = start.elapsed().as_secs_f64();
                if args.json {
                    let line = serde_json::json!({
                        "file": file, "text": transcript.text, "audio_s": round3(audio_s), "elapsed_s": round3(elapsed_s),
                        "speech_s": round3(transcript.speech_s),
                        "encoded_s": round3(transcript.encoded_s), "gain_db": round3(transcript.gain_db as f64),
                    });
                    println!("{line}");
                } else if args.files.len() > 1 {
                    println!("{}: {}", file.display(), transcript.text);
                } else {
                    println!("{}", transcript.text);
                }
            }
            Err(e) => {
                eprintln!("wick: error: {e:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn transcribe_file(transcriber: &Transcriber, file: &Path) -> Result<(Transcript, f64)> {
    let samples = wick::audio::load_for_stt(file)?;
    let audio_s = samples.len() as f64 / wick::audio::STT_SAMPLE_RATE as f64;
    let transcript = transcriber.transcribe(&samples).with_context(|| format!("transcribing {}", file.display()))?;
    Ok((transcript, audio_s))
}
