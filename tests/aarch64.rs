//! The Jetson's aarch64 binary against this machine's x86-64 one, on the same inputs and the
//! same `test` models: it runs under qemu-user (`make test-aarch64` builds it with `make cross`
//! and names it in WICK_AARCH64). The two run different SIMD code (NEON with dot products
//! against AVX2/AVX-512), so where floats are summed in another order the outputs may differ
//! in the last bits; each test says how much difference it allows, and why.
//!
//! Ignored in a plain `cargo test`: they need the cross build. `make test-aarch64` runs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{pulled, run, shared_dir, snr_db};

/// The aarch64 wick, run through qemu-user, with the same models directory as `common::wick`.
fn aarch64() -> Command {
    let bin = std::env::var_os("WICK_AARCH64").map(PathBuf::from).unwrap_or_else(|| {
        panic!("WICK_AARCH64 names no aarch64 wick: run `make test-aarch64`, which builds it with `make cross`")
    });
    assert!(bin.is_file(), "{} is missing: run `make cross`", bin.display());
    let mut c = Command::new("qemu-aarch64-static");
    c.args(["-cpu", "max"]).arg(bin).arg("--models-dir").arg(pulled()).args(["--device", "cpu"]);
    c.env_remove("WICK_MANIFEST").env_remove("RUST_LOG");
    c
}

fn x86() -> Command {
    let mut c = common::wick();
    c.args(["--device", "cpu"]);
    c
}

/// stdout of a command that must succeed.
fn output(mut cmd: Command, what: &str) -> String {
    let (out, stdout, stderr) = run(&mut cmd);
    assert!(out.status.success(), "{what} failed ({}): {stderr}", out.status);
    stdout
}

/// Whisper's greedy decoding picks each token by a margin far larger than the two
/// architectures' rounding differences: the text must be the same. One clip: under emulation
/// Whisper's encoder takes about two minutes for its 30 s window.
#[test]
#[ignore = "needs the aarch64 build: make test-aarch64"]
fn transcripts_are_the_same() {
    let clip = shared_dir().join("speech/dev/ps_librivox_ss01_0870.wav");
    let args = ["transcribe".as_ref(), clip.as_os_str()];
    let mut a = aarch64();
    a.args(args);
    let mut x = x86();
    x.args(args);
    let (ours, theirs) = (output(a, "aarch64 transcribe"), output(x, "x86-64 transcribe"));
    println!("{}\n  x86-64:  {}\n  aarch64: {}", clip.display(), theirs.trim(), ours.trim());
    assert!(!theirs.trim().is_empty(), "x86-64 heard nothing in {}", clip.display());
    assert_eq!(ours, theirs, "{}: the transcripts differ", clip.display());
}

fn say(mut cmd: Command, text: &str, out: &Path) -> Vec<f32> {
    cmd.args(["say", text, "-o"]).arg(out);
    output(cmd, "say");
    let mut reader = hound::WavReader::open(out).unwrap();
    let scale = f32::from(i16::MAX);
    reader.samples::<i16>().map(|s| f32::from(s.unwrap()) / scale).collect()
}

/// The voice: espeak-ng's phonemes are integer work and must match exactly, so the length is
/// the same. The neural vocoder's floats are summed in another order, which moves a sample
/// across a 16-bit rounding step now and then: at most one step apart, no more (measured:
/// 99 % of samples identical, SNR 87 dB).
#[test]
#[ignore = "needs the aarch64 build: make test-aarch64"]
fn speech_is_the_same_within_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let text = "The kettle is on. Ask me again in five minutes.";
    let ours = say(aarch64(), text, &dir.path().join("aarch64.wav"));
    let theirs = say(x86(), text, &dir.path().join("x86.wav"));
    assert_eq!(ours.len(), theirs.len(), "the two voices spoke for different lengths");
    let identical = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    let step = 1.0 / f32::from(i16::MAX);
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / step).fold(0.0f32, f32::max);
    let snr = snr_db(&theirs, &ours);
    println!(
        "{} samples, {identical} identical, at most {worst:.0} step apart; SNR of aarch64 against x86-64: {snr:.1} dB",
        ours.len()
    );
    assert!(worst <= 1.5, "samples differ by {worst:.1} 16-bit steps: more than rounding");
    assert!(identical * 10 >= ours.len() * 9, "only {identical} of {} samples are identical", ours.len());
}

struct Greedy {
    prompt_ids: Vec<u32>,
    gen_ids: Vec<u32>,
    text: String,
}

fn greedy(mut cmd: Command, prompt: &str) -> Greedy {
    cmd.args(["chat", "--greedy", "--json", "--ids", "--max-tokens", "24", "--prompt", prompt]);
    let v: serde_json::Value = serde_json::from_str(output(cmd, "chat").trim()).expect("chat --json prints JSON");
    let ids = |key: &str| -> Vec<u32> {
        v[key].as_array().unwrap_or_else(|| panic!("no {key}")).iter().map(|i| i.as_u64().unwrap() as u32).collect()
    };
    Greedy {
        prompt_ids: ids("prompt_ids"),
        gen_ids: ids("gen_ids"),
        text: v["text"].as_str().unwrap_or_default().into(),
    }
}

/// How close x86-64's own top two logits may be where the two builds pick differently. The
/// language model's activations are quantized to 8 bits before each matmul: where the two
/// builds' floats differ in the last bits (other SIMD, other summation order), a value near a
/// rounding boundary lands on the next step, and over 30 layers that moves logits. Measured
/// on x86-64 alone, between two of wick's Q4_1 kernels that differ only in the order of float
/// sums: top-two margins up to 0.64 apart (tests/llm.rs, `FLOAT_ORDER_NOISE`). Picks within
/// that of each other are both right; a larger gap is a kernel bug on one side.
const CROSS_NEAR_TIE: f32 = 0.65;

/// The language model, greedy: the same rendered prompt (tokenizer and chat template), then
/// the same tokens until, at most, a step where x86-64 itself saw a near-tie.
#[test]
#[ignore = "needs the aarch64 build: make test-aarch64"]
fn greedy_answers_are_the_same_up_to_near_ties() {
    let gguf = pulled().join("test/llm/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut model = wick::llm::GgufFile::open(&gguf).unwrap().load_model(512, &candle_core::Device::Cpu).unwrap();
    for prompt in ["What is the capital of France?", "Name three colours of the rainbow."] {
        let ours = greedy(aarch64(), prompt);
        let theirs = greedy(x86(), prompt);
        println!("{prompt}\n  x86-64:  {:?}\n  aarch64: {:?}", theirs.text, ours.text);
        assert_eq!(ours.prompt_ids, theirs.prompt_ids, "{prompt:?}: the rendered prompts differ");
        let Some(step) = ours.gen_ids.iter().zip(&theirs.gen_ids).position(|(a, b)| a != b) else {
            assert_eq!(ours.gen_ids, theirs.gen_ids, "{prompt:?}: one answer is a prefix of the other");
            println!("  the same {} tokens", ours.gen_ids.len());
            continue;
        };
        // x86-64's logits at the step where the two part.
        model.reset();
        let context: Vec<u32> = theirs.prompt_ids.iter().chain(&theirs.gen_ids[..step]).copied().collect();
        let logits: Vec<f32> = model.forward(&context).unwrap().to_vec1().unwrap();
        let (x, a) = (theirs.gen_ids[step] as usize, ours.gen_ids[step] as usize);
        let margin = logits[x] - logits[a];
        println!(
            "  parted at step {step}: x86-64 picks {x} ({:.3}), aarch64 {a} ({:.3}): margin {margin:.3}",
            logits[x], logits[a]
        );
        assert!(
            margin < CROSS_NEAR_TIE,
            "{prompt:?}: aarch64 parted from x86-64 at step {step} where x86-64 saw no near-tie ({margin:.3} ≥ {CROSS_NEAR_TIE})"
        );
    }
}
