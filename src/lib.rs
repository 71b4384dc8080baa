//! wick: a local voice appliance. Whisper hears, a quantized Llama thinks, a neural voice
//! speaks, all on Candle in one process. This crate holds the stages and their plumbing;
//! `main.rs` is the command line.

pub mod appliance;
pub mod audio;
pub mod bench;
pub mod config;
pub mod input;
pub mod llm;
pub mod models;
pub mod pipeline;
pub mod stt;
pub mod tts;
