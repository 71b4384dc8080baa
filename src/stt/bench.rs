//! `wick bench stt`: the real-time factor of transcription and where its time goes (log-mel
//! front end, encoder, decoder), per file and in total.

use std::time::Instant;

use super::mel::SAMPLE_RATE;
use super::{SttError, SttTimings, Transcriber};
use crate::measure::round3;

/// One file's measurement (or the total over all of them).
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub audio_s: f64,
    pub total_s: f64,
    pub timings: SttTimings,
}

impl Row {
    /// Seconds of work per second of audio.
    pub fn rtf(&self) -> f64 {
        if self.audio_s > 0.0 {
            self.total_s / self.audio_s
        } else {
            0.0
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.name, "audio_s": round3(self.audio_s), "total_s": round3(self.total_s), "rtf": round3(self.rtf()),
            "vad_s": round3(self.timings.vad_s), "front_end_s": round3(self.timings.front_end_s), "encoder_s": round3(self.timings.encoder_s),
            "decoder_s": round3(self.timings.decoder_s), "windows": self.timings.windows, "tokens": self.timings.tokens,
        })
    }
}

/// Transcribes `samples` (16 kHz mono) once, timed.
pub fn measure(transcriber: &Transcriber, name: String, samples: &[f32]) -> Result<Row, SttError> {
    let start = Instant::now();
    let t = transcriber.transcribe(samples)?;
    let total_s = start.elapsed().as_secs_f64();
    Ok(Row { name, audio_s: samples.len() as f64 / SAMPLE_RATE as f64, total_s, timings: t.timings })
}

/// The sum of `rows`, named "total".
pub fn total(rows: &[Row]) -> Row {
    Row {
        name: "total".into(),
        audio_s: rows.iter().map(|r| r.audio_s).sum(),
        total_s: rows.iter().map(|r| r.total_s).sum(),
        timings: rows.iter().fold(SttTimings::default(), |mut acc, r| {
            acc.vad_s += r.timings.vad_s;
            acc.front_end_s += r.timings.front_end_s;
            acc.encoder_s += r.timings.encoder_s;
            acc.decoder_s += r.timings.decoder_s;
            acc.windows += r.timings.windows;
            acc.tokens += r.timings.tokens;
            acc
        }),
    }
}
