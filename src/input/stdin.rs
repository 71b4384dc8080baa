//! The button on a terminal, for trying wick at a desk without wiring one up (`wick run
//! --stdin`). The terminal stays in its normal line mode, so only whole lines arrive and a held
//! key cannot be seen; each Enter therefore toggles the button: the first press starts talking,
//! the next Enter releases it. What is typed before Enter is ignored. Raw mode would need
//! termios, and the toggle works the same over ssh, in an IDE console or from a pipe.
//!
//! End of input (Ctrl-D, or the pipe closing) ends the thread; a button held then is released.

use std::io::BufRead;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::InputEvent;

const SOURCE: &str = "stdin";

/// Reads stdin on its own thread, each line toggling the button (see the module docs).
pub fn spawn_stdin(tx: Sender<InputEvent>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("wick-stdin".into())
        .spawn(move || toggle_on_lines(std::io::stdin().lock(), &tx))
        .expect("cannot start the stdin thread")
}

/// Sends a press for the first line, a release for the next, and so on; releases at the end.
fn toggle_on_lines(input: impl BufRead, tx: &Sender<InputEvent>) {
    let mut held = false;
    for line in input.split(b'\n') {
        if let Err(e) = line {
            tracing::error!("stdin: {e}; Enter no longer works as the button");
            break;
        }
        held = !held;
        if tx.send(InputEvent::Edge { pressed: held, at: Instant::now(), source: SOURCE }).is_err() {
            return;
        }
    }
    tracing::info!("stdin closed: Enter no longer works as the button");
    if held {
        let _ = tx.send(InputEvent::Edge { pressed: false, at: Instant::now(), source: SOURCE });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(input: &[u8]) -> Vec<bool> {
        let (tx, rx) = crossbeam_channel::unbounded();
        toggle_on_lines(input, &tx);
        drop(tx);
        rx.iter()
            .map(|e| match e {
                InputEvent::Edge { pressed, source: "stdin", .. } => pressed,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_line_toggles_and_the_end_releases() {
        assert_eq!(levels(b"\n\nhello\n"), vec![true, false, true, false]);
        assert_eq!(levels(b"\n\n"), vec![true, false]);
        assert_eq!(levels(b""), Vec::<bool>::new());
        // A last line without its newline still counts.
        assert_eq!(levels(b"\nx"), vec![true, false]);
    }
}
