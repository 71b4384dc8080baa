//! Loudness and gain for what reaches the voice activity detector and Whisper. Whisper's
//! log-mel front end keeps only the top 80 dB under the loudest bin, and the detector's
//! features are level-dependent too, so a voice two metres from a cheap microphone is brought
//! to a speaking level first; a ceiling on the gain keeps a near-silent room near silent.

/// Samples in the 100 ms block the level is measured over (16 kHz).
const BLOCK: usize = 1_600;

/// Level in dBFS of the loudest 100 ms block of `samples` (16 kHz): a block, not a sample, so
/// a click does not count as speech-loud.
pub fn loudest_block_dbfs(samples: &[f32]) -> f32 {
    let loudest = samples.chunks(BLOCK).map(rms).fold(0.0f32, f32::max);
    to_dbfs(loudest)
}

/// Root mean square of `samples` (0 for none).
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

pub fn to_dbfs(amplitude: f32) -> f32 {
    20.0 * amplitude.max(1e-10).log10()
}

/// The gain in dB that brings `level_dbfs` to `target_dbfs`, at most `max_gain_db` up (and
/// without limit down: loud speech only ever gets quieter).
pub fn gain_db(level_dbfs: f32, target_dbfs: f32, max_gain_db: f32) -> f32 {
    (target_dbfs - level_dbfs).min(max_gain_db)
}

/// `samples` times `gain_db`, clipped to full scale.
pub fn amplified(samples: &[f32], gain_db: f32) -> Vec<f32> {
    let g = 10f32.powf(gain_db / 20.0);
    samples.iter().map(|s| (s * g).clamp(-1.0, 1.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loudest_block_sets_the_level() {
        let mut samples = vec![1e-4f32; 16_000];
        assert!((loudest_block_dbfs(&samples) + 80.0).abs() < 0.1);
        samples[8_000..9_600].iter_mut().for_each(|s| *s = 0.1);
        assert!((loudest_block_dbfs(&samples) + 20.0).abs() < 0.1);
        // One loud sample in a quiet block is a click, not a loud block.
        let mut click = vec![1e-3f32; 16_000];
        click[100] = 1.0;
        assert!(loudest_block_dbfs(&click) < -30.0);
        assert!(loudest_block_dbfs(&[]) <= -200.0);
    }

    #[test]
    fn the_gain_stops_at_its_ceiling_and_never_clips_past_full_scale() {
        assert_eq!(gain_db(-60.0, -20.0, 45.0), 40.0);
        assert_eq!(gain_db(-90.0, -20.0, 45.0), 45.0, "a silent room is lifted by the ceiling at most");
        assert_eq!(gain_db(-5.0, -20.0, 45.0), -15.0);
        let out = amplified(&[0.01, -0.5, 0.9], 20.0);
        assert!((out[0] - 0.1).abs() < 1e-6);
        assert_eq!(out[1], -1.0);
        assert_eq!(out[2], 1.0);
    }
}
