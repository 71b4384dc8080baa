//! Stages that fail the way real ones can: a panic, a hang, an error, injected with
//! `WICK_FAULT` into a `wick run` through real ALSA (see `common/appliance.rs`). The turn under
//! way must end as failed, the voice apologise while it still works, systemd's watchdog stop
//! being fed while a stage is stuck, and wick exit non-zero so systemd restarts it; the wick
//! started next answers.
//!
//! Fault injection is a cargo feature that release builds never have; `make test` turns it on.

#[path = "common/appliance.rs"]
mod appliance;
mod common;

#[cfg(not(feature = "fault-injection"))]
#[test]
fn fault_injection_is_built_in() {
    panic!(
        "tests/faults.rs needs wick built with fault injection: run `make test`, or \
         `cargo test --release --features fault-injection`"
    );
}

#[cfg(feature = "fault-injection")]
mod injected {
    use std::time::Duration;

    use crate::appliance::Appliance;
    use crate::common::{dev_clips, shared_dir};

    const LONG: Duration = Duration::from_secs(180);
    const APOLOGY: &str = "Sorry, something went wrong. I am restarting.";

    fn question() -> Vec<f32> {
        let (path, _) = dev_clips().into_iter().find(|(p, _)| p.ends_with("ps_goforward.wav")).unwrap();
        wick::audio::load_for_stt(&path).unwrap()
    }

    /// Starts wick with `fault` armed, asks one question; the turn record.
    fn ask_with(fault: &str, extra: &str) -> (Appliance, serde_json::Value) {
        let _ = shared_dir();
        let mut app = Appliance::start_with(extra, None, &[("WICK_FAULT", fault)]);
        app.wait_status("ready", LONG, |v| v["ready"] == true);
        app.press();
        app.say(&question());
        app.release();
        let turn = app.next_turn(LONG);
        (app, turn)
    }

    fn assert_failed_by(turn: &serde_json::Value, stage: &str, what: &str) {
        assert_eq!(turn["outcome"], "failed", "{turn}");
        let error = turn["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&format!("{stage}:")) && error.contains(what), "{turn}");
    }

    fn spoke_after_release(app: &Appliance) -> bool {
        !app.speaker.bytes.lock().unwrap().iter().all(|&b| b == 0)
    }

    #[test]
    fn a_stage_that_panics_ends_the_turn_and_wick_exits_to_be_restarted() {
        for stage in ["stt", "llm", "tts"] {
            let (mut app, turn) = ask_with(&format!("{stage}:panic"), "");
            assert_failed_by(&turn, stage, "panicked");
            let status = app.wait_exit(LONG);
            assert!(!status.success(), "wick must exit non-zero after a {stage} panic\n{}", app.log());
            let notes = app.notifications();
            assert!(notes.iter().any(|n| n.starts_with("STATUS=failed: the ") && n.contains(stage)), "{notes:?}");
            if stage == "tts" {
                // The voice itself is gone: nothing can be said. (The reply's text may or may
                // not be in the record: that depends on whether the language model finished
                // before the voice's panic ended the turn.)
                assert_eq!(turn["reply_audio_s"], 0.0, "{turn}");
                assert!(!spoke_after_release(&app), "something was played after the tts panic");
            } else {
                assert_eq!(turn["reply"], APOLOGY, "{turn}");
                assert!(spoke_after_release(&app), "the apology was not played after the {stage} panic");
            }
        }
        // systemd starts wick again: the next turn is answered.
        let (mut app, turn) = ask_with("stt:panic@2", "");
        assert_eq!(turn["outcome"], "answered", "{turn}");
        assert!(app.terminate(), "{}", app.log());
    }

    #[test]
    fn a_stage_that_hangs_stops_the_watchdog_and_wick_exits() {
        for stage in ["stt", "llm", "tts"] {
            let (mut app, turn) = ask_with(&format!("{stage}:hang"), "[runtime]\nstage_stall_s = 4.0\n");
            assert_failed_by(&turn, stage, "no sign of life");
            let status = app.wait_exit(LONG);
            assert!(!status.success(), "wick must exit non-zero when {stage} hangs\n{}", app.log());
            let notes = app.notifications();
            let failed = notes
                .iter()
                .position(|n| n.starts_with("STATUS=failed:"))
                .unwrap_or_else(|| panic!("no failure status in {notes:?}"));
            assert!(notes[..failed].iter().any(|n| n == "WATCHDOG=1"), "the watchdog was fed before: {notes:?}");
            // WATCHDOG_USEC is 1 s: a fed watchdog pings every half second, and the apology
            // alone plays for seconds before wick exits.
            assert!(
                !notes[failed..].iter().any(|n| n == "WATCHDOG=1"),
                "the watchdog was fed after {stage} hung: {notes:?}"
            );
            if stage != "tts" {
                assert_eq!(turn["reply"], APOLOGY, "{turn}");
            }
        }
    }

    #[test]
    fn status_shows_each_stage_and_a_stuck_one() {
        let _ = shared_dir();
        let mut app = Appliance::start_with("[runtime]\nstage_stall_s = 3.0\n", None, &[("WICK_FAULT", "llm:hang")]);
        let status = app.wait_status("ready", LONG, |v| v["ready"] == true);
        for stage in ["recorder", "stt", "llm", "tts", "playback"] {
            assert_eq!(status["stages"][stage]["state"], "ok", "{status}");
        }
        app.press();
        app.say(&question());
        app.release();
        // The apology plays for seconds between the stall and the exit: status answers then.
        let stuck = app.wait_status("the llm's failure", LONG, |v| v["failure"]["stage"] == "llm");
        assert_eq!(stuck["stages"]["llm"]["state"], "stalled", "{stuck}");
        assert!(stuck["stages"]["llm"]["silent_s"].as_f64().unwrap() >= 3.0, "{stuck}");
        assert_eq!(stuck["stages"]["stt"]["state"], "ok", "{stuck}");
        assert!(!app.wait_exit(LONG).success());
    }

    #[test]
    fn a_microphone_that_stalls_without_going_away_gets_wick_restarted() {
        // alsa-lib's `file` plugin reads its pipe with a plain blocking read, so a stalled
        // pipe blocks the capture read itself (a real device is waited on for at most 2 s and
        // reopened): the recorder's heartbeat is what notices.
        let _ = shared_dir();
        let mut app = Appliance::start("[runtime]\nstage_stall_s = 2.0\n", None);
        app.wait_status("ready", LONG, |v| v["ready"] == true);
        app.mic.stalled.store(true, std::sync::atomic::Ordering::Relaxed);
        let status = app.wait_exit(LONG);
        assert!(!status.success(), "wick must exit non-zero with a stuck microphone\n{}", app.log());
        let notes = app.notifications();
        let failed = notes
            .iter()
            .position(|n| n.starts_with("STATUS=failed: the recorder stage has shown no sign of life"))
            .unwrap_or_else(|| panic!("no recorder failure in {notes:?}"));
        assert!(!notes[failed..].iter().any(|n| n == "WATCHDOG=1"), "{notes:?}");
        assert!(app.log().contains("recorder"), "{}", app.log());
    }

    #[test]
    fn a_stage_error_fails_one_turn_and_the_next_is_answered() {
        let (mut app, turn) = ask_with("llm:error", "");
        assert_failed_by(&turn, "llm", "injected fault");
        assert_eq!(turn["reply"], "Sorry, I could not answer that.", "{turn}");
        app.press();
        app.say(&question());
        app.release();
        let next = app.next_turn(LONG);
        assert_eq!(next["outcome"], "answered", "{next}");
        assert!(app.terminate(), "an error in one turn must not end wick\n{}", app.log());
    }
}
