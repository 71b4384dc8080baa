//! Quantized linear layers for the CPU that keep exactly one copy of each weight.
//!
//! Candle 0.11's quantized matmul repacks every weight into a tiled layout on first use and
//! keeps it beside the original, so a 2 GB model grows to over 4 GB resident: past the
//! appliance's 3.5 GB budget for the 3B model alone. Here the weights stay in their GGUF
//! blocks; each input row is quantized to the block type's dot-product partner and multiplied
//! with Candle's per-type SIMD dot products, four weight rows per activation load, spread over
//! the threads (rayon's for a prompt, wick's [`super::pool`] for generation, where layers that
//! read the same input share one quantization and one job: [`QLinear::forward_shared`]).
//! Other devices and unquantized weights use Candle's `QMatMul` (its CUDA kernels do not
//! repack).
//!
//! Measured on a 2-core x86 machine with the synthetic Llama 3.2 3B Q4_K_M: resident memory
//! 2.1 GB instead of 4.4 GB and generation 15.5 instead of 11.7 tokens/s, but prompt
//! processing 21 instead of 72 tokens/s, since dot products are not a tiled matrix product.
//! Q4_K and Q6_K (the 3B model), Q4_1 and Q8_0 (SmolLM2) are repacked at load sixteen rows
//! at a time, in place of the GGUF tensor, for register-tiled kernels ([`grouped`],
//! [`q4_k_x16`], [`q6_k_x16`], [`q4_1_x16`], [`q8_0_x16`]). On one AVX-512 thread the 3B's
//! prompts went from 15 to 33 tokens/s and its generation from 4.1 to 5.9; SmolLM2's prompts
//! from about 215 to 420. Generation leaves the weights' stream to the hardware prefetchers
//! (see [`q4_k_x16`] for why). On aarch64 the same layouts have NEON kernels built on the
//! dot-product instructions (`neon.rs`). A tied
//! embedding's table of one of these types is owned by the output projection, which reads
//! rows back for the lookup ([`QLinear::dequantize_rows`]); a tied table of another type is
//! shared and stays in GGUF blocks.

use std::sync::Arc;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, GgmlType,
};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};
use rayon::prelude::*;

use super::pool::Pool;
use crate::huge_pages::HugePageBuffer;

pub enum QLinear {
    /// Weight rows of `cols` values in GGUF blocks, multiplied in place.
    Blocks {
        weight: Arc<QTensor>,
        rows: usize,
        cols: usize,
    },
    /// Rows repacked sixteen at a time for the tiled kernels ([`grouped`]), in place of the
    /// GGUF tensor; the rows past the last full group stay in GGUF blocks in `tail`.
    Grouped {
        kind: Repacked,
        repacked: HugePageBuffer,
        tail: Vec<u8>,
        rows: usize,
        cols: usize,
    },
    Candle(QMatMul),
}

/// The types with a repacked layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repacked {
    Q4K,
    Q6K,
    Q4_1,
    Q8_0,
}

impl Repacked {
    fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4K => Some(Repacked::Q4K),
            GgmlDType::Q6K => Some(Repacked::Q6K),
            GgmlDType::Q4_1 => Some(Repacked::Q4_1),
            GgmlDType::Q8_0 => Some(Repacked::Q8_0),
            _ => None,
        }
    }

    /// The activations' quantization its kernels read: layers whose types share it can share
    /// one quantized input ([`QLinear::forward_shared`]).
    fn activations(self) -> Activations {
        match self {
            Repacked::Q4K | Repacked::Q6K => Activations::Q8K,
            Repacked::Q4_1 | Repacked::Q8_0 => Activations::Q8,
        }
    }

    /// The GGUF type, which the rows past the last group keep.
    fn dtype(self) -> GgmlDType {
        match self {
            Repacked::Q4K => GgmlDType::Q4K,
            Repacked::Q6K => GgmlDType::Q6K,
            Repacked::Q4_1 => GgmlDType::Q4_1,
            Repacked::Q8_0 => GgmlDType::Q8_0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activations {
    /// ggml's Q8_K ([`q4_k::Q8K`]), for the K-quants.
    Q8K,
    /// ggml's Q8_1 ([`q4_1::Q8`]), for Q4_1 and Q8_0.
    Q8,
}

fn supported(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(dtype, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K | Q8K)
}

impl QLinear {
    pub fn new(weight: Arc<QTensor>) -> Result<Self> {
        let on_cpu = matches!(weight.device(), candle_core::Device::Cpu);
        let (rows, cols) = weight.shape().dims2()?;
        let blocks_fit = cols % weight.dtype().block_size() == 0;
        let kind = Repacked::of(weight.dtype());
        // A tensor shared with something else (a tied embedding's table) stays as it is:
        // repacking it would keep two copies.
        if let Some(kind) =
            kind.filter(|_| on_cpu && blocks_fit && grouped::worth_repacking() && Arc::strong_count(&weight) == 1)
        {
            let bytes = weight.data()?;
            let row_bytes = cols / weight.dtype().block_size() * weight.dtype().type_size();
            let split = rows / grouped::ROWS * grouped::ROWS * row_bytes;
            let repacked = match kind {
                Repacked::Q4K => q4_k_x16::repack(&bytes[..split], cols),
                Repacked::Q6K => q6_k_x16::repack(&bytes[..split], cols),
                Repacked::Q4_1 => q4_1_x16::repack(&bytes[..split], cols),
                Repacked::Q8_0 => q8_0_x16::repack(&bytes[..split], cols),
            }
            .map_err(|e| {
                candle_core::Error::Msg(format!(
                    "no memory for a {kind:?} weight of {rows}x{cols} ({e}): the model needs more than is free"
                ))
            })?;
            let tail = bytes[split..].to_vec();
            Ok(QLinear::Grouped { kind, repacked, tail, rows, cols })
        } else if on_cpu && supported(weight.dtype()) && blocks_fit {
            Ok(QLinear::Blocks { weight, rows, cols })
        } else {
            Ok(QLinear::Candle(QMatMul::from_arc(weight)?))
        }
    }

    /// Whether a tied embedding can look its rows up here ([`Self::dequantize_rows`]) once
    /// this layer owns the table: the types with a repacked layout, whose rows can be read back
    /// from it (and from GGUF blocks where the CPU keeps those).
    pub fn serves_lookups(dtype: GgmlDType) -> bool {
        Repacked::of(dtype).is_some()
    }

    /// Rows `ids` of the weight as f32 (`[ids.len()][cols]`), for an embedding tied to this
    /// layer: the table is kept once, in this layer's layout. `Err` for an id out of range,
    /// and for a layer that keeps no rows of its own (Candle's, on a GPU).
    pub fn dequantize_rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let (rows, cols) = match self {
            QLinear::Blocks { rows, cols, .. } | QLinear::Grouped { rows, cols, .. } => (*rows, *cols),
            QLinear::Candle(_) => candle_core::bail!("this layer's rows are not kept on the CPU"),
        };
        let mut out = vec![0.0f32; ids.len() * cols];
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(cols)) {
            let id = id as usize;
            if id >= rows {
                candle_core::bail!("token id {id} is outside the vocabulary of {rows}");
            }
            match self {
                QLinear::Grouped { kind, repacked, tail, .. } => {
                    let group_bytes = match kind {
                        Repacked::Q4K => cols / q4_k::BLOCK * q4_k_x16::GROUP_BYTES,
                        Repacked::Q6K => cols / q4_k::BLOCK * q6_k_x16::GROUP_BYTES,
                        Repacked::Q4_1 => cols / q4_1::BLOCK * q4_1_x16::GROUP_BYTES,
                        Repacked::Q8_0 => cols / q4_1::BLOCK * q8_0_x16::GROUP_BYTES,
                    };
                    let grouped = repacked.len() / group_bytes * grouped::ROWS;
                    if id < grouped {
                        let (g, r) = (id / grouped::ROWS, id % grouped::ROWS);
                        let group = &repacked[g * group_bytes..(g + 1) * group_bytes];
                        match kind {
                            Repacked::Q4K => q4_k_x16::dequantize_row(group, r, o),
                            Repacked::Q6K => q6_k_x16::dequantize_row(group, r, o),
                            Repacked::Q4_1 => q4_1_x16::dequantize_row(group, r, o),
                            Repacked::Q8_0 => q8_0_x16::dequantize_row(group, r, o),
                        }
                    } else {
                        let dtype = kind.dtype();
                        let row_bytes = cols / dtype.block_size() * dtype.type_size();
                        let t = id - grouped;
                        o.copy_from_slice(&gguf_rows_as_f32(dtype, &tail[t * row_bytes..(t + 1) * row_bytes], cols)?);
                    }
                }
                QLinear::Blocks { weight, .. } => {
                    let dtype = weight.dtype();
                    let row_bytes = cols / dtype.block_size() * dtype.type_size();
                    let data = weight.data()?;
                    o.copy_from_slice(&gguf_rows_as_f32(dtype, &data[id * row_bytes..(id + 1) * row_bytes], cols)?);
                }
                QLinear::Candle(_) => unreachable!("refused above"),
            }
        }
        Ok(out)
    }

    /// `x · Wᵀ` over the last dimension of `x` (f32).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, cols) = match self {
            QLinear::Candle(m) => return m.forward(x),
            QLinear::Blocks { rows, cols, .. } | QLinear::Grouped { rows, cols, .. } => (*rows, *cols),
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
        let weight = match self {
            QLinear::Grouped { kind, repacked, tail, .. } => {
                match kind {
                    Repacked::Q4K => q4_k_x16::matmul_t(repacked, tail, &input, cols, &mut out),
                    Repacked::Q6K => q6_k_x16::matmul_t(repacked, tail, &input, cols, &mut out),
                    Repacked::Q4_1 => q4_1_x16::matmul_t(repacked, tail, &input, cols, &mut out),
                    Repacked::Q8_0 => q8_0_x16::matmul_t(repacked, tail, &input, cols, &mut out),
                }
                return Tensor::from_vec(out, out_dims, x.device());
            }
            QLinear::Blocks { weight, .. } => weight,
            QLinear::Candle(_) => unreachable!("returned above"),
        };
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
            // Q4_K and Q6_K come here only where the CPU has no kernels for their repacked
            // layouts (no AVX2, or aarch64 without the dot-product extension): Candle's per-row
            // products have NEON there, and wick's plain ones nothing faster.
            Q4K => matmul_t::<BlockQ4K>(&bytes, &input, cols, &mut out),
            Q5K => matmul_t::<BlockQ5K>(&bytes, &input, cols, &mut out),
            Q6K => matmul_t::<BlockQ6K>(&bytes, &input, cols, &mut out),
            Q8K => matmul_t::<BlockQ8K>(&bytes, &input, cols, &mut out),
            other => candle_core::bail!("no block matmul for {other:?}"),
        }
        Tensor::from_vec(out, out_dims, x.device())
    }

    /// `x · Wᵀ` for several layers that read the same `x` (a transformer layer's q, k and v;
    /// its gate and up), each result as [`Self::forward`] gives it, bit for bit.
    ///
    /// For one row of `x` (generation) on repacked weights whose kernels read the same
    /// quantized activations, `x` is quantized once and every layer's rows are one job on the
    /// pool: one hand-out and one wait instead of one per layer. k and v are a third of q's
    /// rows on Llama 3.2 3B, so alone they were the shortest jobs, where the hand-out and the
    /// wait for the slower thread weigh most. Measured on two cores: SmolLM2's generation at two
    /// threads 5-15 % faster (6 of 6 paired runs), the 3B's unchanged within the machine's
    /// noise. Anything else (a prompt, another device, types that quantize differently) runs
    /// each layer's `forward`.
    pub fn forward_shared<const N: usize>(layers: [&QLinear; N], x: &Tensor) -> Result<[Tensor; N]> {
        let outs = match one_row_shared(&layers, x)? {
            Some(outs) => outs,
            None => layers.iter().map(|l| l.forward(x)).collect::<Result<Vec<_>>>()?,
        };
        Ok(outs.try_into().unwrap_or_else(|_| unreachable!("one result per layer")))
    }
}

/// A repacked layer's weights and sizes.
struct Part<'a> {
    kind: Repacked,
    weights: (&'a [u8], &'a [u8]),
    rows: usize,
}

/// A layout's `fill_rows`: rows `start..end` of the product with quantized activations.
type FillRows<X> = fn(&[u8], &[u8], &[&[X]], usize, (usize, usize), &mut [f32]);

/// [`QLinear::forward_shared`]'s one job, where it applies (`None` where it does not).
fn one_row_shared(layers: &[&QLinear], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
    let mut parts = Vec::with_capacity(layers.len());
    let mut width = None;
    for layer in layers {
        let QLinear::Grouped { kind, repacked, tail, rows, cols } = layer else {
            return Ok(None);
        };
        let first = parts.first().map_or(*kind, |p: &Part| p.kind);
        if *width.get_or_insert(*cols) != *cols || kind.activations() != first.activations() {
            return Ok(None);
        }
        parts.push(Part { kind: *kind, weights: (repacked, tail), rows: *rows });
    }
    let Some(cols) = width.filter(|&cols| x.elem_count() == cols && x.dims().last() == Some(&cols)) else {
        return Ok(None);
    };
    let input = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let outs = match parts[0].kind.activations() {
        Activations::Q8K => rows_of_parts(&parts, &q4_k::quantize(&input), cols, |kind| match kind {
            Repacked::Q4K => q4_k_x16::fill_rows,
            Repacked::Q6K => q6_k_x16::fill_rows,
            other => unreachable!("{other:?} reads other activations"),
        }),
        Activations::Q8 => rows_of_parts(&parts, &q4_1::quantize(&input), cols, |kind| match kind {
            Repacked::Q4_1 => q4_1_x16::fill_rows,
            Repacked::Q8_0 => q8_0_x16::fill_rows,
            other => unreachable!("{other:?} reads other activations"),
        }),
    };
    let dims = |rows: usize| {
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("checked above") = rows;
        dims
    };
    outs.into_iter()
        .zip(&parts)
        .map(|(out, p)| Tensor::from_vec(out, dims(p.rows), x.device()))
        .collect::<Result<_>>()
        .map(Some)
}

/// Each part's product with one row of quantized activations `xq`, all in one pool job of
/// [`CHUNK`] rows a task.
fn rows_of_parts<X: Sync>(
    parts: &[Part],
    xq: &[X],
    cols: usize,
    fill: impl Fn(Repacked) -> FillRows<X>,
) -> Vec<Vec<f32>> {
    let fills: Vec<FillRows<X>> = parts.iter().map(|p| fill(p.kind)).collect();
    let mut outs: Vec<Vec<f32>> = parts.iter().map(|p| vec![0.0f32; p.rows]).collect();
    let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
    Pool::global().for_each_chunk_of_each(&mut slices, CHUNK, |l, c, res| {
        let (repacked, tail) = parts[l].weights;
        let start = c * CHUNK;
        fills[l](repacked, tail, &[xq], cols, (start, start + res.len()), res);
    });
    outs
}

/// GGUF rows of `dtype` as f32, through Candle's dequantization.
fn gguf_rows_as_f32(dtype: GgmlDType, bytes: &[u8], cols: usize) -> Result<Vec<f32>> {
    let rows = bytes.len() / (cols / dtype.block_size() * dtype.type_size());
    let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
        dtype,
        bytes,
        vec![rows, cols],
        &candle_core::Device::Cpu,
    )?;
    q.dequantize(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1()
}

/// Weight rows per task of the pools' jobs: a multiple of the repacked layouts' groups.
const CHUNK: usize = 32;

/// Runs `compute(start, end, res)` for chunks of weight rows in parallel (`res` is
/// `[m][end - start]`) and gathers the results into `out` (`[m][n]`). Weight rows are the
/// outer loop: a chunk is read from memory once and used for every input row (a whole prompt
/// during prefill).
///
/// Each chunk writes its own slice of one buffer: a buffer per chunk cost an allocation, and
/// the kernel's zeroing of fresh pages, per 32 weight rows (6 % of SmolLM2's generation). For
/// one input row (generation) that buffer is `out` itself.
fn by_weight_chunks(n: usize, m: usize, out: &mut [f32], compute: impl Fn(usize, usize, &mut [f32]) + Sync) {
    if m == 1 {
        // Generation: on the spinning pool, whose workers are awake between the token's steps.
        return Pool::global().for_each_chunk_mut(out, CHUNK, |c, res| {
            let start = c * CHUNK;
            compute(start, start + res.len(), res);
        });
    }
    let run = |buf: &mut [f32]| {
        buf.par_chunks_mut(CHUNK * m).enumerate().for_each(|(c, res)| {
            let start = c * CHUNK;
            compute(start, start + res.len() / m, res);
        })
    };
    // Chunk after chunk, each [m][width]: the chunk c holds columns c*CHUNK.. of every row.
    // Gathered row by row in parallel: serial, this copy was a part of the prompt that a
    // second thread did not speed up.
    let mut chunks = vec![0.0f32; n * m];
    run(&mut chunks);
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (c, res) in chunks.chunks(CHUNK * m).enumerate() {
            let (start, width) = (c * CHUNK, res.len() / m);
            row[start..start + width].copy_from_slice(&res[i * width..(i + 1) * width]);
        }
    });
}

/// `f` of each `block` values of `x`, in order: spread over the pool for a prompt's many
/// rows (a serial quantization was a part of the prompt that a second thread did not speed
/// up), in line for generation's one row, where handing work out costs more than it saves.
fn per_block<T: Send>(x: &[f32], block: usize, f: impl Fn(&[f32]) -> T + Sync + Send) -> Vec<T> {
    if x.len() >= 64 * block {
        x.par_chunks_exact(block).map(f).collect()
    } else {
        x.chunks_exact(block).map(f).collect()
    }
}

/// Defines `pub fn quantize(x: &[f32]) -> Vec<$block>`: [`per_block`] of the
/// `#[inline(always)]` function `$f`, with `$f` compiled for AVX2 where the CPU has it. The
/// activations' quantizations are plain loops that the compiler vectorises, on baseline
/// x86-64 (SSE2) four lanes wide; with AVX2 a token's Q8_K quantization takes a little over
/// half the time. (A generic wrapper does not do: the call through `Fn` is not inlined into it.)
macro_rules! quantize_vectorised {
    ($(#[$doc:meta])* $f:ident -> $block:ty) => {
        $(#[$doc])*
        pub fn quantize(x: &[f32]) -> Vec<$block> {
            #[cfg(target_arch = "x86_64")]
            if super::has_avx2_fma_f16c() {
                #[target_feature(enable = "avx2")]
                unsafe fn with_avx2(b: &[f32]) -> $block {
                    $f(b)
                }
                // SAFETY: the CPU has AVX2.
                return super::per_block(x, BLOCK, |b| unsafe { with_avx2(b) });
            }
            super::per_block(x, BLOCK, $f)
        }
    };
}
use quantize_vectorised;

/// Whether the repacked layouts' AVX2 kernels can run.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn has_avx2_fma_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
    #[allow(unreachable_code)]
    false
}

/// Whether their 512-bit kernels can run (AVX-512 F and BW, with what the AVX2 ones need).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn has_avx512bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    return has_avx2_fma_f16c() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
    #[allow(unreachable_code)]
    false
}

/// Whether the 512-bit kernels that sum bytes' products with VNNI's `vpdpbusd` can run.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn has_avx512vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    return has_avx512bw() && is_x86_feature_detected!("avx512vnni");
    #[allow(unreachable_code)]
    false
}

/// `out[i][j] = dot(x[i], w[j])` for weight rows of `row_bytes` in `bytes` and `m` input rows,
/// where `dots(w_row, rows, column)` fills `column[t] = dot(x[rows.start + t], w_row)`: the
/// kernels unpack a weight row once for several input rows. Input rows are taken a tile at a
/// time so that a tile and a chunk of weight rows both stay in cache; without tiling a long
/// prompt's activations were streamed from memory once per weight row.
fn by_weight_rows(
    bytes: &[u8],
    row_bytes: usize,
    m: usize,
    out: &mut [f32],
    dots: impl Fn(&[u8], std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    const TILE: usize = 16;
    let n = bytes.len() / row_bytes;
    by_weight_chunks(n, m, out, |start, end, res| {
        let width = end - start;
        let mut column = [0.0f32; TILE];
        for first in (0..m).step_by(TILE) {
            let rows = first..(first + TILE).min(m);
            let column = &mut column[..rows.len()];
            for j in 0..width {
                let r = start + j;
                dots(&bytes[r * row_bytes..(r + 1) * row_bytes], rows.clone(), column);
                for (t, v) in column.iter().enumerate() {
                    res[(first + t) * width + j] = *v;
                }
            }
        }
    });
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

mod grouped;
#[cfg(target_arch = "aarch64")]
mod neon;
mod q4_1;
mod q4_1_x16;
mod q4_k;
mod q4_k_x16;
mod q6_k;
mod q6_k_x16;
mod q8_0_x16;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_for_every_supported_type() {
        let w = Tensor::randn(0f32, 1.0, (70, 512), &Device::Cpu).unwrap();
        // One row (generation) and several (a prompt) take different kernels; 21 rows fill
        // the repacked Q4_K kernel's tiles of eight and leave a remainder.
        for (x, dtype) in
            [1, 3, 21].into_iter().map(|m| Tensor::randn(0f32, 1.0, (m, 512), &Device::Cpu).unwrap()).flat_map(|x| {
                [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q2K]
                    .map(|d| (x.clone(), d))
            })
        {
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let want = QMatMul::from_arc(q.clone()).unwrap().forward(&x).unwrap();
            let got = QLinear::new(q).unwrap().forward(&x).unwrap();
            let repackable = Repacked::of(dtype).is_some() && grouped::worth_repacking();
            match QLinear::new(Arc::new(QTensor::quantize(&w, dtype).unwrap())).unwrap() {
                QLinear::Grouped { tail, .. } => {
                    assert!(repackable, "{dtype:?} was repacked");
                    // 70 rows: four groups of sixteen and six rows in GGUF blocks.
                    assert_eq!(tail.len(), 6 * 512 / dtype.block_size() * dtype.type_size());
                }
                QLinear::Blocks { .. } => assert!(!repackable, "{dtype:?} was not repacked"),
                QLinear::Candle(_) => panic!("{dtype:?} went to Candle's matmul"),
            }
            let diff: f32 =
                (got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            let scale: f32 = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            // wick quantizes Q4_1's and Q8_0's activations as llama.cpp's x86 code does
            // (multiplier 127 / max, ties to even, the sum's f16 taken from the unrounded scale)
            // and Candle as ggml's reference code: they differ by up to 1.3e-3 of the scale here.
            let tolerance = if matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q8_0) { 5e-3 } else { 1e-3 };
            assert!(diff <= tolerance * scale, "{dtype:?}: differs by {diff} (scale {scale})");
        }
    }

    /// The plain K-quant dot products, which the repacked kernels are checked against, against
    /// Candle's own products on its own Q8K quantization of the same input.
    #[test]
    fn k_quant_plain_dots_match_candle() {
        fn check<T: GgmlType<VecDotType = BlockQ8K>>(dtype: GgmlDType, dot: fn(&[u8], &[q4_k::Q8K]) -> f32) {
            let w = Tensor::randn(0f32, 1.0, (5, 512), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap();
            let block_bytes = std::mem::size_of::<T>();
            assert_eq!(block_bytes, dtype.type_size());
            // SAFETY: a QTensor of this dtype stores its Vec<T>, `block_bytes` a block.
            let blocks: &[T] =
                unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / block_bytes) };
            let x: Vec<f32> = (0..3 * 512).map(|i| ((i * 53 % 211) as f32 - 105.0) / 17.0).collect();
            let xq = q4_k::quantize(&x);
            for r in 0..5 {
                let row = &bytes[r * 2 * block_bytes..(r + 1) * 2 * block_bytes];
                for (i, xrow) in xq.chunks_exact(2).enumerate() {
                    let a = dot(row, xrow);
                    let mut cq = vec![BlockQ8K::zeros(); 2];
                    BlockQ8K::from_float(&x[i * 512..(i + 1) * 512], &mut cq);
                    let c = T::vec_dot(512, &blocks[2 * r..2 * r + 2], &cq);
                    assert!(
                        (a - c).abs() <= 1e-4 * c.abs().max(1.0),
                        "{dtype:?} row {r}, input {i}: {a} vs Candle's {c}"
                    );
                }
            }
        }
        check::<BlockQ4K>(GgmlDType::Q4K, q4_k::dot_portable);
        check::<BlockQ6K>(GgmlDType::Q6K, q6_k::dot_portable);
    }

    /// Checks a repacked layout's kernels (`best`: AVX-512 where the machine has it, `avx2`,
    /// `portable`; on aarch64 the first two are both the NEON kernel) against the GGUF row's
    /// own dot product, and the SIMD ones against the portable one bit for bit, for two groups
    /// of 32 rows and 21 activation rows (tiles of eight and four, and rows alone).
    fn check_repacked<X>(
        dtype: GgmlDType,
        group_bytes: usize,
        repack: fn(&[u8], usize) -> std::io::Result<HugePageBuffer>,
        quantize: fn(&[f32]) -> Vec<X>,
        kernels: &[(&str, grouped::GroupDots<X>)],
        row_dot: fn(&[u8], &[X]) -> f32,
    ) {
        let (_, reference) = kernels.last().expect("the portable kernel comes last");
        let k = 512;
        let w = Tensor::randn(0f32, 1.0, (32, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let bytes = q.data().unwrap();
        let row_bytes = k / dtype.block_size() * dtype.type_size();
        let per_group = k / dtype.block_size() * group_bytes;
        let repacked = repack(&bytes, k).unwrap();
        assert_eq!(repacked.len(), 2 * per_group);
        let x: Vec<f32> = (0..21 * k).map(|i| ((i * 53 % 211) as f32 - 105.0) / 17.0).collect();
        let xq = quantize(&x);
        let xs: Vec<&[X]> = xq.chunks_exact(xq.len() / 21).collect();
        for g in 0..2 {
            let group = &repacked[g * per_group..(g + 1) * per_group];
            let mut portable = vec![[0.0f32; 16]; 21];
            reference(group, &xs, &mut portable);
            for (name, kernel) in kernels {
                let mut got = vec![[0.0f32; 16]; 21];
                kernel(group, &xs, &mut got);
                // The same bits on every CPU: the SIMD kernels' float steps are the portable
                // one's, so x86-64 and aarch64 compute the same model.
                assert_eq!(got, portable, "{dtype:?} {name}: not the portable kernel's bits");
                for (i, xrow) in xs.iter().enumerate() {
                    for (r, v) in got[i].iter().enumerate() {
                        let row = g * 16 + r;
                        let want = row_dot(&bytes[row * row_bytes..(row + 1) * row_bytes], xrow);
                        assert!(
                            (v - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "{dtype:?} {name}: row {row}, input {i}: {v} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn repacked_kernels_match_the_gguf_dot_for_any_row_count() {
        check_repacked(
            GgmlDType::Q4K,
            q4_k_x16::GROUP_BYTES,
            q4_k_x16::repack,
            q4_k::quantize,
            &[
                ("best", q4_k_x16::group_dots),
                ("without VNNI", q4_k_x16::group_dots_without_vnni),
                ("AVX2", q4_k_x16::group_dots_avx2_or_portable),
                ("portable", q4_k_x16::group_dots_portable),
            ],
            q4_k::dot_portable,
        );
        check_repacked(
            GgmlDType::Q6K,
            q6_k_x16::GROUP_BYTES,
            q6_k_x16::repack,
            q4_k::quantize,
            &[
                ("best", q6_k_x16::group_dots),
                ("AVX2", q6_k_x16::group_dots_avx2_or_portable),
                ("portable", q6_k_x16::group_dots_portable),
            ],
            q6_k::dot_portable,
        );
        check_repacked(
            GgmlDType::Q8_0,
            q8_0_x16::GROUP_BYTES,
            q8_0_x16::repack,
            q4_1::quantize,
            &[("best", q8_0_x16::group_dots), ("portable", q8_0_x16::group_dots_portable)],
            q8_0_x16::row_dot,
        );
        check_repacked(
            GgmlDType::Q4_1,
            q4_1_x16::GROUP_BYTES,
            q4_1_x16::repack,
            q4_1::quantize,
            &[
                ("best", q4_1_x16::group_dots),
                ("AVX2", q4_1_x16::group_dots_avx2_or_portable),
                ("portable", q4_1_x16::group_dots_portable),
            ],
            q4_1::dot_portable,
        );
    }

    /// One job for several layers gives each layer's own product, bit for bit: for the types
    /// that share a quantization (with rows past the last group, and a layer whose rows end
    /// inside a task), and where it does not apply (a prompt, types that quantize apart).
    #[test]
    fn layers_sharing_an_input_give_their_own_products() {
        let x = Tensor::randn(0f32, 1.0, (1, 1, 512), &Device::Cpu).unwrap();
        let layer = |rows: usize, dtype| {
            let w = Tensor::randn(0f32, 1.0, (rows, 512), &Device::Cpu).unwrap();
            QLinear::new(Arc::new(QTensor::quantize(&w, dtype).unwrap())).unwrap()
        };
        use GgmlDType::*;
        for (dtypes, m, one_job) in [
            ([Q4K, Q4K, Q6K], 1, true),
            ([Q6K, Q4K, Q4K], 1, true),
            ([Q4_1, Q8_0, Q4_1], 1, true),
            ([Q4K, Q4_1, Q6K], 1, false),
            ([Q4K, Q4K, Q6K], 3, false),
        ] {
            let layers = [layer(70, dtypes[0]), layer(16, dtypes[1]), layer(45, dtypes[2])];
            let x = x.broadcast_as((1, m, 512)).unwrap().contiguous().unwrap();
            let layers_ref = [&layers[0], &layers[1], &layers[2]];
            let repacked = grouped::worth_repacking();
            assert_eq!(one_row_shared(&layers_ref, &x).unwrap().is_some(), one_job && repacked, "{dtypes:?}, {m} rows");
            let shared = QLinear::forward_shared(layers_ref, &x).unwrap();
            for (layer, got) in layers.iter().zip(&shared) {
                let want = layer.forward(&x).unwrap();
                assert_eq!(got.dims(), want.dims(), "{dtypes:?}");
                let (got, want): (Vec<f32>, Vec<f32>) =
                    (got.flatten_all().unwrap().to_vec1().unwrap(), want.flatten_all().unwrap().to_vec1().unwrap());
                assert_eq!(got, want, "{dtypes:?}, {m} rows");
            }
        }
        let narrow = Tensor::randn(0f32, 1.0, (1, 1, 256), &Device::Cpu).unwrap();
        let err = QLinear::forward_shared([&layer(16, Q4K)], &narrow).unwrap_err().to_string();
        assert!(err.contains("input width 256 does not match the weight's 512"), "{err}");
    }

    #[test]
    fn a_shared_q4_k_tensor_is_not_repacked() {
        let w = Tensor::randn(0f32, 1.0, (32, 256), &Device::Cpu).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q4K).unwrap());
        // As a tied embedding's table: the lookup keeps its own reference.
        let _lookup = q.clone();
        assert!(matches!(QLinear::new(q).unwrap(), QLinear::Blocks { .. }));
    }

    #[test]
    fn nearest_rounds_half_to_even_like_the_library() {
        for v in [-128.5f32, -127.5, -2.5, -1.5, -0.5, -0.49, 0.0, 0.5, 1.5, 2.5, 3.7, 126.5, 127.5] {
            assert_eq!(q4_k::nearest(v), v.round_ties_even() as i32, "{v}");
        }
    }

    #[test]
    fn a_tied_table_reads_back_its_rows_exactly_as_candle_dequantizes_them() {
        // 37 rows: two groups of sixteen and five rows in GGUF blocks.
        let w = Tensor::randn(0f32, 1.0, (37, 512), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            assert!(QLinear::serves_lookups(dtype));
            let q = QTensor::quantize(&w, dtype).unwrap();
            let want = q.dequantize(&Device::Cpu).unwrap();
            let layer = QLinear::new(Arc::new(q)).unwrap();
            assert!(matches!(layer, QLinear::Grouped { .. }) == grouped::worth_repacking());
            let ids = [0u32, 15, 16, 31, 32, 36, 7];
            let got = layer.dequantize_rows(&ids).unwrap();
            for (i, &id) in ids.iter().enumerate() {
                let row: Vec<f32> = want.get(id as usize).unwrap().to_vec1().unwrap();
                assert_eq!(&got[i * 512..(i + 1) * 512], &row[..], "{dtype:?} row {id}");
            }
            let err = layer.dequantize_rows(&[37]).unwrap_err().to_string();
            assert!(err.contains("token id 37 is outside the vocabulary of 37"), "{err}");
        }
    }
}
