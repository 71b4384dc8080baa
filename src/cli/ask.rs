//! `wick ask`: one turn of the appliance with WAV files as microphone and loudspeaker, through
//! the same pipeline `wick run` drives.

use std::process::ExitCode;

use anyhow::Result;

use wick::appliance::assemble::Assembly;
use wick::appliance::stages::{MemoryLoudspeaker, WavMicrophone};
use wick::measure::round3;
use wick::pipeline::{Hooks, Pipeline, Speak};

use super::args::AskArgs;

pub fn run(assembly: &Assembly, args: AskArgs) -> Result<ExitCode> {
    let microphone = WavMicrophone::open(&args.input)?;
    let input_s = microphone.duration_s();
    let engines = assembly.engines()?;
    let rate = engines.voice.rate();
    let (loudspeaker, played) = MemoryLoudspeaker::new(rate);
    let stages = engines.into_stages(Box::new(microphone), Box::new(loudspeaker));
    let hooks =
        Hooks { on_turn: Box::new(|r| tracing::info!(target: "wick::turn", "{}", r.json())), ..Default::default() };
    let mut pipeline = Pipeline::start(stages, assembly.config.pipeline_settings(), hooks, true);
    // Nothing drives this pipeline but the file: the controls stay open and silent.
    let (_controls_tx, controls) = crossbeam_channel::unbounded();
    let ended = pipeline.run(&controls, true);
    let record = pipeline.last_turn();
    pipeline.shutdown();
    let record = match (record, &ended) {
        (Some(record), _) => record,
        (None, Err(failure)) => anyhow::bail!("{failure}"),
        (None, Ok(_)) => anyhow::bail!("the turn ended without a record (see the log above)"),
    };
    let audio = std::mem::take(&mut *played.lock().unwrap());
    if let Some(out) = &args.output {
        wick::audio::write_wav_mono_i16(out, &audio, rate)?;
    }
    if args.json {
        let v = serde_json::json!({
            "transcript": record.transcript,
            "reply": record.reply,
            "stt_s": record.stt_done_s,
            "first_token_s": record.first_token_s,
            "first_audio_s": record.first_sample_played_s,
            "total_s": record.done_s,
            "audio_out_s": round3(audio.len() as f64 / rate as f64),
            "outcome": record.outcome,
            "input_s": round3(input_s),
            "recorded_s": record.recorded_s,
            "capped": record.capped,
            "first_chunk_s": record.first_chunk_s,
            "prompt_tokens": record.prompt_tokens,
            "gen_tokens": record.gen_tokens,
            "error": record.error,
        });
        println!("{v}");
    } else {
        println!("you:  {}", record.transcript);
        println!("wick: {}", record.reply);
        println!(
            "({}; first audio {} s, done {} s after the end of the question; {:.1} s of answer{})",
            serde_json::to_value(record.outcome)?.as_str().unwrap_or("?"),
            record.first_sample_played_s.map_or("-".into(), |s| format!("{s:.2}")),
            record.done_s.map_or("-".into(), |s| format!("{s:.2}")),
            audio.len() as f64 / rate as f64,
            args.output.as_ref().map_or(String::new(), |o| format!(", written to {}", o.display())),
        );
    }
    if let Err(failure) = ended {
        eprintln!("wick: error: {failure}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
