//! The `[models]` table: where the model files live and which model set runs.

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::{Checked, Invalid};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Model data directory; `--models-dir` and `WICK_MODELS` take precedence.
    pub dir: Option<PathBuf>,
    /// Model set to run (`default` or `test`); unset picks `default` when it is pulled, else `test`.
    pub set: Option<String>,
}

impl Settings {
    pub fn check(&self) -> Checked {
        if self.set.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(Invalid::new("set", "must name a model set, e.g. \"default\" or \"test\""));
        }
        Ok(())
    }
}
