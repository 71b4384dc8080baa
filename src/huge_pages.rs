//! Transparent huge pages for the memory that generation streams, and for nothing else.
//!
//! Generating a token reads every weight of the LLM once (about 1.9 GB for the 3B): on
//! 4 KiB pages that is half a million TLB misses a token, on 2 MiB pages about a thousand.
//! Measured on the 2-core Xeon CI host (`wick bench llm --synthetic llama-3.2-3b-q4_k_m`,
//! 64 tokens, alternating pairs), the 3B generated 9.9-10.2 tokens/s at two threads with its
//! weights on huge pages against 9.2-9.5 on small ones (6 of 6 pairs), and 5.3 against
//! 4.9-5.0 at one thread (3 of 3); it loaded in 3.1-3.3 s instead of 2.4-2.5.
//!
//! Huge pages everywhere cost more than they give: mimalloc asks for them on its arenas, and
//! faulting a 2 MiB page in means clearing it and, in fragmented memory, compacting first,
//! which made loading the 3B 2.4x slower and a spoken reply 0.4 s slower after another
//! program ran (commit 8b60478). So the process opts out ([`limit_to_advised`]), mimalloc is
//! built not to ask (its `no_thp` feature), and only the buffers made here
//! ([`HugePageBuffer`]: the repacked weights, filled once at load) ask the kernel for huge
//! pages, with `madvise`. Tensors under 2 MiB (the 3B's k and v) and each tensor's last,
//! partial huge page stay on small pages: 1.65 of the 3B's 1.9 GB are on huge pages.

use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// What the process's huge pages are after [`limit_to_advised`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Only memory that asks gets huge pages: the kernel took the opt-out with its exception
    /// for advised memory (`PR_THP_DISABLE_EXCEPT_ADVISED`, Linux 6.18 and later).
    AdvisedOnly,
    /// The system gives huge pages only to memory that asks, or never (its `enabled` setting
    /// is `madvise` or `never`), so no opt-out is needed.
    SystemAdvisedOnly,
    /// The system gives them to all memory and the kernel has no exception for advised
    /// memory: the process opted out entirely, and the weights are on small pages.
    Off,
    /// Neither the opt-out nor the system's setting could be had (an emulator such as
    /// qemu-user, or no huge page support): the system's setting stands.
    Unchanged,
}

/// `prctl`'s flag for "except memory advised with `MADV_HUGEPAGE`" on `PR_SET_THP_DISABLE`
/// (linux/prctl.h since 6.18; the libc crate does not name it yet).
const PR_THP_DISABLE_EXCEPT_ADVISED: nix::libc::c_ulong = 1 << 1;

/// Opts the process out of transparent huge pages except for memory that asks for them
/// ([`HugePageBuffer`]), whatever the system's setting, as far as the kernel allows: see
/// [`Policy`]. Call it before anything large is allocated.
pub fn limit_to_advised() -> Policy {
    #[cfg(target_os = "linux")]
    {
        use nix::libc::{c_ulong, prctl, PR_SET_THP_DISABLE};
        // SAFETY: prctl with integer arguments only; it reads no memory of ours.
        if unsafe { prctl(PR_SET_THP_DISABLE, 1 as c_ulong, PR_THP_DISABLE_EXCEPT_ADVISED, 0 as c_ulong, 0 as c_ulong) }
            == 0
        {
            return Policy::AdvisedOnly;
        }
        match std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled") {
            Ok(mode) if !mode.contains("[always]") => Policy::SystemAdvisedOnly,
            _ => match nix::sys::prctl::set_thp_disable(true) {
                Ok(()) => Policy::Off,
                Err(e) => {
                    tracing::debug!("transparent huge pages stay as the system has them: prctl refused ({e})");
                    Policy::Unchanged
                }
            },
        }
    }
    #[cfg(not(target_os = "linux"))]
    Policy::Unchanged
}

/// The size of a huge page: the kernel's PMD size (2 MiB with 4 KiB pages, on x86-64 and the
/// Jetson's aarch64 alike).
pub fn huge_page_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&s: &usize| s.is_power_of_two())
            .unwrap_or(2 << 20)
    })
}

fn page_size() -> usize {
    // SAFETY: sysconf reads no memory of ours.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|s| s.is_power_of_two()).unwrap_or(4096)
}

/// Zeroed bytes of their own anonymous mapping, starting on a huge page boundary and advised
/// onto huge pages. The mapping ends where the bytes end (rounded up to a page), so the last
/// partial huge page stays on small pages: rounding it up would add up to 2 MiB of resident
/// zeros per weight, about 200 MB for the 3B.
pub struct HugePageBuffer {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes mapped at `ptr`: `len` rounded up to a page; 0 where nothing is mapped.
    mapped: usize,
}

// SAFETY: the buffer owns its mapping alone, like a `Vec<u8>`.
unsafe impl Send for HugePageBuffer {}
unsafe impl Sync for HugePageBuffer {}

impl HugePageBuffer {
    /// `len` zeroed bytes; `Err` where the kernel has no address space or memory for them.
    pub fn zeroed(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self { ptr: NonNull::dangling(), len, mapped: 0 });
        }
        let page = page_size();
        let mapped = len.next_multiple_of(page);
        let huge = huge_page_size().max(page);
        // Map a huge page more than needed, then give back what lies before the first
        // boundary and after the bytes: not every kernel aligns anonymous mappings to huge
        // pages, and those that do, only mappings a whole number of them long.
        // Below one huge page no boundary is worth aligning to, and no advice is given.
        let wants_huge = mapped >= huge;
        let align = if wants_huge { huge } else { page };
        // The kernel's address is page-aligned, so at most `align - page` bytes precede the
        // first boundary.
        let span = mapped + align - page;
        let base = map_anonymous(span)?;
        let start = (base.as_ptr() as usize).next_multiple_of(align);
        let head = start - base.as_ptr() as usize;
        let tail = span - head - mapped;
        // SAFETY: both ranges lie in the mapping just made, on page boundaries, and nothing
        // refers to them.
        unsafe {
            if head > 0 {
                unmap(base.as_ptr(), head);
            }
            if tail > 0 {
                unmap((start + mapped) as *mut u8, tail);
            }
        }
        let ptr = NonNull::new(start as *mut u8).expect("inside a mapping");
        if wants_huge {
            // SAFETY: the range is this buffer's own mapping. Advice only: where the kernel
            // has no huge pages it refuses, and small pages serve.
            if let Err(e) =
                unsafe { nix::sys::mman::madvise(ptr.cast(), mapped, nix::sys::mman::MmapAdvise::MADV_HUGEPAGE) }
            {
                tracing::debug!("no huge pages for {} MiB of weights: madvise refused ({e})", mapped >> 20);
            }
        }
        Ok(Self { ptr, len, mapped })
    }
}

fn map_anonymous(len: usize) -> io::Result<NonNull<u8>> {
    use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
    let length = std::num::NonZeroUsize::new(len).expect("callers map at least a page");
    // SAFETY: a new private anonymous mapping at an address the kernel picks aliases nothing.
    unsafe { mmap_anonymous(None, length, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE) }
        .map(|p| p.cast())
        .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, format!("cannot map {} MiB: {e}", len >> 20)))
}

/// # Safety
/// `[ptr, ptr + len)` is mapped, page-aligned, and nothing refers to it.
unsafe fn unmap(ptr: *mut u8, len: usize) {
    let ptr = NonNull::new(ptr).expect("mappings are not at address 0");
    // Unmapping a range of our own mapping fails only for bad arguments, which the
    // arithmetic above rules out; leaking the range is all that could follow.
    if let Err(e) = unsafe { nix::sys::mman::munmap(ptr.cast(), len) } {
        tracing::warn!("could not unmap {len} bytes at {ptr:p}: {e}");
    }
}

impl Drop for HugePageBuffer {
    fn drop(&mut self) {
        if self.mapped > 0 {
            // SAFETY: the buffer's own mapping, which nothing borrows once it drops.
            unsafe { unmap(self.ptr.as_ptr(), self.mapped) }
        }
    }
}

impl Deref for HugePageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` initialised (zeroed) bytes owned by this buffer.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for HugePageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, borrowed mutably through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for HugePageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugePageBuffer({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_writable_and_exactly_long() {
        let huge = huge_page_size();
        for len in [0, 1, 4095, 4097, huge - 1, huge, huge + 4096 + 5, 3 * huge + 17] {
            let mut buf = HugePageBuffer::zeroed(len).unwrap();
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&b| b == 0), "{len} bytes: not zeroed");
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            assert!(buf.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8), "{len} bytes: writes lost");
        }
    }

    #[test]
    fn a_buffer_of_a_huge_page_or_more_starts_on_a_huge_page() {
        let huge = huge_page_size();
        for len in [huge, huge + 1, 5 * huge + 12345] {
            let buf = HugePageBuffer::zeroed(len).unwrap();
            assert_eq!(buf.as_ptr() as usize % huge, 0, "{len} bytes at {:p}", buf.as_ptr());
        }
    }
}
