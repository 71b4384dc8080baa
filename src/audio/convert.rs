//! Sample conversion between a sound device's interleaved little-endian frames and the mono `f32`
//! in [-1, 1] that the stages use: capture averages the channels, playback copies the one signal
//! to every channel.

use super::settings::SampleFormat;

/// Integer full scale: -1.0 maps to the most negative value and +1.0 clips to the most positive,
/// so that every integer sample survives a decode/encode round trip unchanged.
const S16_SCALE: f32 = 32_768.0;
const S32_SCALE: f64 = 2_147_483_648.0;

pub(crate) fn bytes_per_sample(format: SampleFormat) -> usize {
    match format {
        SampleFormat::S16 => 2,
        SampleFormat::S32 | SampleFormat::F32 => 4,
    }
}

/// Appends one mono sample per frame of `raw` (interleaved, `channels` per frame): the mean of
/// the frame's channels. A trailing partial frame is ignored.
pub(crate) fn decode_mono(format: SampleFormat, channels: usize, raw: &[u8], out: &mut Vec<f32>) {
    let frame_bytes = channels * bytes_per_sample(format);
    let frames = raw.chunks_exact(frame_bytes);
    out.reserve(frames.len());
    match format {
        SampleFormat::S16 => {
            // Summing integers first keeps a two-channel mean exact: (l + r) / 65536 has no rounding.
            let scale = 1.0 / (S16_SCALE * channels as f32);
            out.extend(frames.map(|f| {
                let sum: i32 = f.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]]) as i32).sum();
                sum as f32 * scale
            }));
        }
        SampleFormat::S32 => {
            let scale = 1.0 / (S32_SCALE * channels as f64);
            out.extend(frames.map(|f| {
                let sum: i64 = f.chunks_exact(4).map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64).sum();
                (sum as f64 * scale) as f32
            }));
        }
        SampleFormat::F32 => {
            out.extend(frames.map(|f| {
                let sum: f32 = f.chunks_exact(4).map(|s| sanitize(f32::from_le_bytes([s[0], s[1], s[2], s[3]]))).sum();
                (sum / channels as f32).clamp(-1.0, 1.0)
            }));
        }
    }
}

/// Writes `mono` into `raw` as interleaved frames with the sample copied to every channel.
/// `raw` must hold exactly `mono.len()` frames. Values outside [-1, 1] clip; NaN is silence.
pub(crate) fn encode_mono(format: SampleFormat, channels: usize, mono: &[f32], raw: &mut [u8]) {
    let width = bytes_per_sample(format);
    assert_eq!(raw.len(), mono.len() * channels * width, "encode_mono: buffer does not hold the frames");
    for (&x, frame) in mono.iter().zip(raw.chunks_exact_mut(channels * width)) {
        let x = sanitize(x).clamp(-1.0, 1.0);
        let mut bytes = [0u8; 4];
        match format {
            SampleFormat::S16 => {
                let v = (x * S16_SCALE).round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
                bytes[..2].copy_from_slice(&v.to_le_bytes());
            }
            SampleFormat::S32 => {
                let v = (x as f64 * S32_SCALE).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32;
                bytes.copy_from_slice(&v.to_le_bytes());
            }
            SampleFormat::F32 => bytes.copy_from_slice(&x.to_le_bytes()),
        }
        for sample in frame.chunks_exact_mut(width) {
            sample.copy_from_slice(&bytes[..width]);
        }
    }
}

/// A NaN reaching a speaker or a model is worse than a dropped sample.
fn sanitize(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s16_bytes(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn s16_round_trip_is_exact_for_every_value() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut mono = Vec::new();
        decode_mono(SampleFormat::S16, 1, &s16_bytes(&all), &mut mono);
        assert_eq!(mono[0], -1.0);
        assert!(mono.iter().all(|x| (-1.0..1.0).contains(x)));
        let mut raw = vec![0u8; all.len() * 2];
        encode_mono(SampleFormat::S16, 1, &mono, &mut raw);
        assert_eq!(raw, s16_bytes(&all));
    }

    #[test]
    fn s32_round_trip_keeps_f32_precision() {
        let values = [i32::MIN, -1_000_000_000, -65_536, -1, 0, 1, 65_536, 123_456_789, i32::MAX];
        let raw: Vec<u8> = values.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut mono = Vec::new();
        decode_mono(SampleFormat::S32, 1, &raw, &mut mono);
        for (&v, &x) in values.iter().zip(&mono) {
            assert!((x as f64 - v as f64 / S32_SCALE).abs() <= 1e-7, "{v} decoded to {x}");
        }
        // f32 -> S32 -> f32 is exact for values that f32 holds with 24 significant bits.
        let signal = [-1.0f32, -0.5, -0.123_456_79, 0.0, 0.25, 0.999_999_9];
        let mut raw = vec![0u8; signal.len() * 4];
        encode_mono(SampleFormat::S32, 1, &signal, &mut raw);
        let mut back = Vec::new();
        decode_mono(SampleFormat::S32, 1, &raw, &mut back);
        assert_eq!(back, signal);
    }

    #[test]
    fn float_passes_through_and_is_sanitized() {
        let signal = [-1.0f32, -0.3, 0.0, 0.7, 1.0];
        let mut raw = vec![0u8; signal.len() * 4];
        encode_mono(SampleFormat::F32, 1, &signal, &mut raw);
        let mut back = Vec::new();
        decode_mono(SampleFormat::F32, 1, &raw, &mut back);
        assert_eq!(back, signal);

        let wild = [f32::NAN, 2.5, -7.0, f32::INFINITY];
        let raw: Vec<u8> = wild.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut back = Vec::new();
        decode_mono(SampleFormat::F32, 1, &raw, &mut back);
        assert_eq!(back, [0.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn encoding_clips_out_of_range_values() {
        let signal = [1.5f32, 1.0, -1.0, -3.0, f32::NAN, f32::NEG_INFINITY];
        let mut raw = vec![0u8; signal.len() * 2];
        encode_mono(SampleFormat::S16, 1, &signal, &mut raw);
        assert_eq!(raw, s16_bytes(&[i16::MAX, i16::MAX, i16::MIN, i16::MIN, 0, i16::MIN]));

        let mut raw = vec![0u8; 2 * 4];
        encode_mono(SampleFormat::S32, 1, &[1.0, -1.0], &mut raw);
        let ints: Vec<i32> = raw.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(ints, [i32::MAX, i32::MIN]);
    }

    #[test]
    fn capture_downmix_is_the_mean_of_the_channels() {
        // Stereo: (l + r) / 2 exactly, including opposite signals that cancel.
        let frames = [(1000i16, 3000i16), (-32768, 32767), (12345, -12345), (-7, -9)];
        let raw = s16_bytes(&frames.iter().flat_map(|&(l, r)| [l, r]).collect::<Vec<_>>());
        let mut mono = Vec::new();
        decode_mono(SampleFormat::S16, 2, &raw, &mut mono);
        let expected: Vec<f32> = frames.iter().map(|&(l, r)| (l as f32 / 32768.0 + r as f32 / 32768.0) / 2.0).collect();
        assert_eq!(mono, expected);

        // Four channels, float.
        let raw: Vec<u8> = [0.1f32, 0.2, 0.3, 0.4].iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut mono = vec![0.5];
        decode_mono(SampleFormat::F32, 4, &raw, &mut mono);
        assert_eq!(mono.len(), 2, "decode appends");
        assert!((mono[1] - 0.25).abs() < 1e-7);
    }

    #[test]
    fn playback_copies_the_signal_to_every_channel() {
        let mut raw = vec![0u8; 3 * 2 * 2];
        encode_mono(SampleFormat::S16, 2, &[0.5, -0.25, 0.0], &mut raw);
        assert_eq!(raw, s16_bytes(&[16384, 16384, -8192, -8192, 0, 0]));

        let mut raw = vec![0u8; 2 * 3 * 4];
        encode_mono(SampleFormat::F32, 3, &[0.75, -1.0], &mut raw);
        let floats: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(floats, [0.75, 0.75, 0.75, -1.0, -1.0, -1.0]);
    }
}
