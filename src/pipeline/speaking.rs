//! The voice thread: turns each chunk of text into audio while the LLM writes the next one.

use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::messages::{Generation, Sound, SpeechItem, StageEvent, TurnId};
use super::stages::Speak;

pub fn spawn(
    mut voice: Box<dyn Speak>,
    generation: Generation,
    speech: Receiver<SpeechItem>,
    sound: Sender<Sound>,
    events: Sender<StageEvent>,
) -> JoinHandle<()> {
    let body = move || {
        let rate = voice.rate();
        // The turn whose first audio has been reported.
        let mut started: Option<TurnId> = None;
        for item in speech {
            match item {
                SpeechItem::Text { turn, text } => {
                    if !generation.is_current(turn) {
                        continue;
                    }
                    let mut on_audio = |audio: &[f32]| {
                        if audio.is_empty() || !generation.is_current(turn) {
                            return;
                        }
                        if started != Some(turn) {
                            started = Some(turn);
                            let _ = events.send(StageEvent::FirstChunk { turn, at: Instant::now() });
                        }
                        let _ = sound.send(Sound::Audio { turn, samples: audio.to_vec(), rate });
                    };
                    if let Err(e) = voice.speak(&text, &mut on_audio) {
                        // One chunk the voice cannot say must not silence the rest of the answer.
                        tracing::error!(turn, chunk = %text, "voice: {e}");
                        let _ = events.send(StageEvent::Failed { turn, stage: "tts", error: e.to_string() });
                    }
                }
                SpeechItem::End { turn } => {
                    let _ = sound.send(Sound::End { turn });
                }
            }
        }
    };
    std::thread::Builder::new().name("wick-tts".into()).spawn(body).expect("spawning the voice thread")
}
