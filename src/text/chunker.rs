//! Cuts the language model's streamed text into pieces the voice can speak while the model
//! goes on writing. The first piece is cut early (at the first clause boundary or after a few
//! words) so speech starts soon; later pieces are whole sentences, which is also the unit the
//! voice synthesizes. Markdown and emoji are dropped on the way, since a voice would read them
//! out; numbers, dates and units are left to espeak-ng, which reads them well.
//!
//! Deltas may cut anywhere (inside a word, between `3.` and `5`), so every decision waits
//! until the characters it depends on have arrived, or until [`Chunker::finish`]; the chunks
//! are the same however the text was split.

use std::borrow::Cow;

/// Tuning of where chunks are cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkerOptions {
    /// The first chunk is cut after this many words if no clause boundary came earlier.
    pub first_chunk_words: usize,
    /// A sentence longer than this (in characters) is cut at its last clause boundary, or at a
    /// word boundary, so one run-on sentence cannot hold speech back.
    pub max_chars: usize,
}

impl Default for ChunkerOptions {
    fn default() -> Self {
        ChunkerOptions { first_chunk_words: 6, max_chars: 300 }
    }
}

/// Turns text deltas into speakable chunks; see the module docs.
#[derive(Debug)]
pub struct Chunker {
    options: ChunkerOptions,
    cleaner: Cleaner,
    /// Cleaned text not yet cut off.
    text: String,
    /// Scan state over `text`: positions before it are decided as "no cut".
    scan: Scan,
    emitted_any: bool,
}

#[derive(Debug, Default, Clone)]
struct Scan {
    /// Byte offset of the first undecided position.
    pos: usize,
    /// Characters before `pos`.
    chars: usize,
    /// End of the last `, ; :` clause seen, a fallback cut for an over-long sentence.
    last_clause_end: Option<usize>,
}

/// A place to cut: the chunk is `text[..end]`, the rest starts at `resume`.
struct Cut {
    end: usize,
    resume: usize,
}

enum Decision {
    Cut(Cut),
    No,
    /// Depends on characters that have not arrived yet.
    Wait,
}

impl Chunker {
    pub fn new(options: ChunkerOptions) -> Self {
        Chunker { options, cleaner: Cleaner::default(), text: String::new(), scan: Scan::default(), emitted_any: false }
    }

    /// Adds a delta; returns the chunks it completed, in order.
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.cleaner.feed(delta, &mut self.text, false);
        self.cut_all(false)
    }

    /// Ends the text: returns the chunks still held back (most often the last sentence) and
    /// makes the chunker ready for a new text.
    pub fn finish(&mut self) -> Vec<String> {
        self.cleaner.feed("", &mut self.text, true);
        let mut chunks = self.cut_all(true);
        chunks.extend(speakable(&self.text));
        *self = Chunker::new(self.options.clone());
        chunks
    }

    fn cut_all(&mut self, eof: bool) -> Vec<String> {
        let mut chunks = Vec::new();
        while let Some(Cut { end, resume }) = self.next_cut(eof) {
            if let Some(chunk) = speakable(&self.text[..end]) {
                chunks.push(chunk);
                self.emitted_any = true;
            }
            self.text.drain(..resume);
            self.scan = Scan::default();
        }
        chunks
    }

    /// Walks forward from the first undecided position to the next cut, if one is certain.
    fn next_cut(&mut self, eof: bool) -> Option<Cut> {
        while let Some(c) = self.text[self.scan.pos..].chars().next() {
            match self.decide(self.scan.pos, c, eof) {
                Decision::Cut(cut) => return Some(cut),
                Decision::Wait => return None,
                Decision::No => {
                    self.scan.pos += c.len_utf8();
                    self.scan.chars += 1;
                }
            }
        }
        None
    }

    fn decide(&mut self, i: usize, c: char, eof: bool) -> Decision {
        let text = self.text.as_str();
        let after = i + c.len_utf8();
        let first = !self.emitted_any;
        match c {
            '\n' => Decision::Cut(Cut { end: i, resume: after }),
            '.' | '!' | '?' | '\u{2026}' => sentence_end(text, i, c, eof),
            ',' | ';' | ':' => match followed_by_space(text, after, eof) {
                Some(Some(end)) => {
                    self.scan.last_clause_end = Some(end);
                    if first {
                        Decision::Cut(Cut { end, resume: end })
                    } else {
                        Decision::No
                    }
                }
                Some(None) => Decision::No,
                None => Decision::Wait,
            },
            c if c.is_whitespace() => {
                let word_ends = text[..i].chars().next_back().is_some_and(|p| !p.is_whitespace());
                if !word_ends {
                    return Decision::No;
                }
                let last_word = text[..i].rsplit(char::is_whitespace).next().unwrap_or("");
                if first
                    && text[..i].split_whitespace().count() >= self.options.first_chunk_words
                    && !binds_to_next(last_word)
                {
                    return Decision::Cut(Cut { end: i, resume: after });
                }
                if self.scan.chars >= self.options.max_chars {
                    // Prefer the last clause boundary unless it would leave a short stub.
                    return Decision::Cut(match self.scan.last_clause_end.filter(|&e| e * 2 >= i) {
                        Some(end) => Cut { end, resume: end },
                        None => Cut { end: i, resume: after },
                    });
                }
                Decision::No
            }
            _ => Decision::No,
        }
    }
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker::new(ChunkerOptions::default())
    }
}

/// Closing quotes and brackets that belong to the sentence before them.
fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '\u{201D}' | '\u{2019}' | '\u{00BB}')
}

/// After clause punctuation at `after`: `Some(Some(end))` if closers then whitespace follow
/// (the clause ends at `end`), `Some(None)` if something else follows, `None` if unknown yet.
fn followed_by_space(text: &str, after: usize, eof: bool) -> Option<Option<usize>> {
    let mut end = after;
    for c in text[after..].chars() {
        if is_closer(c) {
            end += c.len_utf8();
        } else {
            return Some(c.is_whitespace().then_some(end));
        }
    }
    eof.then_some(Some(end))
}

/// Decides a `. ! ? …` at `i`: a sentence ends there if whitespace (after any closing quotes)
/// follows, unless the dot ends an abbreviation or the next word starts in lower case.
fn sentence_end(text: &str, i: usize, c: char, eof: bool) -> Decision {
    let after = i + c.len_utf8();
    // In a run such as `?!` or `...` the last character decides.
    if text[after..].starts_with(['.', '!', '?', '\u{2026}']) {
        return Decision::No;
    }
    let end = match followed_by_space(text, after, eof) {
        None => return Decision::Wait,
        Some(None) => return Decision::No,
        Some(Some(end)) => end,
    };
    let cut = Decision::Cut(Cut { end, resume: end });
    if matches!(c, '!' | '?') {
        return cut;
    }
    let ellipsis = c == '\u{2026}' || text[..i].ends_with('.');
    if !ellipsis && is_abbreviation(text[..after].rsplit(char::is_whitespace).next().unwrap_or("")) {
        return Decision::No;
    }
    let gap = &text[end..];
    let next_word = gap.trim_start();
    if gap[..gap.len() - next_word.len()].contains('\n') {
        return cut;
    }
    // A dot before a lower-case word is most likely an abbreviation the list does not know.
    match next_word.chars().next() {
        Some(next) if next.is_lowercase() => Decision::No,
        Some(_) => cut,
        None if eof => cut,
        None => Decision::Wait,
    }
}

/// Abbreviations whose dot never ends a sentence: titles, Latin shorthands, initials, and
/// dotted letter groups such as `U.S.` or `a.m.`.
const ABBREVIATIONS: &[&str] =
    &["mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "cf", "approx", "fig", "e.g", "i.e"];

/// Whether `word` (with its final dot) is an abbreviation.
fn is_abbreviation(word: &str) -> bool {
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let Some(stem) = word.strip_suffix('.') else {
        return false;
    };
    let lower = stem.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    let mut letters = stem.chars();
    let single_letter = letters.next().is_some_and(char::is_alphabetic) && letters.next().is_none();
    let dotted = stem.contains('.')
        && stem.split('.').all(|part| !part.is_empty() && part.len() <= 3 && part.chars().all(char::is_alphabetic));
    single_letter || dotted
}

/// Whether a first-chunk cut right after `word` would split a unit such as `Dr. Smith`.
fn binds_to_next(word: &str) -> bool {
    is_abbreviation(word)
}

/// The chunk as the voice gets it: whitespace collapsed, `None` if nothing is left to say.
fn speakable(text: &str) -> Option<String> {
    let chunk = text.split_whitespace().collect::<Vec<_>>().join(" ");
    chunk.chars().any(char::is_alphanumeric).then_some(chunk)
}

/// `text` without emoji, their modifiers and joiners (espeak-ng would read an emoji's name).
pub fn strip_emoji(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_emoji) {
        Cow::Owned(text.chars().filter(|&c| !is_emoji(c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// Pictographic characters and the invisible ones that build emoji sequences.
pub fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF // pictographs, emoticons, transport, flags' regional indicators, skin tones
        | 0x2300..=0x23FF // technical symbols used as emoji (watch, hourglass, alarm clock)
        | 0x2600..=0x27BF // miscellaneous symbols and dingbats (sun, check marks, hearts)
        | 0x2B00..=0x2BFF // stars, squares and arrows used as emoji
        | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0xFE00..=0xFE0F // variation selectors
        | 0x200D          // zero-width joiner
        | 0x20E3          // combining keycap
        | 0xE0020..=0xE007F // tag characters (subdivision flags)
    )
}

/// Streaming markdown and emoji removal. Raw text is held back only while its meaning depends
/// on characters not yet seen (the start of a line, `_`, `]`, `!`).
#[derive(Debug)]
struct Cleaner {
    raw: String,
    /// The next raw character starts a line.
    line_start: bool,
    /// Inside a fenced code block opened with three or more of this character.
    fence: Option<char>,
    /// Dropping the rest of the current line (a fence line or a horizontal rule).
    drop_line: bool,
    /// Dropping a link's `(target)`.
    in_link_target: bool,
    /// The last character written out, to tell `snake_case` from `_emphasis_`.
    last: char,
}

impl Default for Cleaner {
    fn default() -> Self {
        Cleaner {
            raw: String::new(),
            line_start: true,
            fence: None,
            drop_line: false,
            in_link_target: false,
            last: '\n',
        }
    }
}

/// What starts a line.
enum LineStart {
    Wait,
    Plain,
    /// Drop this many bytes (heading hashes, a bullet, a list number, a quote marker); `again`
    /// when another marker may follow (`> - item`).
    Strip {
        len: usize,
        again: bool,
    },
    /// Drop the whole line: a horizontal rule.
    Rule,
    /// A code fence of this character, `len` bytes long.
    Fence {
        len: usize,
        marker: char,
    },
}

impl Cleaner {
    fn feed(&mut self, delta: &str, out: &mut String, eof: bool) {
        self.raw.push_str(delta);
        let mut i = 0;
        while i < self.raw.len() {
            match self.step(i, out, eof) {
                Some(next) => i = next,
                None => break,
            }
        }
        self.raw.drain(..i);
        if eof {
            self.raw.clear();
        }
    }

    /// Handles the raw text at `i`; returns where to go on, or `None` to wait for more.
    fn step(&mut self, i: usize, out: &mut String, eof: bool) -> Option<usize> {
        let rest = &self.raw[i..];
        let c = rest.chars().next()?;
        let after = i + c.len_utf8();
        if self.drop_line || self.in_link_target {
            if c == '\n' {
                self.drop_line = false;
                self.in_link_target = false;
                return Some(i); // the newline itself is handled as text (or fence content)
            }
            if self.in_link_target && c == ')' {
                self.in_link_target = false;
            }
            return Some(after);
        }
        if let Some(marker) = self.fence {
            if self.line_start {
                let body = rest.trim_start_matches([' ', '\t']);
                let run = body.chars().take_while(|&c| c == marker).count();
                if run < 3 && run == body.len() && !eof {
                    return None;
                }
                if run >= 3 {
                    self.fence = None;
                }
                self.line_start = false;
                self.drop_line = true;
                return Some(i);
            }
            if c == '\n' {
                self.line_start = true;
            }
            return Some(after);
        }
        if self.line_start {
            match line_start(rest, eof) {
                LineStart::Wait => return None,
                LineStart::Plain => self.line_start = false,
                LineStart::Strip { len, again } => {
                    self.line_start = again;
                    return Some(i + len);
                }
                LineStart::Rule => {
                    self.line_start = false;
                    self.drop_line = true;
                    return Some(i);
                }
                LineStart::Fence { len, marker } => {
                    self.fence = Some(marker);
                    self.line_start = false;
                    self.drop_line = true; // the info string, e.g. `rust`
                    self.emit('\n', out);
                    return Some(i + len);
                }
            }
        }
        let next = rest[c.len_utf8()..].chars().next();
        if next.is_none() && !eof && matches!(c, '_' | ']' | '!') {
            return None;
        }
        match c {
            '\n' => {
                self.line_start = true;
                self.emit('\n', out);
            }
            '*' | '`' | '[' | '\r' => {}
            ']' if next == Some('(') => {
                self.in_link_target = true;
                return Some(after + 1);
            }
            ']' => {}
            // The `!` of an image, `![alt](src)`.
            '!' if next == Some('[') => {}
            // Emphasis underscores sit at a word's edge; inside a word (`snake_case`) they stay.
            '_' => {
                if self.last.is_alphanumeric() && next.is_some_and(char::is_alphanumeric) {
                    self.emit('_', out);
                }
            }
            '\t' => self.emit(' ', out),
            c if is_emoji(c) => {}
            c => self.emit(c, out),
        }
        Some(after)
    }
}

impl Cleaner {
    fn emit(&mut self, c: char, out: &mut String) {
        self.last = c;
        out.push(c);
    }
}

/// Classifies the start of a line (`s` runs from the line's first character to what has
/// arrived): markdown headings, bullets, numbered items, quotes, rules and code fences.
fn line_start(s: &str, eof: bool) -> LineStart {
    let body = s.trim_start_matches([' ', '\t']);
    let indent = s.len() - body.len();
    let Some(first) = body.chars().next() else {
        return if eof { LineStart::Plain } else { LineStart::Wait };
    };
    let run = body.chars().take_while(|&c| c == first).count();
    let all_arrived = run == body.len() && !eof;
    match first {
        '`' | '~' if run >= 3 => LineStart::Fence { len: indent + run, marker: first },
        '`' | '~' if all_arrived => LineStart::Wait,
        '#' if all_arrived => LineStart::Wait,
        '#' if run <= 6 && body[run..].starts_with([' ', '\t']) => {
            LineStart::Strip { len: indent + run + 1, again: false }
        }
        '>' => LineStart::Strip { len: indent + 1, again: true },
        '-' | '*' | '+' | '_' | '\u{2022}' => {
            let line = body.split('\n').next().unwrap_or("");
            let complete = line.len() < body.len() || eof;
            let only_markers = line.chars().all(|c| c == first || c == ' ' || c == '\t');
            let bullet = first != '_' && body[first.len_utf8()..].starts_with([' ', '\t']);
            if only_markers && !complete {
                LineStart::Wait
            } else if only_markers && line.chars().filter(|&c| c == first).count() >= 3 && first != '+' {
                LineStart::Rule
            } else if bullet {
                LineStart::Strip { len: indent + first.len_utf8() + 1, again: false }
            } else {
                LineStart::Plain
            }
        }
        '0'..='9' => {
            let digits = body.chars().take_while(char::is_ascii_digit).count();
            let rest = &body[digits..];
            if digits > 9 {
                LineStart::Plain
            } else if !eof && (rest.is_empty() || (rest.len() == 1 && rest.starts_with(['.', ')']))) {
                LineStart::Wait
            } else if rest.starts_with(['.', ')']) && rest[1..].starts_with([' ', '\t']) {
                LineStart::Strip { len: indent + digits + 2, again: false }
            } else {
                LineStart::Plain
            }
        }
        _ => LineStart::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `deltas` and returns all chunks, including those from `finish`.
    fn run(options: &ChunkerOptions, deltas: &[&str]) -> Vec<String> {
        let mut chunker = Chunker::new(options.clone());
        let mut chunks: Vec<String> = deltas.iter().flat_map(|d| chunker.push(d)).collect();
        chunks.extend(chunker.finish());
        chunks
    }

    /// Splits `text` at the given character counts, cycling through them.
    fn split_by(text: &str, sizes: &[usize]) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at >= chars.len() {
                break;
            }
            let end = (at + size.max(&1)).min(chars.len());
            out.push(chars[at..end].iter().collect());
            at = end;
        }
        out
    }

    /// The chunks of `text`, asserted to be the same however the text is split into deltas:
    /// whole, one character at a time, fixed sizes, word-like tokens and a pseudo-random split.
    fn chunks_with(options: ChunkerOptions, text: &str) -> Vec<String> {
        let whole = run(&options, &[text]);
        let mut seed = 0x2545_f491_u32;
        let random: Vec<usize> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed % 7) as usize + 1
            })
            .collect();
        let tokens: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
        let splits = [
            split_by(text, &[1]),
            split_by(text, &[2]),
            split_by(text, &[3]),
            split_by(text, &[5, 1, 2]),
            split_by(text, &random),
            tokens,
        ];
        for deltas in &splits {
            let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
            assert_eq!(run(&options, &refs), whole, "text {text:?} split as {deltas:?}");
        }
        whole
    }

    fn chunks(text: &str) -> Vec<String> {
        chunks_with(ChunkerOptions::default(), text)
    }

    #[test]
    fn first_chunk_at_a_clause_then_sentences() {
        assert_eq!(
            chunks("Sure, I can help. The capital of France is Paris, a large city. Anything else?"),
            ["Sure,", "I can help.", "The capital of France is Paris, a large city.", "Anything else?"]
        );
    }

    #[test]
    fn first_chunk_after_six_words_without_a_boundary() {
        assert_eq!(
            chunks("The capital of France is Paris and it is lovely in spring. Yes."),
            ["The capital of France is Paris", "and it is lovely in spring.", "Yes."]
        );
    }

    #[test]
    fn first_chunk_at_a_sentence_end() {
        assert_eq!(chunks("Hello! I am wick, your voice assistant."), ["Hello!", "I am wick, your voice assistant."]);
    }

    #[test]
    fn decimals_are_not_sentence_ends() {
        assert_eq!(
            chunks("Version 3.5 is out. It costs 2.50 dollars."),
            ["Version 3.5 is out.", "It costs 2.50 dollars."]
        );
    }

    #[test]
    fn abbreviations_do_not_end_sentences() {
        assert_eq!(
            chunks("Okay. Dr. Smith and Mr. Jones met, e.g. on Monday, i.e. today, etc. Then they left."),
            ["Okay.", "Dr. Smith and Mr. Jones met, e.g. on Monday, i.e. today, etc. Then they left."]
        );
        assert_eq!(
            chunks("Yes. We met in the U.S. Army at 5 a.m. sharp."),
            ["Yes.", "We met in the U.S. Army at 5 a.m. sharp."]
        );
    }

    #[test]
    fn the_word_cut_does_not_split_a_title_from_its_name() {
        assert_eq!(
            chunks("Yesterday I went with my Dr. Smith to the store"),
            ["Yesterday I went with my Dr. Smith", "to the store"]
        );
    }

    #[test]
    fn times_are_not_clause_boundaries() {
        assert_eq!(
            chunks("Meet at 10:30 tomorrow morning please, okay?"),
            ["Meet at 10:30 tomorrow morning please,", "okay?"]
        );
        assert_eq!(chunks("Note: it is 3:45 now."), ["Note:", "it is 3:45 now."]);
        assert_eq!(chunks("It costs 1,000 dollars, e.g., a lot."), ["It costs 1,000 dollars,", "e.g., a lot."]);
    }

    #[test]
    fn urls_and_emails_stay_whole() {
        assert_eq!(
            chunks("Hi. See example.com/a.b or mail bob.smith@example.org. Thanks!"),
            ["Hi.", "See example.com/a.b or mail bob.smith@example.org.", "Thanks!"]
        );
    }

    #[test]
    fn lower_case_after_a_dot_continues_the_sentence() {
        assert_eq!(
            chunks("Yes. It weighs approx. five kilos. Next."),
            ["Yes.", "It weighs approx. five kilos.", "Next."]
        );
        assert_eq!(chunks("Yes. Call the no. two line. Ok."), ["Yes.", "Call the no. two line.", "Ok."]);
    }

    #[test]
    fn quotes_and_runs_after_the_end() {
        assert_eq!(
            chunks("Ok. He said \"stop.\" Really?! Wait... What (really)? Fine."),
            ["Ok.", "He said \"stop.\"", "Really?!", "Wait...", "What (really)?", "Fine."]
        );
        assert_eq!(chunks("Ok. Well... maybe not."), ["Ok.", "Well... maybe not."]);
    }

    #[test]
    fn newlines_and_paragraphs_cut() {
        assert_eq!(
            chunks("Here is a list\nof things\n\nAnd more text here. End."),
            ["Here is a list", "of things", "And more text here.", "End."]
        );
    }

    #[test]
    fn markdown_is_dropped() {
        assert_eq!(
            chunks("## Steps\n1. Preheat the **oven** to 200 degrees.\n2) Mix *well*.\n- Use `salt`, then serve.\n* Enjoy __it__ with snake_case.\n> Quoted text.\n---\nDone."),
            [
                "Steps",
                "Preheat the oven to 200 degrees.",
                "Mix well.",
                "Use salt, then serve.",
                "Enjoy it with snake_case.",
                "Quoted text.",
                "Done."
            ]
        );
    }

    #[test]
    fn code_fences_are_dropped_with_their_content() {
        assert_eq!(
            chunks("Run this:\n```bash\necho hi. There.\nls -la\n```\nThen check the output. Ok."),
            ["Run this:", "Then check the output.", "Ok."]
        );
        assert_eq!(chunks("Code:\n~~~\nx = 1\n~~~\nDone."), ["Code:", "Done."]);
        assert_eq!(chunks("Unclosed:\n```\nfn main() {}\n"), ["Unclosed:"]);
    }

    #[test]
    fn links_keep_their_text() {
        assert_eq!(
            chunks("Yes. Read [the docs](https://example.com/a.b) and ![a cat](cat.png) today. Ok."),
            ["Yes.", "Read the docs and a cat today.", "Ok."]
        );
    }

    #[test]
    fn emoji_are_dropped() {
        assert_eq!(
            chunks("Great job 🎉! I love it ❤️. Family: 👨\u{200D}👩\u{200D}👧 and flags 🇫🇷. Done 👍🏽"),
            ["Great job !", "I love it .", "Family: and flags .", "Done"]
        );
        assert_eq!(strip_emoji("a🎉b"), "ab");
        assert!(matches!(strip_emoji("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn nothing_speakable_gives_no_chunks() {
        assert!(chunks("").is_empty());
        assert!(chunks("   \n\n  ").is_empty());
        assert!(chunks("🎉🎉 👍").is_empty());
        assert!(chunks("... !!! ---").is_empty());
        assert!(chunks("```\ncode only\n```").is_empty());
    }

    #[test]
    fn punctuation_only_pieces_do_not_count_as_the_first_chunk() {
        assert_eq!(chunks("... Well, okay then. Bye."), ["Well,", "okay then.", "Bye."]);
    }

    #[test]
    fn numbers_and_units_are_left_to_espeak() {
        assert_eq!(
            chunks("It is 21°C on 2024-05-01, about 70 km/h winds. Ok."),
            ["It is 21°C on 2024-05-01,", "about 70 km/h winds.", "Ok."]
        );
    }

    #[test]
    fn a_run_on_sentence_is_cut_at_a_clause_then_a_word() {
        let options = ChunkerOptions { first_chunk_words: 2, max_chars: 40 };
        let text =
            "Hi there. one two three four, five six seven eight nine ten eleven twelve thirteen fourteen fifteen";
        assert_eq!(
            chunks_with(options, text),
            [
                "Hi there.",
                "one two three four, five six seven eight",
                "nine ten eleven twelve thirteen fourteen",
                "fifteen"
            ]
        );
    }

    #[test]
    fn finish_resets_for_the_next_text() {
        let mut chunker = Chunker::default();
        assert!(chunker.push("Hello there").is_empty());
        assert_eq!(chunker.finish(), ["Hello there"]);
        assert_eq!(chunker.push("Again, "), ["Again,"]);
        assert!(chunker.finish().is_empty());
    }

    #[test]
    fn a_decision_waits_for_the_next_character() {
        let mut chunker = Chunker::default();
        assert!(chunker.push("Pi is 3.").is_empty());
        assert!(chunker.push("14 roughly. ").is_empty(), "the word after the dot is not known yet");
        assert_eq!(chunker.push("Yes"), ["Pi is 3.14 roughly."]);
        assert_eq!(chunker.finish(), ["Yes"]);
    }
}
