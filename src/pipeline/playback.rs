//! The playback thread: converts the voice's audio to the loudspeaker's rate and writes it a
//! period at a time, checking between periods whether the turn is still wanted; a barge-in
//! drops what the device has queued, so the answer stops within one period.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::health::{self, Heartbeat};
use super::messages::{Generation, Sound, StageEvent, TurnId};
use super::stages::Loudspeaker;
use crate::audio::Converter;

struct Player {
    speaker: Box<dyn Loudspeaker>,
    generation: Generation,
    events: Sender<StageEvent>,
    heartbeat: Arc<Heartbeat>,
    /// The turn with audio in the device, and how many samples of it were played.
    playing: Option<(TurnId, usize)>,
    /// The voice-to-device converter, kept while the rates stay the same.
    converter: Option<Converter>,
    /// When the idle loudspeaker was last asked whether it is still there.
    idle_checked: Instant,
}

/// How often an idle loudspeaker is checked: an unplugged card is let go of within this.
const IDLE_CHECK: Duration = Duration::from_millis(500);

pub fn spawn(
    speaker: Box<dyn Loudspeaker>,
    generation: Generation,
    sound: Receiver<Sound>,
    events: Sender<StageEvent>,
    heartbeat: Arc<Heartbeat>,
) -> JoinHandle<()> {
    let died = events.clone();
    let mut p = Player {
        speaker,
        generation,
        events,
        heartbeat: heartbeat.clone(),
        playing: None,
        converter: None,
        idle_checked: Instant::now(),
    };
    health::spawn_stage(heartbeat, died, move || p.run(sound))
}

impl Player {
    fn run(&mut self, sound: Receiver<Sound>) {
        loop {
            self.heartbeat.beat();
            // Wake every few milliseconds even without audio: a turn cancelled while its last
            // periods sit in the device buffer must still go quiet at once.
            match sound.recv_timeout(Duration::from_millis(10)) {
                Ok(Sound::Audio { turn, samples, rate }) => self.play(turn, &samples, rate),
                Ok(Sound::End { turn }) => self.end(turn),
                Err(RecvTimeoutError::Timeout) => {
                    self.stop_if_stale();
                    if self.playing.is_none() && self.idle_checked.elapsed() >= IDLE_CHECK {
                        self.speaker.idle();
                        self.idle_checked = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn stop_if_stale(&mut self) -> bool {
        match self.playing {
            Some((turn, _)) if !self.generation.is_current(turn) => {
                self.speaker.stop();
                self.playing = None;
                true
            }
            _ => false,
        }
    }

    fn play(&mut self, turn: TurnId, samples: &[f32], rate: u32) {
        if self.stop_if_stale() || !self.generation.is_current(turn) {
            return;
        }
        let Some(device_rate) = self.speaker.rate() else {
            // No loudspeaker right now: the answer is dropped, but the turn still ends.
            self.playing.get_or_insert((turn, 0));
            return;
        };
        if !self.converter.as_ref().is_some_and(|c| c.converts(rate, device_rate)) {
            self.converter = match Converter::new(rate, device_rate) {
                Ok(c) => Some(c),
                Err(e) => {
                    // The turn still ends (its End comes); this audio cannot be played.
                    let _ = self.events.send(StageEvent::Failed { turn, stage: "playback", error: e.to_string() });
                    return;
                }
            };
        }
        let converted = self.converter.as_mut().map(|c| c.convert(samples));
        let audio = match converted {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                let _ = self.events.send(StageEvent::Failed { turn, stage: "playback", error: e.to_string() });
                return;
            }
            None => return,
        };
        let period = self.speaker.period_frames().max(1);
        for piece in audio.chunks(period) {
            self.heartbeat.beat();
            if self.stop_if_stale() || !self.generation.is_current(turn) {
                return;
            }
            if self.playing.is_none_or(|(t, _)| t != turn) {
                self.playing = Some((turn, 0));
                let _ = self.events.send(StageEvent::FirstSample { turn, at: Instant::now() });
            }
            match self.speaker.play(piece) {
                Ok(_) => {
                    if let Some((_, played)) = &mut self.playing {
                        *played += piece.len();
                    }
                }
                Err(e) => tracing::error!("loudspeaker: {e}"),
            }
        }
    }

    fn end(&mut self, turn: TurnId) {
        if !self.generation.is_current(turn) {
            self.stop_if_stale();
            return;
        }
        self.speaker.drain();
        let samples = match self.playing.take() {
            Some((t, n)) if t == turn => n,
            _ => 0,
        };
        let rate = self.speaker.rate().unwrap_or(0);
        let _ = self.events.send(StageEvent::Played { turn, at: Instant::now(), samples, rate });
    }
}
