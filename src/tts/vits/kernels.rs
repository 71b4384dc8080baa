//! The CPU kernel for the voice's hot spot: dense 1-D convolutions, most of the synthesis
//! time, above all in the decoder at audio rate. Candle's CPU conv1d unfolds the
//! whole input into a `[time, in·k]` matrix element by element (tens of MB at audio rate),
//! multiplies, and transposes the result back; the traffic, not the arithmetic, dominated.
//!
//! Here time is cut into blocks whose unfolded input (`[in·k + 1, block]`, the last row ones
//! for the bias) stays in the core's L2 cache, built from whole rows with the optional leaky
//! ReLU applied on the way. One matrix product per block writes `[out, block]` straight into
//! the output, adding onto a residual when there is one; it is posed time-major (time as the
//! rows) so that gemm reads the block as it lies instead of repacking it. Blocks spread over
//! the rayon pool. A layer with one or two outputs skips the matrix product. Long layers (the
//! decoder's, at audio rate) skip the unfolding too where the CPU has AVX2 or AVX-512: the
//! register-tiled kernel in `tiled_conv` reads the activated window directly. The upsampler
//! reuses this kernel in polyphase form (`upsample`).
//!
//! Other devices use the same arithmetic through Candle ops (see `layers::Conv1d`).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::activations::leaky_relu_into;
use super::tiled_conv::{self, Geometry};
use crate::cpu_kernels::{axpy, gemm_f32, SharedOut, Strided};

/// Up to this many output channels, a block skips the matrix product (see `block_direct`).
const DIRECT_MAX_OUT: usize = 2;
/// From this many output steps on (the decoder's layers), a layer runs the register-tiled
/// kernel where the CPU has one, the threads sharing it by blocks of time. Shorter layers
/// (the text encoder and the flow, at phoneme and frame rate) have too few tiles of time for
/// that; sharing them by output channels instead measured no faster than gemm on unfolded
/// blocks, which they keep.
const TILED_MIN_LEN: usize = 1024;
/// Bytes of unfolded input per block: well inside a 1 MiB L2 with room for the weights.
const BLOCK_BYTES: usize = 512 * 1024;

/// One call's operands: the input `[c_in, len]`, the `[c_out, c_in·k + 1]` matrix and the
/// optional residual `[c_out, out_len]`, all contiguous.
#[derive(Clone, Copy)]
struct Layer<'a> {
    x: &'a [f32],
    c_in: usize,
    len: usize,
    matrix: &'a [f32],
    c_out: usize,
    residual: Option<&'a [f32]>,
}

/// One dense convolution with stride 1 and symmetric zero padding, its weight and bias as a
/// `[out, in·k + 1]` matrix. As a Candle op: `(x [1, in, time], matrix)` or
/// `(x, matrix, residual [1, out, time'])`.
#[derive(Debug, Clone, Copy)]
pub struct UnfoldedConv {
    pub kernel: usize,
    pub dilation: usize,
    pub padding: usize,
    /// Leaky ReLU slope applied to the input first, if any.
    pub slope: Option<f32>,
}

impl UnfoldedConv {
    pub fn out_len(&self, len: usize) -> usize {
        (len + 2 * self.padding).saturating_sub(self.dilation * (self.kernel - 1))
    }

    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        matrix: (&CpuStorage, &Layout),
        residual: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, c_in, len) = x.1.shape().dims3()?;
        let (c_out, width) = matrix.1.shape().dims2()?;
        if batch != 1 || width != c_in * self.kernel + 1 {
            candle_core::bail!(
                "unfolded conv: input {:?} does not fit matrix {:?} (kernel {})",
                x.1.shape(),
                matrix.1.shape(),
                self.kernel
            )
        }
        let out_len = self.out_len(len);
        let residual = match residual {
            Some(r) => {
                if r.1.shape().dims() != [1, c_out, out_len] {
                    candle_core::bail!("unfolded conv: residual {:?} is not [1, {c_out}, {out_len}]", r.1.shape())
                }
                Some(contiguous_f32(r)?)
            }
            None => None,
        };
        let layer = Layer { x: contiguous_f32(x)?, c_in, len, matrix: contiguous_f32(matrix)?, c_out, residual };
        let out = if c_out > DIRECT_MAX_OUT && out_len >= TILED_MIN_LEN && tiled_conv::available() {
            self.compute_tiled(layer)
        } else {
            self.compute_unfolded(layer)
        };
        Ok((CpuStorage::F32(out), Shape::from((1, c_out, out_len))))
    }

    /// The layer through unfolded blocks and gemm (any CPU), or `block_direct` for a
    /// handful of output channels.
    fn compute_unfolded(&self, layer: Layer) -> Vec<f32> {
        let Layer { x, c_in, len, matrix, c_out, residual } = layer;
        let width = c_in * self.kernel + 1;
        let out_len = self.out_len(len);
        let mut out = match residual {
            Some(r) => r.to_vec(),
            None => vec![0.0; c_out * out_len],
        };
        if out_len == 0 {
            return out;
        }
        let threads = rayon::current_num_threads().max(1);
        let block = block_len(out_len, width, 1, threads);
        let blocks = out_len.div_ceil(block);
        let dst = SharedOut::new(&mut out);
        let run_block = |b: usize, col: &mut Vec<f32>, parallelism: Parallelism| {
            let t0 = b * block;
            let n = block.min(out_len - t0);
            if c_out <= DIRECT_MAX_OUT {
                // SAFETY: row co, columns t0..t0+n of `out`, written by this block only.
                let rows = (0..c_out)
                    .map(|co| unsafe { std::slice::from_raw_parts_mut(dst.at(co * out_len + t0), n) })
                    .collect::<Vec<_>>();
                self.block_direct(x, c_in, len, matrix, t0, rows, col);
                return;
            }
            self.unfold(x, c_in, len, t0, n, col);
            // SAFETY: `col` holds `width` rows of `n`, `matrix` `c_out` rows of `width`, and
            // the destination is columns t0..t0+n of the `c_out` rows of `out_len` in `out`,
            // which outlives this call. Blocks write disjoint columns, so concurrent blocks
            // never touch the same element.
            unsafe {
                gemm_f32(
                    (n, c_out, width),
                    Strided { ptr: dst.at(t0), row: 1, col: out_len },
                    residual.is_some(),
                    Strided { ptr: col.as_ptr(), row: 1, col: n },
                    Strided { ptr: matrix.as_ptr(), row: 1, col: width },
                    parallelism,
                )
            }
        };
        if blocks > 1 && threads > 1 {
            (0..blocks).into_par_iter().for_each_init(Vec::new, |col, b| run_block(b, col, Parallelism::None));
        } else {
            let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
            let mut col = Vec::new();
            (0..blocks).for_each(|b| run_block(b, &mut col, parallelism));
        }
        out
    }

    /// The layer through the register-tiled kernel, for CPUs that have it, more output
    /// channels than `block_direct` takes and long inputs. Per block of time, the input is
    /// activated once into a window and the kernel writes every output element of the block.
    fn compute_tiled(&self, layer: Layer) -> Vec<f32> {
        let Layer { x, c_in, len, matrix, c_out, residual } = layer;
        let (k, d) = (self.kernel, self.dilation);
        let (width, out_len) = (c_in * k + 1, self.out_len(len));
        // A window row per input channel, cut at whole tiles.
        let block = block_len(out_len, c_in, tiled_conv::TILE_MAX, rayon::current_num_threads().max(1));
        let mut out = Vec::with_capacity(c_out * out_len);
        let dst = SharedOut::uninit(&mut out.spare_capacity_mut()[..c_out * out_len]);
        let run_block = |window: &mut Vec<f32>, b: usize| {
            let t0 = b * block;
            let n = block.min(out_len - t0);
            let span = Geometry::window_len(n, k, d);
            self.fill_window(x, c_in, len, t0, span, window);
            let g = Geometry { c_in, c_out, kernel: k, dilation: d, span, n, width, out_row: out_len };
            let residual = residual.map_or(std::ptr::null(), |r| r[t0..].as_ptr());
            // SAFETY: the window has c_in rows of `window_len(n)` at `span`, the matrix c_out
            // rows of `width`, and `out` (capacity c_out·out_len) and the residual
            // ([c_out, out_len], checked in `run`) columns t0..t0+n in each row; blocks
            // write disjoint columns.
            unsafe { tiled_conv::conv(&g, window.as_ptr(), matrix.as_ptr(), dst.at(t0), residual) };
        };
        (0..out_len.div_ceil(block)).into_par_iter().for_each_init(Vec::new, run_block);
        // SAFETY: the blocks cover columns 0..out_len of every row, and the kernel writes
        // every element of its block.
        unsafe { out.set_len(c_out * out_len) };
        out
    }

    /// The activated input from time `t0 - padding` on, `span` steps per channel row, zero
    /// outside the input.
    fn fill_window(&self, x: &[f32], c_in: usize, len: usize, t0: usize, span: usize, window: &mut Vec<f32>) {
        // Only the zero edges are filled below, not the whole buffer: the rest is overwritten.
        window.resize(c_in * span, 0.0);
        let start = t0 as isize - self.padding as isize;
        let lo = (-start).clamp(0, span as isize) as usize;
        let hi = (len as isize - start).clamp(lo as isize, span as isize) as usize;
        let from = (start + lo as isize).max(0) as usize;
        for (ci, row) in window.chunks_exact_mut(span).enumerate() {
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            if lo < hi {
                self.activate(&mut row[lo..hi], &x[ci * len + from..ci * len + from + (hi - lo)]);
            }
        }
    }

    /// A block for a handful of output channels (the decoder's last layer), where a matrix
    /// product would be a matrix-vector product over a k-times copy of the input: the
    /// activated input window is built once and each weight scales a shifted view of it
    /// into the output rows.
    #[allow(clippy::too_many_arguments)]
    fn block_direct(
        &self,
        x: &[f32],
        c_in: usize,
        len: usize,
        matrix: &[f32],
        t0: usize,
        rows: Vec<&mut [f32]>,
        window: &mut Vec<f32>,
    ) {
        let k = self.kernel;
        let width = c_in * k + 1;
        let n = rows.first().map_or(0, |r| r.len());
        let span = n + self.dilation * (k - 1);
        self.fill_window(x, c_in, len, t0, span, window);
        for (co, row) in rows.into_iter().enumerate() {
            let weights = &matrix[co * width..(co + 1) * width];
            let bias = weights[width - 1];
            row.iter_mut().for_each(|v| *v += bias);
            for ci in 0..c_in {
                for j in 0..k {
                    let w = weights[ci * k + j];
                    axpy(row, w, &window[ci * span + j * self.dilation..][..n]);
                }
            }
        }
    }

    /// Copies `src` into `dst`, through the leaky ReLU if there is one.
    fn activate(&self, dst: &mut [f32], src: &[f32]) {
        match self.slope {
            Some(s) => leaky_relu_into(dst, src, s),
            None => dst.copy_from_slice(src),
        }
    }

    /// Rows `i·k + j` of `col`: input channel i at times t0 + j·dilation - padding onward,
    /// zero outside the input, then a row of ones.
    fn unfold(&self, x: &[f32], c_in: usize, len: usize, t0: usize, n: usize, col: &mut Vec<f32>) {
        let k = self.kernel;
        // Every element is written below, so the buffer is only resized, never cleared:
        // zero-filling it each block would double its memory traffic.
        col.resize((c_in * k + 1) * n, 0.0);
        for ci in 0..c_in {
            let src = &x[ci * len..(ci + 1) * len];
            for j in 0..k {
                let row = &mut col[(ci * k + j) * n..(ci * k + j + 1) * n];
                // Input time of row element 0; the valid part is where 0 <= start + t < len.
                let start = (t0 + j * self.dilation) as isize - self.padding as isize;
                let lo = (-start).clamp(0, n as isize) as usize;
                let hi = (len as isize - start).clamp(lo as isize, n as isize) as usize;
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if lo < hi {
                    let from = (start + lo as isize) as usize;
                    self.activate(&mut row[lo..hi], &src[from..from + (hi - lo)]);
                }
            }
        }
        col[c_in * k * n..].fill(1.0);
    }
}

/// Output steps per block, for a block buffer of `floats_per_step` floats per step: as many
/// blocks as fit the cache budget, rounded up to a multiple of the threads so that the last
/// round keeps every core busy, then sized evenly in multiples of `align`.
fn block_len(out_len: usize, floats_per_step: usize, align: usize, threads: usize) -> usize {
    let max_block = (BLOCK_BYTES / 4 / floats_per_step).clamp(align.max(16), 8192);
    let blocks = out_len.div_ceil(max_block).div_ceil(threads) * threads;
    out_len.div_ceil(blocks).max(1).next_multiple_of(align)
}

fn contiguous_f32<'a>((storage, layout): (&'a CpuStorage, &Layout)) -> Result<&'a [f32]> {
    crate::cpu_kernels::contiguous_f32(storage, layout, "the voice's CPU convolution")
}

impl CustomOp2 for UnfoldedConv {
    fn name(&self) -> &'static str {
        "wick-unfolded-conv1d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for UnfoldedConv {
    fn name(&self) -> &'static str {
        "wick-unfolded-conv1d-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Every path against Candle's conv1d, across block edges, padding and dilation, with and
    /// without a residual: the unfolding one (long and short inputs, and the direct one for a
    /// single output channel) and, where the CPU has it, the register-tiled one.
    #[test]
    fn matches_candle_conv1d() {
        let dev = Device::Cpu;
        let c_in = 5;
        let to_vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (len, c_out) in [(20_000, 1), (20_000, 3), (20_000, 6), (300, 6), (TILED_MIN_LEN + 40, 9), (77, 14)] {
            for (case, (k, dilation, padding)) in
                [(1, 1, 0), (3, 1, 1), (5, 2, 4), (7, 12, 36), (3, 1, 0)].into_iter().enumerate()
            {
                let x = Tensor::randn(0f32, 1.0, (1, c_in, len), &dev).unwrap();
                let w = Tensor::randn(0f32, 1.0, (c_out, c_in, k), &dev).unwrap();
                let b = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
                let out_len = len + 2 * padding - dilation * (k - 1);
                let matrix =
                    Tensor::cat(&[w.reshape((c_out, c_in * k)).unwrap(), b.reshape((c_out, 1)).unwrap()], 1).unwrap();
                let op = UnfoldedConv { kernel: k, dilation, padding, slope: Some(0.1) };
                let act = x.maximum(&(&x * 0.1).unwrap()).unwrap();
                let expected = act.conv1d(&w, padding, 1, dilation, 1).unwrap();
                let mut expected = expected.broadcast_add(&b.reshape((1, c_out, 1)).unwrap()).unwrap();
                let residual = (case % 2 == 0).then(|| Tensor::randn(0f32, 1.0, (1, c_out, out_len), &dev).unwrap());
                if let Some(r) = &residual {
                    expected = (expected + r).unwrap();
                }
                let (x, matrix, expected) = (to_vec(&x), to_vec(&matrix), to_vec(&expected));
                let residual = residual.as_ref().map(to_vec);
                let layer = Layer { x: &x, c_in, len, matrix: &matrix, c_out, residual: residual.as_deref() };
                let mut paths = vec![("unfolded", op.compute_unfolded(layer))];
                if c_out > DIRECT_MAX_OUT && tiled_conv::available() {
                    paths.push(("tiled", op.compute_tiled(layer)));
                }
                for (path, ours) in paths {
                    assert_eq!(ours.len(), expected.len());
                    let diff = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    assert!(
                        diff < 1e-3,
                        "{path}: len={len} out={c_out} k={k} d={dilation} p={padding}: max diff {diff}"
                    );
                }
            }
        }
    }

    /// The op as the voice calls it, with and without a residual, gives the right shape.
    #[test]
    fn op_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 4, 50), &dev).unwrap();
        let matrix = Tensor::randn(0f32, 1.0, (8, 4 * 3 + 1), &dev).unwrap();
        let op = UnfoldedConv { kernel: 3, dilation: 2, padding: 1, slope: None };
        let y = x.apply_op2_no_bwd(&matrix, &op).unwrap();
        assert_eq!(y.dims(), [1, 8, 48]);
        let r = Tensor::ones((1, 8, 48), candle_core::DType::F32, &dev).unwrap();
        let z = x.apply_op3_no_bwd(&matrix, &r, &op).unwrap();
        let diff = ((z - y).unwrap() - 1.0).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "residual not added: {diff}");
        let wrong = Tensor::ones((1, 8, 50), candle_core::DType::F32, &dev).unwrap();
        let err = x.apply_op3_no_bwd(&matrix, &wrong, &op).unwrap_err().to_string();
        assert!(err.contains("residual"), "{err}");
    }
}
