//! Multi-speaker and "high" Piper voices against Piper's own output. No such voice can be
//! fetched from the registries CI reaches, so `make piper-reference`
//! (tools/piper_reference) builds them with Piper's training code and seeded random
//! weights, exports them as Piper does and records onnxruntime's audio at zero noise. Here
//! wick must give the same number of samples and the same waveform at 30 dB SNR or better,
//! for two speakers of the multi-speaker voice and for the high voice; choose speakers by
//! id and by name; and refuse speakers and voice files that do not fit.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use sha2::{Digest, Sha256};
use wick::tts::voice::{SpeakerChoice, SynthOptions, Voice, VoiceError};

const MIN_SNR_DB: f64 = 30.0;
const MULTI: &str = "synthetic-multi-medium";
const HIGH: &str = "synthetic-high";

/// The generated voices and their manifest; fails (never skips) with how to make them.
fn reference_dir() -> &'static (PathBuf, serde_json::Value) {
    static DIR: OnceLock<(PathBuf, serde_json::Value)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("WICK_PIPER_REFERENCE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| common::repo_root().join("target/piper-reference"));
        let manifest = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
            panic!(
                "{}: {e}\nbuild the synthetic Piper voices with `make piper-reference` (python3-venv and PyPI access; about 5.5 GB of packages once)",
                manifest.display()
            )
        });
        (dir, serde_json::from_str(&text).expect("manifest.json is JSON"))
    })
}

fn voice_entry(name: &str) -> &'static serde_json::Value {
    let (_, manifest) = reference_dir();
    manifest["voices"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("the piper reference manifest has no voice {name}; run `make piper-reference` again"))
}

fn voice_json(name: &str) -> PathBuf {
    reference_dir().0.join(format!("{name}.onnx.json"))
}

fn voice(name: &str) -> &'static Voice {
    static VOICES: OnceLock<std::sync::Mutex<Vec<(String, &'static Voice)>>> = OnceLock::new();
    let mut loaded = VOICES.get_or_init(Default::default).lock().unwrap();
    if let Some((_, v)) = loaded.iter().find(|(n, _)| n == name) {
        return v;
    }
    let onnx = reference_dir().0.join(format!("{name}.onnx"));
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&onnx).unwrap()));
    assert_eq!(
        Some(sha.as_str()),
        voice_entry(name)["onnx_sha256"].as_str(),
        "{} changed since its reference was made; run `make piper-reference` again",
        onnx.display()
    );
    let v: &'static Voice =
        Box::leak(Box::new(Voice::load(&voice_json(name), &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"))));
    loaded.push((name.to_string(), v));
    v
}

fn deterministic(speaker: Option<i64>) -> SynthOptions {
    SynthOptions { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0, speaker, seed: 0 }
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Every case of voice `name`: wick's audio against onnxruntime's.
fn check_parity(name: &str) {
    let voice = voice(name);
    let entry = voice_entry(name);
    let mut failures = Vec::new();
    for case in entry["cases"].as_array().unwrap() {
        let ids: Vec<i64> = serde_json::from_value(case["phoneme_ids"].clone()).unwrap();
        let speaker = case["speaker"].as_i64();
        let reference = read_f32(&reference_dir().0.join(case["audio"].as_str().unwrap()));
        let audio = voice.synthesize(&ids, &deterministic(speaker)).unwrap();
        let label = format!("{name} speaker {speaker:?}, {} ids", ids.len());
        if audio.len() != reference.len() {
            failures.push(format!("{label}: {} samples, Piper gave {}", audio.len(), reference.len()));
            continue;
        }
        let snr = common::snr_db(&reference, &audio);
        println!("{label}: {} samples, SNR {snr:.1} dB", audio.len());
        if snr < MIN_SNR_DB {
            failures.push(format!("{label}: SNR {snr:.1} dB < {MIN_SNR_DB} dB"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_multi_speaker_voice_matches_piper_for_each_speaker() {
    assert_eq!(voice(MULTI).speakers(), 4);
    check_parity(MULTI);
    // The speakers really differ: the same ids give different audio.
    let ids: Vec<i64> = serde_json::from_value(voice_entry(MULTI)["cases"][0]["phoneme_ids"].clone()).unwrap();
    let first = voice(MULTI).synthesize(&ids, &deterministic(Some(0))).unwrap();
    let last = voice(MULTI).synthesize(&ids, &deterministic(Some(3))).unwrap();
    assert_ne!(first, last);
    // No speaker is Piper's default, speaker 0.
    assert_eq!(voice(MULTI).synthesize(&ids, &deterministic(None)).unwrap(), first);
}

#[test]
fn a_high_quality_voice_matches_piper() {
    assert_eq!(voice(HIGH).speakers(), 1);
    check_parity(HIGH);
}

#[test]
fn speakers_are_chosen_by_name_first_then_by_id() {
    let v = voice(MULTI);
    // The generator's speaker_id_map: ada 0, "3" 1, p239 2, zed 3.
    let id = |c: SpeakerChoice| v.speaker_id(Some(&c));
    assert_eq!(v.speaker_id(None).unwrap(), 0);
    assert_eq!(id(SpeakerChoice::Name("p239".into())).unwrap(), 2);
    assert_eq!(id(SpeakerChoice::Name("3".into())).unwrap(), 1, "a name that is a number is still a name");
    assert_eq!(id(SpeakerChoice::Name("2".into())).unwrap(), 2, "a number that is no name is an id");
    assert_eq!(id(SpeakerChoice::Id(3)).unwrap(), 3);

    for bad in [SpeakerChoice::Id(4), SpeakerChoice::Id(-1), SpeakerChoice::Name("nobody".into())] {
        let err = id(bad.clone()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VoiceError::UnknownSpeaker { .. }), "{bad:?}: {err:?}");
        assert!(text.contains("4 speaker(s)") && text.contains("p239"), "{bad:?}: {text}");
    }
    let err = voice(MULTI).synthesize(&[1, 0, 2], &deterministic(Some(9))).unwrap_err();
    assert!(matches!(err, VoiceError::UnknownSpeaker { .. }), "{err:?}");

    // A single-speaker voice has speaker 0 only.
    assert_eq!(voice(HIGH).speaker_id(Some(&SpeakerChoice::Id(0))).unwrap(), 0);
    let err = voice(HIGH).speaker_id(Some(&SpeakerChoice::Id(1))).unwrap_err();
    assert!(err.to_string().contains("1 speaker(s)"), "{err}");
}

/// A copy of a voice's settings, changed by `edit`, beside a link to its model.
fn edited_voice(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(voice_json(name)).unwrap()).unwrap();
    edit(&mut json);
    let path = dir.path().join(format!("{name}.onnx.json"));
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    std::os::unix::fs::symlink(reference_dir().0.join(format!("{name}.onnx")), dir.path().join(format!("{name}.onnx")))
        .unwrap();
    (dir, path)
}

#[test]
fn settings_that_do_not_fit_the_model_are_refused_naming_both_files() {
    let (_dir, json) = edited_voice(MULTI, |j| j["num_speakers"] = 1.into());
    let err = Voice::load(&json, &Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VoiceError::SpeakersMismatch { .. }), "{err:?}");
    assert!(text.contains("num_speakers 1") && text.contains("4 speaker(s)") && text.contains(MULTI), "{text}");

    let (_dir, json) = edited_voice(MULTI, |j| j["speaker_id_map"]["extra"] = 7.into());
    let text = Voice::load(&json, &Device::Cpu).unwrap_err().to_string();
    assert!(text.contains("\"extra\" to id 7"), "{text}");
}

#[test]
fn say_speaks_the_chosen_speaker_and_refuses_an_unknown_one() {
    let entry = voice_entry(MULTI);
    let case = entry["cases"].as_array().unwrap().iter().find(|c| c["speaker"] == 3).expect("a case for speaker 3");
    let ids: Vec<i64> = serde_json::from_value(case["phoneme_ids"].clone()).unwrap();
    let ids = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zed.wav");
    let say = |speaker: &str| {
        let mut cmd = common::wick();
        cmd.args(["say", "--voice"]).arg(voice_json(MULTI));
        cmd.args(["--noise-scale", "0", "--noise-w", "0", "--speaker", speaker, "--phoneme-ids", &ids, "--json", "-o"]);
        common::run(cmd.arg(&out))
    };

    let (status, stdout, stderr) = say("zed");
    assert!(status.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["voice"], "piper", "{stderr}");
    assert_eq!(json["speaker"], 3);
    assert_eq!(json["samples"], case["samples"], "speaker zed (id 3) speaks as Piper's speaker 3");

    let (status, _, stderr) = say("9");
    assert!(!status.status.success());
    assert!(stderr.contains("speaker \"9\"") && stderr.contains("4 speaker(s)"), "{stderr}");
}

#[test]
fn doctor_checks_the_configured_speaker_against_the_voice() {
    let doctor_with = |voice: &Path, speaker: &str| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("wick.toml");
        std::fs::write(&config, format!("[tts]\nvoice = {:?}\nspeaker = {speaker}\n", voice.display().to_string()))
            .unwrap();
        let (_, stdout, _) = common::run(common::wick().arg("--config").arg(&config).args(["doctor"]));
        stdout
    };
    let doctor = |speaker: &str| doctor_with(&voice_json(MULTI), speaker);
    let good = doctor("\"p239\"");
    assert!(good.lines().any(|l| l.starts_with("ok") && l.contains("speaker 2 of the voice's 4")), "{good}");
    // tts.voice may name the .onnx instead of its .onnx.json: the same voice, the same weights.
    let by_onnx = doctor_with(&reference_dir().0.join(format!("{MULTI}.onnx")), "\"p239\"");
    for report in [&good, &by_onnx] {
        assert!(report.contains("voice weights 77 MB"), "{report}");
    }
    assert!(by_onnx.contains("speaker 2 of the voice's 4"), "{by_onnx}");
    let bad = doctor("\"p240\"");
    let line = bad.lines().find(|l| l.contains("tts.speaker")).unwrap_or_else(|| panic!("{bad}"));
    assert!(line.starts_with("WARN") && line.contains("\"p240\"") && line.contains("p239"), "{bad}");
}
