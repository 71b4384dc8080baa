//! The voice: text to speech with Piper VITS voices on Candle. Text becomes espeak-ng
//! phonemes, phonemes become the voice's ids, the VITS network turns ids into audio. The
//! answer arrives already cut into speakable chunks (`crate::text`). When no neural voice can
//! be loaded, espeak-ng's own synthesizer speaks instead.

pub mod bench;
pub mod espeak;
pub mod onnx;
pub mod phonemes;
mod settings;
pub mod speaker;
pub mod vits;
pub mod voice;

pub use settings::Settings;
