//! `wick say`: text (or exact voice ids) to a WAV file, spoken the way the appliance speaks.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use wick::appliance::assemble::Assembly;
use wick::measure::round3;
use wick::tts::speaker::Speaker;
use wick::tts::voice::SpeakerChoice;

use super::args::{SayArgs, VoiceArgs};
use super::utf8_arg;

pub fn run(assembly: &Assembly, args: SayArgs) -> Result<ExitCode> {
    let speaker = open_speaker(assembly, &args.voice)?;
    let rate = speaker.sample_rate()?;
    let start = Instant::now();
    let (audio, phonemes, ids, first_chunk_s) = if let Some(ids) = &args.phoneme_ids {
        let audio = speaker.speak_ids(ids)?;
        let first = start.elapsed().as_secs_f64();
        (audio, Vec::new(), vec![ids.clone()], Some(first))
    } else {
        let text = match args.text {
            Some(t) => utf8_arg("TEXT", t)?,
            None => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading stdin")?;
                String::from_utf8(bytes).context("the text on stdin is not valid UTF-8")?
            }
        };
        let mut audio = Vec::new();
        let said = speaker.speak_text(&text, &mut |a| audio.extend_from_slice(a))?;
        (audio, said.spoken.phonemes, said.spoken.phoneme_ids, said.first_chunk_s)
    };
    let synth_s = start.elapsed().as_secs_f64();
    wick::audio::write_wav_mono_i16(&args.output, &audio, rate)?;
    if args.json {
        let v = serde_json::json!({
            "phonemes": phonemes,
            "phoneme_ids": ids,
            "samples": audio.len(),
            "sample_rate": rate,
            "synth_s": round3(synth_s),
            "first_chunk_s": first_chunk_s.map(round3),
            "voice": speaker.engine_name(),
            "speaker": speaker.speaker_id(),
        });
        println!("{v}");
    } else if audio.is_empty() {
        eprintln!("nothing to say: wrote {} with no audio", args.output.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The voice the flags ask for: they override `[tts]`, which overrides the model set's voice.
/// Falling back to espeak-ng is said on stderr.
pub(super) fn open_speaker(assembly: &Assembly, args: &VoiceArgs) -> Result<Speaker> {
    let t = &assembly.config.tts;
    let settings = wick::tts::Settings {
        noise_scale: args.noise_scale.or(t.noise_scale),
        length_scale: args.length_scale.or(t.length_scale),
        noise_w: args.noise_w.or(t.noise_w),
        speaker: args.speaker.clone().map(SpeakerChoice::Name).or_else(|| t.speaker.clone()),
        ..t.clone()
    };
    let speaker = assembly.speaker(args.voice.as_deref(), &settings)?;
    if let Some(reason) = speaker.fallback_reason() {
        eprintln!("wick: warning: {reason}; speaking with espeak-ng");
    }
    Ok(speaker)
}
