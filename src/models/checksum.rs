//! SHA-256 of files and streams, and the staging files every write goes through:
//! content lands under a temporary name in the target directory and is renamed to
//! its final name only once it is complete (and, where a pin exists, verified), so
//! a crash or a bad download never leaves a wrong file where an engine loads it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::error::{IoContext, ModelError};

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// sha256 of a file's content, advancing `bar` by the bytes read.
pub(crate) fn sha256_file(path: &Path, bar: &ProgressBar) -> Result<String, ModelError> {
    let mut f = File::open(path).at("open", path)?;
    let mut hasher = Sha256::new();
    // Large reads keep hashing of multi-GB files near disk speed.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ModelError::io("read", path, e)),
        };
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    Ok(hex(&hasher.finalize()))
}

/// A file being written under a temporary name next to its final path, hashing
/// what goes through it. Dropped without [`Staged::commit`], it is deleted.
pub(crate) struct Staged {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    dest: PathBuf,
    written: u64,
}

impl Staged {
    /// Starts a staging file for `dest`, creating the parent directory.
    pub(crate) fn new(dest: &Path) -> Result<Staged, ModelError> {
        let tmp = temp_beside(dest)?;
        Ok(Staged { tmp, hasher: Sha256::new(), dest: dest.to_path_buf(), written: 0 })
    }

    /// Copies all of `src` into the staging file; `what` names the source in errors.
    pub(crate) fn copy_from(&mut self, src: &mut dyn Read, what: &Path, bar: &ProgressBar) -> Result<(), ModelError> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ModelError::io("read", what, e)),
            };
            self.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> Result<(), ModelError> {
        let path = self.tmp.path().to_path_buf();
        self.tmp.as_file_mut().write_all(data).at("write", &path)?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// The sha256 of everything written so far.
    pub(crate) fn sha256(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Gives up hashing and hands over the temporary file, for callers that
    /// rename several files together.
    pub(crate) fn into_temp(self) -> tempfile::NamedTempFile {
        self.tmp
    }

    /// Checks the content against `expected` (when pinned) and only then moves
    /// it to its final name. On a mismatch the staging file is deleted.
    pub(crate) fn commit(self, expected: Option<&str>) -> Result<String, ModelError> {
        let actual = self.sha256();
        if let Some(expected) = expected {
            if !expected.eq_ignore_ascii_case(&actual) {
                return Err(ModelError::ChecksumMismatch { file: self.dest, expected: expected.to_string(), actual });
            }
        }
        persist(self.tmp, &self.dest)?;
        Ok(actual)
    }
}

/// Flushes a finished temporary file to disk and renames it onto `dest`.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), ModelError> {
    let tmp_path = tmp.path().to_path_buf();
    // Temporary files are created 0600; model files must be readable by the
    // service user even when root fetched them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).at("set permissions on", &tmp_path)?;
    }
    // The rename must not become visible before the data is durable: an
    // appliance loses power without warning.
    tmp.as_file().sync_all().at("flush", &tmp_path)?;
    tmp.persist(dest).map_err(|e| ModelError::io("rename a temporary file onto", dest, e.error))?;
    sync_dir(parent_of(dest));
    Ok(())
}

/// Makes a rename durable. Best effort: some filesystems refuse to fsync a
/// directory, and the data itself is already on disk.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A `.wick-*.part` temporary file in `dest`'s directory (created if needed), so the final
/// rename stays on one filesystem and a killed process leaves only recognisable debris.
pub(crate) fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile, ModelError> {
    let dir = parent_of(dest);
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    tempfile::Builder::new().prefix(".wick-").suffix(".part").tempfile_in(dir).at("create a temporary file in", dir)
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes a file if it exists; a missing file is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), ModelError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ModelError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn staged_file_is_renamed_only_when_the_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        // sha256("abc")
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

        let mut s = Staged::new(&dest).unwrap();
        s.write_all(b"abd").unwrap();
        let err = s.commit(Some(good)).unwrap_err();
        assert!(matches!(err, ModelError::ChecksumMismatch { .. }));
        assert!(!dest.exists());
        // The temporary file is gone too.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut s = Staged::new(&dest).unwrap();
        s.write_all(b"abc").unwrap();
        assert_eq!(s.commit(Some(good)).unwrap(), good);
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
    }
}
