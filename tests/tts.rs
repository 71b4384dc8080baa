//! `wick say` and `wick bench tts` end to end with the `test` set's Piper voice: speech that
//! wick's own speech recognition understands, exact ids, nothing to say, very long text, and
//! a broken voice that falls back to espeak-ng.

mod common;

use std::path::{Path, PathBuf};

use common::{pulled, run, shared_dir, wick};

fn reference() -> serde_json::Value {
    let path = shared_dir().join("reference/tts/reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn say(args: &[&str], out: &Path) -> serde_json::Value {
    let (o, stdout, stderr) = run(wick().arg("say").args(args).arg("-o").arg(out).arg("--json"));
    assert!(o.status.success(), "wick say {args:?} failed: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn wav_samples(path: &Path) -> (u32, usize) {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (r.spec().sample_rate, r.len() as usize)
}

#[test]
fn spoken_reference_sentences_are_understood_by_wick_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut texts = Vec::new();
    for item in reference()["items"].as_array().unwrap() {
        let text = item["text"].as_str().unwrap();
        let out = dir.path().join(format!("{}.wav", item["name"].as_str().unwrap()));
        let v = say(&["--noise-scale", "0", "--noise-w", "0", text], &out);
        assert_eq!(v["voice"], "piper", "{v}");
        assert_eq!(v["sample_rate"], 22050);
        assert_eq!(wav_samples(&out), (22050, v["samples"].as_u64().unwrap() as usize));
        files.push(out);
        texts.push(text.to_string());
    }
    let (o, stdout, stderr) = run(wick().arg("transcribe").arg("--json").args(&files));
    assert!(o.status.success(), "{stderr}");
    let heard: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    for (t, h) in texts.iter().zip(&heard) {
        eprintln!("said:  {t}\nheard: {h}");
    }
    let wer = wick::stt::normalize::wer(texts.iter().map(String::as_str).zip(heard.iter().map(String::as_str)));
    eprintln!("WER {:.1} %", 100.0 * wer);
    assert!(wer <= 0.15, "wick's STT understood wick's voice with a WER of {:.1} %", 100.0 * wer);
}

#[test]
fn phoneme_ids_are_spoken_exactly_as_given() {
    let item = &reference()["items"][1];
    let ids: Vec<String> = item["phoneme_ids"][0].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ids.wav");
    let v = say(&["--noise-scale", "0", "--noise-w", "0", "--phoneme-ids", &ids.join(",")], &out);
    assert_eq!(v["samples"], item["samples_per_sentence"][0], "{v}");
    assert_eq!(v["phoneme_ids"][0], item["phoneme_ids"][0]);
}

#[test]
fn nothing_to_say_writes_an_empty_wav_without_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty", ""), ("emoji", "😀 🎉👍🏽"), ("markdown", "**  ** - ")] {
        let out = dir.path().join(format!("{name}.wav"));
        let v = say(&[text], &out);
        assert_eq!(v["samples"], 0, "{name}: {v}");
        assert!(v["first_chunk_s"].is_null());
        assert_eq!(wav_samples(&out), (22050, 0));
    }
}

#[test]
fn five_thousand_characters_are_spoken_in_chunks() {
    let sentence = "The quick brown fox jumps over the lazy dog, and then it runs back home again. ";
    let text: String = sentence.repeat(5000 / sentence.len() + 1);
    assert!(text.len() >= 5000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("long.wav");
    let mut cmd = wick();
    cmd.args(["say", "--stdin", "--json", "--noise-scale", "0", "--noise-w", "0", "-o"]).arg(&out);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sentences = v["phoneme_ids"].as_array().unwrap().len();
    assert!(sentences >= 60, "5000 characters became only {sentences} sentences");
    let audio_s = v["samples"].as_f64().unwrap() / 22050.0;
    // About 13 characters per second of speech: far from empty, far from runaway.
    assert!((150.0..900.0).contains(&audio_s), "{audio_s} s of audio for {} characters", text.len());
}

#[test]
fn a_broken_voice_falls_back_to_espeak_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let json = pulled().join("test/tts/en_US-joe-medium.onnx.json");
    let voice_json = dir.path().join("broken.onnx.json");
    std::fs::copy(&json, &voice_json).unwrap();

    // First no .onnx at all, then one that is not ONNX.
    for (case, onnx) in [("missing", None), ("corrupt", Some(b"not a protobuf at all".to_vec()))] {
        if let Some(bytes) = onnx {
            std::fs::write(dir.path().join("broken.onnx"), bytes).unwrap();
        }
        let out = dir.path().join(format!("{case}.wav"));
        let (o, stdout, stderr) =
            run(wick().args(["say", "Hello there.", "--json", "--voice"]).arg(&voice_json).arg("-o").arg(&out));
        assert!(o.status.success(), "{case}: {stderr}");
        assert!(stderr.contains("broken.onnx") && stderr.contains("espeak-ng"), "{case}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["voice"], "espeak-ng", "{case}: {v}");
        assert!(v["samples"].as_u64().unwrap() > 5000, "{case}: the fallback said nothing: {v}");

        // Exact ids need the neural voice: a clear error, not espeak-ng.
        let (o, _, stderr) =
            run(wick().args(["say", "--phoneme-ids", "1,0,2", "--voice"]).arg(&voice_json).arg("-o").arg(&out));
        assert!(!o.status.success(), "{case}: --phoneme-ids without a neural voice should fail");
        assert!(stderr.contains("neural voice") && stderr.contains("broken.onnx"), "{case}: {stderr}");
    }
}

#[test]
fn a_scale_the_voice_cannot_honour_falls_back_to_espeak_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("slow.wav");
    let (o, stdout, stderr) =
        run(wick().args(["say", "Hello there.", "--json", "--length-scale", "-1", "-o"]).arg(&out));
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("length_scale") && stderr.contains("espeak-ng"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["voice"], "espeak-ng", "{v}");
    assert!(v["samples"].as_u64().unwrap() > 5000, "the fallback said nothing: {v}");
}

#[test]
fn bench_tts_reports_real_time_factor_and_first_chunk() {
    let (o, stdout, stderr) = run(wick().args(["bench", "tts", "--json"]));
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["voice"], "piper");
    let texts = v["texts"].as_array().unwrap();
    assert_eq!(texts.len(), 3);
    for t in texts {
        assert!(t["audio_s"].as_f64().unwrap() > 0.5, "{t}");
        assert!(t["rtf"].as_f64().unwrap() > 0.0, "{t}");
        assert!(t["first_chunk_s"].as_f64().unwrap() <= t["synth_s"].as_f64().unwrap(), "{t}");
    }
    assert!(texts[2]["chunks"].as_u64().unwrap() > 1, "the long text should be spoken in several chunks");
}
