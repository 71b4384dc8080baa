//! Progress bars for long model operations. They draw on stderr so `--json`
//! output on stdout stays machine-readable, and are hidden when stderr is not a
//! terminal (CI logs, systemd journal), where redraws are noise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A byte-counting bar of `len` bytes labelled `msg`.
pub(crate) fn bytes(len: u64, msg: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:32!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// A spinner for steps whose size is unknown (pip does its own transfer).
pub(crate) fn spinner(msg: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(msg);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
