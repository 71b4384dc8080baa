#![allow(dead_code)] // each test file uses part of the harness
//! A `wick run` under test, through real ALSA without a sound card: alsa-lib's `file` PCM over its `null`
//! PCM, with named pipes as the microphone's `infile` and the loudspeaker's `file`. The test
//! writes the microphone pipe and reads the loudspeaker pipe in real time, a period at a time,
//! so both devices run at a sound card's pace; the button is driven over the control socket,
//! and systemd's notify socket is a datagram socket the test reads.
//!
//! alsa-lib's capture `file` plugin is not paced and reads its infile once per period (a short
//! read leaves stale samples in the rest of the period), so the feeder writes exactly one
//! period per write, small enough (<= PIPE_BUF) to be atomic, into a pipe one page deep.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

pub const RATE: u32 = 48_000;
/// 20 ms at 48 kHz, stereo S16: one period, 3840 bytes (under PIPE_BUF, so writes are atomic).
pub const PERIOD_FRAMES: usize = 960;
pub const PERIOD_BYTES: usize = PERIOD_FRAMES * 4;
pub const PERIOD: Duration = Duration::from_millis(20);

/// Audio queued for the microphone, as 48 kHz stereo S16 bytes.
#[derive(Default)]
pub struct Mic {
    queue: Mutex<VecDeque<u8>>,
    /// The microphone stalls: nothing more is written, yet the pipe stays open.
    pub stalled: AtomicBool,
}

/// What came out of the loudspeaker: the bytes, and when each read got them.
#[derive(Default)]
pub struct Speaker {
    pub bytes: Mutex<Vec<u8>>,
    pub reads: Mutex<Vec<(Instant, usize)>>,
}

impl Speaker {
    pub fn received_between(&self, from: Instant, to: Instant) -> usize {
        self.reads.lock().unwrap().iter().filter(|(t, _)| *t > from && *t <= to).map(|(_, n)| n).sum()
    }
}

pub struct Appliance {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub socket: PathBuf,
    pub turns: Receiver<serde_json::Value>,
    pub notify: Receiver<String>,
    pub mic: Arc<Mic>,
    pub speaker: Arc<Speaker>,
    pub stop: Arc<AtomicBool>,
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
    pub fn start(extra: &str, capture: Option<&str>) -> Appliance {
        Self::start_with(extra, capture, &[])
    }

    /// As `start`, with extra environment variables for wick.
    pub fn start_with(extra: &str, capture: Option<&str>, env: &[(&str, &str)]) -> Appliance {
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

        let mut child = crate::common::wick()
            .arg("--config")
            .arg(d.join("wick.toml"))
            .arg("-v")
            .arg("run")
            .env("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", d.join("asound.conf").display()))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
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
                    if mic.stalled.load(Ordering::Relaxed) {
                        std::thread::sleep(PERIOD);
                        continue;
                    }
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Sends command lines in one write (a bounce burst arrives together); returns the answers.
    pub fn send(&self, lines: &[&str]) -> Vec<String> {
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

    pub fn status(&self) -> serde_json::Value {
        let answer = self.send(&["status"]).remove(0);
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("status answered {answer:?}: {e}"))
    }

    /// Polls `status` until `check` holds.
    pub fn wait_status(
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

    pub fn wait_state(&mut self, state: &str, timeout: Duration) {
        self.wait_status(&format!("state {state}"), timeout, |v| v["state"] == state);
    }

    pub fn press(&self) {
        assert_eq!(self.send(&["press"]), ["ok"]);
    }

    pub fn release(&self) {
        assert_eq!(self.send(&["release"]), ["ok"]);
    }

    /// Queues 16 kHz mono audio for the microphone and waits until wick has read it.
    pub fn say(&self, samples16k: &[f32]) {
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

    pub fn next_turn(&self, timeout: Duration) -> serde_json::Value {
        self.turns.recv_timeout(timeout).unwrap_or_else(|_| panic!("no turn logged in {timeout:?}\n{}", self.log()))
    }

    /// SIGTERM; returns whether wick exited cleanly.
    pub fn terminate(&mut self) -> bool {
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

    /// Waits for wick to exit by itself; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.stop.store(true, Ordering::Relaxed);
                return status;
            }
            assert!(Instant::now() < deadline, "wick run did not exit within {timeout:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn notifications(&self) -> Vec<String> {
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
