//! The LLM tokenizer against llama.cpp: SmolLM2's prompt ids must equal the ones llama.cpp
//! produced for the shared reference prompts, Llama 3's `llama-bpe` split must group digits
//! and contractions as Llama 3 does, streaming must never cut a character, and broken metadata
//! must say which key is wrong.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
use wick::llm::tokenizer::{LlmTokenizer, TokenizerError};

fn gguf_path() -> PathBuf {
    common::pulled().join("test/llm/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn smollm_content() -> Content {
    let path = gguf_path();
    let mut file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Content::read(&mut file).expect("SmolLM2 GGUF header")
}

fn smollm() -> LlmTokenizer {
    LlmTokenizer::load(&gguf_path(), &smollm_content()).expect("SmolLM2 tokenizer")
}

/// (name, prompt_text, prompt_ids) of every reference case.
fn reference_cases() -> Vec<(String, String, Vec<u32>)> {
    let path = common::shared_dir().join("reference/llm/smollm2-135m-q4_1.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = json["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    cases
        .iter()
        .map(|c| {
            let ids = c["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            (c["name"].as_str().unwrap_or("?").to_string(), c["prompt_text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

#[test]
fn smollm2_prompts_tokenize_like_llama_cpp() {
    // Shared by the pipeline's threads.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LlmTokenizer>();
    let tok = smollm();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos, Some(1));
    assert_eq!(tok.eos, 2);
    assert!(!tok.add_bos);
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    let cases = reference_cases();
    assert_eq!(cases.len(), 6);
    for (name, text, ids) in &cases {
        let got = tok.encode(text, true).unwrap();
        assert_eq!(&got, ids, "case {name}: ids differ from llama.cpp's for {text:?}");
        assert_eq!(&tok.decode(ids), text, "case {name}: decode does not give the prompt back");
    }
}

#[test]
fn special_tokens_are_text_unless_parsed() {
    let tok = smollm();
    let text = "<|im_start|>user\nhi<|im_end|>";
    let parsed = tok.encode(text, true).unwrap();
    assert_eq!(parsed.first(), Some(&1));
    assert_eq!(parsed.last(), Some(&2));
    let literal = tok.encode(text, false).unwrap();
    assert!(!literal.contains(&1) && !literal.contains(&2), "markers matched without parse_special: {literal:?}");
    assert!(literal.len() > parsed.len());
    assert_eq!(tok.decode(&literal), text);
    assert_eq!(tok.decode(&parsed), text);
    // Never a BOS in front, even for empty text.
    assert!(tok.encode("", true).unwrap().is_empty());
    assert_ne!(tok.encode("Hello", true).unwrap()[0], 1);
}

#[test]
fn smollm_splits_every_digit() {
    let tok = smollm();
    assert_eq!(tok.pre_tokenize("12345").unwrap(), ["1", "2", "3", "4", "5"]);
    let ids = tok.encode("12345", false).unwrap();
    let pieces: Vec<String> = ids.iter().map(|&id| tok.decode(&[id])).collect();
    assert_eq!(pieces, ["1", "2", "3", "4", "5"]);
    // A space before a number stays its own piece (llama.cpp gives " 2024" as 216, 34, 32, 34, 36).
    assert_eq!(tok.pre_tokenize("in 2024").unwrap(), ["in", " ", "2", "0", "2", "4"]);
}

/// A GGUF metadata map for a tiny byte-level vocabulary: the 256 byte characters, a few
/// merged tokens, and two control tokens.
fn synthetic(pre: Option<&str>) -> Content {
    let mut tokens: Vec<String> = byte_level_alphabet().into_iter().map(String::from).collect();
    // "3 4" comes first so that any split letting 3 and 4 meet gives a different result.
    for t in ["34", "12", "123", "45"] {
        tokens.push(t.into());
    }
    let merges = ["3 4", "1 2", "12 3", "4 5"];
    let mut types = vec![1i32; tokens.len()];
    tokens.push("<|begin_of_text|>".into());
    types.push(3);
    tokens.push("<|eot_id|>".into());
    types.push(3);
    let n = tokens.len() as u32;
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    if let Some(pre) = pre {
        md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
    }
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::String).collect()));
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect()));
    md.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(merges.iter().map(|m| Value::String((*m).into())).collect()),
    );
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(n - 2));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(n - 1));
    Content { magic: VersionedMagic::GgufV3, metadata: md, tensor_infos: HashMap::new(), tensor_data_offset: 0 }
}

/// GPT-2's byte-to-character table, written out independently of the module under test.
fn byte_level_alphabet() -> Vec<char> {
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b)
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

fn pieces(tok: &LlmTokenizer, text: &str) -> Vec<String> {
    tok.encode(text, false).unwrap().iter().map(|&id| tok.decode(&[id])).collect()
}

#[test]
fn llama_bpe_groups_digits_in_threes_and_splits_contractions() {
    let tok = LlmTokenizer::from_gguf_metadata(&synthetic(Some("llama-bpe"))).unwrap();
    assert!(tok.add_bos, "llama.cpp adds BOS for llama-bpe unless the file says otherwise");
    assert_eq!(tok.pre_tokenize("12345").unwrap(), ["123", "45"]);
    assert_eq!(tok.pre_tokenize("1234567").unwrap(), ["123", "456", "7"]);
    assert_eq!(tok.pre_tokenize("I'm don't").unwrap(), ["I", "'m", " don", "'t"]);
    assert_eq!(tok.pre_tokenize("DON'T").unwrap(), ["DON", "'T"]);
    assert_eq!(tok.pre_tokenize("They'RE we'Ll").unwrap(), ["They", "'RE", " we", "'Ll"]);
    // A letter run takes one leading non-letter; newlines gather; trailing space stays apart.
    assert_eq!(tok.pre_tokenize("(hi)\n\nok  ").unwrap(), ["(hi", ")\n\n", "ok", "  "]);
    // Through BPE: the "3 4" merge must not fire across the 123|45 boundary.
    assert_eq!(pieces(&tok, "12345"), ["123", "45"]);
    assert_eq!(tok.encode("<|begin_of_text|>1", true).unwrap()[0], tok.bos.unwrap());
}

#[test]
fn gpt2_and_smollm_splits_differ_from_llama_bpe() {
    // The same vocabulary under GPT-2's split keeps the number whole, so "3 4" wins: this is
    // what Candle's GGUF tokenizer does to Llama 3, and why the split is chosen by name.
    let gpt2 = LlmTokenizer::from_gguf_metadata(&synthetic(Some("gpt-2"))).unwrap();
    assert_eq!(gpt2.pre_tokenize("12345").unwrap(), ["12345"]);
    assert_eq!(pieces(&gpt2, "12345"), ["12", "34", "5"]);
    assert_eq!(gpt2.pre_tokenize("DON'T").unwrap(), ["DON", "'", "T"]);
    let smol = LlmTokenizer::from_gguf_metadata(&synthetic(Some("smollm"))).unwrap();
    assert_eq!(pieces(&smol, "12345"), ["1", "2", "3", "4", "5"]);
    // No name at all: llama.cpp's default, which cuts runs of three ASCII digits.
    let default = LlmTokenizer::from_gguf_metadata(&synthetic(None)).unwrap();
    assert_eq!(default.pre_tokenize("12345").unwrap(), ["123", "45"]);
}

#[test]
fn stream_yields_whole_characters() {
    let tok = smollm();
    for text in ["naïve café 🎉", "日本語のテキスト 🎉🎉 ok", "<|im_start|>Ünïcödé — “quotes” 👍🏽<|im_end|>"]
    {
        let ids = tok.encode(text, true).unwrap();
        let mut stream = tok.stream();
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            match stream.push(id) {
                Some(delta) => {
                    assert!(!delta.is_empty());
                    assert!(!delta.contains('\u{FFFD}'), "partial character emitted in {delta:?} for {text:?}");
                    out.push_str(&delta);
                }
                None => held += 1,
            }
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
        assert_eq!(tok.decode(&ids), text);
        if text.contains('🎉') {
            assert!(held > 0, "{text:?}: no token was held back, so the test did not split a character");
        }
    }
}

#[test]
fn stream_matches_decode_on_broken_bytes() {
    let tok = smollm();
    // 'ð' is byte 0xF0 (a 4-byte lead), 'Ġ' a space: the lead byte never completes.
    let lead = tok.token_id("ð").expect("byte token for 0xF0");
    let space = tok.token_id("Ġ").expect("byte token for a space");
    let ids = [lead, space, lead];
    let mut stream = tok.stream();
    let mut out: String = ids.iter().filter_map(|&id| stream.push(id)).collect();
    out.push_str(&stream.finish());
    assert_eq!(out, "\u{FFFD} \u{FFFD}");
    assert_eq!(out, tok.decode(&ids));
    // An id outside the vocabulary is not silently dropped.
    assert_eq!(tok.decode(&[u32::MAX]), "\u{FFFD}");
}

#[test]
fn tokenizer_json_beside_the_gguf_wins() {
    let content = smollm_content();
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("model.gguf");
    // The GGUF itself is not read by `load`: only its neighbour is looked for.
    std::fs::write(dir.path().join("tokenizer.json"), "{ not json").unwrap();
    let err = LlmTokenizer::load(&gguf, &content).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    // SmolLM2's own tokenizer.json, rebuilt from the GGUF's vocabulary with the tokenizers
    // crate's Digits + ByteLevel(regex) pipeline, independently of the module's own regexes.
    write_smollm_tokenizer_json(&content, &dir.path().join("tokenizer.json"));
    let tok = LlmTokenizer::load(&gguf, &content).unwrap();
    assert!(format!("{tok:?}").contains("tokenizer.json"));
    assert_eq!((tok.bos, tok.eos), (Some(1), 2));
    for (name, text, ids) in reference_cases() {
        assert_eq!(tok.encode(&text, true).unwrap(), ids, "case {name} via tokenizer.json");
        assert_eq!(tok.decode(&ids), text);
    }
}

fn write_smollm_tokenizer_json(content: &Content, path: &std::path::Path) {
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence};
    use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};
    let strings = |key: &str| -> Vec<String> {
        content.metadata[key].to_vec().unwrap().iter().map(|v| v.to_string().unwrap().clone()).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens");
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = strings("tokenizer.ggml.merges")
        .into_iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    let mut tk = Tokenizer::new(BPE::builder().vocab_and_merges(vocab, merges).build().unwrap());
    tk.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]))));
    tk.with_decoder(Some(ByteLevel::default()));
    tk.add_special_tokens(tokens[..17].iter().map(|t| AddedToken::from(t.as_str(), true))).unwrap();
    tk.save(path, false).unwrap();
}

#[test]
fn broken_metadata_names_the_key() {
    let mut unknown = synthetic(Some("qwen2"));
    let err = LlmTokenizer::from_gguf_metadata(&unknown).unwrap_err();
    assert!(matches!(err, TokenizerError::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("tokenizer.ggml.pre") && msg.contains("qwen2"), "{msg}");

    unknown.metadata.insert("tokenizer.ggml.pre".into(), Value::String("llama-bpe".into()));
    unknown.metadata.remove("tokenizer.ggml.tokens");
    let err = LlmTokenizer::from_gguf_metadata(&unknown).unwrap_err();
    assert!(matches!(err, TokenizerError::MissingKey { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");

    let mut spm = synthetic(Some("default"));
    spm.metadata.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    let msg = LlmTokenizer::from_gguf_metadata(&spm).unwrap_err().to_string();
    assert!(msg.contains("tokenizer.ggml.model") && msg.contains("llama"), "{msg}");

    let mut no_eos = synthetic(Some("llama-bpe"));
    no_eos.metadata.remove("tokenizer.ggml.eos_token_id");
    let msg = LlmTokenizer::from_gguf_metadata(&no_eos).unwrap_err().to_string();
    assert!(msg.contains("tokenizer.ggml.eos_token_id"), "{msg}");

    let mut bad_merge = synthetic(Some("llama-bpe"));
    bad_merge.metadata.insert("tokenizer.ggml.merges".into(), Value::Array(vec![Value::String("nospace".into())]));
    let msg = LlmTokenizer::from_gguf_metadata(&bad_merge).unwrap_err().to_string();
    assert!(msg.contains("tokenizer.ggml.merges"), "{msg}");
}
