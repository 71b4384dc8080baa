//! `wick run` through real ALSA without a sound card: alsa-lib's `file` PCM over its `null`
//! PCM, with named pipes as the microphone's `infile` and the loudspeaker's `file`. The test
//! writes the microphone pipe and reads the loudspeaker pipe in real time, a period at a time,
//! so both devices run at a sound card's pace; the button is driven over the control socket,
//! and systemd's notify socket is a datagram socket the test reads.
//!
//! alsa-lib's capture `file` plugin is not paced and reads its infile once per period (a short
//! read leaves stale samples in the rest of the period), so the feeder writes exactly one
//! period per write, small enough (<= PIPE_BUF) to be atomic, into a pipe one page deep.

mod common;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assembly, dev_clips, shared_dir};
use crossbeam_channel::{unbounded, Receiver};

const RATE: u32 = 48_000;
/// 20 ms at 48 kHz, stereo S16: one period, 3840 bytes (under PIPE_BUF, so writes are atomic).
const PERIOD_FRAMES: usize = 960;
const PERIOD_BYTES: usize = PERIOD_FRAMES * 4;
const PERIOD: Duration = Duration::from_millis(20);

/// Audio queued for the microphone, as 48 kHz stereo S16 bytes.
#[derive(Default)]
struct Mic {
    queue: Mutex<VecDeque<u8>>,
}

/// What came out of the loudspeaker: the bytes, and when each read got them.
#[derive(Default)]
struct Speaker {
    bytes: Mutex<Vec<u8>>,
    reads: Mutex<Vec<(Instant, usize)>>,
}

impl Speaker {
    fn received_between(&self, from: Instant, to: Instant) -> usize {
        self.reads.lock().unwrap().iter().filter(|(t, _)| *t > from && *t <= to).map(|(_, n)| n).sum()
    }
}

struct Appliance {
    dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
    turns: Receiver<serde_json::Value>,
    notify: Receiver<String>,
    mic: Arc<Mic>,
    speaker: Arc<Speaker>,
    stop: Arc<AtomicBool>,
}

fn make_fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// One page: the pipe holds about a period, so the writer and the reader keep the pace.
fn shrink_pipe(file: &File) {
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
}

impl Appliance {
    /// Starts `wick run` with the test devices; `extra` is appended to its wick.toml. With a
    /// `capture` name, the microphone is that PCM instead of the pipe (a missing device).
    fn start(extra: &str, capture: Option<&str>) -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (mic_path, speaker_path) = (d.join("mic.fifo"), d.join("speaker.fifo"));
        make_fifo(&mic_path);
        make_fifo(&speaker_path);
        let asound = format!(
            "pcm.wick_test_mic {{ type file; slave.pcm \"null\"; file \"/dev/null\"; infile \"{}\"; format \"raw\" }}\n\
             pcm.wick_test_speaker {{ type file; slave.pcm \"null\"; file \"{}\"; format \"raw\" }}\n",
            mic_path.display(),
            speaker_path.display()
        );
        std::fs::write(d.join("asound.conf"), asound).unwrap();
        let socket = d.join("control.sock");
        let config = format!(
            "[audio]\nperiod_ms = 20\nreopen_max_s = 0.5\n\
             [audio.capture]\ndevice = \"{}\"\nrate = {RATE}\nchannels = 2\nformat = \"S16\"\n\
             [audio.playback]\ndevice = \"wick_test_speaker\"\nrate = {RATE}\nchannels = 2\nformat = \"S16\"\n\
             [input]\nsocket = \"{}\"\n{extra}",
            capture.unwrap_or("wick_test_mic"),
            socket.display()
        );
        std::fs::write(d.join("wick.toml"), config).unwrap();
        let notify_path = d.join("notify.sock");
        let notify_socket = UnixDatagram::bind(&notify_path).unwrap();

        let mut child = common::wick()
            .arg("--config")
            .arg(d.join("wick.toml"))
            .arg("-v")
            .arg("run")
            .env("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", d.join("asound.conf").display()))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::piped())
            .stderr(File::create(d.join("stderr.log")).unwrap())
            .spawn()
            .expect("wick run starts");

        let stop = Arc::new(AtomicBool::new(false));
        let (turn_tx, turns) = unbounded();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("wick run printed {line:?}: {e}"));
                let _ = turn_tx.send(v);
            }
        });
        let (notify_tx, notify) = unbounded();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify_socket.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    let _ = notify_tx.send(line.to_string());
                }
            }
        });

        let mic = Arc::new(Mic::default());
        if capture.is_none() {
            let (mic, stop) = (mic.clone(), stop.clone());
            std::thread::spawn(move || {
                // Opening blocks until wick opens the capture device.
                let Ok(mut pipe) = std::fs::OpenOptions::new().write(true).open(&mic_path) else { return };
                shrink_pipe(&pipe);
                let mut next = Instant::now();
                let mut period = vec![0u8; PERIOD_BYTES];
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut q = mic.queue.lock().unwrap();
                        let n = q.len().min(PERIOD_BYTES);
                        period.fill(0);
                        for (dst, src) in period.iter_mut().zip(q.drain(..n)) {
                            *dst = src;
                        }
                    }
                    if pipe.write_all(&period).is_err() {
                        return; // wick closed the device
                    }
                    // A write that waited for wick must not be made up for with a burst.
                    next = next.max(Instant::now()) + PERIOD;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            });
        }
        let speaker = Arc::new(Speaker::default());
        {
            let (speaker, stop) = (speaker.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut pipe) = File::open(&speaker_path) else { return };
                shrink_pipe(&pipe);
                let mut next = Instant::now();
                let mut buf = vec![0u8; PERIOD_BYTES];
                while !stop.load(Ordering::Relaxed) {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            speaker.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                            speaker.reads.lock().unwrap().push((Instant::now(), n));
                        }
                    }
                    // A read that waited for audio must not be made up for by reading ahead:
                    // the loudspeaker plays in real time.
                    next = next.max(Instant::now()) + PERIOD;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            });
        }
        Appliance { dir, child, socket, turns, notify, mic, speaker, stop }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Sends command lines in one write (a bounce burst arrives together); returns the answers.
    fn send(&self, lines: &[&str]) -> Vec<String> {
        let mut s = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("control socket {}: {e}\n{}", self.socket.display(), self.log()));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        s.write_all(text.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        (0..lines.len())
            .map(|_| {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                line.trim().to_string()
            })
            .collect()
    }

    fn status(&self) -> serde_json::Value {
        let answer = self.send(&["status"]).remove(0);
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("status answered {answer:?}: {e}"))
    }

    /// Polls `status` until `check` holds.
    fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.child.try_wait().unwrap() {
                panic!("wick run exited ({code}) while waiting for {what}:\n{}", self.log());
            }
            if self.socket.exists() {
                if let Ok(s) = UnixStream::connect(&self.socket) {
                    drop(s);
                    let v = self.status();
                    if check(&v) {
                        return v;
                    }
                    assert!(Instant::now() < deadline, "timed out waiting for {what}; status {v}\n{}", self.log());
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_state(&mut self, state: &str, timeout: Duration) {
        self.wait_status(&format!("state {state}"), timeout, |v| v["state"] == state);
    }

    fn press(&self) {
        assert_eq!(self.send(&["press"]), ["ok"]);
    }

    fn release(&self) {
        assert_eq!(self.send(&["release"]), ["ok"]);
    }

    /// Queues 16 kHz mono audio for the microphone and waits until wick has read it.
    fn say(&self, samples16k: &[f32]) {
        let audio = wick::audio::resample(samples16k, 16_000, RATE).unwrap();
        {
            let mut q = self.mic.queue.lock().unwrap();
            for s in audio {
                let v = ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes();
                q.extend(v.iter().chain(v.iter()));
            }
        }
        while !self.mic.queue.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The last periods are in the pipe and the device; let wick read them.
        std::thread::sleep(Duration::from_millis(200));
    }

    fn next_turn(&self, timeout: Duration) -> serde_json::Value {
        self.turns.recv_timeout(timeout).unwrap_or_else(|_| panic!("no turn logged in {timeout:?}\n{}", self.log()))
    }

    /// SIGTERM; returns whether wick exited cleanly.
    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.stop.store(true, Ordering::Relaxed);
                return status.success();
            }
            assert!(Instant::now() < deadline, "wick run did not end on SIGTERM\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn notifications(&self) -> Vec<String> {
        self.notify.try_iter().collect()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let mut app = Appliance::start("", None);
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
    // Playback stopped: after the device's buffer and the pipe (well under half a second),
    // nothing more of the first answer came out while the second question was spoken.
    let late = app.speaker.received_between(cancel + Duration::from_millis(400), before_release);
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
    assert!(app.terminate());

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
