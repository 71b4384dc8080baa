//! One new token's q, k and v made ready for the KV cache and the attention on the CPU: RoPE
//! and the rounding to f16, one pass per tensor.
//!
//! Candle takes a head reshape, a RoPE, and one or two conversions per tensor, each a pass
//! that allocates, and converts to and from f16 one value at a time: on the 3B at two threads
//! that was about 0.7 ms of a 65 ms token, on one thread while the other waited for the next
//! matrix product. Here each tensor is one op, with `half`'s slice conversions, which use the
//! CPU's f16 instructions (F16C, eight values at a time; aarch64's FP16).
//!
//! The arithmetic is Candle's `rope_i` (pairs of neighbours, `x0·cos - x1·sin` and
//! `x0·sin + x1·cos`, unfused) and the round to nearest even of its f16 conversion, so the
//! values are the ones the general path gives, bit for bit.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::cpu_kernels::contiguous_f32;

/// `(q, k, v)` of one token (each `(1, 1, heads * head_dim)` f32, as the projections give
/// them) as the attention takes them: q roped and rounded through f16, `(1, n_head, 1,
/// head_dim)` f32; k roped and v as they are, `(1, n_kv, 1, head_dim)` f16 for the cache.
/// `cos` and `sin` are the position's row of the tables, `head_dim / 2` values each.
pub fn prepare(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    (cos, sin): (&Tensor, &Tensor),
    (n_head, n_kv, head_dim): (usize, usize, usize),
) -> Result<(Tensor, Tensor, Tensor)> {
    let q = q.apply_op3_no_bwd(cos, sin, &Rope { heads: n_head, head_dim, out: DType::F32 })?;
    let k = k.apply_op3_no_bwd(cos, sin, &Rope { heads: n_kv, head_dim, out: DType::F16 })?;
    let v = v.apply_op1_no_bwd(&ToF16 { heads: n_kv, head_dim })?;
    Ok((q, k, v))
}

/// RoPE on each head of one token, then the value rounded to f16: kept as f16, or widened back
/// to f32 (an attention operand on the CPU).
struct Rope {
    heads: usize,
    head_dim: usize,
    out: DType,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "wick-token-rope"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        cos: &CpuStorage,
        cos_layout: &Layout,
        sin: &CpuStorage,
        sin_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_layout, "a token's RoPE")?;
        let cos = contiguous_f32(cos, cos_layout, "a token's RoPE")?;
        let sin = contiguous_f32(sin, sin_layout, "a token's RoPE")?;
        let half_dim = self.head_dim / 2;
        if x.len() != self.heads * self.head_dim || cos.len() != half_dim || sin.len() != half_dim {
            candle_core::bail!(
                "a token's RoPE: {} values, {} cos and {} sin for {} heads of {}",
                x.len(),
                cos.len(),
                sin.len(),
                self.heads,
                self.head_dim
            );
        }
        let mut roped = vec![0.0f32; x.len()];
        for (x, out) in x.chunks_exact(self.head_dim).zip(roped.chunks_exact_mut(self.head_dim)) {
            rope(x, cos, sin, out);
        }
        let shape = Shape::from((1, self.heads, 1, self.head_dim));
        let mut rounded = vec![f16::ZERO; roped.len()];
        rounded.convert_from_f32_slice(&roped);
        if self.out == DType::F16 {
            return Ok((CpuStorage::F16(rounded), shape));
        }
        rounded.convert_to_f32_slice(&mut roped);
        Ok((CpuStorage::F32(roped), shape))
    }
}

/// One token's heads converted to f16.
struct ToF16 {
    heads: usize,
    head_dim: usize,
}

impl CustomOp1 for ToF16 {
    fn name(&self) -> &'static str {
        "wick-token-to-f16"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, layout, "a token's f16 conversion")?;
        if x.len() != self.heads * self.head_dim {
            candle_core::bail!(
                "a token's f16 conversion: {} values for {} heads of {}",
                x.len(),
                self.heads,
                self.head_dim
            );
        }
        let mut out = vec![f16::ZERO; x.len()];
        out.convert_from_f32_slice(x);
        Ok((CpuStorage::F16(out), Shape::from((1, self.heads, 1, self.head_dim))))
    }
}

/// Candle's `rope_i` on one head: neighbours `(2i, 2i + 1)` turned by angle `i`.
fn rope(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    for (((x, out), &c), &s) in x.chunks_exact(2).zip(out.chunks_exact_mut(2)).zip(cos).zip(sin) {
        out[0] = x[0] * c - x[1] * s;
        out[1] = x[0] * s + x[1] * c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    /// Values that round every way to f16: ties, subnormals, past its largest, signed zeros.
    fn awkward(n: usize) -> Vec<f32> {
        let special =
            [0.0, -0.0, 1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0, -2.5e-6, 6.1e-5, 65504.0, 65520.0, -1e6, 3e-8];
        let mut seed = 0x9e37_79b9u32;
        (0..n)
            .map(|i| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let spread = (seed >> 8) as f32 / (1 << 24) as f32 * 8.0 - 4.0;
                if i % 7 == 3 {
                    special[i / 7 % special.len()]
                } else {
                    spread
                }
            })
            .collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let t = t.flatten_all().unwrap();
        match t.dtype() {
            DType::F16 => t.to_vec1::<f16>().unwrap().iter().map(|v| v.to_bits() as u32).collect(),
            _ => t.to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect(),
        }
    }

    /// The general path's bits (Candle's `rope_i` and conversions) for the 3B's and SmolLM2's
    /// head shapes.
    #[test]
    fn gives_the_general_paths_bits() {
        let dev = Device::Cpu;
        for (n_head, n_kv, hd) in [(24, 8, 128), (9, 3, 64)] {
            let all = |heads: usize, salt: usize| {
                let v = awkward(heads * hd + salt);
                Tensor::from_vec(v[salt..].to_vec(), (1, 1, heads * hd), &dev).unwrap()
            };
            let (q, k, v) = (all(n_head, 0), all(n_kv, 5), all(n_kv, 11));
            let angles = Tensor::from_vec(awkward(8 * hd / 2), (8, hd / 2), &dev).unwrap();
            let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
            let (cos, sin) = (cos.i(5..6).unwrap(), sin.i(5..6).unwrap());
            let (got_q, got_k, got_v) = prepare((&q, &k, &v), (&cos, &sin), (n_head, n_kv, hd)).unwrap();
            let heads =
                |t: &Tensor, n: usize| t.reshape((1, 1, n, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let roped = candle_nn::rotary_emb::rope_i(&heads(&q, n_head), &cos, &sin).unwrap();
            let want_q = roped.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
            let want_k =
                candle_nn::rotary_emb::rope_i(&heads(&k, n_kv), &cos, &sin).unwrap().to_dtype(DType::F16).unwrap();
            let want_v = heads(&v, n_kv).to_dtype(DType::F16).unwrap();
            // Before the rounding, which would hide most last-bit differences.
            let (x, c, s) = (q.flatten_all().unwrap(), cos.flatten_all().unwrap(), sin.flatten_all().unwrap());
            let (x, c, s) = (x.to_vec1::<f32>().unwrap(), c.to_vec1::<f32>().unwrap(), s.to_vec1::<f32>().unwrap());
            let mut ours = vec![0.0f32; x.len()];
            for (x, out) in x.chunks_exact(hd).zip(ours.chunks_exact_mut(hd)) {
                rope(x, &c, &s, out);
            }
            assert_eq!(ours.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bits(&roped), "RoPE, heads of {hd}");
            for (name, got, want) in [("q", got_q, want_q), ("k", got_k, want_k), ("v", got_v, want_v)] {
                assert_eq!(got.dims(), want.dims(), "{name}");
                assert_eq!(got.dtype(), want.dtype(), "{name}");
                assert_eq!(bits(&got), bits(&want), "{name}, heads of {hd}");
            }
        }
    }

    /// `half`'s slice conversions (the CPU's f16 instructions where it has them) give the
    /// one-value conversions' bits, which Candle's `to_dtype` uses, tails included.
    #[test]
    fn slice_conversions_give_the_one_value_bits() {
        let x = awkward(1003);
        let mut rounded = vec![f16::ZERO; x.len()];
        rounded.convert_from_f32_slice(&x);
        let one_by_one: Vec<u16> = x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
        assert_eq!(rounded.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), one_by_one);
        let mut wide = vec![0.0f32; x.len()];
        rounded.convert_to_f32_slice(&mut wide);
        let wide_one_by_one: Vec<u32> = rounded.iter().map(|v| v.to_f32().to_bits()).collect();
        assert_eq!(wide.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), wide_one_by_one);
    }

    #[test]
    fn a_wrong_shape_is_an_error_naming_the_op() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 1, 100), DType::F32, &dev).unwrap();
        let cs = Tensor::zeros((1, 32), DType::F32, &dev).unwrap();
        let err = prepare((&x, &x, &x), (&cs, &cs), (2, 1, 64)).unwrap_err().to_string();
        assert!(err.contains("a token's RoPE: 100 values"), "{err}");
    }
}
