//! What a room answers when one of its settings is out of range. Each room owns its settings
//! and their limits; it names the key within its own table, and `config` adds the table, so
//! the user reads the key's full name (`audio.period_ms`) next to what to use instead.

/// A setting a room refuses: its key within the room's table, and what is wrong with it and
/// what to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Invalid { key, message: message.into() }
    }
}

/// The result of checking a room's settings.
pub type Checked = Result<(), Invalid>;
