//! Whole-buffer sample-rate conversion with rubato's FFT resampler, trimmed so that the output is
//! aligned with the input (rubato delays its output by a fixed number of frames).

use rubato::{FftFixedIn, Resampler};

const CHUNK: usize = 1024;

/// Converts mono `samples` from `from_hz` to `to_hz`; returns the input unchanged when the rates match.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, rubato::ResampleError> {
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, CHUNK, 2, 1)
        .expect("sample rates are validated by the caller and the chunk size is fixed");
    let expected = (samples.len() as u64 * to_hz as u64).div_ceil(from_hz as u64) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut pos = 0;
    while samples.len() - pos >= resampler.input_frames_next() {
        let n = resampler.input_frames_next();
        out.extend_from_slice(&resampler.process(&[&samples[pos..pos + n]], None)?[0]);
        pos += n;
    }
    if pos < samples.len() {
        out.extend_from_slice(&resampler.process_partial(Some(&[&samples[pos..]]), None)?[0]);
    }
    // Flush the filter's tail until the delayed output covers the whole input.
    while out.len() < expected + delay {
        out.extend_from_slice(&resampler.process_partial::<&[f32]>(None, None)?[0]);
    }
    out.drain(..delay);
    out.truncate(expected);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn resampled_sine_keeps_length_phase_and_amplitude() {
        for from in [8_000, 22_050, 44_100, 48_000] {
            let input = sine(from, 440.0, 1.3);
            let out = resample(&input, from, 16_000).unwrap();
            let expected = sine(16_000, 440.0, 1.3);
            assert!(out.len().abs_diff(expected.len()) <= 1, "{from}: {} vs {}", out.len(), expected.len());
            // Away from the edges the output must follow the ideal sine: a delay of one output
            // sample would show as an error of about 0.17 at 440 Hz.
            let err: f32 =
                out[800..out.len() - 800].iter().zip(&expected[800..]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 0.08, "{from} Hz: max error {err}");
        }
    }
}
