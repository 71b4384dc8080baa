//! The speech-to-text thread: transcribes each utterance and decides whether it is worth an
//! answer. Silence, noise and fragments skip the LLM and get a short spoken apology.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::health::{self, Heartbeat};
use super::messages::{Generation, Heard, SpeechItem, StageEvent, Utterance};
use super::stages::Hear;

/// Said when the recording held no words.
pub const NOTHING_HEARD: &str = "Sorry, I didn't catch that.";
/// Said when speech-to-text itself failed.
pub const HEARING_FAILED: &str = "Sorry, I could not make that out.";

/// Whether a transcript holds words: Whisper writes noise as "[BLANK_AUDIO]", "(music)" or
/// lone punctuation, and a single letter alone is a fragment, not a question ("1, 2, 3" is
/// three words).
pub fn worth_answering(text: &str) -> bool {
    // Whisper marks sounds as [..], (..) or *..*: they are not words.
    let (mut depth, mut starred) = (0i32, false);
    let mut plain = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            '*' => starred = !starred,
            _ if depth == 0 && !starred => plain.push(c),
            _ => {}
        }
    }
    let words: Vec<usize> = plain
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).count())
        .filter(|&n| n > 0)
        .collect();
    words.len() >= 2 || words.iter().any(|&n| n >= 2)
}

pub fn spawn(
    mut hear: Box<dyn Hear>,
    generation: Generation,
    utterances: Receiver<Utterance>,
    heard: Sender<Heard>,
    speech: Sender<SpeechItem>,
    events: Sender<StageEvent>,
    heartbeat: Arc<Heartbeat>,
) -> JoinHandle<()> {
    let (beat, died) = (heartbeat.clone(), events.clone());
    let body = move || {
        while let Some(u) = health::next(&utterances, &beat) {
            let turn = u.turn;
            if !generation.is_current(turn) {
                let _ = events.send(StageEvent::Transcribed {
                    turn,
                    text: String::new(),
                    at: Instant::now(),
                    forwarded: false,
                });
                continue;
            }
            let say = |text: &str| {
                let _ = speech.send(SpeechItem::Text { turn, text: text.into() });
                let _ = speech.send(SpeechItem::End { turn });
            };
            match hear.hear(&u.samples, &|| beat.beat()) {
                Ok(text) => {
                    let text = text.trim().to_string();
                    let answer = worth_answering(&text) && generation.is_current(turn);
                    let event =
                        StageEvent::Transcribed { turn, text: text.clone(), at: Instant::now(), forwarded: answer };
                    let _ = events.send(event);
                    if answer {
                        let _ = heard.send(Heard { turn, text });
                    } else if generation.is_current(turn) {
                        tracing::info!(turn, transcript = %text, "nothing worth answering was heard");
                        say(NOTHING_HEARD);
                    }
                }
                Err(e) => {
                    let _ = events.send(StageEvent::Failed { turn, stage: "stt", error: e.to_string() });
                    let _ = events.send(StageEvent::Transcribed {
                        turn,
                        text: String::new(),
                        at: Instant::now(),
                        forwarded: false,
                    });
                    say(HEARING_FAILED);
                }
            }
        }
    };
    health::spawn_stage(heartbeat, died, body)
}

#[cfg(test)]
mod tests {
    use super::worth_answering;

    #[test]
    fn words_are_worth_an_answer_and_noise_is_not() {
        for text in
            ["What time is it?", "Hi.", "Go", "42", "It's", "1, 2, 3", "A B", "(laughs) Thanks", "*cough* Hello"]
        {
            assert!(worth_answering(text), "{text:?}");
        }
        for text in ["", "  ", ".", "...", "I.", "[BLANK_AUDIO]", "(music)", "[ Silence ]", "♪ ♪", "*cough*", "- -"]
        {
            assert!(!worth_answering(text), "{text:?}");
        }
    }
}
