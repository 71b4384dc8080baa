//! The stages as the pipeline sees them: traits, so that `pipeline/` knows what each stage
//! does and nothing of how (Whisper, Llama, Piper, ALSA or a file are wired in by the caller).

use std::error::Error;

pub type StageError = Box<dyn Error + Send + Sync>;
pub type StageResult<T> = Result<T, StageError>;

/// Speech to text: 16 kHz mono in, text out. `alive` is called often while it works (every
/// decoded token), as the stage's sign of life.
pub trait Hear: Send {
    fn hear(&mut self, samples: &[f32], alive: &dyn Fn()) -> StageResult<String>;
}

/// What one answer cost.
#[derive(Debug, Clone, Default)]
pub struct Thought {
    pub text: String,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
}

/// The conversation: a question in, a streamed answer out. `cancelled` is checked before every
/// decoded token; `on_token` is called for each sampled token.
pub trait Think: Send {
    fn think(
        &mut self,
        user: &str,
        on_text: &mut dyn FnMut(&str),
        on_token: &mut dyn FnMut(),
        cancelled: &dyn Fn() -> bool,
    ) -> StageResult<Thought>;
}

/// The voice: one chunk of text in, mono audio at `rate()` out (in one or more pieces).
pub trait Speak: Send {
    fn rate(&self) -> u32;
    fn speak(&mut self, text: &str, on_audio: &mut dyn FnMut(&[f32])) -> StageResult<()>;
}

/// What one read from the microphone gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    /// Samples were appended.
    Audio,
    /// No device right now (it is being reopened); the read returned after a short wait.
    Unavailable,
    /// A finite source (a file) has no more audio.
    End,
}

/// The microphone: mono samples at `rate()`, about one period per read; a read blocks until
/// the audio is there, so the recorder's loop runs at the device's pace.
pub trait Microphone: Send {
    /// The current rate (`None` while there is no device).
    fn rate(&self) -> Option<u32>;
    fn read(&mut self, out: &mut Vec<f32>) -> StageResult<Captured>;
}

/// The loudspeaker: mono samples at `rate()`, written about a period at a time.
pub trait Loudspeaker: Send {
    /// The current rate (`None` while there is no device: audio is dropped).
    fn rate(&self) -> Option<u32>;
    /// Frames per write, so that cancellation is checked between periods.
    fn period_frames(&self) -> usize;
    /// Plays (queues) samples; false when they were dropped for want of a device.
    fn play(&mut self, samples: &[f32]) -> StageResult<bool>;
    /// Drops whatever is queued, now.
    fn stop(&mut self);
    /// Waits until what is queued has been heard.
    fn drain(&mut self);
    /// Called about twice a second while nothing plays: a device can notice here that it was
    /// unplugged, and let go of it.
    fn idle(&mut self) {}
}
