//! The language model's tokenizer: byte-level BPE for Llama-architecture GGUF models.
//!
//! A `tokenizer.json` beside the GGUF file wins when present (it is what the model was
//! trained with); otherwise the tokenizer is rebuilt from the GGUF metadata the way llama.cpp
//! reads it: vocabulary, merges, token types and the `tokenizer.ggml.pre` pre-tokenizer name.
//! The pre-tokenizer matters as much as the vocabulary: Llama 3 (`llama-bpe`) groups digits in
//! threes and splits contractions case-insensitively, SmolLM2 (`smollm`) splits every digit,
//! and a wrong split gives valid-looking but different ids, which the model then misreads.
//! So an unknown pre-tokenizer name is an error, never a silent fallback.
//!
//! Special tokens are handled here rather than by the `tokenizers` crate: llama.cpp matches
//! control tokens only when asked to (`parse_special`) but user-defined tokens always, and the
//! crate's switch for that is a `&mut` setting, so the crate is left with control tokens
//! disabled and this module cuts them out of the text itself when asked.
//!
//! Decoding goes through a per-token byte table instead of the crate's decoder, so that text
//! can be produced token by token ([`TokenStream`]) without ever cutting a UTF-8 character
//! that a byte-level vocabulary spreads over several tokens.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, Model, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";

/// GGUF token types (llama.cpp's `llama_token_type`) that change how a token is matched.
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's split, as llama.cpp writes it for its `gpt-2` and `smollm` pre-types: lower-case
/// contractions, then letters, numbers and other symbols each with one optional leading space,
/// then whitespace runs that do not swallow the space in front of the next word.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's split (llama.cpp's `LLAMA3` pre-type; the tokenizer.json original has
/// `(?i:...)` around the contractions, spelled out here as character pairs): contractions in
/// any case, letters with at most one leading non-letter non-digit, numbers in groups of up
/// to three digits, punctuation runs with trailing newlines, newline runs, other whitespace.
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Every digit on its own (SmolLM2 and the other `smollm`-like pre-types).
const SINGLE_DIGITS: &str = r"\p{N}";

/// llama.cpp's `default` pre-type, used for BPE files that name none: punctuation runs, GPT-2's
/// split, number runs, then runs of three ASCII digits, each applied to the previous pieces.
const DEFAULT_SPLITS: [&str; 4] = [r"[\p{P}\$\+<=>\^~\|]+", GPT2_SPLIT, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "the GGUF metadata has no `{key}`, so the file carries no usable tokenizer; re-convert the \
         model with llama.cpp's convert_hf_to_gguf.py, or put the model's tokenizer.json beside the GGUF file"
    )]
    MissingKey { key: &'static str },

    #[error(
        "the GGUF metadata `{key}` is unusable ({problem}); the file is damaged or was not written \
         by llama.cpp's converter: download or convert it again"
    )]
    BadValue { key: &'static str, problem: String },

    #[error(
        "the GGUF metadata `{key}` is \"{value}\", which wick does not support ({supported}); use a \
         Llama 3.x or SmolLM2 GGUF, or put the model's byte-level BPE tokenizer.json beside the GGUF file"
    )]
    Unsupported { key: &'static str, value: String, supported: &'static str },

    #[error("{path}: {problem}; fix or remove that file to use the tokenizer in the GGUF metadata instead")]
    TokenizerJson { path: PathBuf, problem: String },

    #[error("building the tokenizer from the GGUF's `{key}` failed: {problem}; download or convert the model again")]
    Build { key: &'static str, problem: String },

    #[error("tokenizing text failed: {0}")]
    Encode(String),
}

/// The pre-tokenizer names of `tokenizer.ggml.pre` that wick knows, and how each splits text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreType {
    /// `smollm`: single digits, then GPT-2.
    SmolLm,
    /// `llama-bpe` (and llama.cpp's other names for it): Llama 3's split.
    Llama3,
    /// `gpt-2`: GPT-2's split alone.
    Gpt2,
    /// `default`, or no name at all: llama.cpp's fallback for old BPE conversions.
    Default,
}

const SUPPORTED_PRE: &str = "known pre-tokenizers: smollm, llama-bpe (llama3, llama-v3), gpt-2, default";

impl PreType {
    fn from_gguf(name: &str) -> Result<Self, TokenizerError> {
        // The aliases are the names llama.cpp maps to the same split; accepting only the
        // spelling one converter happened to write would reject files llama.cpp reads.
        match name {
            "smollm" => Ok(Self::SmolLm),
            "llama-bpe" | "llama3" | "llama-v3" => Ok(Self::Llama3),
            "gpt-2" | "gpt2" => Ok(Self::Gpt2),
            "default" => Ok(Self::Default),
            other => {
                Err(TokenizerError::Unsupported { key: KEY_PRE, value: other.to_string(), supported: SUPPORTED_PRE })
            }
        }
    }

    fn splits(self) -> &'static [&'static str] {
        match self {
            Self::SmolLm => &[SINGLE_DIGITS, GPT2_SPLIT],
            Self::Llama3 => &[LLAMA3_SPLIT],
            Self::Gpt2 => &[GPT2_SPLIT],
            Self::Default => &DEFAULT_SPLITS,
        }
    }

    /// Llama 3 takes a whole pre-token straight from the vocabulary when it is there, without
    /// replaying merges (llama.cpp's `ignore_merges`): the merges alone do not always rebuild it.
    fn ignore_merges(self) -> bool {
        self == Self::Llama3
    }

    /// llama.cpp prepends BOS by default for Llama 3, unless the file says otherwise.
    fn adds_bos(self) -> bool {
        self == Self::Llama3
    }

    /// Each regex cuts the pieces left by the one before; matches and the text between them
    /// both become pieces (llama.cpp's `unicode_regex_split`). Bytes become byte-level
    /// characters only at the end, so the regexes see real text.
    fn pre_tokenizer(self) -> Result<PreTokenizerWrapper, TokenizerError> {
        let mut steps = Vec::new();
        for re in self.splits() {
            let split = Split::new(SplitPattern::Regex((*re).to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| TokenizerError::Build { key: KEY_PRE, problem: format!("regex {re:?}: {e}") })?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)));
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
    }
}

/// A byte-level BPE tokenizer for one model, with its BOS/EOS ids.
#[derive(Clone)]
pub struct LlmTokenizer {
    inner: Tokenizer,
    /// Control tokens, matched in text only with `parse_special`; longest first so that a
    /// token that is a prefix of another never wins over it.
    specials: Vec<(String, u32)>,
    /// Bytes that start some special token: a cheap filter before comparing strings.
    special_starts: [bool; 256],
    /// The bytes each token stands for, token `i` at `piece_bytes[piece_ends[i-1]..piece_ends[i]]`
    /// (one flat buffer: Llama 3 has 128k tokens).
    piece_bytes: Vec<u8>,
    piece_ends: Vec<u32>,
    origin: String,
    /// Beginning of sequence, when the model has one. [`Self::encode`] never adds it.
    pub bos: Option<u32>,
    /// End of sequence (`tokenizer.ggml.eos_token_id`).
    pub eos: u32,
    /// End of turn (`tokenizer.ggml.eot_token_id`), when the file names one.
    pub eot: Option<u32>,
    /// Whether llama.cpp would prepend BOS to a prompt for this model.
    pub add_bos: bool,
}

impl fmt::Debug for LlmTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmTokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

impl LlmTokenizer {
    /// `tokenizer.json` beside the GGUF file when present, else built from the GGUF metadata.
    /// BOS/EOS ids always come from the GGUF metadata.
    pub fn load(gguf_path: &Path, content: &Content) -> Result<Self, TokenizerError> {
        let json = gguf_path.with_file_name("tokenizer.json");
        if json.is_file() {
            tracing::debug!(path = %json.display(), "tokenizer from tokenizer.json");
            Self::from_tokenizer_json(&json, content)
        } else {
            Self::from_gguf_metadata(content)
        }
    }

    /// Builds the tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file.
    pub fn from_gguf_metadata(content: &Content) -> Result<Self, TokenizerError> {
        let md = &content.metadata;
        let model = string(md, KEY_MODEL)?;
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported {
                key: KEY_MODEL,
                value: model.to_string(),
                supported: "only byte-level BPE, \"gpt2\", is read; SentencePiece (\"llama\") and others are not",
            });
        }
        let pre = match md.get(KEY_PRE) {
            Some(v) => PreType::from_gguf(value_str(v, KEY_PRE)?)?,
            None => {
                // llama.cpp's behaviour for conversions older than the key; it warns too.
                tracing::warn!("GGUF has no `{KEY_PRE}`; splitting text with llama.cpp's default, tokens may differ from the model's training");
                PreType::Default
            }
        };

        let tokens = string_array(md, KEY_TOKENS)?;
        if tokens.is_empty() {
            return Err(TokenizerError::BadValue { key: KEY_TOKENS, problem: "the array is empty".into() });
        }
        let n = tokens.len();
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::BadValue {
                key: KEY_TOKENS,
                problem: format!("{n} tokens do not fit u32 ids"),
            });
        }
        let types: Vec<i64> = match md.get(KEY_TOKEN_TYPE) {
            Some(v) => {
                let arr = value_array(v, KEY_TOKEN_TYPE)?;
                if arr.len() != n {
                    return Err(TokenizerError::BadValue {
                        key: KEY_TOKEN_TYPE,
                        problem: format!("{} entries for {n} tokens", arr.len()),
                    });
                }
                arr.iter()
                    .map(|v| {
                        int(v).ok_or_else(|| TokenizerError::BadValue {
                            key: KEY_TOKEN_TYPE,
                            problem: format!("non-integer entry {v:?}"),
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            None => {
                // As llama.cpp does: every token normal, so no special token is ever matched.
                tracing::warn!("GGUF has no `{KEY_TOKEN_TYPE}`; no token is treated as special");
                vec![1; n]
            }
        };
        let merges = string_array(md, KEY_MERGES)?
            .into_iter()
            .map(|m| {
                // Byte-level tokens never hold a real space (it is written `Ġ`), so the first
                // space is the separator.
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| TokenizerError::BadValue {
                    key: KEY_MERGES,
                    problem: format!("entry {m:?} has no space"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        // A padded vocabulary can repeat a string; the first id keeps it, as in llama.cpp.
        let mut vocab = Vocab::with_capacity(n);
        for (id, t) in tokens.iter().enumerate() {
            vocab.entry((*t).to_string()).or_insert(id as u32);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges())
            .build()
            .map_err(|e| TokenizerError::Build { key: KEY_MERGES, problem: e.to_string() })?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre.pre_tokenizer()?));
        inner.with_decoder(Some(ByteLevel::default()));

        let mut controls = Vec::new();
        let mut user_defined = Vec::new();
        for (id, (t, ty)) in tokens.iter().zip(&types).enumerate() {
            if t.is_empty() {
                continue;
            }
            match *ty {
                TYPE_CONTROL | TYPE_UNKNOWN => controls.push(((*t).to_string(), id as u32)),
                TYPE_USER_DEFINED => user_defined.push(AddedToken::from(*t, false).normalized(false)),
                _ => {}
            }
        }
        // Registered with the crate so that its vocabulary knows them, but kept from matching
        // (see the module notes): `encode` cuts them out itself when `parse_special` is set.
        inner
            .add_special_tokens(controls.iter().map(|(t, _)| AddedToken::from(t.as_str(), true).normalized(false)))
            .map_err(|e| TokenizerError::Build { key: KEY_TOKEN_TYPE, problem: e.to_string() })?;
        // User-defined tokens are matched whole even in plain text, as llama.cpp does.
        inner
            .add_tokens(user_defined)
            .map_err(|e| TokenizerError::Build { key: KEY_TOKEN_TYPE, problem: e.to_string() })?;
        inner.set_encode_special_tokens(true);

        let mut pieces = Pieces::with_capacity(n);
        for (t, ty) in tokens.iter().zip(&types) {
            if matches!(*ty, TYPE_CONTROL | TYPE_UNKNOWN | TYPE_USER_DEFINED) {
                // These are stored as the text itself, not in byte-level form.
                pieces.push(t.as_bytes());
            } else {
                pieces.push_byte_level(t);
            }
        }

        let ids = Ids::from_metadata(md, n, pre.adds_bos())?;
        Ok(Self::assemble(inner, controls, pieces, ids, format!("GGUF metadata, pre-tokenizer {pre:?}")))
    }

    /// A Hugging Face `tokenizer.json` (byte-level BPE), with the ids of BOS/EOS from the GGUF.
    fn from_tokenizer_json(path: &Path, content: &Content) -> Result<Self, TokenizerError> {
        let bad = |problem: String| TokenizerError::TokenizerJson { path: path.to_path_buf(), problem };
        let mut inner = Tokenizer::from_file(path).map_err(|e| bad(format!("not a readable tokenizer ({e})")))?;
        if !matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return Err(bad("its decoder is not ByteLevel; wick reads byte-level BPE tokenizers only".into()));
        }
        let added = inner.get_added_tokens_decoder();
        let n = inner.get_vocab(true).values().map(|&id| id as usize + 1).max().unwrap_or(0);
        if n == 0 {
            return Err(bad("it has an empty vocabulary".into()));
        }
        if let Some(v) = content.metadata.get(KEY_TOKENS) {
            // Ids past the model's embedding rows would crash the forward pass later.
            let model_n = value_array(v, KEY_TOKENS)?.len();
            if n > model_n {
                return Err(bad(format!("it has {n} token ids but the GGUF's `{KEY_TOKENS}` only {model_n}")));
            }
        }

        let mut pieces = Pieces::with_capacity(n);
        for id in 0..n as u32 {
            match added.get(&id) {
                Some(tok) => pieces.push(tok.content.as_bytes()),
                None => match inner.get_model().id_to_token(id) {
                    Some(t) => pieces.push_byte_level(&t),
                    None => pieces.push(&[]),
                },
            }
        }
        let controls: Vec<(String, u32)> = added
            .iter()
            .filter(|(_, tok)| tok.special && !tok.content.is_empty())
            .map(|(&id, tok)| (tok.content.clone(), id))
            .collect();
        inner.set_encode_special_tokens(true);

        let md = &content.metadata;
        let adds_bos = match md.get(KEY_PRE).and_then(|v| v.to_string().ok()) {
            Some(name) => PreType::from_gguf(name).map(PreType::adds_bos).unwrap_or(false),
            None => false,
        };
        let ids = Ids::from_metadata(md, n, adds_bos)?;
        Ok(Self::assemble(inner, controls, pieces, ids, path.display().to_string()))
    }

    fn assemble(inner: Tokenizer, mut specials: Vec<(String, u32)>, pieces: Pieces, ids: Ids, origin: String) -> Self {
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut special_starts = [false; 256];
        for (s, _) in &specials {
            special_starts[s.as_bytes()[0] as usize] = true;
        }
        Self {
            inner,
            specials,
            special_starts,
            piece_bytes: pieces.bytes,
            piece_ends: pieces.ends,
            origin,
            bos: ids.bos,
            eos: ids.eos,
            eot: ids.eot,
            add_bos: ids.add_bos,
        }
    }

    /// Encodes text; with `parse_special`, special-token texts like "<|im_start|>" become their
    /// ids, otherwise they are tokenized as the characters they are. Never adds BOS.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let mut plain_from = 0;
        if parse_special && !self.specials.is_empty() {
            let bytes = text.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                // A special token starts with a UTF-8 lead byte, so a hit is at a char boundary.
                if self.special_starts[bytes[i] as usize] {
                    if let Some((s, id)) = self.specials.iter().find(|(s, _)| bytes[i..].starts_with(s.as_bytes())) {
                        self.encode_plain(&text[plain_from..i], &mut ids)?;
                        ids.push(*id);
                        i += s.len();
                        plain_from = i;
                        continue;
                    }
                }
                i += 1;
            }
        }
        self.encode_plain(&text[plain_from..], &mut ids)?;
        Ok(ids)
    }

    /// Text with no control token in it (or whose control tokens are meant literally).
    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self.inner.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        ids.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// The text of `ids`, special tokens included. Bytes that do not form UTF-8 (a sequence cut
    /// short, an id outside the vocabulary) become U+FFFD, judged on the whole byte string so
    /// that characters spread over several tokens come out whole.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.push_piece(id, &mut bytes);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    fn push_piece(&self, id: u32, out: &mut Vec<u8>) {
        match self.piece(id) {
            Some(p) => out.extend_from_slice(p),
            // Not UTF-8 on its own, so it shows up as U+FFFD like any other broken byte.
            None => out.push(0xFF),
        }
    }

    fn piece(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let end = *self.piece_ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] as usize };
        Some(&self.piece_bytes[start..end])
    }

    /// The id of a vocabulary entry, written as the vocabulary stores it: special tokens as
    /// text ("<|im_end|>"), ordinary tokens in byte-level form ("Ġthe" for " the").
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// Number of token ids (the rows the model's embedding must have, at least).
    pub fn vocab_size(&self) -> usize {
        self.piece_ends.len()
    }

    /// The pieces the pre-tokenizer cuts plain text into before BPE, as text: what decides
    /// how digits and contractions are tokenized. For tests and diagnostics.
    pub fn pre_tokenize(&self, text: &str) -> Result<Vec<String>, TokenizerError> {
        let Some(pre) = self.inner.get_pre_tokenizer() else {
            return Ok(vec![text.to_string()]);
        };
        let mut pts = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut pts).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        // Offsets into the original text, so the byte-level renaming does not show.
        Ok(pts
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (start, end), _)| text[start..end].to_string())
            .collect())
    }

    /// Incremental decoding for streaming output.
    pub fn stream(&self) -> TokenStream<'_> {
        TokenStream { tokenizer: self, pending: Vec::new() }
    }
}

/// Turns generated ids into text deltas as they come. Byte-level tokens can end in the middle
/// of a UTF-8 character (an emoji is often 2-4 tokens); those bytes are held back until the
/// character is complete, so every delta is whole characters and the deltas joined equal
/// [`LlmTokenizer::decode`] of all the ids.
pub struct TokenStream<'a> {
    tokenizer: &'a LlmTokenizer,
    /// Bytes of a character not yet complete (at most 3).
    pending: Vec<u8>,
}

impl TokenStream<'_> {
    /// Adds one token; returns the text it completes, or `None` when it completes none yet.
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.tokenizer.push_piece(id, &mut self.pending);
        let mut text = String::new();
        let mut done = 0;
        loop {
            match std::str::from_utf8(&self.pending[done..]) {
                Ok(s) => {
                    text.push_str(s);
                    done = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe to unwrap: `valid_up_to` bounds a valid prefix.
                    text.push_str(std::str::from_utf8(&self.pending[done..done + valid]).unwrap());
                    done += valid;
                    match e.error_len() {
                        // Bytes that can never become a character: replaced as decode does.
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            done += bad;
                        }
                        // A character cut short at the end: wait for the next token.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..done);
        (!text.is_empty()).then_some(text)
    }

    /// Ends the stream: any bytes still held back were never completed and come out as U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// Per-token bytes, gathered into one buffer.
struct Pieces {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Pieces {
    fn with_capacity(n: usize) -> Self {
        Self { bytes: Vec::with_capacity(n * 6), ends: Vec::with_capacity(n) }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push(self.bytes.len() as u32);
    }

    /// A token in GPT-2's byte-level alphabet, back to the bytes it stands for. A token with a
    /// character outside that alphabet is taken as plain text, as the `tokenizers` decoder does.
    fn push_byte_level(&mut self, token: &str) {
        let start = self.bytes.len();
        for c in token.chars() {
            match byte_of_char(c) {
                Some(b) => self.bytes.push(b),
                None => {
                    self.bytes.truncate(start);
                    self.bytes.extend_from_slice(token.as_bytes());
                    break;
                }
            }
        }
        self.ends.push(self.bytes.len() as u32);
    }
}

/// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, and the other
/// 68 bytes (controls, space, DEL, NBSP, soft hyphen) were moved, in byte order, to U+0100
/// onwards so that every token is printable.
const fn printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The moved bytes in order: the byte that U+0100 + i stands for is `MOVED_BYTES[i]`.
const MOVED_BYTES: [u8; 68] = {
    let mut out = [0u8; 68];
    let (mut b, mut n) = (0usize, 0usize);
    while b < 256 {
        if !printable_byte(b as u8) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// The byte-level character that stands for byte `b`.
pub(crate) fn char_of_byte(b: u8) -> char {
    if printable_byte(b) {
        return b as char;
    }
    let moved = MOVED_BYTES.iter().position(|&m| m == b).expect("every unprintable byte was moved");
    char::from_u32(256 + moved as u32).expect("U+0100.. are characters")
}

/// The byte a byte-level character stands for, `None` for characters outside the alphabet.
fn byte_of_char(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 256 {
        let b = code as u8;
        return printable_byte(b).then_some(b);
    }
    MOVED_BYTES.get(code as usize - 256).copied()
}

/// The special ids a model needs besides its vocabulary.
struct Ids {
    bos: Option<u32>,
    eos: u32,
    eot: Option<u32>,
    add_bos: bool,
}

impl Ids {
    fn from_metadata(md: &HashMap<String, Value>, n: usize, adds_bos_default: bool) -> Result<Self, TokenizerError> {
        let id = |key: &'static str| -> Result<Option<u32>, TokenizerError> {
            let Some(v) = md.get(key) else { return Ok(None) };
            let id =
                int(v).ok_or_else(|| TokenizerError::BadValue { key, problem: format!("{v:?} is not an integer") })?;
            if id < 0 || id as usize >= n {
                return Err(TokenizerError::BadValue {
                    key,
                    problem: format!("id {id} is outside the {n}-token vocabulary"),
                });
            }
            Ok(Some(id as u32))
        };
        let add_bos = match md.get(KEY_ADD_BOS) {
            Some(v) => v.to_bool().map_err(|_| TokenizerError::BadValue {
                key: KEY_ADD_BOS,
                problem: format!("{v:?} is not a boolean"),
            })?,
            None => adds_bos_default,
        };
        Ok(Self {
            bos: id(KEY_BOS)?,
            eos: id(KEY_EOS)?.ok_or(TokenizerError::MissingKey { key: KEY_EOS })?,
            eot: id(KEY_EOT)?,
            add_bos,
        })
    }
}

fn int(v: &Value) -> Option<i64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::I8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::U64(x) => i64::try_from(x).ok(),
        Value::I64(x) => Some(x),
        _ => None,
    }
}

fn string<'a>(md: &'a HashMap<String, Value>, key: &'static str) -> Result<&'a str, TokenizerError> {
    value_str(md.get(key).ok_or(TokenizerError::MissingKey { key })?, key)
}

fn value_str<'a>(v: &'a Value, key: &'static str) -> Result<&'a str, TokenizerError> {
    v.to_string().map(String::as_str).map_err(|_| TokenizerError::BadValue {
        key,
        problem: format!("expected a string, found {:?}", v.value_type()),
    })
}

fn value_array<'a>(v: &'a Value, key: &'static str) -> Result<&'a [Value], TokenizerError> {
    v.to_vec().map(Vec::as_slice).map_err(|_| TokenizerError::BadValue {
        key,
        problem: format!("expected an array, found {:?}", v.value_type()),
    })
}

fn string_array<'a>(md: &'a HashMap<String, Value>, key: &'static str) -> Result<Vec<&'a str>, TokenizerError> {
    let arr = value_array(md.get(key).ok_or(TokenizerError::MissingKey { key })?, key)?;
    arr.iter()
        .map(|v| {
            v.to_string()
                .map(String::as_str)
                .map_err(|_| TokenizerError::BadValue { key, problem: format!("non-string entry {v:?}") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(byte_of_char(char_of_byte(b)), Some(b));
        }
        // The forward map, built the way GPT-2 defines it, must invert exactly.
        let mut next = 256u32;
        for b in 0..=255u8 {
            let c = if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap();
                next += 1;
                c
            };
            assert_eq!(byte_of_char(c), Some(b), "byte {b:#04x} as {c:?}");
        }
        assert_eq!(next, 256 + 68);
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('Ċ'), Some(b'\n'));
        assert_eq!(byte_of_char(char::from_u32(256 + 68).unwrap()), None);
    }
}
