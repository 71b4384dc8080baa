//! Attention pieces shared by the model rooms (Whisper's decoder and Llama): both run causal
//! self-attention over a key/value cache, so they mask the same way.

use candle_core::{DType, Device, Result, Tensor};

/// The `[n, offset + n]` additive mask for a block of `n` queries appended after `offset`
/// cached positions: query i sees positions `0..=offset + i`, later ones get -inf.
pub fn causal_mask(n: usize, offset: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..offset + n).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_slice(&mask, (n, offset + n), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_query_sees_the_cache_and_itself() {
        let m: Vec<Vec<f32>> = causal_mask(2, 1, &Device::Cpu, DType::F32).unwrap().to_vec2().unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(m, vec![vec![0.0, 0.0, inf], vec![0.0, 0.0, 0.0]]);
    }
}
