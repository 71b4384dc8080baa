//! Putting the appliance together (`appliance::assemble`): which model set and files it picks,
//! the one compute device every engine gets, and what a wrong setting says. Runs the real
//! `test` model set on the CPU.

mod common;

use std::path::Path;

use common::{assembly, dev_clips, pulled, run, wick};
use wick::config::Config;
use wick::device::DeviceChoice;
use wick::pipeline::Speak;

fn config(toml: &str) -> Config {
    Config::parse(toml, Path::new("wick.toml")).unwrap()
}

#[test]
fn the_test_set_is_chosen_when_only_it_is_pulled_and_every_engine_loads() {
    let a = assembly(Config::default());
    let store = a.store().unwrap();
    assert_eq!(a.model_set(&store), "test");
    let set = pulled().join("test");
    assert_eq!(a.stt_dir(None).unwrap(), set.join("stt"));
    assert_eq!(a.llm_path(None).unwrap(), set.join("llm/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(a.voice_path(None).unwrap(), set.join("tts/en_US-joe-medium.onnx.json"));

    let engines = a.engines().expect("the test set loads");
    // The appliance's voice, not the fallback.
    assert_eq!(engines.voice.rate(), 22_050);
    let (clip, _) = dev_clips().into_iter().next().unwrap();
    let heard = engines.hear.transcribe(&wick::audio::load_for_stt(&clip).unwrap()).unwrap();
    assert!(!heard.text.is_empty(), "Whisper from the assembly heard nothing in {}", clip.display());
}

#[test]
fn the_device_is_opened_once_and_shared() {
    let a = assembly(Config::default());
    assert_eq!(a.device_choice(), common::device_choice());
    let first = a.device().unwrap();
    let second = a.device().unwrap();
    assert!(std::ptr::eq(first, second), "a second call opened another device");
    assert!(first.is_cpu());
}

#[test]
fn the_flag_overrides_runtime_device() {
    use wick::appliance::assemble::{Assembly, ModelsLocation};
    let c = config("[runtime]\ndevice = \"cuda:1\"\n");
    let location = ModelsLocation { dir: Some(pulled()), manifest: None };
    assert_eq!(Assembly::new(c.clone(), location.clone(), None).device_choice(), DeviceChoice::Cuda(1));
    assert_eq!(Assembly::new(c, location, Some(DeviceChoice::Cpu)).device_choice(), DeviceChoice::Cpu);
}

#[test]
fn a_configured_file_that_is_missing_names_its_key() {
    let a =
        assembly(config("[llm]\nmodel = \"/nonexistent/wick.gguf\"\n[stt]\nmodel_dir = \"/nonexistent/whisper\"\n"));
    let e = a.llm_path(None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/wick.gguf") && e.contains("(set by llm.model)"), "{e}");
    let e = a.engines().err().expect("no Whisper there").to_string();
    assert!(e.contains("/nonexistent/whisper") && e.contains("(set by stt.model_dir)"), "{e}");
    // A path given directly is the caller's to check; the loader names it.
    assert_eq!(a.llm_path(Some(Path::new("/given.gguf"))).unwrap(), Path::new("/given.gguf"));
}

#[test]
fn a_voice_that_cannot_be_found_falls_back_to_espeak_saying_why() {
    let a = assembly(config("[tts]\nvoice = \"/nonexistent/voice.onnx.json\"\n"));
    let speaker = a.speaker(None, &a.config.tts).unwrap();
    assert_eq!(speaker.engine_name(), "espeak-ng");
    let reason = speaker.fallback_reason().unwrap();
    assert!(reason.contains("/nonexistent/voice.onnx.json") && reason.contains("(set by tts.voice)"), "{reason}");
}

#[test]
fn a_set_that_is_not_pulled_says_how_to_pull_it() {
    let a = assembly(config("[models]\nset = \"default\"\n"));
    let e = wick::appliance::assemble::error_chain(&a.llm_path(None).unwrap_err());
    assert!(e.contains("set \"default\"") && e.contains("wick models pull --set default"), "{e}");
}

#[test]
fn doctor_checks_the_files_loading_would_load() {
    let a = assembly(Config::default());
    let m = a.model_paths();
    assert_eq!(m.set, "test");
    assert_eq!(m.stt.unwrap(), a.stt_dir(None).unwrap());
    assert_eq!(m.llm.unwrap(), a.llm_path(None).unwrap());
    assert_eq!(m.tts.unwrap(), a.voice_path(None).unwrap());
    let checksums = m.checksums.unwrap();
    assert!(!checksums.is_empty() && checksums.iter().all(|(_, _, problem)| problem.is_none()), "{checksums:?}");
}

#[test]
fn the_device_flag_is_checked_and_named() {
    let (clip, _) = dev_clips().into_iter().next().unwrap();
    let (out, stdout, stderr) = run(wick().args(["--device", "cpu", "transcribe"]).arg(&clip));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.trim().is_empty());

    let (out, _, stderr) = run(wick().args(["--device", "gpu", "transcribe"]).arg(&clip));
    assert!(!out.status.success());
    assert!(stderr.contains("--device") && stderr.contains("\"cpu\", \"cuda\", \"cuda:N\""), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("wick.toml");
    std::fs::write(&bad, "[runtime]\ndevice = \"tpu\"\n").unwrap();
    let (out, _, stderr) = run(wick().arg("--config").arg(&bad).arg("transcribe").arg(&clip));
    assert!(!out.status.success());
    assert!(stderr.contains("device") && stderr.contains("\"tpu\"") && stderr.contains("wick.toml"), "{stderr}");
}

/// Without the `cuda` feature, asking for CUDA is an error that says how to get it, never a
/// silent fall back to the CPU; `doctor` reports it as a failure.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_in_a_build_without_it_says_how_to_build_it() {
    let (clip, _) = dev_clips().into_iter().next().unwrap();
    let (out, _, stderr) = run(wick().args(["--device", "cuda:1", "transcribe"]).arg(&clip));
    assert!(!out.status.success());
    assert!(stderr.contains("cuda:1") && stderr.contains("--features cuda"), "{stderr}");

    let (_, stdout, _) = run(wick().args(["--device", "cuda", "doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let gpu: Vec<_> = v["findings"].as_array().unwrap().iter().filter(|f| f["area"] == "gpu").collect();
    assert_eq!(gpu.len(), 1, "{v}");
    assert_eq!(gpu[0]["level"], "fail", "{v}");
    assert!(gpu[0]["what"].as_str().unwrap().contains("--features cuda"), "{v}");
    assert_eq!(v["ok"], false);
}
