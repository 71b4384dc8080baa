//! The voice: text to speech with Piper VITS voices on Candle. Text becomes espeak-ng
//! phonemes, phonemes become the voice's ids, the VITS network turns ids into audio; a
//! chunker cuts the language model's streamed text into speakable pieces first. When no
//! neural voice can be loaded, espeak-ng's own synthesizer speaks instead.

pub mod chunker;
pub mod espeak;
pub mod onnx;
pub mod phonemes;
pub mod speaker;
pub mod vits;
pub mod voice;
