//! The text side of the voice against Piper's own output (`../shared/reference/tts`, made by
//! piper-tts 1.8.0 with its bundled espeak-ng 1.52): phonemes, phoneme ids, the chunker on
//! awkward input, and espeak-ng's fallback synthesizer. Needs espeak-ng's library and data
//! (`apt-get install libespeak-ng-dev espeak-ng-data`) and the `test` model set's voice config.

mod common;

use std::collections::HashMap;
use std::process::Command;

use wick::text::Chunker;
use wick::tts::espeak::{self, EspeakError};
use wick::tts::phonemes::{phoneme_ids, text_to_ids};

const VOICE: &str = "en-us";

/// Words where the system's espeak-ng 1.51 (Debian 12) reads differently from the 1.52 that
/// made the reference: (reference, 1.51). Any other difference fails the test.
const KNOWN_1_51_DIFFERENCES: &[(&str, &str)] = &[
    // "forty": 1.52 has the open-mid vowel of "for".
    ("fˈɔːɹɾi", "fˈoːɹɾi"),
    // "PM": 1.52 glides from "p" into "m" with a palatal off-glide.
    ("pˌiːʲˈɛm", "pˌiːˈɛm"),
];

struct Item {
    name: String,
    text: String,
    phonemes: Vec<String>,
    ids: Vec<Vec<i64>>,
}

fn reference() -> Vec<Item> {
    let path = common::shared_dir().join("reference/tts/reference.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap();
    json["items"]
        .as_array()
        .expect("reference.json has items")
        .iter()
        .map(|item| Item {
            name: item["name"].as_str().unwrap().to_string(),
            text: item["text"].as_str().unwrap().to_string(),
            phonemes: serde_json::from_value(item["phonemes"].clone()).unwrap(),
            ids: serde_json::from_value(item["phoneme_ids"].clone()).unwrap(),
        })
        .collect()
}

fn id_map() -> HashMap<String, Vec<i64>> {
    let path = common::pulled().join("test/tts/en_US-joe-medium.onnx.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap();
    assert_eq!(config["espeak"]["voice"], VOICE, "the test voice's espeak voice");
    serde_json::from_value(config["phoneme_id_map"].clone()).unwrap()
}

/// Unwraps with the error's own message, which says what to install.
fn ok<T>(result: Result<T, impl std::fmt::Display>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

fn phonemize(text: &str) -> Vec<String> {
    ok(espeak::phonemize(text, VOICE))
}

/// Splits a sentence's phonemes into words, each with the clause punctuation that follows it.
fn words(sentence: &str) -> Vec<(&str, &str)> {
    sentence
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let body = w.trim_end_matches([',', '.', '!', '?', ';', ':']);
            (body, &w[body.len()..])
        })
        .collect()
}

#[test]
fn phonemes_match_piper_up_to_known_espeak_version_differences() {
    let version = ok(espeak::lock()).version().to_string();
    let mut differences = Vec::new();
    for item in reference() {
        let ours = phonemize(&item.text);
        // Sentence splitting and punctuation come from wick, not from the espeak-ng version:
        // they must match exactly.
        assert_eq!(ours.len(), item.phonemes.len(), "{}: sentences of {:?}: {ours:?}", item.name, item.text);
        for (theirs, ours) in item.phonemes.iter().zip(&ours) {
            let (theirs_words, ours_words) = (words(theirs), words(ours));
            assert_eq!(
                theirs_words.len(),
                ours_words.len(),
                "{}: words differ:\n piper {theirs:?}\n wick  {ours:?}",
                item.name
            );
            for ((t, t_punct), (o, o_punct)) in theirs_words.iter().zip(&ours_words) {
                assert_eq!(
                    t_punct, o_punct,
                    "{}: punctuation after {t:?}:\n piper {theirs:?}\n wick  {ours:?}",
                    item.name
                );
                if t != o {
                    differences.push((item.name.clone(), t.to_string(), o.to_string()));
                }
            }
            if theirs_words == ours_words {
                assert_eq!(theirs, ours, "{}: same words, different spacing", item.name);
            }
        }
    }
    for (name, theirs, ours) in &differences {
        println!("{name}: piper (espeak-ng 1.52) {theirs:?}, wick (espeak-ng {version}) {ours:?}");
    }
    let unexpected: Vec<_> =
        differences.iter().filter(|(_, t, o)| !KNOWN_1_51_DIFFERENCES.contains(&(t.as_str(), o.as_str()))).collect();
    assert!(unexpected.is_empty(), "words espeak-ng {version} reads unlike Piper's 1.52: {unexpected:?}");
}

#[test]
fn reference_phonemes_map_to_the_reference_ids() {
    let map = id_map();
    for item in reference() {
        assert_eq!(item.phonemes.len(), item.ids.len());
        for (phonemes, ids) in item.phonemes.iter().zip(&item.ids) {
            let ours = ok(phoneme_ids(phonemes, &map));
            assert_eq!(&ours.ids, ids, "{}: ids of {phonemes:?}", item.name);
            assert!(ours.unknown.is_empty(), "{}: unknown phonemes {:?}", item.name, ours.unknown);
        }
    }
}

#[test]
fn text_to_ids_gives_the_reference_ids_where_espeak_agrees() {
    let map = id_map();
    let mut exact = 0;
    for item in reference() {
        let sentences = ok(text_to_ids(&item.text, VOICE, &map));
        assert_eq!(sentences.len(), item.ids.len(), "{}", item.name);
        for ((sentence, phonemes), ids) in sentences.iter().zip(&item.phonemes).zip(&item.ids) {
            assert!(sentence.unknown.is_empty(), "{}: unknown phonemes {:?}", item.name, sentence.unknown);
            assert_eq!(sentence.ids, ok(phoneme_ids(&sentence.phonemes, &map)).ids);
            if &sentence.phonemes == phonemes {
                assert_eq!(&sentence.ids, ids, "{}: {phonemes:?}", item.name);
                exact += 1;
            }
        }
    }
    // All but the sentence with "forty" and "PM" (see KNOWN_1_51_DIFFERENCES).
    assert!(exact >= 7, "only {exact} of 8 reference sentences phonemized exactly");
}

#[test]
fn punctuation_and_sentences() {
    assert_eq!(phonemize("Hello, world."), ["həlˈoʊ, wˈɜːld."]);
    assert_eq!(phonemize("Really?! Yes; fine: ok."), ["ɹˈiəli?", "jˈɛs; fˈaɪn: ˌoʊkˈeɪ."]);
    assert_eq!(phonemize("Hello — world."), ["həlˈoʊ; wˈɜːld."]);
    // Without a mark, the end of the text still ends the sentence, and adds no mark.
    assert_eq!(phonemize("hello world"), ["həlˈoʊ wˈɜːld"]);
    // A paragraph ends a sentence; an ellipsis is a pause inside one. Here wick differs from
    // Piper on purpose: Piper drops the `.` before a paragraph break and glues `wˈeɪtwˌʌt`.
    assert_eq!(phonemize("Hi.\n\nHello"), ["hˈaɪ.", "həlˈoʊ"]);
    assert_eq!(phonemize("Wait... what?"), ["wˈeɪt wˌʌt?"]);
    // A decimal point, a URL's dots and a time's colon are not clause punctuation.
    assert_eq!(phonemize("It is 3.5.").len(), 1);
    assert_eq!(phonemize("See example.com/a.b now.").len(), 1);
}

#[test]
fn empty_and_emoji_only_text_give_nothing() {
    let map = id_map();
    assert!(phonemize("").is_empty());
    assert!(phonemize("  \n ").is_empty());
    assert!(ok(text_to_ids("", VOICE, &map)).is_empty());
    assert!(ok(text_to_ids("🎉👍🏽 ❤️", VOICE, &map)).is_empty());
    let sentences = ok(text_to_ids("Great job 🎉!", VOICE, &map));
    assert_eq!(sentences.len(), 1);
    assert_eq!(sentences[0].phonemes, "ɡɹˈeɪt dʒˈɑːb!");

    let mut chunker = Chunker::default();
    assert!(chunker.push("🎉👍🏽").is_empty());
    assert!(chunker.push(" ❤️\n").is_empty());
    assert!(chunker.finish().is_empty());
}

#[test]
fn long_text_phonemizes_sentence_by_sentence() {
    let sentence = "The quick brown fox jumps over the lazy dog, and it runs away. ";
    let count = 5000 / sentence.len() + 1;
    let text = sentence.repeat(count);
    assert!(text.len() >= 5000);
    let out = phonemize(&text);
    assert_eq!(out.len(), count);
    assert!(out.iter().all(|s| s == &out[0]), "sentences differ: {:?}", &out[..2]);
    assert!(out[0].contains(", ") && out[0].ends_with('.'), "{:?}", out[0]);

    // Without punctuation espeak-ng cuts the text into clauses by length; no word may be lost
    // or glued to its neighbour at those cuts.
    let text = "hello ".repeat(1000);
    let out = phonemize(&text);
    let words: Vec<&str> = out.iter().flat_map(|s| s.split_whitespace()).collect();
    assert_eq!(words.len(), 1000, "{} sentences", out.len());
    assert!(words.iter().all(|w| *w == "həlˈoʊ"), "{:?}", words.iter().find(|w| **w != "həlˈoʊ"));
}

#[test]
fn an_unknown_voice_is_an_error_naming_it() {
    let err = espeak::phonemize("hello", "xx-no-such-voice").unwrap_err();
    assert!(matches!(err, EspeakError::UnknownVoice { .. }), "{err:?}");
    assert!(err.to_string().contains("`xx-no-such-voice`"), "{err}");
    // The library is still usable afterwards.
    assert_eq!(phonemize("hello"), ["həlˈoʊ"]);
}

#[test]
fn espeak_is_safe_to_use_from_many_threads() {
    let texts = ["Hello! I am wick, your voice assistant.", "The capital of France is Paris."];
    let expected: Vec<Vec<String>> = texts.iter().map(|t| phonemize(t)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let (texts, expected) = (&texts, &expected);
                scope.spawn(move || {
                    for round in 0..20 {
                        let k = (n + round) % texts.len();
                        assert_eq!(phonemize(texts[k]), expected[k]);
                        if round % 5 == 0 {
                            let (samples, _) = ok(espeak::synthesize("Hi.", VOICE));
                            assert!(!samples.is_empty());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn espeak_synthesizes_the_fallback_voice() {
    let (samples, rate) = ok(espeak::synthesize("Hello, I am wick. The time is 3:45 PM.", VOICE));
    assert_eq!(rate, ok(espeak::lock()).sample_rate());
    assert_eq!(rate, 22050);
    let seconds = samples.len() as f32 / rate as f32;
    assert!((1.0..10.0).contains(&seconds), "{seconds} s of audio");
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.05 && peak <= 1.0, "peak {peak}");
    let rms = (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt();
    assert!(rms > 0.01, "rms {rms}: silence");

    let (empty, rate) = ok(espeak::synthesize("", VOICE));
    assert!(empty.is_empty());
    assert_eq!(rate, 22050);
    assert!(ok(espeak::synthesize(" \n", VOICE)).0.is_empty());
}

#[test]
fn missing_data_is_an_error_saying_what_to_install() {
    const CHILD: &str = "WICK_TTS_TEXT_CHILD";
    if std::env::var_os(CHILD).is_some() {
        // The child process, whose espeak-ng was pointed at an empty directory.
        let err = espeak::phonemize("hello", VOICE).unwrap_err();
        assert!(matches!(err, EspeakError::Init { .. }), "{err:?}");
        println!("child error: {err}");
        return;
    }
    // espeak-ng initialises once per process, so the failure is provoked in a fresh one.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "missing_data_is_an_error_saying_what_to_install", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("ESPEAK_DATA_PATH", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let message = stdout
        .lines()
        .find_map(|l| l.split_once("child error: "))
        .map(|(_, m)| m)
        .expect("the child printed its error");
    println!("{message}");
    assert!(message.contains(&empty.path().display().to_string()), "names the data path: {message}");
    assert!(message.contains("apt-get install espeak-ng-data libespeak-ng-dev"), "says what to install: {message}");
}
