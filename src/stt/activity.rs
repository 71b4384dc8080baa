//! Voice activity: which parts of a recording hold speech. Only those parts (with a margin)
//! reach Whisper, and a recording with none never does: Whisper readily "hears" words in
//! room noise, and every second it is spared is latency saved.
//!
//! The detector is earshot's small neural network (16 ms frames at 16 kHz, pure Rust). Two
//! things are added around it, both measured on the dev clips and on noise:
//! - its score depends on the level, so the recording is first brought to a fixed level (with
//!   a gain ceiling): a quiet voice scores as a normal one does;
//! - at that level it still gives white noise runs of "voice" up to about 270 ms, so a frame
//!   counts as speech only if it also stands out from the recording's own quiet floor. Steady
//!   hiss never does (its 16 ms frames vary by well under a decibel); speech swings by tens
//!   of decibels between syllables.

use std::ops::Range;

use super::level;

/// Samples per detector frame (16 ms at 16 kHz): earshot's fixed frame.
pub const FRAME: usize = 256;
/// The level (loudest 100 ms) the detector hears every recording at. Louder, earshot starts to
/// take loud white noise for voice (half of all frames at -15 dBFS); quieter, it misses soft
/// consonants.
const DETECTOR_LEVEL_DBFS: f32 = -30.0;
/// How far above the recording's quiet floor (its 10th-percentile frame) a frame must be to
/// count as speech.
const ABOVE_FLOOR_DB: f32 = 6.0;
/// Voiced runs closer than this (in frames, 80 ms) are one run: the pause between syllables.
const BRIDGE_FRAMES: usize = 5;

/// How speech is told from the rest.
#[derive(Debug, Clone)]
pub struct ActivityOptions {
    /// Detector score (0..1) from which a frame may be voice.
    pub threshold: f32,
    /// Shortest run of voiced frames that counts as speech, in milliseconds.
    pub min_speech_ms: u32,
    /// Audio kept before the first and after the last speech, in milliseconds. Less makes
    /// Whisper's words depend on where the detector put the edges (on the dev clips, 300 ms
    /// changed words that 500 ms does not).
    pub pad_ms: u32,
    /// The most the gain stage lifts a recording, in dB.
    pub max_gain_db: f32,
}

impl Default for ActivityOptions {
    fn default() -> Self {
        Self { threshold: 0.5, min_speech_ms: 120, pad_ms: 500, max_gain_db: 45.0 }
    }
}

/// Where the speech in a recording is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Speech {
    /// Runs of speech, in samples, in order.
    pub spans: Vec<Range<usize>>,
}

impl Speech {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// From `pad` samples before the first speech to `pad` after the last, within `len`.
    pub fn extent(&self, pad: usize, len: usize) -> Option<Range<usize>> {
        let first = self.spans.first()?;
        let last = self.spans.last()?;
        Some(first.start.saturating_sub(pad)..(last.end + pad).min(len))
    }

    /// Whether any speech falls in `range` (samples).
    pub fn overlaps(&self, range: &Range<usize>) -> bool {
        self.spans.iter().any(|s| s.start < range.end && range.start < s.end)
    }
}

/// Finds the speech in `samples` (16 kHz mono).
pub fn find_speech(samples: &[f32], options: &ActivityOptions) -> Speech {
    if samples.is_empty() {
        return Speech::default();
    }
    let gain = level::gain_db(level::loudest_block_dbfs(samples), DETECTOR_LEVEL_DBFS, options.max_gain_db);
    let scale = 10f32.powf(gain / 20.0);
    // The quiet floor: the 10th-percentile frame energy.
    let frame_db: Vec<f32> = samples.chunks(FRAME).map(|f| level::to_dbfs(level::rms(f))).collect();
    let mut sorted = frame_db.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = sorted[sorted.len() / 10];

    let mut detector = earshot::Detector::default_boxed();
    let mut frame = [0.0f32; FRAME];
    let voiced: Vec<bool> = samples
        .chunks(FRAME)
        .zip(&frame_db)
        .map(|(chunk, &db)| {
            frame.fill(0.0);
            for (o, s) in frame.iter_mut().zip(chunk) {
                *o = (s * scale).clamp(-1.0, 1.0);
            }
            let score = detector.predict_f32(&frame);
            score >= options.threshold && db >= floor + ABOVE_FLOOR_DB
        })
        .collect();

    let min_frames = (options.min_speech_ms as usize * 16).div_ceil(FRAME).max(1);
    let spans = runs(&voiced, BRIDGE_FRAMES)
        .into_iter()
        .filter(|(_, count)| *count >= min_frames)
        .map(|(r, _)| r.start * FRAME..(r.end * FRAME).min(samples.len()))
        .collect();
    Speech { spans }
}

/// Runs of `true`, joined across gaps of at most `bridge` frames: each run's frame range and
/// how many of its frames are `true`.
fn runs(flags: &[bool], bridge: usize) -> Vec<(Range<usize>, usize)> {
    let mut out: Vec<(Range<usize>, usize)> = Vec::new();
    for (i, _) in flags.iter().enumerate().filter(|(_, &f)| f) {
        match out.last_mut() {
            Some((r, count)) if i - r.end <= bridge => {
                r.end = i + 1;
                *count += 1;
            }
            _ => out.push((i..i + 1, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_bridge_short_gaps_only() {
        let f = |s: &str| s.chars().map(|c| c == '#').collect::<Vec<_>>();
        assert_eq!(runs(&f("..##..#........###"), 2), vec![(2..7, 3), (15..18, 3)]);
        assert_eq!(runs(&f("...."), 2), vec![]);
        assert_eq!(runs(&f("#"), 0), vec![(0..1, 1)]);
    }

    #[test]
    fn the_extent_is_padded_within_the_recording() {
        let speech = Speech { spans: vec![1_000..2_000, 5_000..6_000] };
        assert_eq!(speech.extent(300, 6_100), Some(700..6_100));
        assert_eq!(speech.extent(2_000, 10_000), Some(0..8_000));
        assert!(speech.overlaps(&(1_900..2_100)));
        assert!(!speech.overlaps(&(2_000..5_000)));
        assert_eq!(Speech::default().extent(300, 100), None);
    }

    /// Uniform noise from a fixed xorshift generator.
    fn noise(n: usize, amp: f32) -> Vec<f32> {
        let mut x = 0x2545_f491u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    #[test]
    fn silence_hiss_and_a_steady_tone_hold_no_speech() {
        let options = ActivityOptions::default();
        assert!(find_speech(&[], &options).is_empty());
        assert!(find_speech(&vec![0.0; 80_000], &options).is_empty());
        for amp in [1e-4, 1e-3, 1e-2, 3e-2, 0.3] {
            assert!(find_speech(&noise(160_000, amp), &options).is_empty(), "white noise of amplitude {amp}");
        }
        let tone: Vec<f32> =
            (0..80_000).map(|i| 0.3 * (i as f32 * std::f32::consts::TAU * 440.0 / 16_000.0).sin()).collect();
        assert!(find_speech(&tone, &options).is_empty());
    }
}
