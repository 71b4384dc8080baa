//! `wick run` through real ALSA without a sound card (see `common/appliance.rs` for how the
//! devices, the button and systemd's notify socket are stood in for).

#[path = "common/appliance.rs"]
mod appliance;
mod common;

use std::time::{Duration, Instant};

use appliance::{Appliance, PERIOD_FRAMES, RATE};
use common::{assembly, dev_clips, shared_dir};

fn clip(name: &str) -> Vec<f32> {
    let (path, _) = dev_clips().into_iter().find(|(p, _)| p.ends_with(name)).unwrap();
    wick::audio::load_for_stt(&path).unwrap()
}

fn reference(name: &str) -> String {
    dev_clips().into_iter().find(|(p, _)| p.ends_with(name)).unwrap().1
}

/// What wick's speech-to-text hears in 48 kHz stereo S16 bytes.
fn hear(bytes: &[u8]) -> String {
    let mono: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|f| (i16::from_le_bytes([f[0], f[1]]) as f32 + i16::from_le_bytes([f[2], f[3]]) as f32) / 65536.0)
        .collect();
    let samples = wick::audio::resample(&mono, RATE, 16_000).unwrap();
    let stt = assembly(Default::default()).transcriber(None, None).unwrap();
    stt.transcribe(&samples).unwrap().text
}

fn words(text: &str) -> Vec<String> {
    wick::stt::normalize::normalize(text).into_iter().filter(|w| w.len() >= 4).collect()
}

const LONG: Duration = Duration::from_secs(180);

#[test]
fn a_full_turn_through_alsa_with_the_button_on_the_control_socket() {
    let _ = shared_dir();
    // Each bounce burst below is one socket write, parsed in microseconds; a 500 ms window
    // holds it even when a loaded 2-core machine stops wick's threads for a while.
    let mut app = Appliance::start("debounce_ms = 500\n", None);
    let status = app.wait_status("ready", LONG, |v| v["ready"] == true);
    assert_eq!(status["state"], "idle", "{status}");
    assert_eq!(status["capture"]["period_frames"], PERIOD_FRAMES, "the feeder writes 960-frame periods: {status}");

    // A bouncing press is one press.
    assert_eq!(app.send(&["press", "release", "press", "release", "press"]), ["ok"; 5]);
    app.wait_state("listening", Duration::from_secs(5));
    let name = "ps_librivox_ss01_0870.wav";
    app.say(&clip(name));
    // A bouncing release is one release.
    assert_eq!(app.send(&["release", "press", "release"]), ["ok"; 3]);
    let turn = app.next_turn(LONG);
    assert_eq!(turn["outcome"], "answered", "{turn}");
    let transcript = turn["transcript"].as_str().unwrap();
    let error = wick::stt::normalize::wer([(reference(name).as_str(), transcript)]);
    assert!(error <= 0.3, "heard {transcript:?}: WER {error:.2}");
    for key in ["stt_done_s", "first_token_s", "first_chunk_s", "first_sample_played_s", "done_s"] {
        assert!(turn[key].as_f64().is_some_and(|t| t > 0.0), "{key} in {turn}");
    }
    assert!(turn["gen_tokens"].as_u64().unwrap() > 0 && turn["reply_audio_s"].as_f64().unwrap() > 0.5, "{turn}");
    assert!(app.turns.try_recv().is_err(), "the bounces made more than one turn");
    let reply_bytes = app.speaker.bytes.lock().unwrap().len();

    // A silent utterance is answered with the apology, without the LLM.
    app.press();
    app.say(&vec![0.0; 16_000]);
    app.release();
    let quiet = app.next_turn(LONG);
    assert_eq!(quiet["outcome"], "nothing_heard", "{quiet}");
    assert_eq!(quiet["gen_tokens"], 0, "{quiet}");
    assert!(quiet["first_token_s"].is_null(), "{quiet}");

    assert!(app.terminate(), "SIGTERM must end wick run cleanly\n{}", app.log());
    let bytes = app.speaker.bytes.lock().unwrap().clone();
    let said = hear(&bytes[..reply_bytes]);
    let reply = words(turn["reply"].as_str().unwrap());
    let shared: Vec<_> = words(&said).into_iter().filter(|w| reply.contains(w)).collect();
    assert!(shared.len() >= 2, "the loudspeaker said {said:?}; the reply was {}", turn["reply"]);
    assert!(hear(&bytes[reply_bytes..]).to_lowercase().contains("sorry"), "the apology was not heard");

    let notes = app.notifications();
    let ready = notes.iter().position(|n| n == "READY=1").unwrap_or_else(|| panic!("no READY=1 in {notes:?}"));
    assert!(notes[..ready].iter().any(|n| n == "STATUS=loading models"), "{notes:?}");
    for expected in
        ["STATUS=listening", "STATUS=thinking", "STATUS=speaking", "STATUS=idle", "WATCHDOG=1", "STOPPING=1"]
    {
        assert!(notes.iter().any(|n| n == expected), "{expected} missing in {notes:?}");
    }
}

#[test]
fn a_press_while_speaking_stops_the_answer_and_listens() {
    let _ = shared_dir();
    let mut app = Appliance::start(
        "[llm]\nsystem = \"Whatever the user says, answer with a long story of at least twenty sentences.\"\nmax_tokens = 240\n",
        None,
    );
    app.wait_status("ready", LONG, |v| v["ready"] == true);
    app.press();
    app.say(&clip("ljspeech_LJ001-0004.wav"));
    app.release();
    app.wait_state("speaking", LONG);
    let cancel = Instant::now();
    app.press();
    app.wait_state("listening", Duration::from_secs(5));
    let second = "sr_english_one_two_three.wav";
    app.say(&vec![0.0; 8_000]);
    app.say(&clip(second));
    let before_release = Instant::now();
    app.release();

    let first = app.next_turn(LONG);
    assert_eq!(first["outcome"], "cancelled", "{first}");
    assert_eq!(first["cancelled_by"], "barge-in", "{first}");
    let (at_cancel, total) = (first["tokens_at_cancel"].as_u64().unwrap(), first["gen_tokens"].as_u64().unwrap());
    assert!(total <= at_cancel + 1, "tokens were decoded after the cancel: {at_cancel} then {total}");
    assert!(total < 240, "generation ran to the token limit: {first}");
    // Playback stopped: after the device's buffer and the pipe (well under half a second;
    // two seconds leave room for a loaded machine), nothing more of the first answer came out
    // while the second question (half a second of silence and three seconds of speech) was
    // spoken; the answer, a long story, would have gone on playing for far longer.
    let late = app.speaker.received_between(cancel + Duration::from_secs(2), before_release);
    assert_eq!(late, 0, "{late} bytes were played after the barge-in");

    let answer = app.next_turn(LONG);
    assert_eq!(answer["outcome"], "answered", "{answer}");
    let heard = answer["transcript"].as_str().unwrap();
    let error = wick::stt::normalize::wer([(reference(second).as_str(), heard)]);
    assert!(error <= 0.5, "the second question was heard as {heard:?}");

    // A tap while speaking only stops.
    app.press();
    app.say(&clip("ps_goforward.wav"));
    app.release();
    app.wait_state("speaking", LONG);
    assert_eq!(app.send(&["tap"]), ["ok"]);
    app.wait_state("idle", Duration::from_secs(5));
    let tapped = app.next_turn(LONG);
    assert_eq!(
        (tapped["outcome"].as_str(), tapped["cancelled_by"].as_str()),
        (Some("cancelled"), Some("tap")),
        "{tapped}"
    );
    assert!(app.terminate());
}

#[test]
fn a_missing_microphone_is_retried_and_reported() {
    let _ = shared_dir();
    let mut app = Appliance::start("", Some("wick_no_such_mic"));
    let status = app.wait_status("the capture device's state", LONG, |v| v["capture"]["state"] == "unavailable");
    assert!(status["capture"]["error"].as_str().unwrap().contains("wick_no_such_mic"), "{status}");
    assert_eq!(status["ready"], false, "{status}");
    std::thread::sleep(Duration::from_secs(2));
    let later = app.status();
    assert_eq!(later["capture"]["state"], "unavailable", "{later}");
    assert!(app.child.try_wait().unwrap().is_none(), "wick run gave up:\n{}", app.log());
    assert!(app.log().matches("wick_no_such_mic").count() >= 1, "{}", app.log());
    assert!(!app.notifications().iter().any(|n| n == "READY=1"), "READY=1 without a microphone");

    // `wick ctl` is the same socket from the command line: status is one line of JSON; an
    // unknown word is refused by the argument parser, and no appliance is a clear error.
    let config = app.dir.path().join("wick.toml");
    let (out, stdout, stderr) = common::run(common::wick().arg("--config").arg(&config).args(["ctl", "status"]));
    assert!(out.status.success(), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(status["capture"]["state"], "unavailable", "{status}");
    let (out, _, stderr) = common::run(common::wick().arg("--config").arg(&config).args(["ctl", "presss"]));
    assert!(!out.status.success() && stderr.contains("press, release, tap, status"), "{stderr}");
    assert!(app.terminate());
    let (out, _, stderr) = common::run(common::wick().arg("--config").arg(&config).args(["ctl", "press"]));
    assert!(!out.status.success(), "ctl press succeeded with no appliance running");
    assert!(stderr.contains("control.sock") && stderr.contains("wick run"), "{stderr}");

    // doctor names the device and fails.
    let dir = app.dir.path();
    let config = std::fs::read_to_string(dir.join("wick.toml")).unwrap().replace("wick_test_speaker", "null");
    std::fs::write(dir.join("doctor.toml"), config).unwrap();
    let (out, stdout, stderr) = common::run(
        common::wick()
            .arg("--config")
            .arg(dir.join("doctor.toml"))
            .arg("doctor")
            .env("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", dir.join("asound.conf").display())),
    );
    assert!(!out.status.success(), "doctor passed without a microphone:\n{stdout}");
    let line = stdout.lines().find(|l| l.contains("wick_no_such_mic")).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    assert!(line.starts_with("FAIL"), "{stdout}");
}
