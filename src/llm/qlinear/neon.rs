//! The aarch64 building blocks of the repacked layouts' kernels: the signed dot product of
//! four bytes by four (`sdot`, Armv8.2's dot-product extension, which the Jetson's Cortex-A78AE
//! has), and the small widenings the kernels apply to a group's scales.
//!
//! The layouts interleave sixteen rows four values at a time, so one 16-byte register holds
//! the same four positions of four rows; `sdot` by element multiplies it with four bytes of
//! an activation picked by lane and adds each row's four products into its own 32-bit lane.
//! That is the x86 kernels' broadcast-and-`maddubs` in one instruction, with no 16-bit
//! intermediate sums (ggml's aarch64 `_x4`/`_x8` kernels use the same instruction the same way).
//!
//! Rust's dot-product and f16 intrinsics are not stable yet, so the two instructions that
//! need them are written as inline assembly; everything else is ordinary NEON.

use std::arch::aarch64::*;
use std::arch::asm;

/// Whether this CPU has the dot-product instructions the kernels are built on.
pub fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `acc[l] += dot(w[4l..4l + 4], x[4L..4L + 4])` for the four 32-bit lanes `l`.
///
/// # Safety
/// The CPU has the dot-product extension ([`has_dotprod`]).
#[inline(always)]
pub unsafe fn sdot<const L: i32>(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{lane}]",
        acc = inout(vreg) acc,
        w = in(vreg) w,
        x = in(vreg) x,
        lane = const L,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Thirty-two products per lane added onto `acc`: step `s` of `w` holds four rows' values
/// `4s..4s + 4`, against bytes `4s..4s + 4` of the 32 in `x`.
///
/// # Safety
/// As [`sdot`].
#[inline(always)]
pub unsafe fn dot32(acc: int32x4_t, w: &[int8x16_t; 8], x: [int8x16_t; 2]) -> int32x4_t {
    let acc = dot16(acc, [w[0], w[1], w[2], w[3]], x[0]);
    dot16(acc, [w[4], w[5], w[6], w[7]], x[1])
}

/// [`dot32`] from zero, against the 32 activation bytes at `x`.
///
/// # Safety
/// As [`sdot`]; 32 bytes are readable at `x`.
#[inline(always)]
pub unsafe fn dot32_at(w: &[int8x16_t; 8], x: *const i8) -> int32x4_t {
    dot32(vdupq_n_s32(0), w, [vld1q_s8(x), vld1q_s8(x.add(16))])
}

/// Stores quarter `q` (rows 4q..4q + 4) of a group's sums for each activation row.
#[inline(always)]
pub fn store_quarter<const R: usize>(out: &mut [[f32; 16]; R], q: usize, acc: &[float32x4_t; R]) {
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: four floats at 4q <= 12, inside a row of sixteen.
        unsafe { vst1q_f32(o[4 * q..4 * q + 4].as_mut_ptr(), *a) };
    }
}

/// [`dot32`] for sixteen values: four steps against the sixteen bytes of `x`.
///
/// # Safety
/// As [`sdot`].
#[inline(always)]
pub unsafe fn dot16(acc: int32x4_t, w: [int8x16_t; 4], x: int8x16_t) -> int32x4_t {
    let acc = sdot::<0>(acc, w[0], x);
    let acc = sdot::<1>(acc, w[1], x);
    let acc = sdot::<2>(acc, w[2], x);
    sdot::<3>(acc, w[3], x)
}

/// Four f16 values at `p` (any alignment) as f32.
///
/// # Safety
/// Eight bytes are readable at `p`.
#[inline(always)]
pub unsafe fn f16x4(p: *const u8) -> float32x4_t {
    let halves = vcreate_u16((p as *const u64).read_unaligned());
    let out: float32x4_t;
    // FCVTL is base Armv8 SIMD; only its intrinsic's f16 vector type is unstable in Rust.
    asm!("fcvtl {out:v}.4s, {h:v}.4h", out = lateout(vreg) out, h = in(vreg) halves, options(pure, nomem, nostack, preserves_flags));
    out
}

/// Four unsigned bytes at `p` as 32-bit lanes.
///
/// # Safety
/// Four bytes are readable at `p`.
#[inline(always)]
pub unsafe fn u8x4(p: *const u8) -> int32x4_t {
    let bytes = vcreate_u8((p as *const u32).read_unaligned() as u64);
    vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(bytes))))
}

/// Four signed bytes at `p` as 32-bit lanes.
///
/// # Safety
/// Four bytes are readable at `p`.
#[inline(always)]
pub unsafe fn i8x4(p: *const u8) -> int32x4_t {
    let bytes = vcreate_s8((p as *const u32).read_unaligned() as u64);
    vmovl_s16(vget_low_s16(vmovl_s8(bytes)))
}

/// Sixteen bytes at `p` as a register of signed bytes.
///
/// # Safety
/// Sixteen bytes are readable at `p`.
#[inline(always)]
pub unsafe fn load(p: *const u8) -> int8x16_t {
    vld1q_s8(p as *const i8)
}

/// The low and high nibbles of the sixteen bytes at `p`, each as a byte.
///
/// # Safety
/// Sixteen bytes are readable at `p`.
#[inline(always)]
pub unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
    let packed = vld1q_u8(p);
    (vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8::<4>(packed)))
}
