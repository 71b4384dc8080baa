//! Speech to text through the `wick` binary with the real test model (Whisper tiny.en) and the
//! real clips of `../shared/speech/dev`: accuracy, input formats, long audio, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{dev_clips, run, stt_dir, wick, write_wav_i16};
use wick::stt::normalize::{normalize, wer};

/// `wick transcribe --json` of `files`: one JSON object per file, in order.
fn transcribe_json(files: &[PathBuf]) -> Vec<serde_json::Value> {
    transcribe_json_with(files, &[])
}

/// [`transcribe_json`] with extra arguments before the subcommand (`--config`).
fn transcribe_json_with(files: &[PathBuf], global: &[&std::ffi::OsStr]) -> Vec<serde_json::Value> {
    let (out, stdout, stderr) = run(wick().args(global).arg("transcribe").arg("--json").args(files));
    assert!(out.status.success(), "transcribe failed: {stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), files.len(), "{stdout}");
    for (file, line) in files.iter().zip(&lines) {
        assert_eq!(line["file"].as_str().unwrap(), file.to_str().unwrap());
    }
    lines
}

/// The dev clips, each transformed by `f` and written to `dir` as 16-bit WAV (as a microphone
/// would deliver it).
fn transformed_clips(dir: &Path, f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<PathBuf> {
    dev_clips()
        .iter()
        .map(|(file, _)| {
            let audio = wick::audio::read_wav_mono(file).unwrap();
            let out = dir.join(file.file_name().unwrap());
            write_wav_i16(&out, &f(&audio.samples), audio.sample_rate, 1);
            out
        })
        .collect()
}

#[test]
fn dev_set_word_error_rate_is_at_most_8_percent() {
    let clips = dev_clips();
    assert_eq!(clips.len(), 14, "speech/dev/manifest.tsv should list 14 clips");
    let files: Vec<PathBuf> = clips.iter().map(|(f, _)| f.clone()).collect();
    let mut pairs = Vec::new();
    for ((file, reference), line) in clips.iter().zip(transcribe_json(&files)) {
        assert!(line["audio_s"].as_f64().unwrap() > 1.0);
        assert!(line["elapsed_s"].as_f64().unwrap() > 0.0);
        let text = line["text"].as_str().unwrap().to_string();
        eprintln!("{}\n  ref: {reference}\n  hyp: {text}", file.display());
        pairs.push((reference.clone(), text));
    }
    let rate = wer(pairs.iter().map(|(r, h)| (r.as_str(), h.as_str())));
    eprintln!("WER over {} clips: {:.2} %", pairs.len(), rate * 100.0);
    assert!(rate <= 0.08, "WER {:.2} % is above 8 %", rate * 100.0);
}

#[test]
fn an_encoder_hearing_only_the_speech_gives_the_words_of_whole_windows() {
    let clips = dev_clips();
    let files: Vec<PathBuf> = clips.iter().map(|(f, _)| f.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("speech.toml");
    std::fs::write(&config, "[stt]\nencoder_span = \"speech\"\n").unwrap();
    let window = transcribe_json(&files);
    let speech = transcribe_json_with(&files, &["--config".as_ref(), config.as_os_str()]);
    let rate = |lines: &[serde_json::Value]| {
        wer(clips.iter().zip(lines).map(|((_, r), l)| (r.as_str(), l["text"].as_str().unwrap())))
    };
    let (whole, short) = (rate(&window), rate(&speech));
    let seconds = |lines: &[serde_json::Value]| lines.iter().map(|l| l["elapsed_s"].as_f64().unwrap()).sum::<f64>();
    eprintln!(
        "WER whole windows {:.2} % in {:.2} s, speech only {:.2} % in {:.2} s",
        whole * 100.0,
        seconds(&window),
        short * 100.0,
        seconds(&speech)
    );
    for ((file, _), (w, s)) in clips.iter().zip(window.iter().zip(&speech)) {
        eprintln!("{}\n  window: {}\n  speech: {}", file.display(), w["text"], s["text"]);
        assert_eq!(w["encoded_s"].as_f64(), Some(30.0), "{}", file.display());
        let (heard, encoded) = (s["speech_s"].as_f64().unwrap(), s["encoded_s"].as_f64().unwrap());
        assert!(
            encoded >= heard + 3.99 && encoded <= (heard + 5.01).min(30.0),
            "{}: {encoded} s encoded for {heard} s",
            file.display()
        );
    }
    assert!(short <= whole + 0.01, "speech-only WER {:.2} % against {:.2} %", short * 100.0, whole * 100.0);
}

#[test]
fn a_voice_40_db_quieter_is_heard_as_well_and_silence_around_it_is_trimmed() {
    let clips = dev_clips();
    let originals: Vec<PathBuf> = clips.iter().map(|(f, _)| f.clone()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let (quiet_dir, padded_dir) = (tmp.path().join("quiet"), tmp.path().join("padded"));
    std::fs::create_dir_all(&quiet_dir).unwrap();
    std::fs::create_dir_all(&padded_dir).unwrap();
    // -40 dB: about -60 dBFS, a soft voice two metres from a cheap USB microphone.
    let quiet = transformed_clips(&quiet_dir, |s| s.iter().map(|x| x * 0.01).collect());
    // Five seconds of a quiet room (-85 dBFS) before and after the speech.
    let padded = transformed_clips(&padded_dir, |s| {
        let room = noise(5, 1e-4);
        room.iter().chain(s).chain(&room).copied().collect()
    });
    let mut all = originals.clone();
    all.extend(quiet.iter().cloned());
    all.extend(padded.iter().cloned());
    let lines = transcribe_json(&all);
    let (original, rest) = lines.split_at(clips.len());
    let (quiet_lines, padded_lines) = rest.split_at(clips.len());

    let text = |v: &serde_json::Value| v["text"].as_str().unwrap().to_string();
    let rate_of = |lines: &[serde_json::Value]| {
        let texts: Vec<String> = lines.iter().map(text).collect();
        wer(clips.iter().zip(&texts).map(|((_, r), t)| (r.as_str(), t.as_str())))
    };
    let (at_level, softly) = (rate_of(original), rate_of(quiet_lines));
    eprintln!("WER as recorded {:.2} %, 40 dB quieter {:.2} %", at_level * 100.0, softly * 100.0);
    assert!(softly <= at_level + 0.02, "40 dB quieter: WER {:.2} % against {:.2} %", softly * 100.0, at_level * 100.0);
    for ((file, o), q) in clips.iter().map(|(f, _)| f).zip(original).zip(quiet_lines) {
        // A word more or less in one clip is within what a few dB of level changes in tiny.en.
        let errors = wick::stt::normalize::word_errors(&normalize(&text(o)), &normalize(&text(q)));
        assert!(errors <= 1, "{} 40 dB quieter: {:?} against {:?}", file.display(), q["text"], o["text"]);
        assert!(q["gain_db"].as_f64().unwrap() > 30.0, "the quiet clip is amplified: {q}");
    }

    for ((file, o), p) in clips.iter().map(|(f, _)| f).zip(original).zip(padded_lines) {
        assert_eq!(normalize(&text(p)), normalize(&text(o)), "{} with 5 s of room before and after", file.display());
        // Whisper hears the speech and its margins, not the ten seconds of room.
        let (speech_s, audio_s) = (p["speech_s"].as_f64().unwrap(), p["audio_s"].as_f64().unwrap());
        assert!(speech_s < audio_s - 8.0, "{}: {speech_s} s of {audio_s} s reached Whisper", file.display());
        assert!(speech_s > o["audio_s"].as_f64().unwrap() * 0.5, "{}: only {speech_s} s heard", file.display());
    }
}

#[test]
fn stereo_44k_24bit_and_float_inputs_give_the_same_words() {
    let (clip, _) = dev_clips().into_iter().find(|(f, _)| f.ends_with("ps_goforward.wav")).unwrap();
    let audio = wick::audio::read_wav_mono(&clip).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let up = wick::audio::resample(&audio.samples, 16_000, 44_100).unwrap();
    let stereo24 = tmp.path().join("stereo24.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&stereo24, spec).unwrap();
    for &s in &up {
        let v = (s * 8_388_607.0) as i32;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();

    let float8k = tmp.path().join("float8k.wav");
    let down = wick::audio::resample(&audio.samples, 16_000, 8_000).unwrap();
    wick::audio::write_wav_mono_f32(&float8k, &down, 8_000).unwrap();

    let (out, stdout, stderr) = run(wick().arg("transcribe").arg("--json").arg(&clip).arg(&stereo24).arg(&float8k));
    assert!(out.status.success(), "{stderr}");
    let texts: Vec<Vec<String>> = stdout
        .lines()
        .map(|l| normalize(serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap()))
        .collect();
    assert_eq!(texts[0], normalize("go forward ten meters"), "original clip: {stdout}");
    assert_eq!(texts[1], texts[0], "44.1 kHz stereo 24-bit: {stdout}");
    // 8 kHz loses everything above 4 kHz; the words must survive.
    assert!(wick::stt::normalize::word_errors(&texts[0], &texts[2]) <= 1, "8 kHz float: {stdout}");
}

#[test]
fn audio_longer_than_30_seconds_is_transcribed_window_by_window() {
    // Every dev clip in order with half a second of silence between: about 68 s, three windows.
    let clips = dev_clips();
    let mut samples = Vec::new();
    let mut reference = String::new();
    for (file, text) in &clips {
        samples.extend(wick::audio::read_wav_mono(file).unwrap().samples);
        samples.extend(std::iter::repeat_n(0.0, 8_000));
        reference.push_str(text);
        reference.push(' ');
    }
    let tmp = tempfile::tempdir().unwrap();
    let long = tmp.path().join("long.wav");
    write_wav_i16(&long, &samples, 16_000, 1);
    let (out, stdout, stderr) = run(wick().arg("transcribe").arg("--json").arg(&long));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(v["audio_s"].as_f64().unwrap() > 60.0);
    let rate = wer([(reference.as_str(), text)]);
    eprintln!("long audio WER {:.2} %: {text}", rate * 100.0);
    // Cuts fall in pauses, so accuracy stays close to the per-clip score; the first and last
    // clips prove that every window was decoded.
    assert!(rate <= 0.15, "WER {:.2} % on the concatenation: {text}", rate * 100.0);
    let words = normalize(text);
    assert!(words.starts_with(&["stuff".to_string()]) || words.contains(&"belly".to_string()), "{text}");
    assert!(words.ends_with(&["1".into(), "2".into(), "3".into()]), "{text}");
}

/// Uniform noise of peak amplitude `amp` from a fixed xorshift generator.
fn noise(seconds: usize, amp: f32) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..16_000 * seconds)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

#[test]
fn ten_minutes_of_silence_and_a_minute_of_room_noise_give_no_text() {
    let tmp = tempfile::tempdir().unwrap();
    let files = [
        // Ten minutes of a very quiet room (-85 dBFS).
        ("silence.wav", noise(600, 1e-4)),
        // A minute of hiss (-45 dBFS): the gain stage must not make words of it.
        ("hiss.wav", noise(60, 1e-2)),
        // Louder hiss (-35 dBFS), and digital silence.
        ("loud-hiss.wav", noise(20, 3e-2)),
        ("zeros.wav", vec![0.0; 16_000 * 30]),
    ]
    .map(|(name, samples)| {
        let path = tmp.path().join(name);
        write_wav_i16(&path, &samples, 16_000, 1);
        path
    });
    for v in transcribe_json(&files) {
        assert_eq!(v["text"], "", "text heard in {}", v["file"]);
        assert_eq!(v["speech_s"], 0.0, "nothing reaches Whisper from {}", v["file"]);
    }
}

#[test]
fn a_fifth_of_a_second_is_transcribed_without_error() {
    let (clip, _) = dev_clips().into_iter().find(|(f, _)| f.ends_with("sr_english_one_two_three.wav")).unwrap();
    let audio = wick::audio::read_wav_mono(&clip).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short.wav");
    write_wav_i16(&short, &audio.samples[..3_200], 16_000, 1);
    let (out, stdout, stderr) = run(wick().arg("transcribe").arg("--json").arg(&short));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!((v["audio_s"].as_f64().unwrap() - 0.2).abs() < 1e-3);
    assert!(normalize(v["text"].as_str().unwrap()).len() <= 3, "{stdout}");
}

fn assert_fails_naming(args: &[&std::ffi::OsStr], needles: &[&str]) {
    let (out, stdout, stderr) = run(wick().args(args));
    assert!(!out.status.success(), "expected failure, got: {stdout}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
}

#[test]
fn bad_audio_files_are_clear_errors_and_other_files_still_run() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.wav");
    let not_wav = tmp.path().join("notes.wav");
    std::fs::write(&not_wav, "this is a text file, not audio\n").unwrap();
    let empty = tmp.path().join("empty.wav");
    write_wav_i16(&empty, &[], 16_000, 1);
    let fast = tmp.path().join("96k.wav");
    write_wav_i16(&fast, &vec![0.0; 9_600], 96_000, 1);

    for (file, needle) in [
        (&missing, "no such file"),
        (&not_wav, "not a readable WAV"),
        (&empty, "no audio samples"),
        (&fast, "96000 Hz"),
    ] {
        assert_fails_naming(&["transcribe".as_ref(), file.as_os_str()], &[file.to_str().unwrap(), needle]);
    }
    // One bad file among good ones: the good one is still transcribed, the exit status reports the failure.
    let (clip, _) = dev_clips().into_iter().find(|(f, _)| f.ends_with("ps_goforward.wav")).unwrap();
    let (out, stdout, stderr) = run(wick().arg("transcribe").arg(&missing).arg(&clip));
    assert!(!out.status.success());
    assert!(stderr.contains("nope.wav"), "{stderr}");
    assert!(stdout.contains("ps_goforward.wav: ") && stdout.to_lowercase().contains("forward"), "{stdout}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn damaged_model_files_are_clear_errors_naming_the_file() {
    let (clip, _) = dev_clips().into_iter().next().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let truncated = tmp.path().join("truncated");
    copy_dir(&stt_dir(), &truncated);
    let weights = truncated.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&weights).unwrap().set_len(len / 2).unwrap();
    assert_fails_naming(
        &["transcribe".as_ref(), "--model-dir".as_ref(), truncated.as_os_str(), clip.as_os_str()],
        &[weights.to_str().unwrap(), "truncated or corrupt"],
    );

    let no_tokenizer = tmp.path().join("no-tokenizer");
    copy_dir(&stt_dir(), &no_tokenizer);
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    assert_fails_naming(
        &["transcribe".as_ref(), "--model-dir".as_ref(), no_tokenizer.as_os_str(), clip.as_os_str()],
        &["tokenizer.json", "wick models pull"],
    );

    let bad_config = tmp.path().join("bad-config");
    copy_dir(&stt_dir(), &bad_config);
    std::fs::write(bad_config.join("config.json"), "{\"vocab_size\": 3}").unwrap();
    assert_fails_naming(
        &["transcribe".as_ref(), "--model-dir".as_ref(), bad_config.as_os_str(), clip.as_os_str()],
        &[bad_config.join("config.json").to_str().unwrap(), "not a Whisper config.json"],
    );
}

#[test]
fn missing_models_and_bad_config_say_what_to_do() {
    let (clip, _) = dev_clips().into_iter().next().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wick"));
    cmd.arg("--models-dir").arg(tmp.path()).arg("transcribe").arg(&clip);
    let (out, _, stderr) = run(&mut cmd);
    assert!(!out.status.success());
    assert!(stderr.contains("wick models pull --set"), "{stderr}");

    let config = tmp.path().join("wick.toml");
    std::fs::write(&config, "[stt]\nno_speech_threshold = 7\n").unwrap();
    let (out, _, stderr) = run(wick().arg("--config").arg(&config).arg("transcribe").arg(&clip));
    assert!(!out.status.success());
    assert!(stderr.contains("stt.no_speech_threshold") && stderr.contains("wick.toml"), "{stderr}");
}

#[test]
fn bench_stt_reports_every_stage() {
    let clips = dev_clips();
    let (out, stdout, stderr) = run(wick().args(["bench", "stt", "--json"]).arg(&clips[0].0).arg(&clips[1].0));
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    let total = &rows[2];
    assert_eq!(total["file"], "total");
    for key in ["audio_s", "total_s", "rtf", "front_end_s", "encoder_s", "decoder_s", "load_s", "peak_rss_mb"] {
        assert!(total[key].as_f64().unwrap() > 0.0, "{key} in {total}");
    }
    assert!(total["tokens"].as_u64().unwrap() >= 10, "{total}");
    assert_eq!(total["windows"], 2);
}
