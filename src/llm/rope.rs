//! Rotary position embedding tables, with the context-stretching schemes a GGUF can ask for.
//!
//! Llama 3.1+ models were trained with per-frequency scaling: low frequencies are divided by
//! a factor (32 for Llama 3.2), high ones are kept, and a smooth ramp joins them (Meta's
//! `apply_scaling` in the Llama 3 reference code). llama.cpp's converter stores the resulting
//! divisors as the `rope_freqs.weight` tensor; a file without it may instead describe the
//! scaling in `llama.rope.scaling.*` metadata. Both end up as one divisor per frequency here.

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Result, Tensor};

/// How positions are stretched beyond the context the model was first trained with.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Every frequency divided by `factor` (position interpolation).
    Linear {
        factor: f32,
    },
    /// Llama 3's per-frequency ramp.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: f32,
    },
}

impl RopeScaling {
    /// Llama 3.1 / 3.2's published parameters.
    pub const LLAMA_3_2: RopeScaling =
        RopeScaling::Llama3 { factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context: 8192.0 };

    /// Reads `llama.rope.scaling.*` (or the older `llama.rope.scale_linear`). `Err` names the key
    /// or the scheme wick cannot apply: running such a model with plain RoPE would give
    /// fluent-looking nonsense beyond a few hundred tokens, so it is refused.
    pub fn from_metadata(
        metadata: &std::collections::HashMap<String, gguf_file::Value>,
    ) -> std::result::Result<Self, String> {
        let f32_of = |key: &str| -> std::result::Result<Option<f32>, String> {
            metadata.get(key).map(|v| v.to_f32().map_err(|e| format!("metadata key {key}: {e}"))).transpose()
        };
        let kind = match metadata.get("llama.rope.scaling.type") {
            Some(v) => v.to_string().map_err(|e| format!("metadata key llama.rope.scaling.type: {e}"))?.clone(),
            None => match f32_of("llama.rope.scale_linear")? {
                Some(factor) => return Self::linear(factor, "llama.rope.scale_linear"),
                None => return Ok(RopeScaling::None),
            },
        };
        let factor = f32_of("llama.rope.scaling.factor")?;
        match kind.as_str() {
            "none" => Ok(RopeScaling::None),
            "linear" => Self::linear(factor.unwrap_or(1.0), "llama.rope.scaling.factor"),
            "llama3" => {
                let original = metadata
                    .get("llama.rope.scaling.original_context_length")
                    .ok_or("rope scaling llama3 needs metadata key llama.rope.scaling.original_context_length")?
                    .to_u32()
                    .map_err(|e| format!("metadata key llama.rope.scaling.original_context_length: {e}"))?;
                let factor = factor.ok_or("rope scaling llama3 needs metadata key llama.rope.scaling.factor")?;
                let low_freq_factor = f32_of("llama.rope.scaling.low_freq_factor")?.unwrap_or(1.0);
                let high_freq_factor = f32_of("llama.rope.scaling.high_freq_factor")?.unwrap_or(4.0);
                let original_context = original as f32;
                let scaling = RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context };
                if factor >= 1.0
                    && low_freq_factor > 0.0
                    && high_freq_factor > low_freq_factor
                    && original_context > 0.0
                {
                    Ok(scaling)
                } else {
                    Err(format!("rope scaling llama3 has inconsistent parameters: {scaling:?}"))
                }
            }
            other => Err(format!(
                "rope scaling {other:?} (metadata key llama.rope.scaling.type) is not supported; wick applies \
                 linear and llama3 scaling, or a rope_freqs.weight tensor"
            )),
        }
    }

    fn linear(factor: f32, key: &str) -> std::result::Result<Self, String> {
        if factor.is_finite() && factor >= 1.0 {
            Ok(if factor == 1.0 { RopeScaling::None } else { RopeScaling::Linear { factor } })
        } else {
            Err(format!("metadata key {key} is {factor}; a scaling factor is at least 1"))
        }
    }

    /// One divisor per frequency (`rope_dim / 2` of them), as `rope_freqs.weight` stores them;
    /// `None` when frequencies stay as they are.
    pub fn divisors(&self, rope_dim: usize, base: f32) -> Option<Vec<f32>> {
        let half = rope_dim / 2;
        match *self {
            RopeScaling::None => None,
            RopeScaling::Linear { factor } => Some(vec![factor; half]),
            RopeScaling::Llama3 { factor, low_freq_factor: low, high_freq_factor: high, original_context } => {
                let (low_wavelen, high_wavelen) = (original_context / low, original_context / high);
                let divisors = (0..half)
                    .map(|i| {
                        let wavelen = 2.0 * std::f32::consts::PI / base_frequency(i, rope_dim, base);
                        if wavelen < high_wavelen {
                            1.0
                        } else if wavelen > low_wavelen {
                            factor
                        } else {
                            let smooth = (original_context / wavelen - low) / (high - low);
                            1.0 / ((1.0 - smooth) / factor + smooth)
                        }
                    })
                    .collect();
                Some(divisors)
            }
        }
    }
}

fn base_frequency(i: usize, rope_dim: usize, base: f32) -> f32 {
    1.0 / base.powf(2.0 * i as f32 / rope_dim as f32)
}

/// cos/sin tables `[max_context, rope_dim / 2]` for interleaved RoPE, each frequency divided
/// by its entry in `divisors` when given.
pub fn tables(
    rope_dim: usize,
    base: f32,
    divisors: Option<&[f32]>,
    max_context: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = rope_dim / 2;
    if let Some(d) = divisors {
        if d.len() != half {
            candle_core::bail!("rope_freqs.weight has {} values; this model's rope needs {half}", d.len());
        }
    }
    let inv_freq: Vec<f32> =
        (0..half).map(|i| base_frequency(i, rope_dim, base) / divisors.map_or(1.0, |d| d[i])).collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions =
        Tensor::arange(0u32, max_context as u32, device)?.to_dtype(DType::F32)?.reshape((max_context, 1))?;
    let angles = positions.matmul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf_file::Value;
    use std::collections::HashMap;

    fn metadata(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn llama3_divisors_span_one_to_the_factor() {
        let f = RopeScaling::LLAMA_3_2.divisors(128, 500_000.0).unwrap();
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 32.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        assert!(f.iter().any(|&d| d > 1.0 && d < 32.0), "the ramp between is smooth");
    }

    #[test]
    fn metadata_describes_each_scheme() {
        assert_eq!(RopeScaling::from_metadata(&metadata(&[])).unwrap(), RopeScaling::None);
        let linear = metadata(&[
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(4.0)),
        ]);
        assert_eq!(RopeScaling::from_metadata(&linear).unwrap(), RopeScaling::Linear { factor: 4.0 });
        let old = metadata(&[("llama.rope.scale_linear", Value::F32(2.0))]);
        assert_eq!(RopeScaling::from_metadata(&old).unwrap(), RopeScaling::Linear { factor: 2.0 });
        let llama3 = metadata(&[
            ("llama.rope.scaling.type", Value::String("llama3".into())),
            ("llama.rope.scaling.factor", Value::F32(32.0)),
            ("llama.rope.scaling.original_context_length", Value::U32(8192)),
        ]);
        assert_eq!(RopeScaling::from_metadata(&llama3).unwrap(), RopeScaling::LLAMA_3_2);
    }

    #[test]
    fn unsupported_or_broken_scaling_is_refused_by_name() {
        let yarn = metadata(&[("llama.rope.scaling.type", Value::String("yarn".into()))]);
        let e = RopeScaling::from_metadata(&yarn).unwrap_err();
        assert!(e.contains("\"yarn\"") && e.contains("llama.rope.scaling.type"), "{e}");
        let shrink = metadata(&[
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(0.5)),
        ]);
        assert!(RopeScaling::from_metadata(&shrink).unwrap_err().contains("llama.rope.scaling.factor"));
        let no_context = metadata(&[
            ("llama.rope.scaling.type", Value::String("llama3".into())),
            ("llama.rope.scaling.factor", Value::F32(32.0)),
        ]);
        assert!(RopeScaling::from_metadata(&no_context).unwrap_err().contains("original_context_length"));
    }

    #[test]
    fn tables_apply_the_divisors() {
        let d = RopeScaling::Linear { factor: 4.0 }.divisors(8, 10_000.0).unwrap();
        let (cos, _) = tables(8, 10_000.0, Some(&d), 16, &Device::Cpu).unwrap();
        let (plain, _) = tables(8, 10_000.0, None, 64, &Device::Cpu).unwrap();
        // Position 4 with frequencies divided by 4 is position 1 without.
        let a: Vec<f32> = cos.get(4).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = plain.get(1).unwrap().to_vec1().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5), "{a:?} vs {b:?}");
        assert!(tables(8, 10_000.0, Some(&[1.0; 3]), 16, &Device::Cpu).is_err());
    }
}
