//! Whole-buffer sample-rate conversion with rubato's FFT resampler, trimmed so that the output is
//! aligned with the input (rubato delays its output by a fixed number of frames).

use rubato::{FftFixedIn, Resampler};

const CHUNK: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A rate pair rubato cannot convert between (a rate of 0, or a ratio it cannot build).
    #[error("cannot convert from {from_hz} Hz to {to_hz} Hz: {message}")]
    Rates { from_hz: u32, to_hz: u32, message: String },
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
}

/// A converter from one rate to another, kept for reuse: building rubato's FFT filter costs
/// more than converting a sentence of speech with it.
pub struct Converter {
    from_hz: u32,
    to_hz: u32,
    inner: Option<FftFixedIn<f32>>,
}

impl Converter {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        let inner = if from_hz == to_hz {
            None
        } else {
            let bad = |message: String| ResampleError::Rates { from_hz, to_hz, message };
            if from_hz == 0 || to_hz == 0 {
                return Err(bad("a rate of 0".into()));
            }
            Some(
                FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, CHUNK, 2, 1)
                    .map_err(|e| bad(e.to_string()))?,
            )
        };
        Ok(Self { from_hz, to_hz, inner })
    }

    /// Whether this converter goes from `from_hz` to `to_hz`.
    pub fn converts(&self, from_hz: u32, to_hz: u32) -> bool {
        (self.from_hz, self.to_hz) == (from_hz, to_hz)
    }

    /// Converts one whole buffer of mono samples (the filter starts afresh for each).
    pub fn convert(&mut self, samples: &[f32]) -> Result<Vec<f32>, ResampleError> {
        let Some(resampler) = self.inner.as_mut().filter(|_| !samples.is_empty()) else {
            return Ok(samples.to_vec());
        };
        resampler.reset();
        let expected = (samples.len() as u64 * self.to_hz as u64).div_ceil(self.from_hz as u64) as usize;
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
}

/// Converts mono `samples` from `from_hz` to `to_hz`; returns the input unchanged when the rates match.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, ResampleError> {
    Converter::new(from_hz, to_hz)?.convert(samples)
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

    #[test]
    fn a_reused_converter_gives_what_a_fresh_one_does_and_bad_rates_are_errors() {
        let mut c = Converter::new(22_050, 48_000).unwrap();
        let a = sine(22_050, 300.0, 0.7);
        let b = sine(22_050, 500.0, 0.4);
        let first = c.convert(&a).unwrap();
        assert_eq!(c.convert(&b).unwrap(), resample(&b, 22_050, 48_000).unwrap(), "state leaked between buffers");
        assert_eq!(first, resample(&a, 22_050, 48_000).unwrap());
        assert!(c.converts(22_050, 48_000) && !c.converts(22_050, 44_100));
        assert!(matches!(resample(&a, 0, 16_000), Err(ResampleError::Rates { .. })));
        assert!(matches!(Converter::new(48_000, 0), Err(ResampleError::Rates { .. })));
    }
}
