//! Whisper, Llama and the voice as pipeline stages, and files standing in for the microphone
//! and the loudspeaker (`wick ask`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::audio::AudioError;
use crate::llm::engine::{Conversation, Engine, GenerateOptions};
use crate::pipeline::{Captured, Hear, Loudspeaker, Microphone, Speak, StageResult, Think, Thought};
use crate::stt::Transcriber;
use crate::tts::speaker::Speaker;

impl Hear for Transcriber {
    fn hear(&mut self, samples: &[f32], alive: &dyn Fn()) -> StageResult<String> {
        Ok(self.transcribe_watched(samples, alive)?.text)
    }
}

/// The language model with the conversation it keeps across turns.
pub struct Conversational {
    pub engine: Engine,
    pub conversation: Conversation,
    pub options: GenerateOptions,
}

impl Think for Conversational {
    fn think(
        &mut self,
        user: &str,
        on_text: &mut dyn FnMut(&str),
        on_token: &mut dyn FnMut(),
        cancelled: &dyn Fn() -> bool,
    ) -> StageResult<Thought> {
        let reply = self.engine.reply_counting(
            &mut self.conversation,
            user,
            &self.options,
            on_text,
            &mut |_| on_token(),
            cancelled,
        )?;
        Ok(Thought { text: reply.text, prompt_tokens: reply.prompt_ids.len(), gen_tokens: reply.gen_ids.len() })
    }
}

/// The voice with its rate looked up once.
pub struct Voice {
    speaker: Speaker,
    rate: u32,
}

impl Voice {
    pub fn new(speaker: Speaker) -> Result<Self, crate::tts::speaker::SpeakError> {
        let rate = speaker.sample_rate()?;
        Ok(Self { speaker, rate })
    }
}

impl Speak for Voice {
    fn rate(&self) -> u32 {
        self.rate
    }

    fn speak(&mut self, text: &str, on_audio: &mut dyn FnMut(&[f32])) -> StageResult<()> {
        self.speaker.speak(text, on_audio)?;
        Ok(())
    }
}

/// A WAV file as the microphone: read a period at a time as fast as asked (not paced), then
/// the end.
pub struct WavMicrophone {
    samples: Vec<f32>,
    rate: u32,
    pos: usize,
    period: usize,
}

impl WavMicrophone {
    /// Opens a WAV file; one with no samples is an empty recording, as a press with no sound.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let audio = match crate::audio::read_wav_mono(path) {
            Err(AudioError::Empty { .. }) => {
                crate::audio::MonoAudio { samples: Vec::new(), sample_rate: crate::audio::STT_SAMPLE_RATE, channels: 1 }
            }
            other => other?,
        };
        let period = (audio.sample_rate as usize / 50).max(1);
        Ok(Self { samples: audio.samples, rate: audio.sample_rate, pos: 0, period })
    }

    /// Samples already in memory (mono, at `rate`) as the microphone.
    pub fn from_samples(samples: Vec<f32>, rate: u32) -> Self {
        let period = (rate as usize / 50).max(1);
        Self { samples, rate, pos: 0, period }
    }

    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.rate as f64
    }
}

impl Microphone for WavMicrophone {
    fn rate(&self) -> Option<u32> {
        Some(self.rate)
    }

    fn read(&mut self, out: &mut Vec<f32>) -> StageResult<Captured> {
        if self.pos >= self.samples.len() {
            return Ok(Captured::End);
        }
        let end = (self.pos + self.period).min(self.samples.len());
        out.extend_from_slice(&self.samples[self.pos..end]);
        self.pos = end;
        Ok(Captured::Audio)
    }
}

/// A loudspeaker that keeps what it is given (at `rate`), for writing to a file.
pub struct MemoryLoudspeaker {
    rate: u32,
    samples: Arc<Mutex<Vec<f32>>>,
}

impl MemoryLoudspeaker {
    /// The loudspeaker and a handle on what it will have played.
    pub fn new(rate: u32) -> (Self, Arc<Mutex<Vec<f32>>>) {
        let samples = Arc::new(Mutex::new(Vec::new()));
        (Self { rate, samples: samples.clone() }, samples)
    }
}

impl Loudspeaker for MemoryLoudspeaker {
    fn rate(&self) -> Option<u32> {
        Some(self.rate)
    }

    fn period_frames(&self) -> usize {
        (self.rate as usize / 50).max(1)
    }

    fn play(&mut self, samples: &[f32]) -> StageResult<bool> {
        self.samples.lock().unwrap().extend_from_slice(samples);
        Ok(true)
    }

    fn stop(&mut self) {}

    fn drain(&mut self) {}
}
