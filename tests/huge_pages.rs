//! The process's huge page policy, in a process of its own (this test binary): after
//! `limit_to_advised`, the weights' buffers get huge pages where the kernel and the system
//! allow them, and other memory does not.

use wick::huge_pages::{huge_page_size, limit_to_advised, HugePageBuffer, Policy};

/// `AnonHugePages` of the mapping holding `addr`, in bytes, from /proc/self/smaps.
fn huge_bytes_at(addr: usize) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("reading /proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                inside = (start..end).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return kb.trim().trim_end_matches("kB").trim().parse::<usize>().expect("a size in kB") * 1024;
            }
        }
    }
    panic!("no mapping at {addr:#x} in /proc/self/smaps");
}

#[test]
fn only_the_weights_buffers_get_huge_pages() {
    let policy = limit_to_advised();
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let huge = huge_page_size();

    let mut weights = HugePageBuffer::zeroed(8 * huge).unwrap();
    weights.fill(1);
    // Memory that did not ask: a large allocation of the test's allocator (glibc's, which maps
    // it apart and advises nothing), touched all through.
    let mut other = vec![0u8; 8 * huge];
    other.fill(1);
    let (weights_huge, other_huge) = (huge_bytes_at(weights.as_ptr() as usize), huge_bytes_at(other.as_ptr() as usize));

    let system_gives = !mode.contains("[never]");
    match policy {
        Policy::AdvisedOnly => {
            assert!(weights_huge >= huge, "the weights got {weights_huge} bytes of huge pages");
            assert_eq!(other_huge, 0, "memory that did not ask got huge pages");
        }
        Policy::SystemAdvisedOnly => {
            assert!(!mode.contains("[always]"), "the system gives huge pages to all memory: {mode}");
            assert_eq!(
                weights_huge >= huge,
                system_gives,
                "the weights got {weights_huge} bytes of huge pages ({mode})"
            );
            assert_eq!(other_huge, 0, "memory that did not ask got huge pages");
        }
        Policy::Off => assert_eq!((weights_huge, other_huge), (0, 0), "the process opted out"),
        Policy::Unchanged => panic!("this kernel refused both the opt-out and a read of its setting ({mode})"),
    }
}
