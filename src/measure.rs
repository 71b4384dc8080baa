//! Measuring and reporting: the process's peak memory, and numbers rounded the way every
//! report (`--json`, turn records, benchmarks) gives them.

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if the kernel reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident set size of this process in MiB, as every benchmark reports it.
pub fn peak_rss_mib() -> Option<f64> {
    peak_rss_bytes().map(|b| b as f64 / (1u64 << 20) as f64)
}

/// Rounded to three decimals: seconds to the millisecond, the precision of every report.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_millisecond() {
        assert_eq!(round3(1.23449), 1.234);
        assert_eq!(round3(0.0005), 0.001);
        assert_eq!(round3(-2.0), -2.0);
    }

    #[test]
    fn this_process_has_a_peak() {
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
