//! Speakable text: the language model's streamed answer cut into pieces a voice can say while
//! the model goes on writing, with markdown and emoji dropped. The thinking stage cuts with it
//! and the voice speaks what it cut; it lives apart from both so that neither reaches into
//! the other.

mod chunker;

pub use chunker::{strip_emoji, Chunker, ChunkerOptions};
