//! Whisper's log-mel front end: 25 ms Hann frames every 10 ms, a real FFT, a Slaney-style mel
//! filterbank computed here (no vendored filter files), log10 with an 8-decade floor below the
//! loudest frame, and Whisper's (x + 4) / 4 scaling.
//!
//! OpenAI pads every clip with 30 s of zeros before the STFT. Frames whose window lies wholly in
//! that padding have zero power, so instead of transforming them we fill them with the value zero
//! power maps to; the result equals the padded computation while the FFT work stays proportional
//! to the real audio.

use realfft::RealFftPlanner;

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Frames in one 30 s encoder window.
pub const WINDOW_FRAMES: usize = 3000;
const LOG_FLOOR: f32 = 1e-10;

/// Mel filterbank weights as sparse rows: each filter touches only a few FFT bins.
pub struct MelFilters {
    n_mels: usize,
    rows: Vec<(usize, Vec<f32>)>,
}

impl MelFilters {
    /// Triangular filters on the Slaney mel scale (linear below 1 kHz, logarithmic above),
    /// area-normalised, spanning 0 Hz to Nyquist; this is how OpenAI built Whisper's filters.
    pub fn slaney(n_mels: usize) -> Self {
        let n_bins = N_FFT / 2 + 1;
        let fft_hz: Vec<f64> = (0..n_bins).map(|i| i as f64 * SAMPLE_RATE as f64 / N_FFT as f64).collect();
        let (mel_lo, mel_hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
        let points: Vec<f64> =
            (0..n_mels + 2).map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_mels + 1) as f64)).collect();
        let rows = (0..n_mels)
            .map(|m| {
                let (left, centre, right) = (points[m], points[m + 1], points[m + 2]);
                let norm = 2.0 / (right - left);
                let weights: Vec<f64> = fft_hz
                    .iter()
                    .map(|&f| {
                        let rising = (f - left) / (centre - left);
                        let falling = (right - f) / (right - centre);
                        rising.min(falling).max(0.0) * norm
                    })
                    .collect();
                let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = weights.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
                (first, weights[first..last].iter().map(|&w| w as f32).collect())
            })
            .collect();
        MelFilters { n_mels, rows }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    fn apply(&self, power: &[f32], out: &mut [f32]) {
        for ((first, weights), o) in self.rows.iter().zip(out.iter_mut()) {
            *o = weights.iter().zip(&power[*first..]).map(|(w, p)| w * p).sum();
        }
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    const LINEAR_END_HZ: f64 = 1000.0;
    let linear = hz * 3.0 / 200.0;
    if hz < LINEAR_END_HZ {
        linear
    } else {
        15.0 + (hz / LINEAR_END_HZ).ln() * 27.0 / 6.4f64.ln()
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel < 15.0 {
        mel * 200.0 / 3.0
    } else {
        1000.0 * ((mel - 15.0) * 6.4f64.ln() / 27.0).exp()
    }
}

/// A log-mel spectrogram stored mel-major (`[n_mels][n_frames]`), as the encoder takes it.
/// Only frames that see audio are stored; later frames are `pad_value`.
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    /// Frames that hold audio (OpenAI's "content frames"): where decoding windows stop.
    pub content_frames: usize,
    pub data: Vec<f32>,
    /// The scaled value of a frame of pure zero padding.
    pub pad_value: f32,
}

impl LogMel {
    /// `frames` frames from `start` (at most [`WINDOW_FRAMES`]), with frames past `end`
    /// replaced by padding, laid out `[n_mels][frames]`.
    pub fn window(&self, start: usize, end: usize, frames: usize) -> Vec<f32> {
        let frames = frames.min(WINDOW_FRAMES);
        let take = end.min(self.n_frames).saturating_sub(start).min(frames);
        let mut out = vec![self.pad_value; self.n_mels * frames];
        for m in (0..self.n_mels).filter(|_| take > 0) {
            let src = &self.data[m * self.n_frames + start..][..take];
            out[m * frames..][..take].copy_from_slice(src);
        }
        out
    }

    /// Mean log-mel value of each frame: a cheap loudness curve for choosing window cuts.
    pub fn frame_loudness(&self) -> Vec<f32> {
        let mut loud = vec![0.0f32; self.n_frames];
        for m in 0..self.n_mels {
            for (l, v) in loud.iter_mut().zip(&self.data[m * self.n_frames..][..self.n_frames]) {
                *l += v;
            }
        }
        loud.iter_mut().for_each(|l| *l /= self.n_mels as f32);
        loud
    }
}

/// Computes Whisper's log-mel features for 16 kHz mono `samples`, covering the audio plus
/// enough padding frames to fill the last 30 s window.
pub fn log_mel(samples: &[f32], filters: &MelFilters) -> LogMel {
    let n = samples.len();
    let half = N_FFT / 2;
    // OpenAI's frame count for audio followed by 30 s of zeros, minus the dropped last frame.
    let total_frames = (n + SAMPLE_RATE * 30) / HOP;
    // Beyond this frame every window sees only zero padding.
    let live_frames = ((n + half).div_ceil(HOP)).min(total_frames);
    let n_frames = live_frames;

    let window: Vec<f32> =
        (0..N_FFT).map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos()).collect();
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
    let mut frame = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0f32; N_FFT / 2 + 1];
    let mut mel_frame = vec![0.0f32; filters.n_mels];
    let mut data = vec![0.0f32; filters.n_mels * n_frames];

    // The centred STFT reflects the signal at its start; past the end the signal is zeros.
    let sample_at = |i: isize| -> f32 {
        let i = if i < 0 { -i } else { i } as usize;
        samples.get(i).copied().unwrap_or(0.0)
    };
    let mut max_log = f32::NEG_INFINITY;
    for t in 0..live_frames {
        let start = (t * HOP) as isize - half as isize;
        for (k, (f, w)) in frame.iter_mut().zip(&window).enumerate() {
            *f = sample_at(start + k as isize) * w;
        }
        fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
            .expect("buffers come from the planner and have the right lengths");
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        filters.apply(&power, &mut mel_frame);
        for (m, &v) in mel_frame.iter().enumerate() {
            let l = v.max(LOG_FLOOR).log10();
            max_log = max_log.max(l);
            data[m * n_frames + t] = l;
        }
    }
    let silent = LOG_FLOOR.log10();
    // Padding frames count towards the maximum too, which matters only for all-zero input.
    if live_frames < total_frames || max_log == f32::NEG_INFINITY {
        max_log = max_log.max(silent);
    }
    let floor = max_log - 8.0;
    let scale = |l: f32| (l.max(floor) + 4.0) / 4.0;
    data.iter_mut().for_each(|v| *v = scale(*v));
    LogMel { n_mels: filters.n_mels, n_frames, content_frames: n / HOP, data, pad_value: scale(silent) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_matches_whisper_shape() {
        for n_mels in [80, 128] {
            let f = MelFilters::slaney(n_mels);
            assert_eq!(f.rows.len(), n_mels);
            // Area normalisation: the weights of a Slaney filter integrate to about 2/(bandwidth) * bandwidth/2 / bin.
            for (first, w) in &f.rows {
                assert!(!w.is_empty(), "every filter covers at least one FFT bin");
                assert!(*first + w.len() <= N_FFT / 2 + 1);
                assert!(w.iter().all(|&x| x >= 0.0));
            }
        }
        // First filter of the 80-bin bank: OpenAI's mel_80 row 0 peaks at bin 1 with 0.02486 (librosa slaney).
        let f = MelFilters::slaney(80);
        let (first, w) = &f.rows[0];
        assert_eq!(*first, 1);
        assert!((w[0] - 0.024_862).abs() < 1e-4, "got {}", w[0]);
    }

    #[test]
    fn padding_frames_equal_full_computation() {
        // A short tone: frames near the end partly overlap audio and must be computed, later ones not.
        let samples: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let filters = MelFilters::slaney(80);
        let mel = log_mel(&samples, &filters);
        let mut padded = samples.clone();
        padded.extend(std::iter::repeat_n(0.0, 4000));
        let reference = log_mel(&padded, &filters);
        for m in [0, 40, 79] {
            for t in 0..mel.n_frames.min(reference.n_frames) {
                let a = mel.data[m * mel.n_frames + t];
                let b = reference.data[m * reference.n_frames + t];
                assert!((a - b).abs() < 1e-5, "mel {m} frame {t}: {a} vs {b}");
            }
        }
        let w = mel.window(0, mel.n_frames, WINDOW_FRAMES);
        assert_eq!(w.len(), 80 * WINDOW_FRAMES);
        assert_eq!(w[WINDOW_FRAMES - 1], mel.pad_value);
        let short = mel.window(0, 10, 400);
        assert_eq!(short.len(), 80 * 400);
        assert_eq!(short[9], w[9]);
        assert_eq!(short[10], mel.pad_value);
        assert_eq!(short[400 + 9], w[WINDOW_FRAMES + 9], "second mel band starts at 400");
    }
}
