//! Import of CTranslate2 (faster-whisper) Whisper models into the Hugging Face
//! `transformers` layout that wick's Whisper code loads: model.safetensors,
//! config.json and tokenizer.json.
//!
//! The conversion is lossless and deterministic. Tensors keep their dtype and
//! their bytes; CTranslate2's fused projections are split by rows, which are
//! contiguous, so every output tensor is a byte range of model.bin. The outputs
//! carry no timestamps and the safetensors header is ordered by name, so the same
//! input always gives the same bytes and the result can be pinned by sha256.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::durable::{self, At, FileError, Staged};

/// Why a CTranslate2 Whisper model could not be imported. Every message names the file and
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// model.bin is truncated or not a CTranslate2 file at all.
    #[error("{path} is not a readable CTranslate2 model.bin: {reason}; the file is truncated or corrupt: fetch it again (`wick models pull`) or re-run the CTranslate2 converter")]
    Format { path: PathBuf, reason: String },

    /// model.bin uses a container version this importer does not read.
    #[error("{path}: CTranslate2 binary version {version} is not supported (versions 5 and 6 are); re-convert the model with CTranslate2 3.x or 4.x")]
    Version { path: PathBuf, version: u32 },

    /// model.bin holds some other architecture.
    #[error("{path} holds a '{spec}' model, not 'WhisperSpec'; pass the directory of a CTranslate2 Whisper model")]
    Spec { path: PathBuf, spec: String },

    /// Weights quantized to integers cannot be turned back into the original floats.
    #[error("{path}: int8 CTranslate2 models are not supported (variable {variable} is {dtype}); convert with --quantization float16 (e.g. `ct2-transformers-converter --model openai/whisper-tiny.en --quantization float16`) or use a float16/float32 model")]
    Quantized { path: PathBuf, variable: String, dtype: &'static str },

    /// model.bin is well formed, but its contents do not describe a Whisper model this
    /// importer can map losslessly.
    #[error("{path}: {reason}; this importer only maps CTranslate2 Whisper models converted from OpenAI/Hugging Face checkpoints")]
    Model { path: PathBuf, reason: String },

    /// A JSON file (CT2 config.json) could not be parsed or written.
    #[error("{path}: invalid JSON: {reason}; fetch the file again or repair it")]
    Json { path: PathBuf, reason: String },

    /// The safetensors writer refused the tensors.
    #[error("cannot write {path}: {reason}; check free space, then run the import again")]
    Safetensors { path: PathBuf, reason: String },

    #[error(transparent)]
    File(#[from] FileError),
}

/// What an import wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub binary_version: u32,
    pub spec_revision: u32,
    /// Dtype of the weights ("float16", "float32", "bfloat16").
    pub dtype: String,
    pub tensors: usize,
    pub tensor_bytes: u64,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub vocab_size: usize,
    pub files: Vec<ImportedFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportedFile {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// Converts the CTranslate2 Whisper model in `src` (model.bin, config.json,
/// tokenizer.json) into `dst`. The three outputs are staged under temporary
/// names and renamed only once all of them are complete.
pub fn import(src: &Path, dst: &Path) -> Result<ImportReport, Ct2Error> {
    let staged = stage(src, dst)?;
    staged.commit()
}

/// A finished but not yet visible import: the caller may check the hashes
/// before anything replaces files an engine loads.
pub(crate) struct StagedImport {
    report: ImportReport,
    files: Vec<(tempfile::NamedTempFile, PathBuf)>,
}

impl StagedImport {
    pub(crate) fn report(&self) -> &ImportReport {
        &self.report
    }

    /// Renames the staged files onto their final names.
    pub(crate) fn commit(self) -> Result<ImportReport, Ct2Error> {
        for (tmp, dest) in self.files {
            durable::persist(tmp, &dest)?;
        }
        Ok(self.report)
    }
}

/// Runs the conversion into temporary files in `dst`.
pub(crate) fn stage(src: &Path, dst: &Path) -> Result<StagedImport, Ct2Error> {
    let bin_path = src.join("model.bin");
    let file = File::open(&bin_path).at("open", &bin_path)?;
    // SAFETY: the map is read-only and lives only for this call; model files
    // are replaced by rename, never rewritten in place, so the bytes under the
    // map do not change while it is in use.
    let map = unsafe { memmap2::Mmap::map(&file) }.at("map", &bin_path)?;
    let model = parse(&map, &bin_path)?;

    let cfg_path = src.join("config.json");
    let cfg_text = std::fs::read(&cfg_path).at("read", &cfg_path)?;
    let ct2_cfg: serde_json::Value = serde_json::from_slice(&cfg_text)
        .map_err(|e| Ct2Error::Json { path: cfg_path.clone(), reason: e.to_string() })?;

    let mapped = map_whisper(&model, &map, &bin_path)?;
    let hf_cfg = hf_config(&mapped, &ct2_cfg, &cfg_path)?;

    std::fs::create_dir_all(dst).at("create directory", dst)?;

    // model.safetensors
    let st_dest = dst.join("model.safetensors");
    let st_tmp = durable::temp_in(dst)?;
    let views: Vec<(String, Slice<'_>)> = mapped
        .tensors
        .iter()
        .map(|(name, t)| {
            (name.clone(), Slice { dtype: t.dtype.safetensors(), shape: t.shape.clone(), data: &map[t.bytes.clone()] })
        })
        .collect();
    // transformers refuses safetensors files without this key; a single key
    // keeps the header deterministic (the metadata map has no fixed order).
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), st_tmp.path())
        .map_err(|e| Ct2Error::Safetensors { path: st_dest.clone(), reason: e.to_string() })?;
    // The writer renames its own temporary file onto our path: reopen, so the
    // handle (used for permissions and fsync) is the file that holds the data.
    let st_tmp = tempfile::NamedTempFile::from_parts(
        File::open(st_tmp.path()).at("open", st_tmp.path())?,
        st_tmp.into_temp_path(),
    );
    let st_size = std::fs::metadata(st_tmp.path()).at("inspect", st_tmp.path())?.len();
    let st_sha = durable::sha256_file(st_tmp.path(), &indicatif::ProgressBar::hidden())?;

    // config.json
    let cfg_dest = dst.join("config.json");
    let mut cfg_json = serde_json::to_vec_pretty(&hf_cfg)
        .map_err(|e| Ct2Error::Json { path: cfg_dest.clone(), reason: e.to_string() })?;
    cfg_json.push(b'\n');
    let mut cfg_stage = Staged::new(&cfg_dest)?;
    cfg_stage.write_all(&cfg_json)?;
    let cfg_sha = cfg_stage.sha256();
    let cfg_tmp = cfg_stage.into_temp();

    // tokenizer.json, unchanged.
    let tok_src = src.join("tokenizer.json");
    let tok_dest = dst.join("tokenizer.json");
    let mut tok_file = File::open(&tok_src).at("open", &tok_src)?;
    let mut tok_stage = Staged::new(&tok_dest)?;
    tok_stage.copy_from(&mut tok_file, &tok_src, &indicatif::ProgressBar::hidden())?;
    let tok_sha = tok_stage.sha256();
    let tok_size = tok_stage.written();
    let tok_tmp = tok_stage.into_temp();

    let report = ImportReport {
        src: src.to_path_buf(),
        dst: dst.to_path_buf(),
        binary_version: model.version,
        spec_revision: model.spec_revision,
        dtype: mapped.dtype.name().to_string(),
        tensors: mapped.tensors.len(),
        tensor_bytes: mapped.tensors.values().map(|t| (t.bytes.end - t.bytes.start) as u64).sum(),
        d_model: mapped.d_model,
        encoder_layers: mapped.encoder_layers,
        decoder_layers: mapped.decoder_layers,
        vocab_size: mapped.vocab_size,
        files: vec![
            ImportedFile { path: st_dest.clone(), sha256: st_sha, size: st_size },
            ImportedFile { path: cfg_dest.clone(), sha256: cfg_sha, size: cfg_json.len() as u64 },
            ImportedFile { path: tok_dest.clone(), sha256: tok_sha, size: tok_size },
        ],
    };
    Ok(StagedImport { report, files: vec![(st_tmp, st_dest), (cfg_tmp, cfg_dest), (tok_tmp, tok_dest)] })
}

struct Slice<'a> {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl safetensors::View for Slice<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

// ---------------------------------------------------------------------------
// model.bin parsing
// ---------------------------------------------------------------------------

/// Element types of CTranslate2's binary format (the numbering is its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_id(id: u8) -> Option<Dtype> {
        Some(match id {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::I8 => safetensors::Dtype::I8,
            Dtype::I16 => safetensors::Dtype::I16,
            Dtype::I32 => safetensors::Dtype::I32,
            Dtype::F16 => safetensors::Dtype::F16,
            Dtype::Bf16 => safetensors::Dtype::BF16,
        }
    }
}

/// One variable of model.bin: where its bytes lie in the file.
#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub dims: Vec<usize>,
    pub dtype: Dtype,
    pub bytes: Range<usize>,
}

#[derive(Debug)]
pub(crate) struct Ct2Model {
    pub version: u32,
    pub spec_revision: u32,
    pub vars: BTreeMap<String, Var>,
    pub aliases: Vec<(String, String)>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn truncated(&self, what: &str, need: usize) -> Ct2Error {
        Ct2Error::Format {
            path: self.path.to_path_buf(),
            reason: format!(
                "truncated: {what} needs {need} bytes at offset {}, but the file is {} bytes long",
                self.pos,
                self.data.len()
            ),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Ct2Error> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(self.truncated(what, n)),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, Ct2Error> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, Ct2Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Ct2Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u16 length (counting a trailing NUL) and the bytes.
    fn string(&mut self, what: &str) -> Result<String, Ct2Error> {
        let at = self.pos;
        let n = self.u16(what)? as usize;
        let bytes = self.take(n, what)?;
        let bad = |reason: &str| Ct2Error::Format {
            path: self.path.to_path_buf(),
            reason: format!("{what} at offset {at}: {reason}"),
        };
        let (last, body) = bytes.split_last().ok_or_else(|| bad("empty string"))?;
        if *last != 0 {
            return Err(bad("string is not NUL-terminated"));
        }
        String::from_utf8(body.to_vec()).map_err(|_| bad("string is not UTF-8"))
    }
}

/// Reads the container: header, variables, aliases. Checks sizes, not meaning.
pub(crate) fn parse(data: &[u8], path: &Path) -> Result<Ct2Model, Ct2Error> {
    let mut r = Reader { data, pos: 0, path };
    let version = r.u32("the binary version")?;
    // Text, zip or random bytes read as a huge version; calling that a version
    // problem would send the user to the wrong fix.
    if version == 0 || version > 64 {
        return Err(Ct2Error::Format {
            path: path.to_path_buf(),
            reason: format!(
                "it does not start with a CTranslate2 header (first bytes {:02x?})",
                &data[..data.len().min(8)]
            ),
        });
    }
    // Versions 5 and 6 share this layout (4 added typed variables, 3 aliases).
    if version != 5 && version != 6 {
        return Err(Ct2Error::Version { path: path.to_path_buf(), version });
    }
    let spec = r.string("the spec name")?;
    if spec != "WhisperSpec" {
        return Err(Ct2Error::Spec { path: path.to_path_buf(), spec });
    }
    let spec_revision = r.u32("the spec revision")?;
    let n_vars = r.u32("the variable count")? as usize;
    let mut vars = BTreeMap::new();
    for i in 0..n_vars {
        let name = r.string(&format!("the name of variable {i}"))?;
        let rank = r.u8(&format!("the rank of {name}"))? as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(r.u32(&format!("the shape of {name}"))? as usize);
        }
        let type_id = r.u8(&format!("the dtype of {name}"))?;
        let dtype = Dtype::from_id(type_id).ok_or_else(|| Ct2Error::Format {
            path: path.to_path_buf(),
            reason: format!("variable {name} has unknown dtype id {type_id}"),
        })?;
        let n_bytes = r.u32(&format!("the byte count of {name}"))? as usize;
        let elems = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).unwrap_or(usize::MAX);
        if elems.checked_mul(dtype.size()) != Some(n_bytes) {
            return Err(Ct2Error::Format {
                path: path.to_path_buf(),
                reason: format!("variable {name} has shape {dims:?} of {} but {n_bytes} bytes of data", dtype.name()),
            });
        }
        let start = r.pos;
        r.take(n_bytes, &format!("the data of {name}"))?;
        let var = Var { dims, dtype, bytes: start..start + n_bytes };
        if vars.insert(name.clone(), var).is_some() {
            return Err(Ct2Error::Format {
                path: path.to_path_buf(),
                reason: format!("variable {name} appears twice"),
            });
        }
    }
    let n_aliases = r.u32("the alias count")? as usize;
    let mut aliases = Vec::with_capacity(n_aliases.min(1024));
    for i in 0..n_aliases {
        let alias = r.string(&format!("alias {i}"))?;
        let target = r.string(&format!("the target of alias {alias}"))?;
        aliases.push((alias, target));
    }
    if r.pos != data.len() {
        return Err(Ct2Error::Format {
            path: path.to_path_buf(),
            reason: format!("{} unexpected bytes after the end of the model at offset {}", data.len() - r.pos, r.pos),
        });
    }
    Ok(Ct2Model { version, spec_revision, vars, aliases })
}

// ---------------------------------------------------------------------------
// CTranslate2 -> transformers names
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct OutTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

struct Mapped {
    tensors: BTreeMap<String, OutTensor>,
    dtype: Dtype,
    d_model: usize,
    num_mel_bins: usize,
    vocab_size: usize,
    encoder_layers: usize,
    decoder_layers: usize,
    encoder_heads: usize,
    decoder_heads: usize,
    encoder_ffn: usize,
    decoder_ffn: usize,
    max_source_positions: usize,
    max_target_positions: usize,
}

/// Walks the CTranslate2 variables, recording which were used, so that nothing
/// is silently dropped: a leftover variable is an error, not a lossy import.
struct Mapper<'a> {
    model: &'a Ct2Model,
    bytes: &'a [u8],
    path: &'a Path,
    used: BTreeSet<String>,
    out: BTreeMap<String, OutTensor>,
}

impl<'a> Mapper<'a> {
    fn err(&self, reason: String) -> Ct2Error {
        Ct2Error::Model { path: self.path.to_path_buf(), reason }
    }

    fn var(&mut self, name: &str) -> Result<&'a Var, Ct2Error> {
        let model: &'a Ct2Model = self.model;
        match model.vars.get(name) {
            Some(v) => {
                self.used.insert(name.to_string());
                Ok(v)
            }
            None => Err(self.err(format!("variable {name} is missing"))),
        }
    }

    fn put(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, bytes: Range<usize>) {
        self.out.insert(name, OutTensor { dtype, shape, bytes });
    }

    /// Copies a variable under a new name, checking its shape.
    fn rename(&mut self, from: &str, to: String, shape: &[usize]) -> Result<&'a Var, Ct2Error> {
        let v = self.var(from)?;
        if v.dims != shape {
            return Err(self.err(format!("variable {from} has shape {:?}, expected {shape:?}", v.dims)));
        }
        self.put(to, v.dtype, v.dims.clone(), v.bytes.clone());
        Ok(v)
    }

    /// weight [rows, cols] and bias [rows] of a linear layer.
    fn linear(&mut self, from: &str, to: &str, rows: usize, cols: usize) -> Result<(), Ct2Error> {
        self.rename(&format!("{from}/weight"), format!("{to}.weight"), &[rows, cols])?;
        self.rename(&format!("{from}/bias"), format!("{to}.bias"), &[rows])?;
        Ok(())
    }

    /// gamma/beta of a layer norm over `d` features.
    fn norm(&mut self, from: &str, to: &str, d: usize) -> Result<(), Ct2Error> {
        self.rename(&format!("{from}/gamma"), format!("{to}.weight"), &[d])?;
        self.rename(&format!("{from}/beta"), format!("{to}.bias"), &[d])?;
        Ok(())
    }

    /// Splits a fused projection of `to.len()` blocks of `d` rows into separate
    /// linears; row blocks are contiguous, so each part is a plain byte range.
    /// Whisper's key projections have no bias: CTranslate2 stores zeros there,
    /// which are checked and dropped.
    fn split(&mut self, from: &str, to: &[(String, bool)], d: usize) -> Result<(), Ct2Error> {
        let parts = to.len();
        let w_name = format!("{from}/weight");
        let b_name = format!("{from}/bias");
        let w = self.var(&w_name)?;
        let b = self.var(&b_name)?;
        if w.dims != [parts * d, d] || b.dims != [parts * d] {
            return Err(self.err(format!(
                "{w_name} has shape {:?} and {b_name} {:?}, expected [{}, {d}] and [{}]",
                w.dims,
                b.dims,
                parts * d,
                parts * d
            )));
        }
        let w_block = w.bytes.len() / parts;
        let b_block = b.bytes.len() / parts;
        for (i, (name, has_bias)) in to.iter().enumerate() {
            let wr = w.bytes.start + i * w_block..w.bytes.start + (i + 1) * w_block;
            let br = b.bytes.start + i * b_block..b.bytes.start + (i + 1) * b_block;
            self.put(format!("{name}.weight"), w.dtype, vec![d, d], wr);
            if *has_bias {
                self.put(format!("{name}.bias"), b.dtype, vec![d], br);
            } else if !all_zero(&self.bytes[br], b.dtype) {
                return Err(
                    self.err(format!("{b_name} is non-zero in the block of {name}, which has no bias in Whisper"))
                );
            }
        }
        Ok(())
    }

    /// An integer scalar (head counts, flags).
    fn scalar(&mut self, name: &str) -> Result<i64, Ct2Error> {
        let v = self.var(name)?;
        scalar_value(v, self.bytes).ok_or_else(|| {
            self.err(format!("variable {name} should be an integer scalar, found {} {:?}", v.dtype.name(), v.dims))
        })
    }

    /// A scalar that must hold `want` for Whisper's architecture.
    fn expect(&mut self, name: &str, want: i64, meaning: &str) -> Result<(), Ct2Error> {
        let got = self.scalar(name)?;
        if got != want {
            return Err(self.err(format!("{name} is {got}, but Whisper needs {want} ({meaning})")));
        }
        Ok(())
    }

    fn attention_self(&mut self, ct: &str, hf: &str, d: usize) -> Result<(), Ct2Error> {
        self.split(
            &format!("{ct}/self_attention/linear_0"),
            &[
                (format!("{hf}.self_attn.q_proj"), true),
                (format!("{hf}.self_attn.k_proj"), false),
                (format!("{hf}.self_attn.v_proj"), true),
            ],
            d,
        )?;
        self.linear(&format!("{ct}/self_attention/linear_1"), &format!("{hf}.self_attn.out_proj"), d, d)?;
        self.norm(&format!("{ct}/self_attention/layer_norm"), &format!("{hf}.self_attn_layer_norm"), d)
    }

    /// Maps the feed-forward block; returns its hidden width.
    fn ffn(&mut self, ct: &str, hf: &str, d: usize) -> Result<usize, Ct2Error> {
        let hidden = {
            let w = self.var(&format!("{ct}/ffn/linear_0/weight"))?;
            w.dims.first().copied().unwrap_or(0)
        };
        self.linear(&format!("{ct}/ffn/linear_0"), &format!("{hf}.fc1"), hidden, d)?;
        self.linear(&format!("{ct}/ffn/linear_1"), &format!("{hf}.fc2"), d, hidden)?;
        self.norm(&format!("{ct}/ffn/layer_norm"), &format!("{hf}.final_layer_norm"), d)?;
        Ok(hidden)
    }
}

fn scalar_value(v: &Var, bytes: &[u8]) -> Option<i64> {
    if !v.dims.is_empty() {
        return None;
    }
    let b = &bytes[v.bytes.clone()];
    Some(match v.dtype {
        Dtype::I8 => b[0] as i8 as i64,
        Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
        Dtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        _ => return None,
    })
}

/// True when every element is +0 or -0.
fn all_zero(bytes: &[u8], dtype: Dtype) -> bool {
    match dtype.size() {
        2 => bytes.chunks_exact(2).all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7fff == 0),
        4 => bytes.chunks_exact(4).all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7fff_ffff == 0),
        _ => bytes.iter().all(|&b| b == 0),
    }
}

/// Number of `prefix<N>/...` layers, i.e. the highest N plus one.
fn layer_count(model: &Ct2Model, prefix: &str) -> usize {
    model
        .vars
        .keys()
        .filter_map(|name| name.strip_prefix(prefix))
        .filter_map(|rest| rest.split('/').next()?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// Scalars that carry no information the Hugging Face layout needs: the
/// alignment heads moved to config.json in CTranslate2 3.x.
const INFORMATIONAL: &[&str] = &["decoder/alignment_heads", "decoder/alignment_layer"];

fn map_whisper(model: &Ct2Model, bytes: &[u8], path: &Path) -> Result<Mapped, Ct2Error> {
    // Quantized weights cannot be mapped back to the original floats. Name an
    // integer weight if there is one; a lone scale is the fallback evidence.
    let int_weight = model.vars.iter().find(|(_, v)| !v.dims.is_empty() && matches!(v.dtype, Dtype::I8 | Dtype::I16));
    let scale = model.vars.iter().find(|(n, _)| n.ends_with("_scale"));
    if let Some((name, v)) = int_weight.or(scale) {
        return Err(Ct2Error::Quantized { path: path.to_path_buf(), variable: name.clone(), dtype: v.dtype.name() });
    }
    for (name, v) in &model.vars {
        if !v.dims.is_empty() && !v.dtype.is_float() {
            return Err(Ct2Error::Model {
                path: path.to_path_buf(),
                reason: format!("variable {name} is a {} tensor", v.dtype.name()),
            });
        }
    }

    let mut m = Mapper { model, bytes, path, used: BTreeSet::new(), out: BTreeMap::new() };

    let conv1 = m.var("encoder/conv1/weight")?;
    if conv1.dims.len() != 3 || conv1.dims[2] != 3 {
        return Err(m.err(format!("encoder/conv1/weight has shape {:?}, expected [d_model, n_mels, 3]", conv1.dims)));
    }
    let (d, n_mels) = (conv1.dims[0], conv1.dims[1]);
    let dtype = conv1.dtype;

    // Encoder.
    m.rename("encoder/conv1/weight", "model.encoder.conv1.weight".into(), &[d, n_mels, 3])?;
    m.rename("encoder/conv1/bias", "model.encoder.conv1.bias".into(), &[d])?;
    m.rename("encoder/conv2/weight", "model.encoder.conv2.weight".into(), &[d, d, 3])?;
    m.rename("encoder/conv2/bias", "model.encoder.conv2.bias".into(), &[d])?;
    let src_pos = m.var("encoder/position_encodings/encodings")?.dims.clone();
    let n_src = src_pos.first().copied().unwrap_or(0);
    m.rename("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight".into(), &[n_src, d])?;
    let enc_layers = layer_count(model, "encoder/layer_");
    let mut enc_ffn = 0;
    for i in 0..enc_layers {
        let (ct, hf) = (format!("encoder/layer_{i}"), format!("model.encoder.layers.{i}"));
        m.attention_self(&ct, &hf, d)?;
        let hidden = m.ffn(&ct, &hf, d)?;
        if i > 0 && hidden != enc_ffn {
            return Err(m.err(format!("{ct} has ffn width {hidden}, layer 0 has {enc_ffn}")));
        }
        enc_ffn = hidden;
    }
    m.norm("encoder/layer_norm", "model.encoder.layer_norm", d)?;
    let enc_heads = m.scalar("encoder/num_heads")?;

    // Decoder.
    let vocab = m.var("decoder/embeddings/weight")?.dims.first().copied().unwrap_or(0);
    m.rename("decoder/embeddings/weight", "model.decoder.embed_tokens.weight".into(), &[vocab, d])?;
    let n_tgt = m.var("decoder/position_encodings/encodings")?.dims.first().copied().unwrap_or(0);
    m.rename("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight".into(), &[n_tgt, d])?;
    let dec_layers = layer_count(model, "decoder/layer_");
    let mut dec_ffn = 0;
    for i in 0..dec_layers {
        let (ct, hf) = (format!("decoder/layer_{i}"), format!("model.decoder.layers.{i}"));
        m.attention_self(&ct, &hf, d)?;
        m.linear(&format!("{ct}/attention/linear_0"), &format!("{hf}.encoder_attn.q_proj"), d, d)?;
        m.split(
            &format!("{ct}/attention/linear_1"),
            &[(format!("{hf}.encoder_attn.k_proj"), false), (format!("{hf}.encoder_attn.v_proj"), true)],
            d,
        )?;
        m.linear(&format!("{ct}/attention/linear_2"), &format!("{hf}.encoder_attn.out_proj"), d, d)?;
        m.norm(&format!("{ct}/attention/layer_norm"), &format!("{hf}.encoder_attn_layer_norm"), d)?;
        let hidden = m.ffn(&ct, &hf, d)?;
        if i > 0 && hidden != dec_ffn {
            return Err(m.err(format!("{ct} has ffn width {hidden}, layer 0 has {dec_ffn}")));
        }
        dec_ffn = hidden;
    }
    m.norm("decoder/layer_norm", "model.decoder.layer_norm", d)?;
    let dec_heads = m.scalar("decoder/num_heads")?;
    // CTranslate2's activation numbering: 3 is exact (erf) GELU.
    m.expect("decoder/activation", 3, "GELU activation")?;
    m.expect("decoder/pre_norm", 1, "pre-layer-norm blocks")?;

    // The output projection is tied to the token embedding in Whisper, as the
    // transformers layout assumes: accept it only when it really is the same.
    for (alias, target) in &model.aliases {
        if !(alias == "decoder/projection/weight" && target == "decoder/embeddings/weight") {
            return Err(m.err(format!("alias {alias} -> {target} has no Hugging Face equivalent")));
        }
    }
    if let Some(p) = model.vars.get("decoder/projection/weight") {
        let e = &model.vars["decoder/embeddings/weight"];
        if p.dims != e.dims || bytes[p.bytes.clone()] != bytes[e.bytes.clone()] {
            return Err(
                m.err("decoder/projection/weight differs from the token embedding (untied output projection)".into())
            );
        }
        m.used.insert("decoder/projection/weight".into());
    }
    if let Some(b) = model.vars.get("decoder/projection/bias") {
        if !all_zero(&bytes[b.bytes.clone()], b.dtype) {
            return Err(m.err("decoder/projection/bias is non-zero".into()));
        }
        m.used.insert("decoder/projection/bias".into());
    }

    // Remaining scalars are architecture flags; Whisper needs all of them off.
    let left: Vec<String> = model.vars.keys().filter(|k| !m.used.contains(*k)).cloned().collect();
    for name in left {
        if INFORMATIONAL.contains(&name.as_str()) {
            m.used.insert(name);
            continue;
        }
        let v = &model.vars[&name];
        if !v.dims.is_empty() {
            return Err(m.err(format!("variable {name} {:?} has no place in the Whisper layout", v.dims)));
        }
        let value = m.scalar(&name)?;
        if value != 0 {
            return Err(m.err(format!("flag {name} is {value}; Whisper has this feature off")));
        }
    }

    let heads = |h: i64, what: &str| -> Result<usize, Ct2Error> {
        match usize::try_from(h) {
            Ok(h) if h > 0 && d % h == 0 => Ok(h),
            _ => Err(Ct2Error::Model {
                path: path.to_path_buf(),
                reason: format!("{what} is {h}, which does not divide d_model {d}"),
            }),
        }
    };
    if enc_layers == 0 || dec_layers == 0 {
        return Err(m.err("the model has no encoder or decoder layers".into()));
    }
    Ok(Mapped {
        dtype,
        d_model: d,
        num_mel_bins: n_mels,
        vocab_size: vocab,
        encoder_layers: enc_layers,
        decoder_layers: dec_layers,
        encoder_heads: heads(enc_heads, "encoder/num_heads")?,
        decoder_heads: heads(dec_heads, "decoder/num_heads")?,
        encoder_ffn: enc_ffn,
        decoder_ffn: dec_ffn,
        max_source_positions: n_src,
        max_target_positions: n_tgt,
        tensors: m.out,
    })
}

// ---------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------

/// The Hugging Face Whisper config. A struct rather than a JSON map so the key
/// order is fixed whatever serde_json features other crates turn on.
#[derive(Serialize)]
struct HfConfig {
    architectures: [&'static str; 1],
    model_type: &'static str,
    vocab_size: usize,
    num_mel_bins: usize,
    d_model: usize,
    encoder_layers: usize,
    encoder_attention_heads: usize,
    decoder_layers: usize,
    decoder_attention_heads: usize,
    encoder_ffn_dim: usize,
    decoder_ffn_dim: usize,
    max_source_positions: usize,
    max_target_positions: usize,
    activation_function: &'static str,
    scale_embedding: bool,
    tie_word_embeddings: bool,
    suppress_tokens: Vec<i64>,
    begin_suppress_tokens: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alignment_heads: Option<Vec<[i64; 2]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang_ids: Option<Vec<i64>>,
    torch_dtype: &'static str,
}

fn hf_config(m: &Mapped, ct2: &serde_json::Value, path: &Path) -> Result<HfConfig, Ct2Error> {
    let bad = |reason: String| Ct2Error::Json { path: path.to_path_buf(), reason };
    let ints = |key: &str, required: bool| -> Result<Option<Vec<i64>>, Ct2Error> {
        match ct2.get(key) {
            None | Some(serde_json::Value::Null) if !required => Ok(None),
            None | Some(serde_json::Value::Null) => Err(bad(format!("key \"{key}\" is missing"))),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_i64()).collect::<Option<Vec<_>>>())
                .map(Some)
                .ok_or_else(|| bad(format!("\"{key}\" is not a list of integers"))),
        }
    };
    let alignment_heads = match ct2.get("alignment_heads") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|pair| match pair.as_array()?.as_slice() {
                            [l, h] => Some([l.as_i64()?, h.as_i64()?]),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad("\"alignment_heads\" is not a list of [layer, head]".into()))?,
        ),
    };
    Ok(HfConfig {
        architectures: ["WhisperForConditionalGeneration"],
        model_type: "whisper",
        vocab_size: m.vocab_size,
        num_mel_bins: m.num_mel_bins,
        d_model: m.d_model,
        encoder_layers: m.encoder_layers,
        encoder_attention_heads: m.encoder_heads,
        decoder_layers: m.decoder_layers,
        decoder_attention_heads: m.decoder_heads,
        encoder_ffn_dim: m.encoder_ffn,
        decoder_ffn_dim: m.decoder_ffn,
        max_source_positions: m.max_source_positions,
        max_target_positions: m.max_target_positions,
        activation_function: "gelu",
        scale_embedding: false,
        tie_word_embeddings: true,
        suppress_tokens: ints("suppress_ids", true)?.unwrap_or_default(),
        begin_suppress_tokens: ints("suppress_ids_begin", true)?.unwrap_or_default(),
        alignment_heads,
        lang_ids: ints("lang_ids", false)?,
        torch_dtype: m.dtype.name(),
    })
}
