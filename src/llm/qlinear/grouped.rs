//! What the repacked weight types share: rows interleaved in groups of sixteen, a matmul
//! driver that hands each group every activation row, and the tiling of activation rows.
//!
//! A repacked tensor holds `groups * 16` rows interleaved, then the rows past the last full
//! group (`tail`) in GGUF blocks, multiplied by the type's ordinary kernel.

use crate::huge_pages::HugePageBuffer;

/// Rows per interleaved group: one 512-bit register of sixteen 32-bit lanes spans a group.
pub const ROWS: usize = 16;

/// Whether this CPU has kernels for the repacked layouts (AVX2 on x86-64, the dot-product
/// extension on aarch64); elsewhere the weights stay in GGUF blocks.
pub fn worth_repacking() -> bool {
    #[cfg(target_arch = "aarch64")]
    return super::neon::has_dotprod();
    #[cfg(not(target_arch = "aarch64"))]
    super::has_avx2_fma_f16c()
}

/// The sizes of a repacked type: values per block, bytes of a GGUF block, bytes of a group's
/// block (sixteen rows of it, interleaved).
#[derive(Clone, Copy)]
pub struct Sizes {
    pub block: usize,
    pub gguf: usize,
    pub group: usize,
}

impl Sizes {
    /// Repacks the first `rows / 16 * 16` rows of `k` values from GGUF blocks in `bytes`:
    /// `fill(src, dst, r)` writes row `r`'s GGUF block `src` into its group's block `dst`.
    /// The caller keeps the remaining rows as they are. The result is on huge pages where the
    /// kernel has them, since generation streams it whole for every token ([`HugePageBuffer`]);
    /// `Err` where there is no memory for it.
    pub fn repack(
        self,
        bytes: &[u8],
        k: usize,
        fill: impl Fn(&[u8], &mut [u8], usize),
    ) -> std::io::Result<HugePageBuffer> {
        let blocks = k / self.block;
        let row_bytes = blocks * self.gguf;
        let groups = bytes.len() / row_bytes / ROWS;
        let mut out = HugePageBuffer::zeroed(groups * blocks * self.group)?;
        for (g, group) in out.chunks_exact_mut(blocks * self.group).enumerate() {
            for (b, dst) in group.chunks_exact_mut(self.group).enumerate() {
                for r in 0..ROWS {
                    let start = (g * ROWS + r) * row_bytes + b * self.gguf;
                    fill(&bytes[start..start + self.gguf], dst, r);
                }
            }
        }
        Ok(out)
    }

    /// Rows in weights `(repacked, tail)` of `k` values: groups of sixteen, then rows in
    /// GGUF blocks.
    pub fn rows(self, (repacked, tail): (&[u8], &[u8]), k: usize) -> usize {
        repacked.len() / (k / self.block * self.group) * ROWS + tail.len() / (k / self.block * self.gguf)
    }

    /// `res[i][j - start] = dot(xs[i], w[j])` for weight rows `start..end` of `(repacked,
    /// tail)` (see [`Self::rows`]); `start` is a multiple of sixteen below the tail.
    /// `group_dots(group, xs, o)` and `tail_dots(row, xs, o)` are the type's kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn fill<X>(
        self,
        (repacked, tail): (&[u8], &[u8]),
        xs: &[&[X]],
        k: usize,
        (start, end): (usize, usize),
        res: &mut [f32],
        group_dots: impl Fn(&[u8], &[&[X]], &mut [[f32; ROWS]]),
        tail_dots: impl Fn(&[u8], &[&[X]], &mut [f32]),
    ) {
        let (m, width) = (xs.len(), end - start);
        let group_bytes = k / self.block * self.group;
        let row_bytes = k / self.block * self.gguf;
        let grouped = repacked.len() / group_bytes * ROWS;
        // Generation (one row) is the common case and allocates nothing.
        let (mut tile_one, mut column_one) = ([[0.0f32; ROWS]; 1], [0.0f32; 1]);
        let (mut tile_many, mut column_many);
        let (tile, column): (&mut [[f32; ROWS]], &mut [f32]) = if m == 1 {
            (&mut tile_one, &mut column_one)
        } else {
            tile_many = vec![[0.0f32; ROWS]; m];
            column_many = vec![0.0f32; m];
            (&mut tile_many, &mut column_many)
        };
        let mut r = start;
        while r < end {
            if r < grouped {
                let g = r / ROWS;
                group_dots(&repacked[g * group_bytes..(g + 1) * group_bytes], xs, tile);
                for (i, o) in tile.iter().enumerate() {
                    res[i * width + r - start..i * width + r - start + ROWS].copy_from_slice(o);
                }
                r += ROWS;
            } else {
                let t = r - grouped;
                tail_dots(&tail[t * row_bytes..(t + 1) * row_bytes], xs, column);
                for (i, v) in column.iter().enumerate() {
                    res[i * width + r - start] = *v;
                }
                r += 1;
            }
        }
    }

    /// `out[i][j] = dot(xs[i], w[j])` for weights `(repacked, tail)` (see [`Self::fill`]),
    /// split over the pool by weight rows. Its chunks start at multiples of 32 rows, so no
    /// group is cut.
    pub fn matmul<X: Sync>(
        self,
        weights: (&[u8], &[u8]),
        xs: &[&[X]],
        k: usize,
        out: &mut [f32],
        group_dots: impl Fn(&[u8], &[&[X]], &mut [[f32; ROWS]]) + Sync,
        tail_dots: impl Fn(&[u8], &[&[X]], &mut [f32]) + Sync,
    ) {
        super::by_weight_chunks(self.rows(weights, k), xs.len(), out, |start, end, res| {
            self.fill(weights, xs, k, (start, end), res, &group_dots, &tail_dots)
        });
    }
}

/// A kernel for one group and any number of activation rows.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", test))]
pub type GroupDots<X> = fn(&[u8], &[&[X]], &mut [[f32; ROWS]]);

/// A SIMD kernel for one group and `T` activation rows.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type Tile<X, const T: usize> = unsafe fn(&[u8], [&[X]; T]) -> [[f32; ROWS]; T];

/// A layout's SIMD kernel for one group: `T` activation rows a call (`tile`), or one (`one`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub struct Kernels<X: 'static, const T: usize> {
    tile: Tile<X, T>,
    one: Tile<X, 1>,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl<X, const T: usize> Kernels<X, T> {
    /// # Safety
    /// Given a group's blocks and activation rows of as many blocks, the kernels read only
    /// inside them, and need no CPU features beyond what [`best`] checks for them: on x86-64,
    /// AVX-512 F and BW (and VNNI, passed as such) for the tiles of eight and AVX2, FMA and
    /// F16C for the tiles of four; on aarch64, the dot-product extension.
    pub const unsafe fn new(tile: Tile<X, T>, one: Tile<X, 1>) -> Self {
        Self { tile, one }
    }

    /// # Safety
    /// The CPU has the kernels' features; every row of `xs` has as many blocks as `group`.
    unsafe fn run(&self, group: &[u8], xs: &[&[X]], out: &mut [[f32; ROWS]]) {
        let mut tiles = xs.chunks_exact(T);
        let mut outs = out.chunks_exact_mut(T);
        for (g, o) in (&mut tiles).zip(&mut outs) {
            o.copy_from_slice(&(self.tile)(group, g.try_into().expect("T rows")));
        }
        for (x, o) in tiles.remainder().iter().zip(outs.into_remainder()) {
            *o = (self.one)(group, [x])[0];
        }
    }
}

/// `out[t][r] = dot(row r of the group, xs[t])` through the best kernel this CPU runs:
/// `avx512_vnni` where given and the CPU has AVX-512 VNNI, else `avx512` where given and the
/// CPU has AVX-512BW, else `avx2`, else `portable`. (aarch64 has its own `best`; other
/// architectures call their portable kernel directly.)
#[cfg(target_arch = "x86_64")]
pub fn best<X>(
    group: &[u8],
    xs: &[&[X]],
    out: &mut [[f32; ROWS]],
    [avx512_vnni, avx512]: [Option<&Kernels<X, 8>>; 2],
    avx2: &Kernels<X, 4>,
    portable: GroupDots<X>,
) {
    // SAFETY: the features are checked here; the kernels' reads are their constructors'
    // promise (`Kernels::new`), and the shapes are the matmul's.
    if let Some(kernels) = avx512_vnni.filter(|_| super::has_avx512vnni()) {
        return unsafe { kernels.run(group, xs, out) };
    }
    if let Some(kernels) = avx512.filter(|_| super::has_avx512bw()) {
        return unsafe { kernels.run(group, xs, out) };
    }
    if super::has_avx2_fma_f16c() {
        return unsafe { avx2.run(group, xs, out) };
    }
    portable(group, xs, out)
}

/// `out[t][r] = dot(row r of the group, xs[t])` through the layout's `neon` kernels where the
/// CPU has the dot-product extension, else `portable`.
#[cfg(target_arch = "aarch64")]
pub fn best<X>(group: &[u8], xs: &[&[X]], out: &mut [[f32; ROWS]], neon: &Kernels<X, 4>, portable: GroupDots<X>) {
    if super::neon::has_dotprod() {
        // SAFETY: the feature is checked here; the kernels' reads are their constructors'
        // promise (`Kernels::new`), and the shapes are the matmul's.
        return unsafe { neon.run(group, xs, out) };
    }
    portable(group, xs, out)
}

/// An AVX2 tile's accumulators (lanes for rows 0–7 in `acc[0]`, rows 8–15 in `acc[1]`, one
/// register per activation row) as sixteen sums per activation row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub fn avx2_sums<const R: usize>(acc: &[[std::arch::x86_64::__m256; R]; 2]) -> [[f32; ROWS]; R] {
    use std::arch::x86_64::_mm256_storeu_ps;
    let mut out = [[0.0f32; ROWS]; R];
    for (r, o) in out.iter_mut().enumerate() {
        // SAFETY: each store writes eight floats inside a row of sixteen.
        unsafe {
            _mm256_storeu_ps(o.as_mut_ptr(), acc[0][r]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), acc[1][r]);
        }
    }
    out
}

/// The entry points each repacked layout's module has, the same but for its activation type
/// `$x`: `group_dots`, `out[t][r] = dot(row r of the group, xs[t])` with the widest of the
/// module's kernels this CPU runs (on x86-64 its `AVX512_VNNI` and `AVX512` constants where
/// the layout has them, then its `AVX2`; on aarch64 its `NEON`; else `group_dots_portable`);
/// for the tests to check it against, `group_dots_avx2_or_portable` with AVX-512 and
/// `group_dots_without_vnni` with VNNI; and `matmul_t`,
/// `out[i][j] = dot(x[i], w[j])` for `repacked` groups of sixteen rows and then `tail` rows in
/// GGUF blocks, the activations quantized by `$quantize` and the tail rows multiplied by
/// `$tail_dots`; and `fill_rows`, [`Sizes::fill`] with those kernels, for a job that quantizes
/// its activations once for several layers (`QLinear::forward_shared`).
macro_rules! entry_points {
    ($x:ty, $quantize:expr, $tail_dots:expr) => {
        super::grouped::entry_points!(@group_dots group_dots, $x, [None, None]);
        super::grouped::entry_points!(@matmul_t $x, $quantize, $tail_dots);
    };
    ($x:ty, $quantize:expr, $tail_dots:expr, avx512) => {
        super::grouped::entry_points!(@group_dots group_dots, $x, [None, Some(&AVX512)]);
        #[cfg(test)]
        super::grouped::entry_points!(@group_dots group_dots_avx2_or_portable, $x, [None, None]);
        super::grouped::entry_points!(@matmul_t $x, $quantize, $tail_dots);
    };
    ($x:ty, $quantize:expr, $tail_dots:expr, avx512, vnni) => {
        super::grouped::entry_points!(@group_dots group_dots, $x, [Some(&AVX512_VNNI), Some(&AVX512)]);
        #[cfg(test)]
        super::grouped::entry_points!(@group_dots group_dots_without_vnni, $x, [None, Some(&AVX512)]);
        #[cfg(test)]
        super::grouped::entry_points!(@group_dots group_dots_avx2_or_portable, $x, [None, None]);
        super::grouped::entry_points!(@matmul_t $x, $quantize, $tail_dots);
    };
    (@group_dots $name:ident, $x:ty, $wide:expr) => {
        pub fn $name(group: &[u8], xs: &[&[$x]], out: &mut [[f32; ROWS]]) {
            #[cfg(target_arch = "x86_64")]
            return super::grouped::best(group, xs, out, $wide, &AVX2, group_dots_portable);
            #[cfg(target_arch = "aarch64")]
            return super::grouped::best(group, xs, out, &NEON, group_dots_portable);
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            group_dots_portable(group, xs, out)
        }
    };
    (@matmul_t $x:ty, $quantize:expr, $tail_dots:expr) => {
        pub fn matmul_t(repacked: &[u8], tail: &[u8], x: &[f32], k: usize, out: &mut [f32]) {
            let xq = $quantize(x);
            let xs: Vec<&[$x]> = xq.chunks_exact(k / SIZES.block).collect();
            SIZES.matmul((repacked, tail), &xs, k, out, group_dots, $tail_dots);
        }

        pub fn fill_rows(repacked: &[u8], tail: &[u8], xs: &[&[$x]], k: usize, rows: (usize, usize), res: &mut [f32]) {
            SIZES.fill((repacked, tail), xs, k, rows, res, group_dots, $tail_dots)
        }
    };
}
pub(super) use entry_points;
