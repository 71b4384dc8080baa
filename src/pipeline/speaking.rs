//! The voice thread: turns each chunk of text into audio while the LLM writes the next one.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::health::{self, Heartbeat};
use super::messages::{Generation, Sound, SpeechItem, StageEvent, TurnId};
use super::stages::Speak;

pub fn spawn(
    mut voice: Box<dyn Speak>,
    generation: Generation,
    speech: Receiver<SpeechItem>,
    sound: Sender<Sound>,
    events: Sender<StageEvent>,
    heartbeat: Arc<Heartbeat>,
) -> JoinHandle<()> {
    let (beat, died) = (heartbeat.clone(), events.clone());
    let body = move || {
        let rate = voice.rate();
        // The turn whose first audio has been reported.
        let mut started: Option<TurnId> = None;
        while let Some(item) = health::next(&speech, &beat) {
            match item {
                SpeechItem::Text { turn, text } => {
                    if !generation.is_current(turn) {
                        continue;
                    }
                    let mut on_audio = |audio: &[f32]| {
                        beat.beat();
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
    health::spawn_stage(heartbeat, died, body)
}
