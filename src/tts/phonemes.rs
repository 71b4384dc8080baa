//! Text to the ids a Piper voice reads: espeak-ng's IPA phonemes per sentence, split into
//! Unicode codepoints after canonical decomposition (NFD), each looked up in the voice's
//! `phoneme_id_map` and framed the way Piper trained: `^` first, the voice's pad `_` after
//! every phoneme, `$` last.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use super::espeak::{self, EspeakError};
use crate::text::strip_emoji;

/// Beginning of sentence.
pub const BOS: &str = "^";
/// End of sentence.
pub const EOS: &str = "$";
/// Placed after every phoneme.
pub const PAD: &str = "_";

#[derive(Debug, Clone, thiserror::Error)]
pub enum PhonemeError {
    #[error(transparent)]
    Espeak(#[from] EspeakError),
    #[error("the voice's phoneme_id_map has no `{symbol}` ({role}) with an id; the voice's .onnx.json is not a Piper voice config or is damaged")]
    MissingSymbol { symbol: &'static str, role: &'static str },
}

/// One sentence ready for the voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The sentence's phonemes, NFD-normalised, with its punctuation.
    pub phonemes: String,
    /// Ids for the voice, `^` .. `$`.
    pub ids: Vec<i64>,
    /// Phonemes the voice's map has no id for, left out of `ids`, in order of appearance
    /// (repeats included); the caller logs them.
    pub unknown: Vec<char>,
}

/// Ids of one sentence's phonemes and the phonemes left out for want of an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonemeIds {
    pub ids: Vec<i64>,
    pub unknown: Vec<char>,
}

/// Maps one sentence's phonemes to ids: `^ _ (phoneme _)* $`, one phoneme per codepoint of the
/// NFD form, so a precomposed letter such as `ç` becomes its base letter and combining mark.
pub fn phoneme_ids(phonemes: &str, map: &HashMap<String, Vec<i64>>) -> Result<PhonemeIds, PhonemeError> {
    let bos = special(map, BOS, "beginning of sentence")?;
    let eos = special(map, EOS, "end of sentence")?;
    let pad = special(map, PAD, "pad")?;

    let mut ids = Vec::with_capacity(2 * phonemes.len() + 3);
    let mut unknown = Vec::new();
    ids.extend_from_slice(bos);
    ids.extend_from_slice(pad);
    let mut key = String::with_capacity(4);
    for c in phonemes.nfd() {
        key.clear();
        key.push(c);
        match map.get(&key) {
            Some(id) => {
                ids.extend_from_slice(id);
                ids.extend_from_slice(pad);
            }
            None => unknown.push(c),
        }
    }
    ids.extend_from_slice(eos);
    Ok(PhonemeIds { ids, unknown })
}

/// Phonemizes `text` with espeak-ng `voice` (the voice config's `espeak.voice`) and maps each
/// sentence through `map`. Emoji are dropped first, since espeak-ng would read their names.
pub fn text_to_ids(text: &str, voice: &str, map: &HashMap<String, Vec<i64>>) -> Result<Vec<Sentence>, PhonemeError> {
    // Checked before phonemizing so a broken map fails even for text with nothing to say.
    for (symbol, role) in [(BOS, "beginning of sentence"), (EOS, "end of sentence"), (PAD, "pad")] {
        special(map, symbol, role)?;
    }
    let text = strip_emoji(text);
    espeak::phonemize(&text, voice)?
        .into_iter()
        .map(|sentence| {
            let phonemes: String = sentence.nfd().collect();
            let PhonemeIds { ids, unknown } = phoneme_ids(&phonemes, map)?;
            Ok(Sentence { phonemes, ids, unknown })
        })
        .collect()
}

fn special<'m>(
    map: &'m HashMap<String, Vec<i64>>,
    symbol: &'static str,
    role: &'static str,
) -> Result<&'m [i64], PhonemeError> {
    map.get(symbol).filter(|ids| !ids.is_empty()).map(Vec::as_slice).ok_or(PhonemeError::MissingSymbol { symbol, role })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, i64)]) -> HashMap<String, Vec<i64>> {
        entries.iter().map(|&(k, v)| (k.to_string(), vec![v])).collect()
    }

    fn base() -> HashMap<String, Vec<i64>> {
        map(&[("_", 0), ("^", 1), ("$", 2), (" ", 3), ("!", 4), ("h", 20), ("ə", 59), ("c", 16), ("\u{327}", 140)])
    }

    #[test]
    fn frames_and_pads_every_phoneme() {
        let out = phoneme_ids("hə h!", &base()).unwrap();
        assert_eq!(out.ids, vec![1, 0, 20, 0, 59, 0, 3, 0, 20, 0, 4, 0, 2]);
        assert!(out.unknown.is_empty());
    }

    #[test]
    fn precomposed_letters_split_into_their_marks() {
        // `ç` is not looked up whole, even if a map had it: Piper maps the NFD form.
        let out = phoneme_ids("ç", &base()).unwrap();
        assert_eq!(out.ids, vec![1, 0, 16, 0, 140, 0, 2]);
    }

    #[test]
    fn unknown_phonemes_are_skipped_and_reported() {
        let out = phoneme_ids("hxəx", &base()).unwrap();
        assert_eq!(out.ids, vec![1, 0, 20, 0, 59, 0, 2]);
        assert_eq!(out.unknown, vec!['x', 'x']);
    }

    #[test]
    fn a_map_without_pad_is_an_error() {
        let mut m = base();
        m.remove("_");
        let err = phoneme_ids("h", &m).unwrap_err();
        assert!(err.to_string().contains("`_` (pad)"), "{err}");
    }

    #[test]
    fn empty_phonemes_are_just_the_frame() {
        assert_eq!(phoneme_ids("", &base()).unwrap().ids, vec![1, 0, 2]);
    }
}
