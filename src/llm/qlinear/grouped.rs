//! What the repacked weight types share: rows interleaved in groups of sixteen, a matmul
//! driver that hands each group every activation row, and the tiling of activation rows.
//!
//! A repacked tensor holds `groups * 16` rows interleaved, then the rows past the last full
//! group (`tail`) in GGUF blocks, multiplied by the type's ordinary kernel.

/// Rows per interleaved group: one 512-bit register of sixteen 32-bit lanes spans a group.
pub const ROWS: usize = 16;

/// Whether this CPU has kernels for the repacked layouts; elsewhere (aarch64 for now, whose
/// dot-product kernels are Candle's) the weights stay in GGUF blocks.
pub fn worth_repacking() -> bool {
    super::has_avx2_fma_f16c()
}

/// `out[i][j] = dot(xs[i], row j)` for `groups` interleaved groups and then `tail` rows:
/// `group(g, o)` fills `o[i][r]` for row `16g + r`, `tail_row(t, o)` fills `o[i]` for row
/// `16 * groups + t`. Work is split over the pool by weight rows, in whole groups.
pub fn by_row_groups<X: Sync>(
    xs: &[&[X]],
    groups: usize,
    tail: usize,
    out: &mut [f32],
    group: impl Fn(usize, &mut [[f32; ROWS]]) + Sync,
    tail_row: impl Fn(usize, &mut [f32]) + Sync,
) {
    let m = xs.len();
    let grouped = groups * ROWS;
    // Chunks of the pool's split start at multiples of 32 rows, so no group is cut.
    super::by_weight_chunks(grouped + tail, m, out, |start, end, res| {
        let width = end - start;
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
                group(r / ROWS, tile);
                for (i, o) in tile.iter().enumerate() {
                    res[i * width + r - start..i * width + r - start + ROWS].copy_from_slice(o);
                }
                r += ROWS;
            } else {
                tail_row(r - grouped, column);
                for (i, v) in column.iter().enumerate() {
                    res[i * width + r - start] = *v;
                }
                r += 1;
            }
        }
    });
}

/// Activation rows `T` at a time through `tile`, the rest one at a time through `one`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub fn in_tiles<X, const T: usize>(
    xs: &[&[X]],
    out: &mut [[f32; ROWS]],
    tile: impl Fn([&[X]; T]) -> [[f32; ROWS]; T],
    one: impl Fn(&[X]) -> [f32; ROWS],
) {
    let mut tiles = xs.chunks_exact(T);
    let mut outs = out.chunks_exact_mut(T);
    for (g, o) in (&mut tiles).zip(&mut outs) {
        o.copy_from_slice(&tile(g.try_into().expect("T rows")));
    }
    for (x, o) in tiles.remainder().iter().zip(outs.into_remainder()) {
        *o = one(x);
    }
}
