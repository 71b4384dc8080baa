//! Quantized linear layers for the CPU that keep exactly one copy of each weight.
//!
//! Candle 0.11's quantized matmul repacks every weight into a tiled layout on first use and
//! keeps it beside the original, so a 2 GB model grows to over 4 GB resident: past the
//! appliance's 3.5 GB budget for the 3B model alone. Here the weights stay in their GGUF
//! blocks; each input row is quantized to the block type's dot-product partner and multiplied
//! with Candle's per-type SIMD dot products, four weight rows per activation load, spread over
//! the rayon pool. Other devices and unquantized weights use Candle's `QMatMul` (its CUDA
//! kernels do not repack).
//!
//! Measured on a 2-core x86 machine with the synthetic Llama 3.2 3B Q4_K_M: resident memory
//! 2.1 GB instead of 4.4 GB and generation 15.5 instead of 11.7 tokens/s, but prompt
//! processing 21 instead of 72 tokens/s, since dot products are not a tiled matrix product.
//! A tiled int8 kernel over the same blocks is the way to win prefill back.

use std::sync::Arc;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, GgmlType,
};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};
use rayon::prelude::*;

pub enum QLinear {
    /// Weight rows of `cols` values in GGUF blocks, multiplied in place.
    Blocks {
        weight: Arc<QTensor>,
        rows: usize,
        cols: usize,
    },
    Candle(QMatMul),
}

fn supported(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(dtype, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K | Q8K)
}

impl QLinear {
    pub fn new(weight: Arc<QTensor>) -> Result<Self> {
        let on_cpu = matches!(weight.device(), candle_core::Device::Cpu);
        let (rows, cols) = weight.shape().dims2()?;
        if on_cpu && supported(weight.dtype()) && cols % weight.dtype().block_size() == 0 {
            Ok(QLinear::Blocks { weight, rows, cols })
        } else {
            Ok(QLinear::Candle(QMatMul::from_arc(weight)?))
        }
    }

    /// `x · Wᵀ` over the last dimension of `x` (f32).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, rows, cols) = match self {
            QLinear::Candle(m) => return m.forward(x),
            QLinear::Blocks { weight, rows, cols } => (weight, *rows, *cols),
        };
        let mut out_dims = x.dims().to_vec();
        let last = out_dims.len() - 1;
        if out_dims[last] != cols {
            candle_core::bail!("input width {} does not match the weight's {cols}", out_dims[last]);
        }
        out_dims[last] = rows;
        let input = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let m = input.len() / cols;
        let mut out = vec![0.0f32; m * rows];
        let bytes = weight.data()?;
        use GgmlDType::*;
        match weight.dtype() {
            Q4_0 => matmul_t::<BlockQ4_0>(&bytes, &input, cols, &mut out),
            Q4_1 => q4_1::matmul_t(&bytes, &input, cols, &mut out),
            Q5_0 => matmul_t::<BlockQ5_0>(&bytes, &input, cols, &mut out),
            Q5_1 => matmul_t::<BlockQ5_1>(&bytes, &input, cols, &mut out),
            Q8_0 => matmul_t::<BlockQ8_0>(&bytes, &input, cols, &mut out),
            Q2K => matmul_t::<BlockQ2K>(&bytes, &input, cols, &mut out),
            Q3K => matmul_t::<BlockQ3K>(&bytes, &input, cols, &mut out),
            Q4K => matmul_t::<BlockQ4K>(&bytes, &input, cols, &mut out),
            Q5K => matmul_t::<BlockQ5K>(&bytes, &input, cols, &mut out),
            Q6K => matmul_t::<BlockQ6K>(&bytes, &input, cols, &mut out),
            Q8K => matmul_t::<BlockQ8K>(&bytes, &input, cols, &mut out),
            other => candle_core::bail!("no block matmul for {other:?}"),
        }
        Tensor::from_vec(out, out_dims, x.device())
    }
}

/// Runs `compute(start, end, res)` for chunks of weight rows in parallel (`res` is
/// `[m][end - start]`) and scatters the results into `out` (`[m][n]`). Weight rows are the
/// outer loop: a chunk is read from memory once and used for every input row (a whole prompt
/// during prefill).
fn by_weight_chunks(n: usize, m: usize, out: &mut [f32], compute: impl Fn(usize, usize, &mut [f32]) + Sync) {
    const CHUNK: usize = 32;
    let chunks: Vec<Vec<f32>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut res = vec![0.0f32; m * (end - start)];
            compute(start, end, &mut res);
            res
        })
        .collect();
    for (c, res) in chunks.iter().enumerate() {
        let (start, width) = (c * CHUNK, res.len() / m.max(1));
        for i in 0..m {
            out[i * n + start..i * n + start + width].copy_from_slice(&res[i * width..(i + 1) * width]);
        }
    }
}

/// `out[i][j] = dot(x[i], w[j])` with `w` as rows of `T` blocks.
fn matmul_t<T: GgmlType>(bytes: &[u8], x: &[f32], k: usize, out: &mut [f32]) {
    let per_row = k / T::BLCK_SIZE;
    let n_blocks = bytes.len() / std::mem::size_of::<T>();
    // SAFETY: a QTensor of dtype T stores a contiguous Vec<T>, so the bytes are aligned and
    // hold `n_blocks` valid blocks.
    let w: &[T] = unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n_blocks) };
    let n = n_blocks / per_row;
    let xq_per_row = k / T::VecDotType::BLCK_SIZE;
    let mut xq = vec![T::VecDotType::zeros(); x.len() / k * xq_per_row];
    for (row, q) in x.chunks_exact(k).zip(xq.chunks_exact_mut(xq_per_row)) {
        T::VecDotType::from_float(row, q);
    }
    let row = |r: usize| &w[r * per_row..(r + 1) * per_row];
    by_weight_chunks(n, x.len() / k, out, |start, end, res| {
        for (xrow, o) in xq.chunks_exact(xq_per_row).zip(res.chunks_exact_mut(end - start)) {
            // Four weight rows share one read of the quantized input row.
            let mut j = 0;
            while start + j + 4 <= end {
                let r0 = start + j;
                let (a, b, c, d) = T::vec_dot_4(k, row(r0), row(r0 + 1), row(r0 + 2), row(r0 + 3), xrow);
                o[j..j + 4].copy_from_slice(&[a, b, c, d]);
                j += 4;
            }
            for (t, v) in o[j..].iter_mut().enumerate() {
                *v = T::vec_dot(k, row(start + j + t), xrow);
            }
        }
    });
}

/// Q4_1 weights (per 32 values: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles; value =
/// d * q + m) against 8-bit activations (per 32: scale, scale * sum, 32 signed bytes), as in
/// llama.cpp's Q4_1 x Q8_1 dot product. Candle has no SIMD version of this one, which left
/// SmolLM2 (a Q4_1 model) at a sixth of llama.cpp's speed.
mod q4_1 {
    pub const BLOCK: usize = 32;
    const WEIGHT_BYTES: usize = 20;

    /// One block of quantized activations.
    #[derive(Clone, Copy)]
    pub struct Q8 {
        pub d: f32,
        /// `d * sum(qs)`, which carries the weights' minimum through the dot product.
        pub s: f32,
        pub qs: [i8; BLOCK],
    }

    pub fn quantize(x: &[f32]) -> Vec<Q8> {
        x.chunks_exact(BLOCK)
            .map(|b| {
                let amax = b.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                let mut qs = [0i8; BLOCK];
                for (q, v) in qs.iter_mut().zip(b) {
                    *q = (v * id).round() as i8;
                }
                let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                Q8 { d, s: d * sum as f32, qs }
            })
            .collect()
    }

    fn header(w: &[u8]) -> (f32, f32) {
        let f = |i: usize| half::f16::from_le_bytes([w[i], w[i + 1]]).to_f32();
        (f(0), f(2))
    }

    pub fn dot_portable(w: &[u8], x: &[Q8]) -> f32 {
        w.chunks_exact(WEIGHT_BYTES)
            .zip(x)
            .map(|(wb, xb)| {
                let (d, m) = header(wb);
                let mut sum = 0i32;
                for j in 0..BLOCK / 2 {
                    let byte = wb[4 + j];
                    sum += (byte & 0x0f) as i32 * xb.qs[j] as i32 + (byte >> 4) as i32 * xb.qs[j + BLOCK / 2] as i32;
                }
                d * xb.d * sum as f32 + m * xb.s
            })
            .sum()
    }

    /// Dot products of one weight row with `R` activation rows at once: each weight block is
    /// unpacked once and used `R` times, which is what makes prompt processing (many rows)
    /// cheaper per row than generation. The scales are converted with F16C in place; calling
    /// `half` here cost a fifth of the time in a baseline x86-64 build, where it cannot inline.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_avx2<const R: usize>(w: &[u8], xs: [&[Q8]; R]) -> [f32; R] {
        use std::arch::x86_64::*;
        let mut acc = [_mm256_setzero_ps(); R];
        let mut min_sum = [0.0f32; R];
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        for (b, wb) in w.chunks_exact(WEIGHT_BYTES).enumerate() {
            let header = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]])));
            let d = _mm_cvtss_f32(header);
            let m = _mm_cvtss_f32(_mm_movehdup_ps(header));
            let packed = _mm_loadu_si128(wb.as_ptr().add(4) as *const __m128i);
            // Low nibbles hold values 0..16 of the block, high nibbles 16..32.
            let nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
            for r in 0..R {
                let xb = &xs[r][b];
                let q8 = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles, q8), ones);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(sums), acc[r]);
                min_sum[r] += m * xb.s;
            }
        }
        let mut out = [0.0f32; R];
        for r in 0..R {
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
            out[r] = lanes.iter().sum::<f32>() + min_sum[r];
        }
        out
    }

    fn simd() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        #[allow(unreachable_code)]
        false
    }

    /// `dot(w, xs[r])` for every r, the weight row unpacked once per `ROWS` activation rows.
    pub fn dots(w: &[u8], xs: &[&[Q8]], out: &mut [f32]) {
        const ROWS: usize = 4;
        #[cfg(target_arch = "x86_64")]
        if simd() {
            let mut groups = xs.chunks_exact(ROWS);
            let mut outs = out.chunks_exact_mut(ROWS);
            for (g, o) in (&mut groups).zip(&mut outs) {
                // SAFETY: the CPU has the features; every load stays inside a 20-byte weight
                // block (16 bytes from offset 4) or a 32-byte activation block, and each
                // activation row has as many blocks as the weight row (checked by the caller).
                o.copy_from_slice(&unsafe { dot_avx2::<ROWS>(w, [g[0], g[1], g[2], g[3]]) });
            }
            for (x, o) in groups.remainder().iter().zip(outs.into_remainder()) {
                // SAFETY: as above.
                *o = unsafe { dot_avx2::<1>(w, [x]) }[0];
            }
            return;
        }
        for (x, o) in xs.iter().zip(out) {
            *o = dot_portable(w, x);
        }
    }

    #[cfg(test)]
    pub fn dot(w: &[u8], x: &[Q8]) -> f32 {
        let mut out = [0.0];
        dots(w, &[x], &mut out);
        out[0]
    }

    pub fn matmul_t(bytes: &[u8], x: &[f32], k: usize, out: &mut [f32]) {
        let row_bytes = k / BLOCK * WEIGHT_BYTES;
        let n = bytes.len() / row_bytes;
        let m = x.len() / k;
        let xq = quantize(x);
        let xs: Vec<&[Q8]> = xq.chunks_exact(k / BLOCK).collect();
        super::by_weight_chunks(n, m, out, |start, end, res| {
            let width = end - start;
            let mut column = vec![0.0f32; m];
            for j in 0..width {
                let r = start + j;
                dots(&bytes[r * row_bytes..(r + 1) * row_bytes], &xs, &mut column);
                for (i, v) in column.iter().enumerate() {
                    res[i * width + j] = *v;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_for_every_supported_type() {
        let w = Tensor::randn(0f32, 1.0, (70, 512), &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 512), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q2K]
        {
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let want = QMatMul::from_arc(q.clone()).unwrap().forward(&x).unwrap();
            let got = QLinear::new(q).unwrap().forward(&x).unwrap();
            assert!(matches!(
                QLinear::new(Arc::new(QTensor::quantize(&w, dtype).unwrap())).unwrap(),
                QLinear::Blocks { .. }
            ));
            let diff: f32 =
                (got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            let scale: f32 = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(diff <= 1e-3 * scale, "{dtype:?}: differs by {diff} (scale {scale})");
        }
    }

    #[test]
    fn q4_1_simd_matches_the_portable_dot_for_any_row_count() {
        let w = Tensor::randn(0f32, 1.0, (5, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.data().unwrap();
        // Six activation rows: one group of four and a remainder of two.
        let x: Vec<f32> = (0..6 * 256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect();
        let xq = q4_1::quantize(&x);
        let xs: Vec<&[q4_1::Q8]> = xq.chunks_exact(8).collect();
        for r in 0..5 {
            let row = &bytes[r * 8 * 20..(r + 1) * 8 * 20];
            let mut got = [0.0f32; 6];
            q4_1::dots(row, &xs, &mut got);
            for (i, (a, x)) in got.iter().zip(&xs).enumerate() {
                let b = q4_1::dot_portable(row, x);
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "row {r}, input {i}: {a} vs {b}");
                assert_eq!(*a, q4_1::dot(row, x));
            }
        }
    }
}
