//! The self-test turn: a built-in question spoken by the configured voice, then heard,
//! answered and spoken again through the same pipeline as `wick run`, with memory as the
//! microphone and the loudspeaker. It proves that the three models load and work together on
//! this device; the health gate runs it before it confirms a newly installed root slot.

use std::time::Instant;

use serde::Serialize;

use crate::appliance::assemble::Assembly;
use crate::appliance::stages::{MemoryLoudspeaker, WavMicrophone};
use crate::measure::round3;
use crate::pipeline::{Hooks, Outcome, Pipeline, Speak};
use crate::stt::normalize::normalize;

/// What the voice says and Whisper must hear. Short (the test costs seconds on the device and
/// minutes under emulation) and made of plain words every voice and Whisper model handle.
pub const PHRASE: &str = "What color is the sky on a clear day?";

/// The answer's length: enough to show the language model and the voice work, short enough
/// that the test stays quick where the CPU is slow (an emulator spends seconds per token).
const MAX_TOKENS: usize = 4;

/// The share of the phrase's words Whisper must give back: a working chain hears nearly all of
/// them, a broken one (wrong model, silence, noise) almost none.
const MIN_WORDS_HEARD: f64 = 0.5;

#[derive(Debug, Clone, Serialize)]
pub struct SelfTest {
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub problems: Vec<String>,
    pub phrase: String,
    pub transcript: String,
    pub reply: String,
    pub gen_tokens: usize,
    /// Seconds of the spoken phrase and of the spoken answer.
    pub phrase_s: f64,
    pub reply_audio_s: f64,
    /// Seconds to load the models, and for the turn.
    pub load_s: f64,
    pub turn_s: f64,
}

/// Loads the configured models and runs the self-test turn. An `Err` means a model did not load
/// (the message names the file and what to do).
pub fn run(assembly: &Assembly) -> anyhow::Result<SelfTest> {
    let started = Instant::now();
    let mut config = assembly.config.clone();
    config.llm.max_tokens = config.llm.max_tokens.min(MAX_TOKENS);
    let assembly = &assembly.with_config(config);
    let mut engines = assembly.engines()?;
    let load_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let rate = engines.voice.rate();
    let mut phrase = Vec::new();
    engines
        .voice
        .speak(PHRASE, &mut |samples| phrase.extend_from_slice(samples))
        .map_err(|e| anyhow::anyhow!("the voice could not speak the self-test phrase: {e}"))?;
    let phrase_s = phrase.len() as f64 / rate as f64;
    let microphone = WavMicrophone::from_samples(phrase, rate);
    let (loudspeaker, played) = MemoryLoudspeaker::new(rate);
    let stages = engines.into_stages(Box::new(microphone), Box::new(loudspeaker));
    let mut pipeline = Pipeline::start(stages, assembly.config.pipeline_settings(), Hooks::default(), true);
    let (_controls_tx, controls) = crossbeam_channel::unbounded();
    let ended = pipeline.run(&controls, true);
    let record = pipeline.last_turn();
    pipeline.shutdown();
    let reply_audio = played.lock().unwrap().len();

    let mut problems = Vec::new();
    if let Err(failure) = &ended {
        problems.push(format!("the pipeline failed: {failure}"));
    }
    let (transcript, reply, gen_tokens, outcome) = match record {
        Some(r) => (r.transcript, r.reply, r.gen_tokens, Some(r.outcome)),
        None => (String::new(), String::new(), 0, None),
    };
    let heard = words_heard(PHRASE, &transcript);
    if heard < MIN_WORDS_HEARD {
        problems.push(format!(
            "speech-to-text heard {transcript:?} for {PHRASE:?} ({:.0} % of the words, at least {:.0} % needed)",
            heard * 100.0,
            MIN_WORDS_HEARD * 100.0
        ));
    }
    if outcome != Some(Outcome::Answered) {
        problems.push(format!("the turn ended {outcome:?}, not answered"));
    }
    if gen_tokens == 0 || reply.trim().is_empty() {
        problems.push("the language model gave no answer".into());
    }
    if reply_audio == 0 {
        problems.push("the voice produced no sound for the answer".into());
    }
    Ok(SelfTest {
        passed: problems.is_empty(),
        problems,
        phrase: PHRASE.into(),
        transcript,
        reply,
        gen_tokens,
        phrase_s: round3(phrase_s),
        reply_audio_s: round3(reply_audio as f64 / rate as f64),
        load_s: round3(load_s),
        turn_s: round3(started.elapsed().as_secs_f64()),
    })
}

/// The share of `reference`'s words (normalized as for WER) found in `heard`.
fn words_heard(reference: &str, heard: &str) -> f64 {
    let want = normalize(reference);
    let got = normalize(heard);
    if want.is_empty() {
        return 1.0;
    }
    want.iter().filter(|w| got.contains(w)).count() as f64 / want.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_heard_counts_the_phrase_words_whatever_the_case_and_punctuation() {
        // What the twin's tiny Whisper heard from its voice: "colors" for "color is".
        assert_eq!(words_heard(PHRASE, "What colors the sky on a clear day?"), 7.0 / 9.0);
        assert_eq!(words_heard(PHRASE, "WHAT COLOR IS THE SKY ON A CLEAR DAY?"), 1.0);
        assert_eq!(words_heard(PHRASE, ""), 0.0);
        assert!(words_heard(PHRASE, "thank you") < MIN_WORDS_HEARD);
    }
}
