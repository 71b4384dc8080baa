//! wick: a local voice appliance. Whisper hears, a quantized Llama thinks, a neural voice
//! speaks, all on Candle in one process. This crate holds the stages and their plumbing;
//! `main.rs` and `cli/` are the command line. `docs/architecture.md` draws the rooms.

// The appliance: settings, assembly, the service loop, doctor.
pub mod appliance;
pub mod config;
// The stages' rooms: devices and engines, each with its own settings.
pub mod audio;
pub mod input;
pub mod llm;
pub mod models;
pub mod pipeline;
pub mod stt;
pub mod text;
pub mod tts;
// Small pieces more than one room uses.
pub mod attention;
pub mod cpu_kernels;
pub mod device;
pub mod durable;
pub mod huge_pages;
pub mod measure;
pub mod retry;
pub mod settings;
