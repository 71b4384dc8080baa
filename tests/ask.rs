//! `wick ask`: one turn through the appliance's pipeline, with a WAV file as microphone and a
//! WAV file as loudspeaker, using the real `test` models.

mod common;

use std::path::Path;

use common::{dev_clips, run, wick, write_wav_i16};
use wick::stt::normalize::{normalize, wer};

fn ask(input: &Path, output: &Path) -> serde_json::Value {
    let (out, stdout, stderr) = run(wick().arg("ask").arg(input).arg("-o").arg(output).arg("--json"));
    assert!(out.status.success(), "wick ask {} failed: {stderr}", input.display());
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("ask --json printed {stdout:?}: {e}"))
}

fn secs(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn transcribe(path: &Path) -> String {
    let (out, stdout, stderr) = run(wick().arg("transcribe").arg(path));
    assert!(out.status.success(), "transcribing {}: {stderr}", path.display());
    stdout.trim().to_string()
}

/// Words of at least four letters shared by two texts (the voice and tiny.en both blur short words).
pub fn shared_words(a: &str, b: &str) -> Vec<String> {
    let b = normalize(b);
    let mut shared: Vec<String> = normalize(a).into_iter().filter(|w| w.len() >= 4 && b.contains(w)).collect();
    shared.dedup();
    shared
}

#[test]
fn a_spoken_question_is_answered_out_loud() {
    let dir = tempfile::tempdir().unwrap();
    let (clip, reference) = dev_clips().into_iter().find(|(p, _)| p.ends_with("ps_librivox_ss01_0870.wav")).unwrap();
    let reply_wav = dir.path().join("reply.wav");
    let v = ask(&clip, &reply_wav);
    assert_eq!(v["outcome"], "answered", "{v}");
    let transcript = v["transcript"].as_str().unwrap();
    let error = wer([(reference.as_str(), transcript)]);
    assert!(error <= 0.25, "transcript {transcript:?} against {reference:?}: WER {error:.2}");
    let reply = v["reply"].as_str().unwrap();
    assert!(!reply.trim().is_empty() && v["gen_tokens"].as_u64().unwrap() > 0, "{v}");

    // Times run from the end of the question and follow the stages' order.
    let (stt, token, audio, total) =
        (secs(&v, "stt_s"), secs(&v, "first_token_s"), secs(&v, "first_audio_s"), secs(&v, "total_s"));
    assert!(0.0 < stt && stt <= token && token <= audio && audio <= total, "{v}");
    assert!((secs(&v, "recorded_s") - 7.1).abs() < 0.01 && v["capped"] == false, "{v}");

    // The answer is speech, and it says the reply.
    let audio_s = secs(&v, "audio_out_s");
    assert!(audio_s > 1.0, "{v}");
    let written = wick::audio::read_wav_mono(&reply_wav).unwrap();
    assert!(
        (written.duration_s() - audio_s).abs() < 0.01,
        "{} s in the file, {audio_s} reported",
        written.duration_s()
    );
    let heard = transcribe(&reply_wav);
    let shared = shared_words(reply, &heard);
    assert!(shared.len() >= 2, "the reply {reply:?} was heard as {heard:?}: shared words {shared:?}");
}

#[test]
fn silence_gets_an_apology_without_asking_the_llm() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("quiet.wav");
    // Three seconds of a quiet room (about -70 dBFS), at 48 kHz stereo like a USB microphone.
    let samples: Vec<f32> = (0..144_000).map(|i| 3e-4 * ((i as f32 * 0.37).sin() + (i as f32 * 0.011).cos())).collect();
    write_wav_i16(&quiet, &samples, 48_000, 2);
    let v = ask(&quiet, &dir.path().join("reply.wav"));
    assert_eq!(v["outcome"], "nothing_heard", "{v}");
    assert_eq!(v["reply"], wick::pipeline::hearing::NOTHING_HEARD);
    assert_eq!((v["gen_tokens"].as_u64(), v["prompt_tokens"].as_u64()), (Some(0), Some(0)), "the LLM was asked: {v}");
    assert!(v["first_token_s"].is_null(), "{v}");
    assert!(secs(&v, "audio_out_s") > 0.5, "the apology must be spoken: {v}");
    let heard = transcribe(&dir.path().join("reply.wav"));
    assert!(heard.to_lowercase().contains("sorry"), "the apology was heard as {heard:?}");
}

#[test]
fn an_empty_recording_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    write_wav_i16(&empty, &[], 16_000, 1);
    let v = ask(&empty, &dir.path().join("reply.wav"));
    assert_eq!(v["outcome"], "nothing_heard", "{v}");
    assert_eq!(v["recorded_s"].as_f64(), Some(0.0), "{v}");
}

#[test]
fn a_sixty_second_recording_is_capped_at_thirty() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    for (clip, _) in dev_clips().iter().cycle() {
        if samples.len() >= 60 * 16_000 {
            break;
        }
        samples.extend(wick::audio::read_wav_mono(clip).unwrap().samples);
    }
    samples.truncate(60 * 16_000);
    let long = dir.path().join("long.wav");
    write_wav_i16(&long, &samples, 16_000, 1);
    let v = ask(&long, &dir.path().join("reply.wav"));
    assert_eq!(v["capped"], true, "{v}");
    assert_eq!(v["recorded_s"].as_f64(), Some(30.0), "{v}");
    assert!((secs(&v, "input_s") - 60.0).abs() < 0.01, "{v}");
    assert!(!v["transcript"].as_str().unwrap().is_empty(), "{v}");
}

#[test]
fn a_missing_or_broken_question_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wav");
    let (out, _, stderr) = run(wick().arg("ask").arg(&missing));
    assert!(!out.status.success());
    assert!(stderr.contains("nope.wav"), "{stderr}");
    let broken = dir.path().join("broken.wav");
    std::fs::write(&broken, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
    let (out, _, stderr) = run(wick().arg("ask").arg(&broken));
    assert!(!out.status.success());
    assert!(stderr.contains("broken.wav"), "{stderr}");
}
