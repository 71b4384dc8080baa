//! Whisper's tokenizer and the special tokens that steer decoding, looked up by name in
//! `tokenizer.json` so English-only and multilingual vocabularies both work.

use std::path::Path;

use tokenizers::Tokenizer;

use super::SttError;

pub struct WhisperTokens {
    tokenizer: Tokenizer,
    pub sot: u32,
    pub eot: u32,
    pub transcribe: Option<u32>,
    pub translate: Option<u32>,
    pub no_timestamps: u32,
    /// `<|nospeech|>` in newer vocabularies, `<|nocaptions|>` in the original ones.
    pub no_speech: Option<u32>,
    /// Tokens that only make sense as prompts: start of previous text, of LM mode.
    pub prompt_only: Vec<u32>,
    /// Language tokens in vocabulary order, with their codes (`en`, `de`, …).
    pub languages: Vec<(u32, String)>,
}

impl WhisperTokens {
    pub fn load(path: &Path) -> Result<Self, SttError> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| SttError::BadModel {
            path: path.to_path_buf(),
            message: format!("not a tokenizer.json: {e}"),
        })?;
        let id = |name: &str| tokenizer.token_to_id(name);
        let need = |name: &str| {
            id(name).ok_or_else(|| SttError::BadModel {
                path: path.to_path_buf(),
                message: format!("the tokenizer has no {name} token; is this a Whisper tokenizer?"),
            })
        };
        let sot = need("<|startoftranscript|>")?;
        let eot = need("<|endoftext|>")?;
        let no_timestamps = need("<|notimestamps|>")?;
        let translate = id("<|translate|>");
        // Language tokens sit between the start token and the task tokens.
        let languages = match translate {
            Some(translate) => (sot + 1..translate)
                .filter_map(|t| {
                    let name = tokenizer.id_to_token(t)?;
                    let code = name.strip_prefix("<|")?.strip_suffix("|>")?;
                    Some((t, code.to_string()))
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(Self {
            sot,
            eot,
            transcribe: id("<|transcribe|>"),
            translate,
            no_timestamps,
            no_speech: id("<|nospeech|>").or_else(|| id("<|nocaptions|>")),
            prompt_only: ["<|startofprev|>", "<|startoflm|>"].iter().filter_map(|n| id(n)).collect(),
            languages,
            tokenizer,
        })
    }

    pub fn language(&self, code: &str) -> Option<u32> {
        self.languages.iter().find(|(_, c)| c == code).map(|(t, _)| *t)
    }

    /// Text of the ordinary tokens in `ids` (special tokens are dropped).
    pub fn text(&self, ids: &[u32]) -> String {
        let ids: Vec<u32> = ids.iter().copied().filter(|&t| t < self.eot).collect();
        self.tokenizer.decode(&ids, true).unwrap_or_default()
    }
}
