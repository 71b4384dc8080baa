//! The LLM thread: answers each transcript, streaming the answer through the chunker to the
//! voice as it is written. Generation stops at the first token after the turn goes stale.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::health::{self, Heartbeat};
use super::messages::{Generation, Heard, SpeechItem, StageEvent, TurnId};
use super::stages::Think;
use crate::text::Chunker;

/// Said when the LLM fails (a question too long for the context, say).
pub const THINKING_FAILED: &str = "Sorry, I could not answer that.";

/// Tokens sampled so far in the turn the LLM is on; the supervisor reads it at a cancel.
pub type TokenCount = Arc<Mutex<(TurnId, usize)>>;

pub fn spawn(
    mut think: Box<dyn Think>,
    generation: Generation,
    heard: Receiver<Heard>,
    speech: Sender<SpeechItem>,
    events: Sender<StageEvent>,
    tokens: TokenCount,
    heartbeat: Arc<Heartbeat>,
) -> JoinHandle<()> {
    let (beat, died) = (heartbeat.clone(), events.clone());
    let body = move || {
        while let Some(Heard { turn, text }) = health::next(&heard, &beat) {
            let replied = |text: String, prompt_tokens, gen_tokens| {
                let _ = events.send(StageEvent::Replied { turn, text, prompt_tokens, gen_tokens });
            };
            if !generation.is_current(turn) {
                replied(String::new(), 0, 0);
                continue;
            }
            *tokens.lock().unwrap() = (turn, 0);
            let mut chunker = Chunker::new(Default::default());
            let send = |chunk: String| {
                let _ = speech.send(SpeechItem::Text { turn, text: chunk });
            };
            let mut on_text = |delta: &str| chunker.push(delta).into_iter().for_each(send);
            let mut on_token = || {
                beat.beat();
                // The count is the supervisor's to read at a cancel: never hold it while
                // sending to the supervisor, which may be waiting for it.
                let first = {
                    let mut count = tokens.lock().unwrap();
                    count.1 += 1;
                    count.1 == 1
                };
                if first {
                    let _ = events.send(StageEvent::FirstToken { turn, at: Instant::now() });
                }
            };
            let cancelled = || {
                beat.beat();
                !generation.is_current(turn)
            };
            let result = think.think(&text, &mut on_text, &mut on_token, &cancelled);
            match result {
                Ok(thought) => {
                    if generation.is_current(turn) {
                        chunker.finish().into_iter().for_each(send);
                    }
                    replied(thought.text, thought.prompt_tokens, thought.gen_tokens);
                }
                Err(e) => {
                    let _ = events.send(StageEvent::Failed { turn, stage: "llm", error: e.to_string() });
                    send(THINKING_FAILED.into());
                    replied(String::new(), 0, tokens.lock().unwrap().1);
                }
            }
            let _ = speech.send(SpeechItem::End { turn });
        }
    };
    health::spawn_stage(heartbeat, died, body)
}
