//! The recorder thread: reads the microphone all the time into a short pre-roll ring, so the
//! first syllable spoken just before the press is kept; between start and stop it collects
//! the utterance, caps it, resamples it to 16 kHz and hands it to speech-to-text.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::health::{self, Heartbeat};
use super::messages::{RecorderCommand, StageEvent, TurnId, Utterance};
use super::stages::{Captured, Microphone};
use crate::audio::{resample, STT_SAMPLE_RATE};

#[derive(Debug, Clone, Copy)]
pub struct RecorderSettings {
    pub preroll: Duration,
    pub max_record: Duration,
}

struct Recorder {
    mic: Box<dyn Microphone>,
    settings: RecorderSettings,
    utterances: Sender<Utterance>,
    events: Sender<StageEvent>,
    heartbeat: Arc<Heartbeat>,
    rate: Option<u32>,
    ring: VecDeque<f32>,
    recording: Option<(TurnId, Vec<f32>)>,
}

/// Starts the recorder; with `recording`, the first utterance starts at once (a file as
/// microphone: every sample of it belongs to the turn).
pub fn spawn(
    mic: Box<dyn Microphone>,
    settings: RecorderSettings,
    recording: Option<TurnId>,
    commands: Receiver<RecorderCommand>,
    utterances: Sender<Utterance>,
    events: Sender<StageEvent>,
    heartbeat: Arc<Heartbeat>,
) -> JoinHandle<()> {
    let died = events.clone();
    let mut r = Recorder {
        mic,
        settings,
        utterances,
        events,
        heartbeat: heartbeat.clone(),
        rate: None,
        ring: VecDeque::new(),
        recording: recording.map(|t| (t, Vec::new())),
    };
    health::spawn_stage(heartbeat, died, move || r.run(commands))
}

impl Recorder {
    fn run(&mut self, commands: Receiver<RecorderCommand>) {
        let mut buf = Vec::new();
        loop {
            self.heartbeat.beat();
            loop {
                match commands.try_recv() {
                    Ok(RecorderCommand::Shutdown) | Err(TryRecvError::Disconnected) => return,
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            buf.clear();
            match self.mic.read(&mut buf) {
                Ok(Captured::Audio) => self.feed(&buf),
                Ok(Captured::Unavailable) => {}
                Ok(Captured::End) => {
                    if let Some((turn, _)) = &self.recording {
                        let turn = *turn;
                        self.finish(turn, false);
                    }
                    // Nothing more will come: only commands matter now.
                    while let Some(cmd) = health::next(&commands, &self.heartbeat) {
                        match cmd {
                            RecorderCommand::Shutdown => return,
                            cmd => self.command(cmd),
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!("microphone: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn command(&mut self, cmd: RecorderCommand) {
        match cmd {
            RecorderCommand::Start { turn } => {
                let preroll: Vec<f32> = self.ring.drain(..).collect();
                self.recording = Some((turn, preroll));
            }
            RecorderCommand::Stop { turn } => {
                if self.recording.as_ref().is_some_and(|(t, _)| *t == turn) {
                    self.finish(turn, false);
                }
            }
            RecorderCommand::Discard { turn } => {
                if self.recording.as_ref().is_some_and(|(t, _)| *t == turn) {
                    self.recording = None;
                }
            }
            RecorderCommand::Shutdown => {}
        }
    }

    fn feed(&mut self, samples: &[f32]) {
        let rate = self.mic.rate();
        if rate != self.rate {
            // A reopened device may run at another rate: older audio cannot be joined to it.
            self.ring.clear();
            if let Some((_, utterance)) = &mut self.recording {
                if self.rate.is_some() && !utterance.is_empty() {
                    tracing::warn!(?rate, "the microphone's rate changed mid-utterance: keeping only the newer audio");
                    utterance.clear();
                }
            }
            self.rate = rate;
        }
        let Some(rate) = rate else { return };
        match &mut self.recording {
            Some((turn, utterance)) => {
                let turn = *turn;
                utterance.extend_from_slice(samples);
                let cap = (self.settings.max_record.as_secs_f64() * rate as f64) as usize;
                if utterance.len() >= cap {
                    utterance.truncate(cap);
                    self.finish(turn, true);
                }
            }
            None => {
                let keep = (self.settings.preroll.as_secs_f64() * rate as f64) as usize;
                self.ring.extend(samples);
                let excess = self.ring.len().saturating_sub(keep);
                self.ring.drain(..excess);
            }
        }
    }

    fn finish(&mut self, turn: TurnId, capped: bool) {
        let Some((_, audio)) = self.recording.take() else { return };
        let at = Instant::now();
        let rate = self.rate.unwrap_or(STT_SAMPLE_RATE);
        let audio_s = audio.len() as f64 / rate as f64;
        if capped {
            tracing::info!(turn, audio_s, "recording reached the cap: ending the utterance");
        }
        let samples = resample(&audio, rate, STT_SAMPLE_RATE).unwrap_or_else(|e| {
            tracing::error!("resampling the utterance from {rate} Hz: {e}");
            Vec::new()
        });
        let _ = self.events.send(StageEvent::Recorded { turn, at, audio_s, capped });
        let _ = self.utterances.send(Utterance { turn, samples });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A microphone at a fixed rate; the tests call the recorder's steps directly.
    struct AtRate(u32);

    impl Microphone for AtRate {
        fn rate(&self) -> Option<u32> {
            Some(self.0)
        }
        fn read(&mut self, _: &mut Vec<f32>) -> crate::pipeline::StageResult<Captured> {
            Ok(Captured::End)
        }
    }

    fn recorder(preroll_ms: u64, max_s: u64) -> (Recorder, Receiver<Utterance>, Receiver<StageEvent>) {
        let (utterances, u_rx) = crossbeam_channel::unbounded();
        let (events, e_rx) = crossbeam_channel::unbounded();
        let settings =
            RecorderSettings { preroll: Duration::from_millis(preroll_ms), max_record: Duration::from_secs(max_s) };
        let r = Recorder {
            mic: Box::new(AtRate(16_000)),
            settings,
            utterances,
            events,
            heartbeat: Heartbeat::new("recorder"),
            rate: None,
            ring: VecDeque::new(),
            recording: None,
        };
        (r, u_rx, e_rx)
    }

    #[test]
    fn an_utterance_starts_with_the_pre_roll_and_ends_at_the_stop() {
        let (mut r, utterances, _) = recorder(300, 30);
        // One second before the press, counting up so the kept part can be told apart.
        let before: Vec<f32> = (0..16_000).map(|i| i as f32 / 16_000.0).collect();
        for period in before.chunks(320) {
            r.feed(period);
        }
        r.command(RecorderCommand::Start { turn: 7 });
        r.feed(&[0.5; 16_000]);
        r.command(RecorderCommand::Stop { turn: 7 });
        let u = utterances.try_recv().expect("the utterance");
        assert_eq!(u.turn, 7);
        assert_eq!(u.samples.len(), 4_800 + 16_000, "300 ms of pre-roll and the second held");
        assert_eq!(u.samples[0], before[16_000 - 4_800], "the pre-roll is the last 300 ms before the press");
        r.feed(&[0.1; 320]);
        assert!(utterances.try_recv().is_err(), "nothing is recorded after the stop");
    }

    #[test]
    fn a_long_hold_is_cut_at_the_cap_and_a_discarded_one_is_never_sent() {
        let (mut r, utterances, events) = recorder(0, 2);
        r.command(RecorderCommand::Start { turn: 1 });
        for _ in 0..200 {
            r.feed(&[0.2; 320]); // four seconds in all
        }
        let u = utterances.try_recv().unwrap();
        assert_eq!(u.samples.len(), 32_000);
        assert!(matches!(events.try_recv(), Ok(StageEvent::Recorded { capped: true, .. })));
        r.command(RecorderCommand::Stop { turn: 1 });
        assert!(utterances.try_recv().is_err(), "the release after the cap adds nothing");

        r.command(RecorderCommand::Start { turn: 2 });
        r.feed(&[0.2; 320]);
        r.command(RecorderCommand::Discard { turn: 2 });
        r.command(RecorderCommand::Stop { turn: 2 });
        assert!(utterances.try_recv().is_err(), "a discarded recording is not heard");
    }
}
