//! Capture, playback and reopening through the real alsa-lib, without a sound card: the PCMs are
//! alsa-lib's `file` plugin over the `null` plugin, defined in a test asound.conf.
//!
//! What the plugins do, and what these tests rely on:
//! - Capture reads `infile` with one read(2) per period and is not paced: a regular file is
//!   consumed as fast as it is read. A short read leaves the rest of the period untouched (wick
//!   zeroes it first, so it is silence), and past the end of the file every read returns at once.
//! - Capture from a FIFO is paced by its writer: each read blocks until data arrives. Write exactly
//!   one or more whole periods per write(2) (`PcmFormat::period_bytes()`), each write at most
//!   PIPE_BUF (4096) bytes so that the kernel never hands the reader part of one. 20 ms at 16 kHz
//!   mono S16 is 640 bytes, at 48 kHz stereo S16 3840 bytes. Opening the FIFO for writing only
//!   blocks until a reader opens it, and `Capture::open` blocks until a writer exists: open the
//!   writer read-write (Linux does not block then), or from another thread. When the last writer
//!   closes, reads stop blocking and return silence.
//! - Playback goes to `null`, which consumes everything at once (nothing is ever queued, no
//!   underruns), and the plugin writes the frames to `file` one buffer behind, flushing the rest on
//!   drain, on drop (so `stop()` keeps what was written) and on close. The file is truncated each
//!   time the PCM is opened.
//! - A missing `infile` makes opening the PCM fail (ENOENT), which is how a device "appears later".
//!   A write error on `file` makes writes fail with EIO, which is how a device "goes away".

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wick::audio::{
    devices, Capture, DeviceState, Direction, PcmError, PcmFormat, PcmSettings, Playback, ReopeningCapture,
    ReopeningPlayback, SampleFormat, Settings as AudioSettings,
};

/// The directory holding the test asound.conf and the files its PCMs read and write.
///
/// alsa-lib reads `ALSA_CONFIG_PATH` when it first loads its configuration and keeps it for the
/// process (rereading a file only when its mtime changes), so every PCM of every test is defined
/// here, once, before the first ALSA call; each test uses its own PCM names and files.
fn alsa_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_dirs(tmp);
        let dir = tmp.join(format!("audio_alsa.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        assert!(
            !d.contains([':', ' ', '"']),
            "{d}: ALSA_CONFIG_PATH separates files with ':' and ' '; use a target directory without them"
        );
        let null = "/usr/share/alsa/alsa.conf";
        assert!(
            Path::new(null).is_file(),
            "{null} is missing: alsa-lib's configuration (defining the `null` PCM) comes with libasound2-data \
             (`sudo apt-get install libasound2-dev`, or `make` installs it)"
        );
        let conf = format!(
            r#"
pcm.wick_test_clip_mic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{d}/clip_in.raw"; format "raw" }}
pcm.wick_test_fifo_mic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{d}/mic.fifo"; format "raw" }}
pcm.wick_test_s32_mic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{d}/s32_in.raw"; format "raw" }}
pcm.wick_test_float_mic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{d}/float_in.raw"; format "raw" }}
pcm.wick_test_late_mic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{d}/late.raw"; format "raw" }}
pcm.wick_test_linear_mic {{ type linear; slave {{ pcm "null"; format S32_LE }} }}
pcm.wick_test_spk_s16 {{
    type file; slave.pcm "null"; file "{d}/spk_s16.raw"; format "raw"
    hint {{ show on; description "wick test speaker" }}
}}
pcm.wick_test_spk_float {{ type file; slave.pcm "null"; file "{d}/spk_float.raw"; format "raw" }}
pcm.wick_test_spk_stop {{ type file; slave.pcm "null"; file "{d}/spk_stop.raw"; format "raw" }}
pcm.wick_test_spk_full {{ type file; slave.pcm "null"; file "/dev/full"; format "raw" }}
"#
        );
        let conf_path = dir.join("asound.conf");
        std::fs::write(&conf_path, conf).unwrap();
        std::env::set_var("ALSA_CONFIG_PATH", format!("{null}:{}", conf_path.display()));
        dir
    })
}

/// Directories of earlier runs whose process is gone (statics are never dropped, so each run
/// leaves its own behind).
fn remove_stale_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("audio_alsa.") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn pcm(device: &str, rate: Option<u32>, channels: Option<u32>, format: Option<SampleFormat>) -> PcmSettings {
    alsa_dir();
    PcmSettings { device: device.into(), rate, channels, format }
}

fn audio(period_ms: u32) -> AudioSettings {
    AudioSettings { period_ms, buffer_periods: 4, reopen_max_s: 0.1, ..AudioSettings::default() }
}

fn s16_le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Test signals are integers so that what the device gets can be checked exactly.
fn quantize(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect()
}

/// A real speech clip at 48 kHz, as S16 values.
fn clip_48k(index: usize) -> Vec<i16> {
    let (path, _) = &common::dev_clips()[index];
    let audio = wick::audio::read_wav_mono(path).unwrap();
    quantize(&wick::audio::resample(&audio.samples, audio.sample_rate, 48_000).unwrap())
}

fn state_of(state: &std::sync::Arc<std::sync::Mutex<DeviceState>>) -> DeviceState {
    state.lock().unwrap().clone()
}

#[test]
fn capture_downmixes_a_real_stereo_clip_exactly() {
    let cfg = pcm("wick_test_clip_mic", Some(48_000), Some(2), Some(SampleFormat::S16));
    // Left and right are two different real clips, so the mean is neither of them.
    let (left, right) = (clip_48k(0), clip_48k(1));
    let periods = left.len().min(right.len()) / 960;
    let frames = periods * 960;
    let interleaved: Vec<i16> = (0..frames).flat_map(|i| [left[i], right[i]]).collect();
    // Exactly whole periods: a short last read would be padded with silence.
    std::fs::write(alsa_dir().join("clip_in.raw"), s16_le(&interleaved)).unwrap();

    let mut mic = Capture::open(&cfg, &audio(20)).unwrap();
    assert_eq!(mic.format(), PcmFormat { rate: 48_000, channels: 2, format: SampleFormat::S16, period_frames: 960 });
    let mut got = vec![0.25]; // read appends
    for p in 0..periods {
        mic.read(&mut got).unwrap();
        assert_eq!(got.len(), 1 + (p + 1) * 960, "one period per read");
    }
    let expected: Vec<f32> =
        (0..frames).map(|i| (left[i] as f32 / 32768.0 + right[i] as f32 / 32768.0) / 2.0).collect();
    let worst = got[1..].iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1.0 / 32768.0, "downmix differs from (l + r) / 2 by up to {worst}");
    assert_eq!(&got[1..], &expected[..], "an S16 stereo mean is exact in f32");
    let peak = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(peak > 0.05, "the clip is speech, not silence (peak {peak})");

    // Past the end of the infile: silence, at once (the file plugin is not paced).
    let mut tail = Vec::new();
    mic.read(&mut tail).unwrap();
    assert_eq!(tail, vec![0.0; 960]);
    assert_eq!(mic.xruns(), 0);
}

#[test]
fn capture_reads_s32_and_float_frames() {
    // Three channels, so that the mean is not a power-of-two division.
    let frames = 2 * 320;
    let value = |i: usize, c: usize| ((i as f64 * 0.01 + c as f64).sin() * 0.9) as f32;
    let expected: Vec<f32> =
        (0..frames).map(|i| (0..3).map(|c| value(i, c) as f64).sum::<f64>() as f32 / 3.0).collect();

    let s32: Vec<u8> = (0..frames)
        .flat_map(|i| (0..3).map(move |c| ((value(i, c) as f64 * 2_147_483_648.0).round() as i32).to_le_bytes()))
        .flatten()
        .collect();
    std::fs::write(alsa_dir().join("s32_in.raw"), s32).unwrap();
    let float: Vec<u8> = (0..frames).flat_map(|i| (0..3).map(move |c| value(i, c).to_le_bytes())).flatten().collect();
    std::fs::write(alsa_dir().join("float_in.raw"), float).unwrap();

    for (device, format) in [("wick_test_s32_mic", SampleFormat::S32), ("wick_test_float_mic", SampleFormat::F32)] {
        let mut mic = Capture::open(&pcm(device, Some(16_000), Some(3), Some(format)), &audio(20)).unwrap();
        assert_eq!(mic.format(), PcmFormat { rate: 16_000, channels: 3, format, period_frames: 320 });
        let mut got = Vec::new();
        mic.read(&mut got).unwrap();
        mic.read(&mut got).unwrap();
        let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{format:?}: the downmix is off by {worst}");
    }
}

#[test]
fn capture_from_a_fifo_blocks_until_the_writer_sends_a_period() {
    let cfg = pcm("wick_test_fifo_mic", Some(16_000), Some(1), Some(SampleFormat::S16));
    let fifo = alsa_dir().join("mic.fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
    // Read-write: opening does not wait for the reader, and Capture::open finds a writer.
    let mut writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();

    let speech = clip_48k(2);
    let period = 320; // 20 ms at 16 kHz
    let chunk = |k: usize| &speech[k * period..(k + 1) * period];
    let single = 5;
    let reads = single + 2 + 1;
    let (tx, rx) = mpsc::channel::<Result<Vec<f32>, PcmError>>();
    let reader = std::thread::spawn(move || {
        let mut mic = match Capture::open(&cfg, &audio(20)) {
            Ok(mic) => mic,
            Err(e) => return tx.send(Err(e)).unwrap(),
        };
        assert_eq!(mic.format().period_bytes(), 640);
        for _ in 0..reads {
            let mut got = Vec::new();
            let result = mic.read(&mut got).map(|()| got);
            if tx.send(result).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no period after {what}"))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let expect = |k: usize| chunk(k).iter().map(|&v| v as f32 / 32768.0).collect::<Vec<_>>();

    // Each read returns exactly the period written for it: a read that did not wait for its
    // period would return silence (reads zero their buffer) or the previous one, not chunk k.
    for k in 0..single {
        writer.write_all(&s16_le(chunk(k))).unwrap();
        assert_eq!(next(&format!("period {k}")), expect(k));
    }
    // Two periods in one write (1280 bytes, under PIPE_BUF): two reads, one period each.
    let two: Vec<i16> = [chunk(single), chunk(single + 1)].concat();
    writer.write_all(&s16_le(&two)).unwrap();
    assert_eq!(next("a double write"), expect(single));
    assert_eq!(next("a double write"), expect(single + 1));

    // The writer closes: reads stop blocking and return silence.
    drop(writer);
    assert_eq!(next("the writer closed"), vec![0.0; period]);
    reader.join().unwrap();
}

#[test]
fn probe_agrees_the_device_defaults() {
    let null = pcm("null", None, None, None);
    for direction in [Direction::Capture, Direction::Playback] {
        // The null plugin takes anything: 48 kHz, mono, S16.
        let f = devices::probe(&null, &audio(20), direction).unwrap();
        assert_eq!(f, PcmFormat { rate: 48_000, channels: 1, format: SampleFormat::S16, period_frames: 960 });
        let f = devices::probe(&null, &audio(10), direction).unwrap();
        assert_eq!(f.period_frames, 480);
    }
    // A plugin that converts to S32 takes only linear formats: S16 is still first choice.
    let linear = pcm("wick_test_linear_mic", Some(16_000), None, None);
    let f = devices::probe(&linear, &audio(20), Direction::Capture).unwrap();
    assert_eq!(f, PcmFormat { rate: 16_000, channels: 1, format: SampleFormat::S16, period_frames: 320 });
}

#[test]
fn a_configured_format_the_device_refuses_names_the_key_and_what_it_takes() {
    let cfg = pcm("wick_test_linear_mic", None, None, Some(SampleFormat::F32));
    let err = Capture::open(&cfg, &audio(20)).err().expect("the linear plugin refuses FLOAT");
    let text = err.to_string();
    assert!(matches!(err, PcmError::Config { .. }), "{err:?}");
    for needed in ["\"wick_test_linear_mic\"", "audio.capture.format = \"FLOAT\"", "S16_LE", "S32_LE"] {
        assert!(text.contains(needed), "{text:?} lacks {needed:?}");
    }
}

#[test]
fn a_missing_device_is_named_with_what_to_do() {
    let cfg = pcm("wick_test_no_such_pcm", None, None, None);
    let err = Capture::open(&cfg, &audio(20)).err().expect("no such PCM");
    assert!(matches!(&err, PcmError::Open { direction: Direction::Capture, .. }), "{err:?}");
    let text = err.to_string();
    for needed in [
        "cannot open capture device \"wick_test_no_such_pcm\"",
        "Unknown PCM wick_test_no_such_pcm", // alsa-lib's own words, not only ENOENT
        "audio.capture.device",
        "arecord -L",
        "wick doctor",
    ] {
        assert!(text.contains(needed), "{text:?} lacks {needed:?}");
    }
    let err = Playback::open(&cfg, &audio(20)).err().expect("no such PCM");
    let text = err.to_string();
    assert!(text.contains("audio.playback.device") && text.contains("aplay -L"), "{text}");
}

/// Writes `signal` in uneven calls, drains, and returns the bytes the device received.
fn play(device: &str, format: SampleFormat, signal: &[f32]) -> Vec<u8> {
    let cfg = pcm(device, Some(48_000), Some(2), Some(format));
    let mut spk = Playback::open(&cfg, &audio(20)).unwrap();
    assert_eq!(spk.format(), PcmFormat { rate: 48_000, channels: 2, format, period_frames: 960 });
    let mut rest = signal;
    for n in [1, 959, 960, 961, 2000, 3001].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(n.min(rest.len()));
        spk.write(now).unwrap();
        rest = later;
    }
    spk.drain().unwrap();
    assert_eq!(spk.xruns(), 0);
    let out = std::fs::read(alsa_dir().join(format!("{}.raw", device.trim_start_matches("wick_test_")))).unwrap();
    // Ready again after draining.
    spk.write(&signal[..100]).unwrap();
    spk.drain().unwrap();
    drop(spk);
    let after = std::fs::read(alsa_dir().join(format!("{}.raw", device.trim_start_matches("wick_test_")))).unwrap();
    assert_eq!(after.len(), out.len() + 100 * 2 * if format == SampleFormat::S16 { 2 } else { 4 });
    assert_eq!(&after[..out.len()], &out[..]);
    out
}

#[test]
fn playback_writes_s16_stereo_with_the_signal_on_both_channels() {
    let values = clip_48k(3)[..20_000].to_vec();
    let signal: Vec<f32> = values.iter().map(|&v| v as f32 / 32768.0).collect();
    let out = play("wick_test_spk_s16", SampleFormat::S16, &signal);
    let expected: Vec<i16> = values.iter().flat_map(|&v| [v, v]).collect();
    assert_eq!(out.len(), expected.len() * 2);
    assert!(out == s16_le(&expected), "the device did not receive the signal sample for sample");
}

#[test]
fn playback_writes_float_stereo() {
    let signal: Vec<f32> = (0..12_345).map(|i| (i as f32 * 0.013).sin() * 0.8).collect();
    let out = play("wick_test_spk_float", SampleFormat::F32, &signal);
    let got: Vec<f32> = out.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let expected: Vec<f32> = signal.iter().flat_map(|&x| [x, x]).collect();
    assert_eq!(got, expected);
}

#[test]
fn playback_plays_again_after_stop() {
    let cfg = pcm("wick_test_spk_stop", Some(48_000), Some(2), Some(SampleFormat::S16));
    let mut spk = Playback::open(&cfg, &audio(20)).unwrap();
    spk.stop().unwrap(); // nothing queued: fine
    let a: Vec<i16> = (0..2_500).map(|i| (i * 7 % 30_000) as i16).collect();
    let b: Vec<i16> = (0..1_500).map(|i| -((i * 11 % 30_000) as i16)).collect();
    let f = |v: &[i16]| v.iter().map(|&x| x as f32 / 32768.0).collect::<Vec<_>>();
    spk.write(&f(&a)).unwrap();
    spk.stop().unwrap();
    spk.stop().unwrap();
    spk.write(&f(&b)).unwrap();
    spk.drain().unwrap();
    drop(spk);
    // `null` had consumed A before the stop, and the file plugin writes what it holds when the
    // stream is dropped: on this device nothing was left to discard. What the stop must keep is
    // the device usable, B arriving whole after A.
    let out = std::fs::read(alsa_dir().join("spk_stop.raw")).unwrap();
    let expected: Vec<i16> = a.iter().chain(&b).flat_map(|&v| [v, v]).collect();
    assert!(out == s16_le(&expected), "{} bytes, expected {}", out.len(), expected.len() * 2);
}

#[test]
fn reopening_capture_keeps_retrying_a_missing_device() {
    let cfg = pcm("wick_test_no_such_pcm", None, None, None);
    let mut mic = ReopeningCapture::new(&cfg, &audio(20));
    let state = mic.state();
    assert!(!mic.is_open() && mic.format().is_none());
    let first = mic.attempts();
    assert_eq!(first, 1, "new() tries once");
    let mut out = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        assert!(!mic.read(&mut out).unwrap(), "no device, no audio");
        // About 100 ms. A read that waited for the device instead would never return (it is
        // never plugged in), so a bound far beyond any stall of a loaded CI machine cannot flake.
        assert!(start.elapsed() < Duration::from_secs(30), "a read without a device took {:?}", start.elapsed());
        match state_of(&state) {
            DeviceState::Unavailable { error, retry_in_s } => {
                assert!(error.contains("wick_test_no_such_pcm") && error.contains("audio.capture.device"), "{error}");
                assert!((0.0..=0.1).contains(&retry_in_s), "reopen_max_s caps the wait: {retry_in_s}");
            }
            other => panic!("state is {other:?}"),
        }
    }
    assert!(out.is_empty());
    assert!(mic.attempts() >= first + 5, "only {} attempts in 15 reads 0.1 s apart", mic.attempts());
}

#[test]
fn reopening_capture_opens_a_device_that_appears_later() {
    let cfg = pcm("wick_test_late_mic", Some(48_000), Some(2), Some(SampleFormat::S16));
    let infile = alsa_dir().join("late.raw");
    let _ = std::fs::remove_file(&infile);
    let mut mic = ReopeningCapture::new(&cfg, &audio(20));
    let state = mic.state();
    match state_of(&state) {
        DeviceState::Unavailable { error, .. } => {
            assert!(error.contains("late.raw"), "alsa-lib names the file: {error}")
        }
        other => panic!("state is {other:?}"),
    }
    let mut out = Vec::new();
    assert!(!mic.read(&mut out).unwrap());
    assert!(!mic.read(&mut out).unwrap());

    // The device appears: whole, so the reopened capture never sees a partial file.
    let frames: Vec<i16> = (0..3 * 960).flat_map(|i| [(i % 1000) as i16 * 20, -(i as i16 % 500)]).collect();
    let staging = alsa_dir().join("late.raw.new");
    std::fs::write(&staging, s16_le(&frames)).unwrap();
    std::fs::rename(&staging, &infile).unwrap();

    let mut tries = 0;
    while !mic.read(&mut out).unwrap() {
        tries += 1;
        assert!(tries < 100, "the device never reopened: {:?}", state_of(&state));
    }
    assert_eq!(out.len(), 960);
    let expected: Vec<f32> = frames[..2 * 960].chunks(2).map(|f| (f[0] as f32 + f[1] as f32) / 65536.0).collect();
    assert_eq!(out, expected, "the first period of the new device");
    let format = PcmFormat { rate: 48_000, channels: 2, format: SampleFormat::S16, period_frames: 960 };
    assert_eq!(state_of(&state), DeviceState::Open(format));
    assert_eq!(mic.format(), Some(format));
    assert_eq!(mic.attempts(), 0);
}

#[test]
fn a_device_that_fails_while_playing_is_gone_and_reopened() {
    // `file "/dev/full"`: once the plugin writes out a buffer, write(2) fails with ENOSPC and
    // the PCM with EIO, which ALSA cannot recover.
    let cfg = pcm("wick_test_spk_full", Some(48_000), Some(2), Some(SampleFormat::S16));
    let period = vec![0.1f32; 960];
    let mut spk = Playback::open(&cfg, &audio(20)).unwrap();
    let err = (0..20).find_map(|_| spk.write(&period).err()).expect("writing to /dev/full fails");
    assert!(matches!(err, PcmError::Gone { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("\"wick_test_spk_full\"") && text.contains("reopens"), "{text}");
    drop(spk);

    // The first retry comes 0.25 s after the failure: time enough to see the write dropped.
    let mut spk = ReopeningPlayback::new(&cfg, &AudioSettings { reopen_max_s: 1.0, ..audio(20) });
    let state = spk.state();
    assert!(matches!(state_of(&state), DeviceState::Open(_)));
    let mut written = 0;
    while spk.write(&period).unwrap() {
        written += 1;
        assert!(written < 20, "the write never failed");
    }
    assert!(!spk.is_open());
    assert!(matches!(state_of(&state), DeviceState::Unavailable { error, .. } if error.contains("went away")));
    // Without a device, audio is dropped at once rather than waited on.
    let start = Instant::now();
    assert!(!spk.write(&period).unwrap());
    spk.stop().unwrap();
    spk.drain().unwrap();
    // Waiting for the missing device would never end: 30 s is a bound no CI stall reaches.
    assert!(start.elapsed() < Duration::from_secs(30));
    // After the backoff the next write reopens it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(spk.write(&period).unwrap(), "reopened: {:?}", state_of(&state));
    assert!(matches!(state_of(&state), DeviceState::Open(_)));
}

#[test]
fn doctor_lists_pcms_and_cards() {
    alsa_dir();
    let hints = devices::pcm_hints(Direction::Playback);
    let ours = hints.iter().find(|h| h.name == "wick_test_spk_s16").expect("the test PCM with a hint is listed");
    assert_eq!(ours.description.as_deref(), Some("wick test speaker"));
    assert!(devices::pcm_hints(Direction::Capture).iter().any(|h| h.name == "null"));
    // No sound card here; with cards, each has an index of its own.
    let cards = devices::cards();
    let mut indices: Vec<i32> = cards.iter().map(|c| c.index).collect();
    indices.dedup();
    assert_eq!(indices.len(), cards.len());
    serde_json::to_string(&cards).unwrap();
}
