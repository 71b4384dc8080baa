//! The language model on the real test GGUF (SmolLM2-135M-Instruct Q4_1): greedy parity with
//! llama.cpp's reference outputs, and clear errors for bad files.

mod common;

use std::path::PathBuf;

use candle_core::Device;
use wick::llm::{GgufFile, LlmError};

fn gguf() -> PathBuf {
    common::pulled().join("test/llm/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn reference() -> serde_json::Value {
    let path = common::shared_dir().join("reference/llm/smollm2-135m-q4_1.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The strict rule for wick's own CPU path: it may pick another token than llama.cpp
/// only where llama.cpp's top-1 minus top-2 margin is below this. It holds because that path
/// computes the same bits on every CPU with AVX2: each repacked kernel and attention kernel is
/// held to its portable version's bits (the kernels' tests), and on the shared reference they
/// pick llama.cpp's token at every one of the 115 steps. `make test-x86-cpus` runs this test
/// as a Haswell (AVX2, no AVX-512) and as a Nehalem (no AVX2: weights in GGUF blocks, other
/// kernels), which departs once, where llama.cpp's margin is 0.009; `make test-aarch64` runs it
/// for the Jetson's aarch64 build, whose margins differ from x86-64's (Candle's own code sums
/// in other orders there) and which picks llama.cpp's token at every step too. A change that
/// sums floats in another order can flip a step whose margin is below [`FLOAT_ORDER_NOISE`];
/// that shows here, and the way out is an order closer to llama.cpp's, not a wider rule.
const STRICT_NEAR_TIE: f64 = 0.05;
/// How far apart two correct engines' top-1 minus top-2 margins can be on this model. Measured:
/// wick's repacked Q4_1 kernel and its GGUF-block kernel compute the same integer products and
/// differ only in the order of float sums (1e-6 relative per dot product), yet their margins
/// differ by up to 0.64 (mean 0.15) over the 115 reference steps: a tiny difference flips
/// the rounding of a few activations when they are quantized to 8 bits for the next layer,
/// and that grows over 30 layers. So a step whose margin is below this may go either way.
/// llama.cpp behaves the same: the reference is bit-for-bit what its AVX2 build gives, and the
/// same commit built for AVX-512 picks another token at margins up to 0.26 and moves margins by
/// 0.10 on average, 0.41 at most (`make llm-parity-spread`). The GPU's half-precision attention
/// is held to this rule: its f16 products are further from llama.cpp's f32 sums.
const FLOAT_ORDER_NOISE: f64 = 0.65;
/// The mean distance of wick's margins from llama.cpp's that a correct engine stays under
/// (measured 0.13 against llama.cpp, and 0.15 between two of wick's own summation orders); a
/// wrong kernel, rotary table or attention detail moves every step and shows here first.
const MEAN_MARGIN_GAP: f64 = 0.2;

/// Teacher-forced: each step is fed llama.cpp's token, so every step of every case is
/// compared, not only the steps before the first disagreement.
#[test]
fn greedy_decoding_matches_llama_cpp() {
    let device = common::device();
    // A GPU (WICK_DEVICE) computes its attention in f16 and its matmuls with Candle's CUDA
    // kernels: the looser rule, as for its attention on the CPU below.
    let near_tie = if device.is_cpu() { STRICT_NEAR_TIE } else { FLOAT_ORDER_NOISE };
    let model = GgufFile::open(&gguf()).unwrap().load_model(2048, &device).unwrap();
    teacher_forced_against_llama_cpp(model, "wick", near_tie);
}

/// The attention as it runs on a GPU (f16 cache and products, f32 mask and softmax), here on
/// the CPU: the CUDA device runs this code, and a dtype that does not fit fails here rather
/// than on the device. It stays as close to llama.cpp, whose own cache is f16, as the CPU's
/// attention does.
#[test]
fn the_gpus_half_precision_attention_matches_llama_cpp_on_the_cpu() {
    let mut model = GgufFile::open(&gguf()).unwrap().load_model(2048, &Device::Cpu).unwrap();
    model.set_attention_dtype(candle_core::DType::F16);
    teacher_forced_against_llama_cpp(model, "wick with f16 attention", FLOAT_ORDER_NOISE);
}

/// Feeds every reference case through `model` (the prompt at once, then llama.cpp's tokens
/// one by one) and checks that it picks llama.cpp's token wherever llama.cpp's margin is at
/// least `near_tie`, and that its margins stay near llama.cpp's on average.
fn teacher_forced_against_llama_cpp(mut model: wick::llm::Llama, label: &str, near_tie: f64) {
    let reference = reference();
    let (mut gaps, mut disagreements, mut close_calls) = (Vec::new(), Vec::new(), 0);
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want = ids(&case["greedy_ids"]);
        let margins: Vec<f64> =
            case["top1_minus_top2_logit"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        model.reset();
        let mut logits = model.forward(&ids(&case["prompt_ids"])).unwrap();
        for (step, &expected) in want.iter().enumerate() {
            let v: Vec<f32> = logits.to_vec1().unwrap();
            // llama.cpp's token's lead over every other token: its margin when it is wick's
            // pick too, negative when wick picks another.
            let best_other =
                v.iter().enumerate().filter(|&(i, _)| i as u32 != expected).map(|(_, &l)| l).fold(f32::MIN, f32::max);
            let lead = (v[expected as usize] - best_other) as f64;
            gaps.push((lead - margins[step]).abs());
            if lead < 0.0 {
                let line = format!("{name} step {step}: llama.cpp's margin {:.4}, {label}'s {lead:.4}", margins[step]);
                eprintln!("{line}");
                if margins[step] >= near_tie {
                    disagreements.push(line);
                } else {
                    close_calls += 1;
                }
            }
            logits = model.forward(&[expected]).unwrap();
        }
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let max = gaps.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "{label}, {} steps: llama.cpp's token at all but {close_calls}, all of them closer than {near_tie}; \
         margins differ by {mean:.3} on average, {max:.3} at most",
        gaps.len()
    );
    assert!(disagreements.is_empty(), "{label} picks another token where llama.cpp is sure: {disagreements:#?}");
    assert!(
        mean <= MEAN_MARGIN_GAP,
        "{label}'s margins are {mean:.3} from llama.cpp's on average (at most {MEAN_MARGIN_GAP})"
    );
}

#[test]
fn bad_model_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gguf()).unwrap();

    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = GgufFile::open(&truncated).err().expect("a truncated file must not open");
    assert!(matches!(e, LlmError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated.gguf") && e.to_string().contains("truncated"), "{e}");

    let header_only = tmp.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..100]).unwrap();
    let e = GgufFile::open(&header_only).err().unwrap().to_string();
    assert!(e.contains("header.gguf"), "{e}");

    let not_gguf = tmp.path().join("notes.gguf");
    std::fs::write(&not_gguf, "hello").unwrap();
    let e = GgufFile::open(&not_gguf).err().unwrap().to_string();
    assert!(e.contains("notes.gguf") && e.contains("not a GGUF"), "{e}");

    // The same tensors under another architecture's name.
    use candle_core::quantized::gguf_file::{self, Value};
    let mut f = std::fs::File::open(gguf()).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let arch = Value::String("gpt2".into());
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), if k == "general.architecture" { &arch } else { v }))
        .collect();
    let norm = content.tensor(&mut f, "output_norm.weight", &Device::Cpu).unwrap();
    let other = tmp.path().join("gpt2.gguf");
    let mut out = std::fs::File::create(&other).unwrap();
    gguf_file::write(&mut out, &metadata, &[("output_norm.weight", &norm)]).unwrap();
    drop(out);
    let e = GgufFile::open(&other).err().unwrap();
    assert!(matches!(&e, LlmError::Architecture { arch, .. } if arch == "gpt2"), "{e}");
    assert!(e.to_string().contains("gpt2.gguf"), "{e}");

    let e = GgufFile::open(&tmp.path().join("missing.gguf")).err().unwrap().to_string();
    assert!(e.contains("missing.gguf") && e.contains("wick models pull"), "{e}");
}

fn engine(context: usize) -> wick::llm::engine::Engine {
    wick::llm::engine::Engine::open(&gguf(), context, &common::device()).unwrap()
}

fn greedy(max_tokens: usize) -> wick::llm::engine::GenerateOptions {
    wick::llm::engine::GenerateOptions { max_tokens, sampling: wick::llm::sampling::SamplingOptions::greedy() }
}

#[test]
fn rendered_prompts_match_llama_cpp_ids_and_stream_the_answer() {
    use wick::llm::engine::Conversation;
    let reference = reference();
    let mut engine = engine(2048);
    for case in reference["cases"].as_array().unwrap() {
        let messages = case["messages"].as_array().unwrap();
        let text = |m: &serde_json::Value| m["content"].as_str().unwrap().to_string();
        let system = messages.iter().find(|m| m["role"] == "system").map(text).unwrap_or_default();
        let rest: Vec<&serde_json::Value> = messages.iter().filter(|m| m["role"] != "system").collect();
        let (last, history) = rest.split_last().unwrap();
        let turns = history.chunks(2).map(|p| (text(p[0]), text(p[1]))).collect();
        let mut conv = Conversation::with_history(system, turns);
        let mut streamed = String::new();
        let reply = engine.reply(&mut conv, &text(last), &greedy(8), &mut |d| streamed.push_str(d), &|| false).unwrap();
        assert_eq!(reply.prompt_ids, ids(&case["prompt_ids"]), "{}", case["name"]);
        assert_eq!(reply.prefill_tokens, reply.prompt_ids.len());
        assert_eq!(streamed, reply.text);
        let want = ids(&case["greedy_ids"]);
        assert_eq!(reply.gen_ids[0], want[0], "{}: first token", case["name"]);
    }
}

#[test]
fn a_second_turn_reuses_the_cache_and_remembers_the_first() {
    use wick::llm::engine::Conversation;
    let mut engine = engine(2048);
    let mut conv = Conversation::new("You are a helpful assistant. Answer in one short sentence.");
    let first = engine.reply(&mut conv, "What is the capital of France?", &greedy(40), &mut |_| {}, &|| false).unwrap();
    // "That city" only means Paris through the first turn.
    let second =
        engine.reply(&mut conv, "What is the population of that city?", &greedy(20), &mut |_| {}, &|| false).unwrap();
    eprintln!(
        "turn 1: {:?}\nturn 2: {:?} (prefilled {} of {} tokens)",
        first.text,
        second.text,
        second.prefill_tokens,
        second.prompt_ids.len()
    );
    // Only the new turn was run through the model: the previous answer's last token plus the
    // user message and the assistant prompt.
    let new_turn = engine
        .tokenizer
        .encode("\n<|im_start|>user\nWhat is the population of that city?<|im_end|>\n<|im_start|>assistant\n", true)
        .unwrap();
    assert_eq!(second.prefill_tokens, new_turn.len() + 1);
    assert_eq!(second.prompt_ids.len(), first.prompt_ids.len() + first.gen_ids.len() + new_turn.len());
    assert!(second.prompt_ids.starts_with(&first.prompt_ids));
    assert!(first.finished && first.text.contains("Paris"), "{:?}", first.text);
    assert!(second.text.contains("Paris"), "the answer should use the first turn: {:?}", second.text);
}

#[test]
fn an_idle_conversation_is_forgotten_before_the_next_turn() {
    use std::time::Duration;
    use wick::llm::engine::Conversation;
    let mut engine = engine(2048);
    // A zero idle time: any pause between turns is too long, so every turn starts over.
    let mut conv = Conversation::new("You are a helpful assistant.").with_idle_reset(Some(Duration::ZERO));
    engine.reply(&mut conv, "What is the capital of France?", &greedy(12), &mut |_| {}, &|| false).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let second = engine.reply(&mut conv, "Say hello.", &greedy(4), &mut |_| {}, &|| false).unwrap();
    let fresh = engine
        .reply(&mut Conversation::new("You are a helpful assistant."), "Say hello.", &greedy(4), &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(second.prompt_ids, fresh.prompt_ids, "the first turn should be gone from the prompt");
    assert_eq!(second.prefill_tokens, second.prompt_ids.len(), "a fresh conversation prefills everything");
    assert_eq!(conv.turns.len(), 1);
}

#[test]
fn the_system_prompt_prefilled_at_start_leaves_the_first_turn_only_its_message() {
    use wick::llm::engine::Conversation;
    let mut engine = engine(2048);
    let system = "You are a helpful assistant.";
    let mut conv = Conversation::new(system);
    let opening = engine.prefill_opening(&mut conv).unwrap();
    assert!(opening > 5, "the system message is several tokens: {opening}");
    assert_eq!(engine.prefill_opening(&mut conv).unwrap(), 0, "prefilled once");
    let warm = engine.reply(&mut conv, "Say hello.", &greedy(4), &mut |_| {}, &|| false).unwrap();
    let cold = engine.reply(&mut Conversation::new(system), "Say hello.", &greedy(4), &mut |_| {}, &|| false).unwrap();
    assert_eq!(warm.prompt_ids, cold.prompt_ids, "the same prompt as without the early prefill");
    assert_eq!(warm.prefill_tokens, cold.prefill_tokens - opening);
    assert!(!warm.text.trim().is_empty());
    // The conversation goes on as usual.
    let next = engine.reply(&mut conv, "Thanks.", &greedy(4), &mut |_| {}, &|| false).unwrap();
    assert!(next.prompt_ids.starts_with(&warm.prompt_ids));
}

#[test]
fn cancel_stops_generation_and_long_prompts_are_refused() {
    use std::cell::Cell;
    use wick::llm::engine::Conversation;
    use wick::llm::LlmError;
    let mut engine = engine(128);
    let mut conv = Conversation::new("");
    let produced = Cell::new(0);
    let reply = engine
        .reply(&mut conv, "Count from one to fifty.", &greedy(100), &mut |_| produced.set(produced.get() + 1), &|| {
            produced.get() >= 3
        })
        .unwrap();
    assert!(!reply.finished);
    assert!(reply.gen_ids.len() <= 4, "generation went on after the cancel: {:?}", reply.gen_ids);
    // The cancelled turn stays usable: the next one answers.
    let next = engine.reply(&mut conv, "Say hello.", &greedy(10), &mut |_| {}, &|| false).unwrap();
    assert!(!next.gen_ids.is_empty());

    let long = "word ".repeat(400);
    let e = engine.reply(&mut Conversation::new(""), &long, &greedy(10), &mut |_| {}, &|| false).unwrap_err();
    assert!(matches!(e, LlmError::PromptTooLong { context: 128, .. }), "{e}");
    assert!(e.to_string().contains("context"), "{e}");
}

#[test]
fn a_cancel_during_a_long_prefill_stops_it_between_chunks() {
    use std::cell::Cell;
    use wick::llm::engine::{Conversation, PREFILL_CHUNK};
    let mut engine = engine(2048);
    let mut conv = Conversation::new("You are a helpful assistant.");
    // A prompt of several chunks; the cancel comes while the first is being run.
    let long = format!("{} Say hello.", "Here is some text to read first. ".repeat(60));
    let asked = Cell::new(0);
    let reply = engine
        .reply(&mut conv, &long, &greedy(10), &mut |_| {}, &|| {
            asked.set(asked.get() + 1);
            true
        })
        .unwrap();
    assert!(reply.gen_ids.is_empty(), "{:?}", reply.gen_ids);
    assert_eq!(reply.prefill_tokens, PREFILL_CHUNK, "the prefill stopped after its first chunk");
    assert_eq!(asked.get(), 1);
    // The conversation is still usable: the next turn answers and the long one was forgotten.
    let next = engine.reply(&mut conv, "Say hello.", &greedy(10), &mut |_| {}, &|| false).unwrap();
    assert!(!next.gen_ids.is_empty());
    assert!(next.prefill_tokens < PREFILL_CHUNK, "{}", next.prefill_tokens);
}

#[test]
fn chat_command_prints_reference_prompt_ids_and_refuses_bad_text() {
    use std::os::unix::ffi::OsStrExt;
    let reference = reference();
    let case = reference["cases"].as_array().unwrap().iter().find(|c| c["name"] == "two_turns").unwrap();
    let messages = case["messages"].as_array().unwrap();
    let text = |m: &serde_json::Value| m["content"].as_str().unwrap().to_string();
    let mut cmd = common::wick();
    cmd.args(["chat", "--greedy", "--json", "--ids", "--max-tokens", "8"]);
    cmd.arg("--system").arg(text(&messages[0]));
    for pair in messages[1..messages.len() - 1].chunks(2) {
        cmd.arg("--history").arg(text(&pair[0])).arg(text(&pair[1]));
    }
    cmd.arg("--prompt").arg(text(&messages[messages.len() - 1]));
    let (out, stdout, stderr) = common::run(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(ids(&v["prompt_ids"]), ids(&case["prompt_ids"]));
    assert_eq!(v["prompt_tokens"].as_u64().unwrap() as usize, ids(&case["prompt_ids"]).len());
    let gen = ids(&v["gen_ids"]);
    assert_eq!(gen.len(), v["gen_tokens"].as_u64().unwrap() as usize);
    assert!(ids(&case["greedy_ids"]).starts_with(&gen[..gen.len().min(8)]), "{stdout}");
    for key in ["load_s", "prefill_s", "first_token_s", "decode_tok_s"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {stdout}");
    }

    let (out, _, stderr) =
        common::run(common::wick().args(["chat", "--prompt"]).arg(std::ffi::OsStr::from_bytes(b"caf\xe9?")));
    assert!(!out.status.success());
    assert!(stderr.contains("--prompt is not valid UTF-8"), "{stderr}");
}

#[test]
fn bench_llm_reports_speed_and_memory() {
    let (out, stdout, stderr) =
        common::run(common::wick().args(["bench", "llm", "--json", "--prompt-tokens", "16", "--gen-tokens", "4"]));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["model"].as_str().unwrap().ends_with(".gguf"));
    assert_eq!((v["prompt_tokens"].as_u64(), v["gen_tokens"].as_u64()), (Some(16), Some(4)));
    for key in ["load_s", "prompt_tok_s", "gen_tok_s", "answer_50_s", "peak_rss_mb"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {stdout}");
    }
    let (out, _, stderr) = common::run(common::wick().args(["bench", "llm", "--synthetic", "llama-9b"]));
    assert!(!out.status.success());
    assert!(stderr.contains("llama-3.2-3b-q4_k_m"), "{stderr}");
}

#[test]
fn chat_without_prompt_holds_a_conversation_on_stdin() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = common::wick()
        .args(["chat", "--greedy", "--max-tokens", "12", "--system", "Answer in one short sentence."])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nWhat is the population of that city?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(answers.len(), 2, "one streamed answer per line: {stdout:?}");
    assert!(answers.iter().all(|a| a.contains("Paris")), "{stdout:?}");
}

#[test]
fn a_full_context_drops_old_turns_down_to_half_so_later_turns_continue() {
    use wick::llm::engine::Conversation;
    let mut engine = engine(256);
    let mut conv = Conversation::new("You are a helpful assistant.");
    let mut restarted_at = None;
    for turn in 0..60 {
        let r = engine.reply(&mut conv, "Say hello to me.", &greedy(8), &mut |_| {}, &|| false).unwrap();
        if let Some(at) = restarted_at {
            // The turn after a start-over continues the cache: only its own message is fed.
            assert!(r.prefill_tokens < 64, "turn {turn} after the start-over at {at} prefilled {}", r.prefill_tokens);
            return;
        }
        if turn > 0 && r.prefill_tokens == r.prompt_ids.len() {
            assert!(r.prompt_ids.len() + 8 <= 128, "the start-over kept {} tokens of 256", r.prompt_ids.len());
            restarted_at = Some(turn);
        }
    }
    panic!("the context never filled");
}
