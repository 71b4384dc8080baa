//! The synthetic Llama 3.2 3B (Q4_K_M shapes, random values) on the CPU: it loads, generates,
//! and stays within its file size plus KV cache. Alone in its own test binary so that the
//! resident-memory measurement sees no other test's allocations.

mod common;

use wick::llm::GgufFile;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn synthetic_llama_3b_generates_without_an_f32_embedding_copy() {
    let spec = wick::llm::synthetic::spec("llama-3.2-3b-q4_k_m").unwrap();
    let path = common::pulled().join("synthetic").join("llama-3.2-3b-q4_k_m.gguf");
    wick::llm::synthetic::ensure(spec, &path, wick::llm::synthetic::Vocabulary::Placeholder).unwrap();
    let file_size = std::fs::metadata(&path).unwrap().len();
    let before = rss_bytes();
    let mut file = GgufFile::open(&path).unwrap();
    // The vocabulary is there for other engines (llama-bench) and has Llama 3's special ids.
    let tokenizer = wick::llm::tokenizer::LlmTokenizer::from_gguf_metadata(&file.content).unwrap();
    assert_eq!(tokenizer.vocab_size(), 128_256);
    assert_eq!(tokenizer.token_id("<|eot_id|>"), Some(128_009));
    assert_eq!(tokenizer.token_id("<|begin_of_text|>"), Some(128_000));
    let context = 256;
    let mut model = file.load_model(context, &common::device()).unwrap();
    let c = model.config.clone();
    assert_eq!((c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.vocab_size), (28, 3072, 24, 8, 128_256));
    let mut logits = model.forward(&[128_000, 9906, 11, 1917]).unwrap();
    for _ in 0..3 {
        let next = wick::llm::sampling::argmax(&logits.to_vec1::<f32>().unwrap());
        logits = model.forward(&[next]).unwrap();
    }
    assert_eq!(model.position(), 7);
    let kv_bytes = (2 * c.n_layer * c.n_kv_head * c.head_dim * context * 4) as u64;
    let used = rss_bytes().saturating_sub(before);
    eprintln!("synthetic 3B: file {file_size} bytes, KV cache {kv_bytes} bytes, resident growth {used} bytes");
    // An f32 copy of the 128256 x 3072 embedding alone would add 1.6 GB.
    assert!(
        (used as f64) <= 1.10 * (file_size + kv_bytes) as f64,
        "resident memory grew by {used} bytes for a {file_size}-byte model"
    );
}
