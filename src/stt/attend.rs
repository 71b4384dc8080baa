//! The encoder's self-attention over a whole window as one CPU op. Candle's path builds it from
//! separate ops: the heads split out into contiguous copies, a score matrix per block of
//! queries (freshly allocated and zeroed, 54 MB per layer for tiny), a softmax pass over it in
//! memory, a product with the values, then a concatenation and a transpose back. Here one
//! task takes one head and a block of queries: its scores (`QUERY_BLOCK` x keys) stay in a
//! per-thread buffer in L2, the softmax runs in place while they are warm, and the product
//! with the values is written straight into the head's columns of the output. The heads are
//! read where they lie, as strided views of the fused q/k/v projection.
//!
//! The arithmetic is the same as the Candle path's (gemm products, wick's softmax), so the
//! results agree to float rounding; `tests` checks that against the Candle ops.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::ops::{fast_path, softmax_row_in_place};
use crate::cpu_kernels::{gemm_f32, SharedOut, Strided};

/// Queries per task: a 128 x 1500 score block is 750 KiB, inside a 1 MiB or larger L2.
const QUERY_BLOCK: usize = 128;

/// `softmax(q kᵀ · scale) v` for every head, from `qkv` laid out `[1, t, 3 · d]` (queries,
/// keys, values side by side, heads contiguous inside each) to `[1, t, d]`.
pub struct WindowAttention {
    pub heads: usize,
    pub scale: f32,
}

impl CustomOp1 for WindowAttention {
    fn name(&self) -> &'static str {
        "wick-window-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, width) = layout.shape().dims3()?;
        let qkv = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) if b == 1 => &data[start..end],
            _ => candle_core::bail!("window attention takes one contiguous f32 [1, t, 3·d] tensor"),
        };
        if width % 3 != 0 || (width / 3) % self.heads != 0 {
            candle_core::bail!("window attention: width {width} is not 3 x heads ({}) x head size", self.heads);
        }
        let d = width / 3;
        let hd = d / self.heads;
        let mut out = vec![0.0f32; t * d];
        let dst = SharedOut::new(&mut out);
        // Each head's keys transposed once ([hd, t], rows contiguous): read in place, kᵀ's
        // columns are `width` apart, and gemm would gather them one float at a time in every
        // task.
        let mut keys_t = vec![0.0f32; d * t];
        keys_t.par_chunks_mut(hd * t).enumerate().for_each(|(head, kt)| {
            for (j, key) in qkv.chunks_exact(width).enumerate() {
                for (i, &x) in key[d + head * hd..d + (head + 1) * hd].iter().enumerate() {
                    kt[i * t + j] = x;
                }
            }
        });
        let blocks = t.div_ceil(QUERY_BLOCK);
        // Head-major order: neighbouring tasks share a head's keys and values in cache.
        (0..self.heads * blocks).into_par_iter().for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            let (head, block) = (task / blocks, task % blocks);
            let q0 = block * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(t - q0);
            scores.resize(rows * t, 0.0);
            let q = qkv[q0 * width + head * hd..].as_ptr();
            let kt = keys_t[head * hd * t..].as_ptr();
            let v = qkv[2 * d + head * hd..].as_ptr();
            // scores = q · kᵀ
            // SAFETY: q rows q0..q0+rows (`hd` columns at the head's offset, row stride
            // `width`) lie inside `qkv`, the head's kᵀ (hd x t) inside `keys_t`, and `scores`
            // holds rows x t and is this task's own.
            unsafe {
                gemm_f32(
                    (rows, t, hd),
                    Strided::rows(scores.as_mut_ptr(), t),
                    false,
                    Strided::rows(q, width),
                    Strided::rows(kt, t),
                    Parallelism::None,
                )
            };
            for row in scores.chunks_exact_mut(t) {
                softmax_row_in_place(row, self.scale);
            }
            // out[q0.., head] = scores · v
            // SAFETY: `scores` is rows x t; v rows 0..t (`hd` columns at the head's offset,
            // row stride `width`) lie inside `qkv`. The product writes rows q0..q0+rows,
            // columns head·hd.. of `out` (row stride d), which no other task writes, and `out`
            // outlives the parallel loop.
            unsafe {
                let dst = Strided::rows(dst.at(q0 * d + head * hd), d);
                gemm_f32(
                    (rows, hd, t),
                    dst,
                    false,
                    Strided::rows(scores.as_ptr(), t),
                    Strided::rows(v, width),
                    Parallelism::None,
                )
            };
        });
        Ok((CpuStorage::F32(out), Shape::from((1, t, d))))
    }
}

/// Whether `qkv` can take the CPU op (else the caller uses Candle's ops).
pub fn fits(qkv: &Tensor) -> bool {
    fast_path(qkv) && qkv.dim(0).ok() == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// The op against the same attention written in Candle ops, on a window whose length is
    /// not a multiple of the query block.
    #[test]
    fn matches_candle_ops() -> Result<()> {
        let (t, heads, hd) = (300, 3, 16);
        let d = heads * hd;
        let qkv = Tensor::randn(0f32, 1.0, (1, t, 3 * d), &Device::Cpu)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let got = qkv.apply_op1_no_bwd(&WindowAttention { heads, scale })?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * d, d)?.reshape((1, t, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let p = candle_nn::ops::softmax(&(q.matmul(&k.t()?)? * scale as f64)?, D::Minus1)?;
        let want = p.matmul(&v)?.transpose(1, 2)?.reshape((1, t, d))?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "largest difference {diff}");
        Ok(())
    }
}
