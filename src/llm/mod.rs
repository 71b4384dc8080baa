//! The language model: quantized Llama-architecture GGUF models on Candle, their tokenizer,
//! and generation.

mod attend;
pub mod bench;
pub mod chat;
pub mod engine;
pub mod model;
mod pool;
mod qlinear;
pub mod rope;
pub mod sampling;
mod settings;
mod swiglu;
pub mod synthetic;
mod token_heads;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::Device;

pub use model::{Llama, LlamaConfig, LoadError};
pub use settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{}: no such file; fetch the models with `wick models pull`", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a GGUF model file ({message})", path.display())]
    NotGguf { path: PathBuf, message: String },
    #[error("{}: truncated: its tensors need {needed} bytes but the file has {actual}; download it again (`wick models pull`)", path.display())]
    Truncated { path: PathBuf, needed: u64, actual: u64 },
    #[error("{}: architecture {arch:?} is not supported; wick runs Llama-architecture models (Llama 3.x, SmolLM2)", path.display())]
    Architecture { path: PathBuf, arch: String },
    #[error("{}: {source}", path.display())]
    Load { path: PathBuf, source: Box<LoadError> },
    #[error("{}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("the prompt needs {tokens} tokens and the answer up to {max_tokens}, more than the context of {context}; shorten the prompt or raise the context")]
    PromptTooLong { tokens: usize, max_tokens: usize, context: usize },
    #[error("generation failed: {0}")]
    Generate(String),
}

/// An opened GGUF file whose header has been checked.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: gguf_file::Content,
    file: std::fs::File,
}

impl GgufFile {
    /// Reads the header, checks the architecture and that the file holds all its tensor data.
    pub fn open(path: &Path) -> Result<Self, LlmError> {
        let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LlmError::NotFound { path: path.into() },
            _ => LlmError::Io { path: path.into(), source: e },
        })?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| LlmError::NotGguf { path: path.into(), message: e.to_string() })?;
        let actual = file.metadata().map_err(|e| LlmError::Io { path: path.into(), source: e })?.len();
        let needed = content
            .tensor_infos
            .values()
            .map(|t| {
                let elems = t.shape.elem_count() as u64;
                let bytes = elems / t.ggml_dtype.block_size() as u64 * t.ggml_dtype.type_size() as u64;
                content.tensor_data_offset + t.offset + bytes
            })
            .max()
            .unwrap_or(content.tensor_data_offset);
        if needed > actual {
            return Err(LlmError::Truncated { path: path.into(), needed, actual });
        }
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "(none)".into());
        if arch != "llama" {
            return Err(LlmError::Architecture { path: path.into(), arch });
        }
        Ok(Self { path: path.into(), content, file })
    }

    /// Loads the model with a KV cache of `context` tokens (capped at the model's own).
    pub fn load_model(&mut self, context: usize, device: &Device) -> Result<Llama, LlmError> {
        Llama::load(&self.content, &mut self.file, context, device)
            .map_err(|source| LlmError::Load { path: self.path.clone(), source: Box::new(source) })
    }
}
