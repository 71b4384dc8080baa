//! Turn records on standard output, one JSON line each, written by a thread of their own: the
//! supervisor must never wait for whoever reads stdout (a stalled pipe, a paused terminal).
//! When the reader falls behind by more than [`BACKLOG`] records, new ones are dropped from
//! stdout with a warning; each record also goes to the log.

use std::io::Write;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};

use crate::pipeline::TurnRecord;

/// Records waiting for stdout before new ones are dropped from it.
pub const BACKLOG: usize = 256;

pub struct TurnLog {
    lines: Option<Sender<String>>,
    writer: Option<JoinHandle<()>>,
    dropped: usize,
}

impl TurnLog {
    /// Starts the writer on `out` (stdout in the appliance).
    pub fn start(mut out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let (lines, rx) = bounded::<String>(BACKLOG);
        let writer = std::thread::Builder::new().name("wick-turn-log".into()).spawn(move || {
            for line in rx {
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    // Nobody reads any more (the pipe closed): the log still has every record.
                    return;
                }
            }
        })?;
        Ok(Self { lines: Some(lines), writer: Some(writer), dropped: 0 })
    }

    /// Queues `record` for stdout without waiting.
    pub fn record(&mut self, record: &TurnRecord) {
        let line = record.json();
        tracing::info!(target: "wick::turn", "{line}");
        let Some(lines) = &self.lines else { return };
        match lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                tracing::warn!(
                    dropped = self.dropped,
                    "standard output is not being read: turn {} left out of it (it is in the log)",
                    record.turn
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for TurnLog {
    /// Lets the writer finish what is queued (a reader that stalled for good is not waited on).
    fn drop(&mut self) {
        drop(self.lines.take());
        if let Some(w) = self.writer.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that blocks until released, as a pipe nobody reads.
    struct Stalled(Arc<Mutex<()>>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _wait = self.0.lock().unwrap();
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_records() {
        let gate = Arc::new(Mutex::new(()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let held = gate.lock().unwrap();
        let mut log = TurnLog::start(Stalled(gate.clone(), written.clone())).unwrap();
        let record = crate::pipeline::turn::TurnRecord::new(1);
        // Far more than the backlog: each call returns at once although nothing is written.
        for _ in 0..BACKLOG * 3 {
            log.record(&record);
        }
        assert!(log.dropped >= BACKLOG, "{} dropped", log.dropped);
        drop(held);
        drop(log);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let lines = text.lines().count();
        assert!(lines > 0 && lines <= BACKLOG + 1, "{lines} lines written");
        assert!(text.lines().all(|l| l.starts_with("{\"turn\":1")), "{text}");
    }
}
