//! `wick bench tts`: the voice's real-time factor and time to its first chunk on a short, a
//! medium and a long text, spoken the way the appliance speaks an answer.

use serde::Serialize;

use super::speaker::{SpeakError, Speaker};
use crate::measure::round3;

/// The texts measured, by name.
pub const TEXTS: [(&str, &str); 3] = [
    ("short", "Hello there."),
    ("medium", "The kitchen timer is set for ten minutes, and I will remind you when it rings."),
    (
        "long",
        "Tomorrow will be mostly sunny, with a high of twenty-two degrees in the afternoon. \
         A light breeze comes from the west, and the evening should stay dry, so it is a good \
         day for a walk. If you plan to go out early, take a jacket: mornings are still cool \
         at this time of year.",
    ),
];

/// One text's measurement; times in seconds, rounded to the millisecond.
#[derive(Debug, Clone, Serialize)]
pub struct TextRow {
    pub name: &'static str,
    pub chars: usize,
    pub chunks: usize,
    pub audio_s: f64,
    pub synth_s: f64,
    /// Seconds of synthesis per second of audio.
    pub rtf: f64,
    pub first_chunk_s: Option<f64>,
}

/// Speaks every text once after one untimed run, so the first row does not pay for
/// first-use allocations.
pub fn run(speaker: &Speaker) -> Result<Vec<TextRow>, SpeakError> {
    let rate = speaker.sample_rate()? as f64;
    speaker.speak_text(TEXTS[0].1, &mut |_| {})?;
    let mut rows = Vec::new();
    for (name, text) in TEXTS {
        let said = speaker.speak_text(text, &mut |_| {})?;
        let audio_s = said.spoken.samples as f64 / rate;
        rows.push(TextRow {
            name,
            chars: text.chars().count(),
            chunks: said.chunks.len(),
            audio_s: round3(audio_s),
            synth_s: round3(said.synth_s),
            rtf: if audio_s > 0.0 { round3(said.synth_s / audio_s) } else { 0.0 },
            first_chunk_s: said.first_chunk_s.map(round3),
        });
    }
    Ok(rows)
}
