//! espeak-ng through its C library: IPA phonemes for Piper voices, and espeak-ng's own
//! formant synthesizer as the voice of last resort. The library keeps all its state in process
//! globals and is not thread-safe, so every call goes through one global [`Mutex`] and the
//! library is initialised once, on first use.
//!
//! Piper's voices were trained on phonemes from a patched espeak-ng that also reports each
//! clause's terminator (`espeak_TextToPhonemesWithTerminator`). Stock libespeak-ng 1.51 only has
//! `espeak_TextToPhonemes`, which returns a clause's phonemes without its punctuation, so the
//! terminator is recovered here from how far espeak-ng advanced through the text.

use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The raw declarations, written from `speak_lib.h` and `espeak_ng.h` (1.51).
mod ffi {
    use super::*;

    /// `espeak_EVENT` from speak_lib.h; only `user_data` is read, the rest gives the layout.
    #[repr(C)]
    #[allow(dead_code)]
    pub struct EspeakEvent {
        pub kind: c_int,
        pub unique_identifier: c_uint,
        pub text_position: c_int,
        pub length: c_int,
        pub audio_position: c_int,
        pub sample: c_int,
        pub user_data: *mut c_void,
        /// `union { int number; const char *name; char string[8]; }`: 8 bytes, pointer-aligned.
        pub id: *const c_void,
    }

    pub type SynthCallback =
        unsafe extern "C" fn(wav: *mut c_short, numsamples: c_int, events: *mut EspeakEvent) -> c_int;

    pub const ENS_OK: c_int = 0;
    pub const EE_OK: c_int = 0;
    pub const ENOUTPUT_MODE_SYNCHRONOUS: c_int = 0x0001;
    pub const POS_CHARACTER: c_int = 1;
    pub const ESPEAK_CHARS_UTF8: c_int = 1;
    /// `phonememode` bit 1: IPA as UTF-8 rather than espeak's ASCII mnemonics.
    pub const ESPEAK_PHONEMES_IPA: c_int = 0x02;

    #[link(name = "espeak-ng")]
    extern "C" {
        pub fn espeak_ng_InitializePath(path: *const c_char);
        pub fn espeak_ng_Initialize(context: *mut *mut c_void) -> c_int;
        pub fn espeak_ng_InitializeOutput(output_mode: c_int, buffer_length: c_int, device: *const c_char) -> c_int;
        pub fn espeak_ng_ClearErrorContext(context: *mut *mut c_void);
        pub fn espeak_ng_GetStatusCodeMessage(status: c_int, buffer: *mut c_char, length: usize);
        pub fn espeak_ng_GetSampleRate() -> c_int;
        pub fn espeak_Info(path_data: *mut *const c_char) -> *const c_char;
        pub fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
        pub fn espeak_SetSynthCallback(callback: Option<SynthCallback>);
        pub fn espeak_TextToPhonemes(textptr: *mut *const c_void, textmode: c_int, phonememode: c_int)
            -> *const c_char;
        pub fn espeak_Synth(
            text: *const c_void,
            size: usize,
            position: c_uint,
            position_type: c_int,
            end_position: c_uint,
            flags: c_uint,
            unique_identifier: *mut c_uint,
            user_data: *mut c_void,
        ) -> c_int;
    }
}

const INSTALL_HINT: &str = "install espeak-ng's data and library (`apt-get install espeak-ng-data libespeak-ng-dev`), \
     or point ESPEAK_DATA_PATH at a directory holding espeak-ng-data";

#[derive(Debug, Clone, thiserror::Error)]
pub enum EspeakError {
    #[error("espeak-ng could not start with its data at {data_path}: {message}; {INSTALL_HINT}")]
    Init { data_path: String, message: String },
    #[error("espeak-ng has no voice named `{voice}` (data at {data_path}); use a language or voice name from its lang/ and voices/ folders, e.g. `en-us`")]
    UnknownVoice { voice: String, data_path: String },
    #[error("espeak-ng failed to synthesize {chars} characters of text with voice `{voice}` (status {status:#x})")]
    Synth { voice: String, chars: usize, status: i32 },
}

/// The initialised library. Only reachable through [`lock`], which serialises all use.
pub struct Espeak {
    sample_rate: u32,
    data_path: String,
    version: String,
    /// The voice espeak-ng currently has loaded; switching reloads its dictionary.
    voice: Option<String>,
}

static ENGINE: OnceLock<Result<Mutex<Espeak>, EspeakError>> = OnceLock::new();

/// The library, initialised on first use and held exclusively until the guard drops.
pub fn lock() -> Result<MutexGuard<'static, Espeak>, EspeakError> {
    let engine = ENGINE.get_or_init(|| Espeak::init().map(Mutex::new)).as_ref().map_err(Clone::clone)?;
    // A panic while holding the lock leaves no Rust invariant broken; espeak-ng's own state is
    // reset by each call (voice selection, text decoder), so the poison is not worth spreading.
    Ok(engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// IPA phonemes of `text` in espeak-ng `voice`, one string per sentence. See [`Espeak::phonemize`].
pub fn phonemize(text: &str, voice: &str) -> Result<Vec<String>, EspeakError> {
    lock()?.phonemize(text, voice)
}

/// espeak-ng's own speech for `text`: mono samples in -1..1 and their rate. See [`Espeak::synthesize`].
pub fn synthesize(text: &str, voice: &str) -> Result<(Vec<f32>, u32), EspeakError> {
    lock()?.synthesize(text, voice)
}

impl Espeak {
    fn init() -> Result<Espeak, EspeakError> {
        // espeak_Initialize would do the same three steps, but on failure it either exits the
        // process or, with espeakINITIALIZE_DONT_EXIT, hides the status; the espeak_ng_* calls
        // it is built from return the status, which becomes the error's message.
        let mut path_ptr: *const c_char = std::ptr::null();
        // SAFETY: a null path makes espeak-ng look in ESPEAK_DATA_PATH, $HOME and its compiled-in
        // default. espeak_Info only writes the address of its static path buffer into
        // `path_ptr` and returns its static version string; both stay valid for the process.
        let (data_path, version) = unsafe {
            ffi::espeak_ng_InitializePath(std::ptr::null());
            let version = ffi::espeak_Info(&mut path_ptr);
            (c_str_lossy(path_ptr), c_str_lossy(version))
        };

        let mut context: *mut c_void = std::ptr::null_mut();
        // SAFETY: `context` is a valid out-pointer; espeak-ng fills it only on error and
        // espeak_ng_ClearErrorContext frees it (a no-op on null).
        let status = unsafe {
            let status = ffi::espeak_ng_Initialize(&mut context);
            ffi::espeak_ng_ClearErrorContext(&mut context);
            status
        };
        if status != ffi::ENS_OK {
            return Err(EspeakError::Init { data_path, message: status_message(status) });
        }
        // SAFETY: plain calls on the now-initialised library; a null device is allowed in
        // synchronous (no audio device) mode, and the callback is a valid `extern "C"` fn that
        // lives for the whole process.
        let (status, rate) = unsafe {
            let status = ffi::espeak_ng_InitializeOutput(ffi::ENOUTPUT_MODE_SYNCHRONOUS, 0, std::ptr::null());
            ffi::espeak_SetSynthCallback(Some(collect_samples));
            (status, ffi::espeak_ng_GetSampleRate())
        };
        if status != ffi::ENS_OK {
            return Err(EspeakError::Init { data_path, message: status_message(status) });
        }
        let sample_rate = u32::try_from(rate).ok().filter(|&r| r > 0).ok_or_else(|| EspeakError::Init {
            data_path: data_path.clone(),
            message: format!("sample rate {rate}"),
        })?;
        Ok(Espeak { sample_rate, data_path, version, voice: None })
    }

    /// The rate of [`Espeak::synthesize`]'s samples (22050 Hz for espeak-ng's voices).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The espeak-ng library's version, e.g. `1.51`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The espeak-ng-data directory in use.
    pub fn data_path(&self) -> &str {
        &self.data_path
    }

    fn set_voice(&mut self, voice: &str) -> Result<(), EspeakError> {
        if self.voice.as_deref() == Some(voice) {
            return Ok(());
        }
        let unknown = || EspeakError::UnknownVoice { voice: voice.to_string(), data_path: self.data_path.clone() };
        let name = CString::new(voice).map_err(|_| unknown())?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call; espeak-ng copies it.
        let status = unsafe { ffi::espeak_SetVoiceByName(name.as_ptr()) };
        if status != ffi::EE_OK {
            // A failed switch may leave a half-loaded voice; make the next call select again.
            self.voice = None;
            return Err(unknown());
        }
        self.voice = Some(voice.to_string());
        Ok(())
    }

    /// IPA phonemes of `text`, one string per sentence, the way Piper's voices were trained:
    /// clauses joined with their punctuation (`, : ;` followed by a space), a sentence ending
    /// in its `. ? !`, language-switch markers such as `(fr)` removed. Sentences with no
    /// phonemes are left out, so empty text gives an empty list.
    pub fn phonemize(&mut self, text: &str, voice: &str) -> Result<Vec<String>, EspeakError> {
        self.set_voice(voice)?;
        // espeak-ng reads up to a NUL; an interior one would silently end the text early.
        let owned = CString::new(text.replace('\0', " ")).expect("NULs were replaced");
        let bytes = owned.as_bytes();
        let base = owned.as_ptr() as *const c_void;

        let mut sentences = Vec::new();
        let mut sentence = String::new();
        let mut cursor: *const c_void = base;
        let mut start = 0usize;
        // Each call consumes at least one character; the bound only guards against a library
        // that stops advancing.
        for _ in 0..=bytes.len() + 1 {
            // SAFETY: `cursor` points into `owned` (NUL-terminated, alive for the loop) at the
            // position espeak-ng itself returned last time. The returned string is espeak-ng's
            // static buffer, copied out before the next call.
            let phonemes = unsafe {
                let p = ffi::espeak_TextToPhonemes(&mut cursor, ffi::ESPEAK_CHARS_UTF8, ffi::ESPEAK_PHONEMES_IPA);
                if p.is_null() {
                    break;
                }
                c_str_lossy(p)
            };
            let end = if cursor.is_null() {
                None
            } else {
                // Clamped so a surprising pointer can only shorten the analysed text, never
                // read outside it.
                let offset = (cursor as usize).wrapping_sub(base as usize);
                Some(offset.clamp(start, bytes.len()))
            };
            let consumed = &bytes[start..end.unwrap_or(bytes.len())];
            let clause_end = ClauseEnd::recover(&String::from_utf8_lossy(consumed), end.is_some());

            push_clause(&mut sentence, &strip_language_switches(&phonemes), clause_end.mark);
            if clause_end.sentence {
                finish_sentence(&mut sentences, &mut sentence);
            }
            match end {
                Some(e) => start = e,
                None => break,
            }
        }
        finish_sentence(&mut sentences, &mut sentence);
        Ok(sentences)
    }

    /// espeak-ng's own speech for `text`, mono samples in -1..1 at [`Espeak::sample_rate`].
    /// Text with nothing to say gives no samples.
    pub fn synthesize(&mut self, text: &str, voice: &str) -> Result<(Vec<f32>, u32), EspeakError> {
        self.set_voice(voice)?;
        if text.trim().is_empty() {
            return Ok((Vec::new(), self.sample_rate));
        }
        let owned = CString::new(text.replace('\0', " ")).expect("NULs were replaced");
        let mut samples: Vec<i16> = Vec::new();
        // SAFETY: synchronous mode: espeak_Synth calls `collect_samples` on this thread and
        // returns only when synthesis is done, so the `samples` pointer handed over as user data
        // is valid and unaliased for every callback. `size` counts the terminating NUL.
        let status = unsafe {
            ffi::espeak_Synth(
                owned.as_ptr() as *const c_void,
                owned.as_bytes_with_nul().len(),
                0,
                ffi::POS_CHARACTER,
                0,
                ffi::ESPEAK_CHARS_UTF8 as c_uint,
                std::ptr::null_mut(),
                &mut samples as *mut Vec<i16> as *mut c_void,
            )
        };
        if status != ffi::EE_OK {
            return Err(EspeakError::Synth { voice: voice.to_string(), chars: text.chars().count(), status });
        }
        Ok((samples.into_iter().map(|s| s as f32 / 32768.0).collect(), self.sample_rate))
    }
}

/// Receives each block of synthesized audio; the user data is the `Vec<i16>` being filled.
unsafe extern "C" fn collect_samples(wav: *mut c_short, numsamples: c_int, events: *mut ffi::EspeakEvent) -> c_int {
    if wav.is_null() || numsamples <= 0 || events.is_null() {
        return 0;
    }
    // SAFETY: espeak-ng passes an event list of at least one entry (the terminator), every
    // entry carrying the user data given to espeak_Synth: the `Vec<i16>` that `synthesize`
    // keeps alive and untouched until espeak_Synth returns. `wav` holds `numsamples` samples.
    unsafe {
        let sink = (*events).user_data as *mut Vec<i16>;
        if sink.is_null() {
            return 0;
        }
        (*sink).extend_from_slice(std::slice::from_raw_parts(wav, numsamples as usize));
    }
    0
}

fn c_str_lossy(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: callers pass NUL-terminated strings owned by espeak-ng that stay valid until its
    // next call, which cannot happen before this copy returns.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn status_message(status: c_int) -> String {
    let mut buf = [0 as c_char; 512];
    // SAFETY: espeak-ng writes at most `buf.len()` bytes, NUL-terminated, into `buf`.
    unsafe { ffi::espeak_ng_GetStatusCodeMessage(status, buf.as_mut_ptr(), buf.len()) };
    let message = c_str_lossy(buf.as_ptr());
    if message.is_empty() {
        format!("status {status:#x}")
    } else {
        message
    }
}

/// How a clause ended, as Piper's patched espeak-ng would have reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClauseEnd {
    /// The mark Piper writes after the clause's phonemes.
    mark: Option<char>,
    /// Whether a new sentence starts after this clause.
    sentence: bool,
}

impl ClauseEnd {
    /// Reads the terminator off the text espeak-ng consumed for one clause. When the text goes
    /// on, espeak-ng has also read (and holds back for its next call) the first character of
    /// the next clause, so that character is dropped first.
    fn recover(consumed: &str, text_goes_on: bool) -> ClauseEnd {
        let consumed = match (text_goes_on, consumed.char_indices().next_back()) {
            (true, Some((last, _))) => &consumed[..last],
            _ => consumed,
        };
        let body = consumed.trim_end();
        let newlines = consumed[body.len()..].matches('\n').count();
        // Piper (and espeak-ng) report a paragraph break, two or more newlines, as a sentence
        // end without a mark, even after a full stop; wick keeps the mark, since the voices saw
        // sentences ending in one.
        let paragraph = newlines >= 2;
        let punct = ClausePunct::at_end(body);
        match punct {
            Some(ClausePunct::Mark(mark, sentence)) => ClauseEnd { mark: Some(mark), sentence: sentence || paragraph },
            Some(ClausePunct::Unmarked(sentence)) => ClauseEnd { mark: None, sentence: sentence || paragraph },
            // The end of the text, a paragraph, or espeak-ng cutting an over-long clause.
            None => ClauseEnd { mark: None, sentence: !text_goes_on || paragraph },
        }
    }
}

/// Clause punctuation as espeak-ng's character properties classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClausePunct {
    /// Written as this ASCII mark; `true` when it ends a sentence.
    Mark(char, bool),
    /// Ends a clause (or sentence, when `true`) but Piper writes no mark, as for an ellipsis or
    /// punctuation that needs no space after it (CJK).
    Unmarked(bool),
}

impl ClausePunct {
    /// The terminator at the end of `body`. espeak-ng keys a run such as `?!` on its first
    /// character and turns three or more dots into an ellipsis.
    fn at_end(body: &str) -> Option<ClausePunct> {
        let last = body.chars().next_back()?;
        let punct = Self::of(last)?;
        let asks_or_exclaims = |c: char| matches!(Self::of(c), Some(ClausePunct::Mark('?' | '!', _)));
        if last == '.' && body.ends_with("...") {
            Some(ClausePunct::Unmarked(false))
        } else if asks_or_exclaims(last) {
            body.chars().rev().take_while(|&c| asks_or_exclaims(c)).last().and_then(Self::of)
        } else {
            Some(punct)
        }
    }

    /// espeak-ng's clause class of one character (its ucd property table, the common scripts).
    fn of(c: char) -> Option<ClausePunct> {
        use ClausePunct::{Mark, Unmarked};
        Some(match c {
            '.' | '\u{06D4}' | '\u{0701}' | '\u{1362}' | '\u{FE52}' | '\u{FF61}' => Mark('.', true),
            '?' | '\u{037E}' | '\u{061F}' | '\u{1367}' | '\u{FE56}' => Mark('?', true),
            '!' | '\u{FE57}' => Mark('!', true),
            ',' | '\u{060C}' | '\u{1363}' | '\u{FE50}' | '\u{FE51}' | '\u{FF64}' => Mark(',', false),
            ':' | '\u{1365}' | '\u{1366}' | '\u{FE55}' => Mark(':', false),
            // espeak-ng counts en and em dashes as semicolons.
            ';' | '\u{0387}' | '\u{061B}' | '\u{1364}' | '\u{FE54}' | '\u{2013}' | '\u{2014}' | '\u{2E3A}'
            | '\u{2E3B}' | '\u{FE31}' | '\u{FE32}' => Mark(';', false),
            '\u{3002}' | '\u{FF0E}' | '\u{FF01}' | '\u{FF1F}' | '\u{0964}' | '\u{0589}' | '\u{0965}' | '\u{2029}' => {
                Unmarked(true)
            }
            '\u{2026}' | '\u{3001}' | '\u{FF0C}' | '\u{FF1A}' | '\u{FF1B}' => Unmarked(false),
            _ => return None,
        })
    }
}

/// Appends one clause's phonemes and its mark to the sentence being built.
fn push_clause(sentence: &mut String, phonemes: &str, mark: Option<char>) {
    let phonemes = phonemes.trim();
    // Clauses without a mark (ellipsis, an over-long clause cut by espeak-ng) are joined by a
    // space; Piper glues them together, running the last and first words into one.
    if !phonemes.is_empty() && !sentence.is_empty() && !sentence.ends_with(' ') {
        sentence.push(' ');
    }
    sentence.push_str(phonemes);
    if let Some(mark) = mark {
        sentence.push(mark);
        if matches!(mark, ',' | ':' | ';') {
            sentence.push(' ');
        }
    }
}

/// Moves the built sentence into `sentences` if it holds any phoneme, and starts a new one.
fn finish_sentence(sentences: &mut Vec<String>, sentence: &mut String) {
    let done = std::mem::take(sentence);
    if done.chars().any(|c| !c.is_whitespace() && ClausePunct::of(c).is_none()) {
        sentences.push(done);
    }
}

/// Removes espeak-ng's language-switch markers, e.g. `(fr)` around a word it read as French.
fn strip_language_switches(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut rest = phonemes;
    while let Some(open) = rest.find('(') {
        match rest[open..].find(')') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(consumed: &str, goes_on: bool) -> (Option<char>, bool) {
        let e = ClauseEnd::recover(consumed, goes_on);
        (e.mark, e.sentence)
    }

    #[test]
    fn terminators_are_read_before_the_held_back_character() {
        assert_eq!(end("Hello! I", true), (Some('!'), true));
        assert_eq!(end("I am wick, y", true), (Some(','), false));
        assert_eq!(end("minutes; I", true), (Some(';'), false));
        assert_eq!(end("at 3:45 PM, a", true), (Some(','), false));
        assert_eq!(end("Note: t", true), (Some(':'), false));
        assert_eq!(end("He said \"hi.\"", true), (Some('.'), true));
        assert_eq!(end("Hello \u{2014} w", true), (Some(';'), false));
        assert_eq!(end("assistant.", false), (Some('.'), true));
        assert_eq!(end("didn't he?", false), (Some('?'), true));
    }

    #[test]
    fn runs_ellipses_paragraphs_and_the_end() {
        assert_eq!(end("Really?! Y", true), (Some('?'), true));
        assert_eq!(end("What!?? Y", true), (Some('!'), true));
        assert_eq!(end("Wait... w", true), (None, false));
        assert_eq!(end("Wait\u{2026} w", true), (None, false));
        assert_eq!(end("Hi.\n\nN", true), (Some('.'), true));
        assert_eq!(end("Heading\n\nN", true), (None, true));
        assert_eq!(end("no punctuation at all", false), (None, true));
        assert_eq!(end("a very long clause cut for length w", true), (None, false));
        assert_eq!(end("\u{4F60}\u{597D}\u{3002}\u{6211}", true), (None, true));
    }

    #[test]
    fn clauses_join_with_their_marks() {
        let mut s = String::new();
        push_clause(&mut s, "aɪɐm wˈɪk", Some(','));
        push_clause(&mut s, "jʊɹ vˈɔɪs ɐsˈɪstənt", Some('.'));
        assert_eq!(s, "aɪɐm wˈɪk, jʊɹ vˈɔɪs ɐsˈɪstənt.");
        let mut s = String::new();
        push_clause(&mut s, "wˈeɪt", None);
        push_clause(&mut s, "wˌʌt", Some('?'));
        assert_eq!(s, "wˈeɪt wˌʌt?");
    }

    #[test]
    fn language_switch_markers_are_removed() {
        assert_eq!(strip_language_switches("ɡˈʊtən (de)tˈaːk(en) fɹˈɛnd"), "ɡˈʊtən tˈaːk fɹˈɛnd");
        assert_eq!(strip_language_switches("no markers"), "no markers");
        assert_eq!(strip_language_switches("open (paren"), "open (paren");
    }

    #[test]
    fn sentences_without_phonemes_are_dropped() {
        let mut out = Vec::new();
        let mut s = ". ".to_string();
        finish_sentence(&mut out, &mut s);
        let mut s = "hˈaɪ.".to_string();
        finish_sentence(&mut out, &mut s);
        assert_eq!(out, vec!["hˈaɪ.".to_string()]);
        assert!(s.is_empty());
    }
}
