//! Generation's attention over the KV cache as one CPU op. For one new token, Candle's path
//! copies the cache's keys and values out of its preallocated buffer (`contiguous`), hands
//! them to gemm, which packs them again, and allocates the scores: with 1000 tokens of
//! context the synthetic 3B generated 6.2 tok/s on one thread against 11.6 with 8, where
//! reading the cache itself costs about 12 % of the weights' stream. Here one task takes one
//! kv head with its group of query heads and reads that head's keys and values where they
//! lie in the cache, once for the whole group. Paired on one Zen 4 thread, 1000 tokens of
//! context: SmolLM2 generated 73-75 tok/s before and 89-97 with it, the 3B 7.6-8.1 and 9.7-10.0.
//!
//! The arithmetic is the Candle path's on the CPU: q holds values rounded to f16 and the cache
//! is f16 (converted to f32 exactly as it is read), the scores are f32 products times 1/√hd,
//! the softmax subtracts the row's maximum, and the probabilities are rounded to f16 before
//! they weigh the values, where llama.cpp's f16 cache rounds them. Only the order of the float
//! sums differs.
//!
//! Its kernels keep the vector units busy rather than waiting on one chain of additions: the
//! scores four key rows at a time, the weighing with a head's output held in registers across
//! the positions. Paired at 1000 tokens of context, together with `swiglu`'s single pass
//! (measured as one change), SmolLM2's generation went from 82-87 to 100-105 tok/s on one
//! thread and from 123-129 to 138-152 on two.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape};
use half::f16;

use super::pool::Pool;
use crate::cpu_kernels::{axpy, libm_exp};

/// Lanes of the dot products' partial sums: one AVX-512 register, two AVX2 ones, an array in
/// the portable kernel; all add in the same order. Head sizes must be multiples of it.
pub const LANES: usize = 16;

/// `softmax(q kᵀ / √hd) v` for one query position: q `[1, n_head, 1, hd]` (contiguous, f32), the
/// cache's keys and values `[1, n_kv, total, hd]` (f16, any strides, rows contiguous), out
/// `[1, 1, n_head · hd]`.
pub struct CachedAttention {
    /// Round the probabilities to f16 (the CPU's llama.cpp-like numerics).
    pub f16_probs: bool,
}

/// A cache view's element offsets: where head `h`, position `t` starts. The cache holds f16:
/// the values llama.cpp's f16 cache would hold, in half the bytes of f32.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f16],
    start: usize,
    head: usize,
    pos: usize,
    hd: usize,
}

impl<'a> View<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<(Self, usize, usize, usize)> {
        let CpuStorage::F16(data) = storage else {
            candle_core::bail!("cached attention: {what} are not f16");
        };
        let (b, heads, total, hd) = layout.shape().dims4()?;
        let stride = layout.stride();
        if b != 1 || stride[3] != 1 {
            candle_core::bail!(
                "cached attention: {what} {:?} (strides {stride:?}) is not [1, heads, t, hd] with rows contiguous",
                layout.shape()
            );
        }
        let view = View { data, start: layout.start_offset(), head: stride[1], pos: stride[2], hd };
        Ok((view, heads, total, hd))
    }

    /// Head `h` alone: its rows are `row(t)`.
    fn head(&self, h: usize) -> View<'a> {
        View { start: self.start + h * self.head, ..*self }
    }

    #[inline(always)]
    fn row(&self, t: usize) -> &'a [f16] {
        let at = self.start + t * self.pos;
        &self.data[at..at + self.hd]
    }
}

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "wick-cached-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, n_head, n, hd) = q_layout.shape().dims4()?;
        let q = match (q, q_layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) if b == 1 && n == 1 => &data[start..end],
            _ => candle_core::bail!("cached attention takes one contiguous f32 query position [1, heads, 1, hd]"),
        };
        let (keys, n_kv, total, k_hd) = View::new(k, k_layout, "the keys")?;
        let (values, v_kv, v_total, v_hd) = View::new(v, v_layout, "the values")?;
        if (k_hd, v_hd, v_kv, v_total) != (hd, hd, n_kv, total)
            || n_kv == 0
            || n_head % n_kv != 0
            || total == 0
            || hd % LANES != 0
        {
            candle_core::bail!(
                "cached attention: q {:?}, keys {:?} and values {:?} do not fit (one query position, heads a multiple of the kv heads, head size a multiple of {LANES})",
                q_layout.shape(),
                k_layout.shape(),
                v_layout.shape()
            );
        }
        let group = n_head / n_kv;
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        let mut out = vec![0.0f32; n_head * hd];
        // One task per kv head: its group's query heads are consecutive, as are their outputs.
        Pool::global().for_each_chunk_mut(&mut out, group * hd, |h, out| {
            let mut scores = vec![0.0f32; group * total];
            let q = &q[h * group * hd..(h + 1) * group * hd];
            attend_head(q, &keys.head(h), &values.head(h), scale, &mut scores, out, |scores| {
                for row in scores.chunks_exact_mut(total) {
                    softmax_in_place(row, self.f16_probs);
                }
            });
        });
        Ok((CpuStorage::F32(out), Shape::from((1, 1, n_head * hd))))
    }
}

/// `scores[g][t] = q[g] · key[t] · scale` for the query heads of one kv head, then
/// `out[g] = Σ_t p[g][t] · value[t]` once `between` has turned the scores into probabilities;
/// the keys and values read in place. Each score's product is summed in `LANES` partial sums, which
/// are then added pairwise (lane l + lane l+8, then l + l+4, l + l+2, 0 + 1): the order is
/// fixed, and multiplications and additions are never fused, so every kernel gives the same
/// bits. The x86 kernels are written with intrinsics: LLVM vectorised the portable score
/// loop two lanes wide. They read whole rows through raw pointers: every row comes bounds-checked
/// from its view, and `hd` is a multiple of `LANES` (the op checks it).
fn attend_head(
    q: &[f32],
    keys: &View,
    values: &View,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
    between: impl Fn(&mut [f32]),
) {
    score(q, keys, scale, scores);
    between(scores);
    weigh_values(scores, values, out);
}

/// The scores by the widest kernel this CPU has.
fn score(q: &[f32], keys: &View, scale: f32, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::cpu_kernels::{vector_tier, Tier};
        match vector_tier() {
            // SAFETY: the CPU has AVX-512F.
            Some(Tier::Avx512) => return unsafe { scores_avx512(q, keys, scale, scores) },
            // SAFETY: the CPU has AVX2 and F16C.
            Some(Tier::Avx2) if std::arch::is_x86_feature_detected!("f16c") => {
                return unsafe { scores_avx2(q, keys, scale, scores) }
            }
            _ => {}
        }
    }
    scores_portable(q, keys, scale, scores);
}

fn scores_portable(q: &[f32], keys: &View, scale: f32, scores: &mut [f32]) {
    let hd = keys.hd;
    let total = scores.len() / (q.len() / hd);
    for t in 0..total {
        let key = keys.row(t);
        for (g, q) in q.chunks_exact(hd).enumerate() {
            let mut lanes = [0.0f32; LANES];
            for (cq, ck) in q.chunks_exact(LANES).zip(key.chunks_exact(LANES)) {
                for l in 0..LANES {
                    lanes[l] += cq[l] * ck[l].to_f32();
                }
            }
            for width in [8, 4, 2] {
                for l in 0..width {
                    lanes[l] += lanes[l + width];
                }
            }
            scores[g * total + t] = (lanes[0] + lanes[1]) * scale;
        }
    }
}

/// `out[g] = Σ_t p[g][t] · value[t]`, by the widest kernel this CPU has. Every kernel adds the
/// products to each output value in the order of `t`, unfused, so all give the same bits.
fn weigh_values(probs: &[f32], values: &View, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::cpu_kernels::{vector_tier, Tier};
        match vector_tier() {
            // SAFETY: the CPU has AVX-512F.
            Some(Tier::Avx512) => return unsafe { weigh_avx512(probs, values, out) },
            // SAFETY: the CPU has AVX2 and F16C.
            Some(Tier::Avx2) if std::arch::is_x86_feature_detected!("f16c") => {
                return unsafe { weigh_avx2(probs, values, out) }
            }
            _ => {}
        }
    }
    weigh_portable(probs, values, out);
}

/// Each value row converted to f32 once for the group (exactly: every f16 is an f32; half's
/// slice conversion uses the CPU's f16 instructions), then weighed with `axpy`.
fn weigh_portable(probs: &[f32], values: &View, out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let hd = values.hd;
    let total = probs.len() / (out.len() / hd);
    out.fill(0.0);
    let mut value = vec![0.0f32; hd];
    for t in 0..total {
        values.row(t).convert_to_f32_slice(&mut value);
        for (g, out) in out.chunks_exact_mut(hd).enumerate() {
            axpy(out, probs[g * total + t], &value);
        }
    }
}

/// `f(i, n)` for `i` in `0..count` in steps of `n`: `n = block` while whole blocks remain, then
/// `n = 1`. The kernels' drivers: a register-blocked kernel, then its one-wide form for the rest.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_blocks(count: usize, block: usize, mut f: impl FnMut(usize, usize)) {
    let whole = count / block * block;
    for i in (0..whole).step_by(block) {
        f(i, block);
    }
    for i in whole..count {
        f(i, 1);
    }
}

/// Sixteen-lane blocks of a head's output a weighing kernel keeps in registers across all the
/// positions, instead of loading and storing them for each position and head (`axpy` did: a
/// store-to-load wait each time).
#[cfg(target_arch = "x86_64")]
const BLOCKS_AT_ONCE: usize = 4;

/// `f(probs of head g, at, n, output of head g)` for every query head and its sixteen-lane
/// blocks from `at`, [`BLOCKS_AT_ONCE`] blocks a call while whole ones remain, then one
/// (`n`): the weighing kernels' driver.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn by_head_and_block(probs: &[f32], hd: usize, out: &mut [f32], mut f: impl FnMut(&[f32], usize, usize, &mut [f32])) {
    let total = probs.len() / (out.len() / hd);
    for (g, out) in out.chunks_exact_mut(hd).enumerate() {
        let probs = &probs[g * total..(g + 1) * total];
        in_blocks(hd / LANES, BLOCKS_AT_ONCE, |b, n| f(probs, b * LANES, n, out));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weigh_avx512(probs: &[f32], values: &View, out: &mut [f32]) {
    by_head_and_block(probs, values.hd, out, |probs, at, n, out| match n {
        // SAFETY (both): this function's own features.
        BLOCKS_AT_ONCE => unsafe { weigh_avx512_lanes::<BLOCKS_AT_ONCE>(probs, values, at, out) },
        _ => unsafe { weigh_avx512_lanes::<1>(probs, values, at, out) },
    });
}

/// `out[at..at + 16 R] = Σ_t probs[t] · value[t][at..at + 16 R]` for one query head.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weigh_avx512_lanes<const R: usize>(probs: &[f32], values: &View, at: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    for (t, &p) in probs.iter().enumerate() {
        let value = values.row(t)[at..at + R * LANES].as_ptr();
        let p = _mm512_set1_ps(p);
        for (j, acc) in acc.iter_mut().enumerate() {
            let v = _mm512_cvtph_ps(_mm256_loadu_si256(value.add(j * LANES) as *const __m256i));
            *acc = _mm512_add_ps(*acc, _mm512_mul_ps(p, v));
        }
    }
    let out = out[at..at + R * LANES].as_mut_ptr();
    for (j, acc) in acc.into_iter().enumerate() {
        _mm512_storeu_ps(out.add(j * LANES), acc);
    }
}

/// [`weigh_avx512`] in eight-lane halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn weigh_avx2(probs: &[f32], values: &View, out: &mut [f32]) {
    by_head_and_block(probs, values.hd, out, |probs, at, n, out| match n {
        // SAFETY (both): this function's own features.
        BLOCKS_AT_ONCE => unsafe { weigh_avx2_lanes::<{ 2 * BLOCKS_AT_ONCE }>(probs, values, at, out) },
        _ => unsafe { weigh_avx2_lanes::<2>(probs, values, at, out) },
    });
}

/// `out[at..at + 8 R] = Σ_t probs[t] · value[t][at..at + 8 R]` for one query head.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn weigh_avx2_lanes<const R: usize>(probs: &[f32], values: &View, at: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    for (t, &p) in probs.iter().enumerate() {
        let value = values.row(t)[at..at + R * 8].as_ptr();
        let p = _mm256_set1_ps(p);
        for (j, acc) in acc.iter_mut().enumerate() {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(value.add(j * 8) as *const __m128i));
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(p, v));
        }
    }
    let out = out[at..at + R * 8].as_mut_ptr();
    for (j, acc) in acc.into_iter().enumerate() {
        _mm256_storeu_ps(out.add(j * 8), acc);
    }
}

/// Key rows a score kernel takes at once: each score's sum is one chain of dependent vector
/// additions, and four of them side by side keep the adder busy where one left it waiting
/// (the order within each score is unchanged, so the bits are too).
#[cfg(target_arch = "x86_64")]
const KEYS_AT_ONCE: usize = 4;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512(q: &[f32], keys: &View, scale: f32, scores: &mut [f32]) {
    let total = scores.len() / (q.len() / keys.hd);
    in_blocks(total, KEYS_AT_ONCE, |t, n| match n {
        // SAFETY (both): this function's own features.
        KEYS_AT_ONCE => unsafe { scores_avx512_rows::<KEYS_AT_ONCE>(q, keys, scale, t, scores) },
        _ => unsafe { scores_avx512_rows::<1>(q, keys, scale, t, scores) },
    });
}

/// The scores of key rows `t..t + R` against every query head of the group.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn scores_avx512_rows<const R: usize>(q: &[f32], keys: &View, scale: f32, t: usize, scores: &mut [f32]) {
    use std::arch::x86_64::*;
    let hd = keys.hd;
    let total = scores.len() / (q.len() / hd);
    let key: [*const f16; R] = std::array::from_fn(|j| keys.row(t + j).as_ptr());
    for (g, q) in q.chunks_exact(hd).enumerate() {
        let q = q.as_ptr();
        let mut acc = [_mm512_setzero_ps(); R];
        for i in (0..hd).step_by(LANES) {
            let qv = _mm512_loadu_ps(q.add(i));
            for j in 0..R {
                let k = _mm512_cvtph_ps(_mm256_loadu_si256(key[j].add(i) as *const __m256i));
                acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(qv, k));
            }
        }
        for (j, acc) in acc.into_iter().enumerate() {
            let eight = _mm256_add_ps(
                _mm512_castps512_ps256(acc),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc))),
            );
            scores[g * total + t + j] = sum8(eight) * scale;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scores_avx2(q: &[f32], keys: &View, scale: f32, scores: &mut [f32]) {
    let total = scores.len() / (q.len() / keys.hd);
    in_blocks(total, KEYS_AT_ONCE, |t, n| match n {
        // SAFETY (both): this function's own features.
        KEYS_AT_ONCE => unsafe { scores_avx2_rows::<KEYS_AT_ONCE>(q, keys, scale, t, scores) },
        _ => unsafe { scores_avx2_rows::<1>(q, keys, scale, t, scores) },
    });
}

/// [`scores_avx512_rows`] in two eight-lane halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn scores_avx2_rows<const R: usize>(q: &[f32], keys: &View, scale: f32, t: usize, scores: &mut [f32]) {
    use std::arch::x86_64::*;
    let hd = keys.hd;
    let total = scores.len() / (q.len() / hd);
    let key: [*const f16; R] = std::array::from_fn(|j| keys.row(t + j).as_ptr());
    for (g, q) in q.chunks_exact(hd).enumerate() {
        let q = q.as_ptr();
        let (mut low, mut high) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
        for i in (0..hd).step_by(LANES) {
            let (q_low, q_high) = (_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(q.add(i + 8)));
            for j in 0..R {
                let k_low = _mm256_cvtph_ps(_mm_loadu_si128(key[j].add(i) as *const __m128i));
                let k_high = _mm256_cvtph_ps(_mm_loadu_si128(key[j].add(i + 8) as *const __m128i));
                low[j] = _mm256_add_ps(low[j], _mm256_mul_ps(q_low, k_low));
                high[j] = _mm256_add_ps(high[j], _mm256_mul_ps(q_high, k_high));
            }
        }
        for j in 0..R {
            scores[g * total + t + j] = sum8(_mm256_add_ps(low[j], high[j])) * scale;
        }
    }
}

/// Lanes l + l+4, then l + l+2, then 0 + 1: the tree's last three steps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sum8(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
    _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)))
}

/// Candle's CPU softmax (subtract the maximum, exponentiate, divide by the sum), then the
/// probabilities rounded to f16 if asked. libm's `expf` (less its slow path for scores far
/// below the maximum: `libm_exp`) and a sum in order, as Candle's: a
/// vectorised exponential (within 3e-7) and eight partial sums were 3-4 times as fast here, but
/// moved the small model's top-2 margins enough that greedy decoding left llama.cpp's tokens
/// where its margin was 0.20 (`tests/llm.rs`).
fn softmax_in_place(row: &mut [f32], f16_probs: bool) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in row.iter_mut() {
        *x = libm_exp(*x - max);
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
    if f16_probs {
        // The slice conversions use the CPU's f16 instructions, many values at a time.
        use half::{slice::HalfFloatSliceExt, vec::HalfFloatVecExt};
        let halves = Vec::<half::f16>::from_f32_slice(row);
        halves.convert_to_f32_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// The op against Candle's ops on a cache view (a preallocated buffer narrowed to the
    /// positions in use), with grouped queries and a length that is not a multiple of the lanes.
    #[test]
    fn matches_candle_ops_on_a_cache_view() -> Result<()> {
        let (n_kv, group, hd, total, max) = (3, 3, 64, 37, 50);
        let n_head = n_kv * group;
        let round = |t: Tensor| t.to_dtype(DType::F16)?.to_dtype(DType::F32);
        // Fixed inputs, not random ones: the probabilities are rounded to f16 on both sides, and
        // a probability within a float-order difference of a rounding step rounds to the next
        // f16 on one side only (7e-5 apart, seen once on aarch64 with random inputs). Fixed
        // inputs make that a property of the data, checked on x86-64 and aarch64 alike.
        let values = |seed: usize, shape: (usize, usize, usize, usize)| {
            let n = shape.0 * shape.1 * shape.2 * shape.3;
            let v: Vec<f32> = (0..n).map(|i| ((i * 53 + seed) % 211) as f32 / 52.75 - 2.0).collect();
            round(Tensor::from_vec(v, shape, &Device::Cpu)?)
        };
        let q = values(0, (1, n_head, 1, hd))?;
        let k_all = values(7, (1, n_kv, max, hd))?;
        let v_all = values(101, (1, n_kv, max, hd))?;
        let (k, v) = (k_all.narrow(2, 0, total)?, v_all.narrow(2, 0, total)?);
        // The cache holds f16: a preallocated f16 buffer, narrowed.
        let half = |t: &Tensor| t.to_dtype(DType::F16);
        let (k16, v16) = (half(&k_all)?.narrow(2, 0, total)?, half(&v_all)?.narrow(2, 0, total)?);
        let got = q.apply_op3_no_bwd(&k16, &v16, &CachedAttention { f16_probs: true })?;

        let qg = q.reshape((1, n_kv, group, hd))?;
        let scores = (qg.matmul(&k.contiguous()?.t()?)? / (hd as f64).sqrt())?;
        let probs = round(candle_nn::ops::softmax_last_dim(&scores)?)?;
        let want = probs.matmul(&v.contiguous()?)?.reshape((1, 1, n_head * hd))?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "largest difference {diff}");
        Ok(())
    }

    /// Every score kernel this CPU can run gives the portable kernel's bits.
    #[test]
    fn kernels_give_the_same_bits() {
        let (group, hd, total) = (3, 128, 45);
        let data: Vec<f16> =
            (0..total * hd).map(|i| f16::from_f32(((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)).collect();
        let keys = View { data: &data, start: 0, head: total * hd, pos: hd, hd };
        let q: Vec<f32> = (0..group * hd).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 2.0).collect();
        let mut want = vec![0.0f32; group * total];
        scores_portable(&q, &keys, 0.125, &mut want);
        #[cfg(target_arch = "x86_64")]
        {
            type Kernel = unsafe fn(&[f32], &View, f32, &mut [f32]);
            let mut tiers: Vec<(&str, Kernel)> = Vec::new();
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
                tiers.push(("avx2", scores_avx2));
            }
            if is_x86_feature_detected!("avx512f") {
                tiers.push(("avx512", scores_avx512));
            }
            for (name, scores) in tiers {
                let mut got = vec![0.0f32; group * total];
                // SAFETY: the CPU has the kernel's features.
                unsafe { scores(&q, &keys, 0.125, &mut got) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{name}: scores");
            }
        }
    }

    /// Every weighing kernel this CPU can run gives the portable kernel's bits, for head sizes
    /// that fill the kernels' register blocks and ones that leave a remainder.
    #[test]
    fn weighing_kernels_give_the_same_bits() {
        for hd in [64, 80, 128] {
            let (group, total) = (3, 45);
            let data: Vec<f16> =
                (0..total * hd).map(|i| f16::from_f32(((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)).collect();
            let values = View { data: &data, start: 0, head: total * hd, pos: hd, hd };
            let probs: Vec<f32> = (0..group * total).map(|i| (i * 104729 % 997) as f32 / 997.0 / 10.0).collect();
            let mut want = vec![f32::NAN; group * hd];
            weigh_portable(&probs, &values, &mut want);
            assert!(want.iter().all(|v| v.is_finite()), "hd {hd}: every output written");
            #[cfg(target_arch = "x86_64")]
            {
                type Kernel = unsafe fn(&[f32], &View, &mut [f32]);
                let mut tiers: Vec<(&str, Kernel)> = Vec::new();
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
                    tiers.push(("avx2", weigh_avx2));
                }
                if is_x86_feature_detected!("avx512f") {
                    tiers.push(("avx512", weigh_avx512));
                }
                for (name, weigh) in tiers {
                    let mut got = vec![f32::NAN; group * hd];
                    // SAFETY: the CPU has the kernel's features.
                    unsafe { weigh(&probs, &values, &mut got) };
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{name}, hd {hd}: weighed values");
                }
            }
        }
    }

    /// An f32 cache, and keys that do not fit the query, are errors that say so.
    #[test]
    fn bad_inputs_are_named_errors() -> Result<()> {
        for (keys, dtype, want) in
            [((1, 2, 5, 16), DType::F32, "the keys are not f16"), ((1, 3, 5, 16), DType::F16, "do not fit")]
        {
            let q = Tensor::zeros((1, 4, 1, 16), DType::F32, &Device::Cpu)?;
            let k = Tensor::zeros(keys, dtype, &Device::Cpu)?;
            let e = q.apply_op3_no_bwd(&k, &k, &CachedAttention { f16_probs: true }).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        Ok(())
    }
}
