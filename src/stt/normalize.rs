//! Text normalisation and word error rate, for scoring transcripts against references.
//!
//! Modelled on the rules of Whisper's English normaliser (lower case, no punctuation, common
//! contractions expanded, spelled-out numbers turned into digits, filler words dropped), so a
//! transcript is not penalised for writing "10" where the reference says "ten". It is a smaller
//! rule set than OpenAI's (no British/American spelling table).

/// Normalises English text for comparison: returns the words.
pub fn normalize(text: &str) -> Vec<String> {
    let lower = strip_brackets(&text.to_lowercase());
    let mut s = String::with_capacity(lower.len());
    for c in lower.chars() {
        // Apostrophes stay for the contraction pass; digits keep their separators for now.
        if c.is_alphanumeric() || c == '\'' || c == '’' || c == '.' || c == ',' || c == '%' {
            s.push(if c == '’' { '\'' } else { c });
        } else {
            s.push(' ');
        }
    }
    let mut words = Vec::new();
    for raw in s.split_whitespace() {
        let w = strip_number_separators(raw);
        let w = w.trim_matches(|c: char| c == '.' || c == ',' || c == '\'');
        if w.is_empty() {
            continue;
        }
        for part in expand_contraction(w) {
            let part = part.replace(['\'', ','], "");
            let part = part.trim_end_matches('.');
            if part.is_empty() || FILLERS.contains(&part) {
                continue;
            }
            match TITLES.iter().find(|(abbr, _)| *abbr == part) {
                Some((_, full)) => words.push(full.to_string()),
                None if part.parse::<f64>().is_ok() => words.push(part.to_string()),
                None => words.extend(part.split('.').filter(|p| !p.is_empty()).map(str::to_string)),
            }
        }
    }
    numbers_to_digits(words)
}

const FILLERS: &[&str] = &["hmm", "mm", "mhm", "mmm", "uh", "um", "ah", "eh", "huh"];
const TITLES: &[(&str, &str)] = &[("mr", "mister"), ("mrs", "missus"), ("dr", "doctor"), ("prof", "professor")];

fn strip_brackets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '[' | '(' | '<' => depth += 1,
            ']' | ')' | '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// "1,000" -> "1000" and "3.5" stays, but a comma or period after a word is punctuation.
fn strip_number_separators(w: &str) -> String {
    let chars: Vec<char> = w.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let between_digits =
            i > 0 && i + 1 < chars.len() && chars[i - 1].is_ascii_digit() && chars[i + 1].is_ascii_digit();
        match c {
            ',' if between_digits => {}
            '.' if between_digits => out.push('.'),
            ',' | '.' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(".")
}

fn expand_contraction(w: &str) -> Vec<String> {
    let whole = match w {
        "won't" => Some("will not"),
        "can't" => Some("can not"),
        "cannot" => Some("can not"),
        "let's" => Some("let us"),
        "ain't" => Some("is not"),
        _ => None,
    };
    if let Some(full) = whole {
        return full.split(' ').map(str::to_string).collect();
    }
    for (suffix, full) in
        [("n't", "not"), ("'re", "are"), ("'ll", "will"), ("'ve", "have"), ("'m", "am"), ("'d", "would")]
    {
        if let Some(stem) = w.strip_suffix(suffix) {
            if !stem.is_empty() {
                return vec![stem.to_string(), full.to_string()];
            }
        }
    }
    vec![w.to_string()]
}

fn small_number(w: &str) -> Option<u64> {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    ONES.iter()
        .position(|&o| o == w)
        .map(|i| i as u64)
        .or_else(|| TENS.iter().position(|&t| t == w).map(|i| 20 + 10 * i as u64))
}

fn multiplier(w: &str) -> Option<u64> {
    match w {
        "hundred" => Some(100),
        "thousand" => Some(1_000),
        "million" => Some(1_000_000),
        "billion" => Some(1_000_000_000),
        _ => None,
    }
}

/// Rewrites runs of number words as digits: "twenty one" -> "21", "one two three" -> "1 2 3",
/// "two hundred and five" -> "205".
fn numbers_to_digits(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    // (total so far, current group below a thousand, last word was a unit 0-9 / a ten / a teen)
    let mut acc: Option<(u64, u64)> = None;
    let mut last_small: Option<u64> = None;
    let flush = |acc: &mut Option<(u64, u64)>, out: &mut Vec<String>| {
        if let Some((total, group)) = acc.take() {
            out.push((total + group).to_string());
        }
    };
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if let Some(n) = small_number(w) {
            // A new number starts when this word cannot extend the previous one ("one two").
            let extends = matches!(last_small, Some(p) if p >= 20 && p % 10 == 0 && n < 10 && n > 0);
            if acc.is_some() && last_small.is_some() && !extends {
                flush(&mut acc, &mut out);
            }
            let (total, group) = acc.unwrap_or((0, 0));
            acc = Some((total, group + n));
            last_small = Some(n);
        } else if let (Some(m), Some((total, group))) = (multiplier(w), acc) {
            acc = Some(if m == 100 { (total, group.max(1) * 100) } else { (total + group.max(1) * m, 0) });
            last_small = None;
        } else if w == "and"
            && acc.is_some()
            && words.get(i + 1).is_some_and(|n| small_number(n).is_some())
            && last_small.is_none()
        {
            // "hundred and five": the "and" belongs to the number.
        } else {
            flush(&mut acc, &mut out);
            last_small = None;
            out.push(words[i].clone());
        }
        i += 1;
    }
    flush(&mut acc, &mut out);
    out
}

/// Word-level edit distance between reference and hypothesis.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

/// Corpus word error rate over (reference, hypothesis) pairs, after normalising both sides.
pub fn wer<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let (mut errors, mut words) = (0, 0);
    for (r, h) in pairs {
        let (r, h) = (normalize(r), normalize(h));
        errors += word_errors(&r, &h);
        words += r.len();
    }
    if words == 0 {
        0.0
    } else {
        errors as f64 / words as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s).join(" ")
    }

    #[test]
    fn case_punctuation_and_contractions() {
        assert_eq!(n("Hello, World! It's fine."), "hello world its fine");
        assert_eq!(n("We won't go; they're here"), "we will not go they are here");
        assert_eq!(n("Mr. Dashwood [laughs] (inaudible)"), "mister dashwood");
        assert_eq!(n("cold-hearted, um, selfish"), "cold hearted selfish");
    }

    #[test]
    fn numbers_become_digits() {
        assert_eq!(n("go forward ten meters"), "go forward 10 meters");
        assert_eq!(n("Go forward 10 meters."), "go forward 10 meters");
        assert_eq!(n("one two three"), "1 2 3");
        assert_eq!(n("1, 2, 3."), "1 2 3");
        assert_eq!(n("twenty one guns"), "21 guns");
        assert_eq!(n("two hundred and five"), "205");
        assert_eq!(n("three thousand four hundred"), "3400");
        assert_eq!(n("it costs 1,000 dollars or 3.5"), "it costs 1000 dollars or 3.5");
        assert_eq!(n("eight of spades four of clubs"), "8 of spades 4 of clubs");
    }

    #[test]
    fn word_error_rate() {
        let r = normalize("the cat sat on the mat");
        assert_eq!(word_errors(&r, &normalize("the cat sat on the mat")), 0);
        assert_eq!(word_errors(&r, &normalize("the cat sat on mat")), 1);
        assert_eq!(word_errors(&r, &normalize("a cat sat on the hat today")), 3);
        assert!((wer([("one two", "1 2"), ("a b c d", "a b c")]) - 1.0 / 6.0).abs() < 1e-9);
    }
}
