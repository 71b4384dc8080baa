//! Files that appear whole or not at all. Content is written under a temporary name beside
//! its final path, hashed on the way, flushed to disk and only then renamed, so a crash, a
//! full disk or a bad download never leaves a half-written file where an engine loads it:
//! an appliance loses power without warning. Used by the model store and by the Whisper
//! importer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

/// A filesystem operation that failed; `path` is the file or directory it was on.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}; {}", path.display(), hint(op, source))]
pub struct FileError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What to do about a failed operation, by what failed.
fn hint(op: &str, e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => "check that the path exists",
        io::ErrorKind::PermissionDenied => "check the permissions, or run as a user that may write there",
        io::ErrorKind::StorageFull => "free some disk space and run again",
        _ if op == "read" => "the file may be damaged: delete it and fetch it again",
        _ => "check that the disk is not full and the directory is writable",
    }
}

impl FileError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        FileError { op, path: path.to_path_buf(), source }
    }
}

/// Adds the operation and the path to an `io::Result`, so no IO error leaves unnamed.
pub trait At<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, FileError>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, FileError> {
        self.map_err(|e| FileError::new(op, path, e))
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Reads all of `src` in large pieces (hashing multi-GB files near disk speed), handing each
/// to `each`; `what` names the source in errors.
fn read_all(
    src: &mut dyn Read,
    what: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FileError::new("read", what, e)),
        }
    }
}

/// sha256 of a file's content, advancing `bar` by the bytes read.
pub fn sha256_file(path: &Path, bar: &ProgressBar) -> Result<String, FileError> {
    let mut f = File::open(path).at("open", path)?;
    let mut hasher = Sha256::new();
    read_all(&mut f, path, |piece| {
        hasher.update(piece);
        bar.inc(piece.len() as u64);
        Ok(())
    })?;
    Ok(hex(&hasher.finalize()))
}

/// A file being written under a temporary name next to its final path, hashing what goes
/// through it. Dropped without [`Staged::persist`], it is deleted.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    dest: PathBuf,
    written: u64,
}

impl Staged {
    /// Starts a staging file for `dest`, creating the parent directory.
    pub fn new(dest: &Path) -> Result<Staged, FileError> {
        let tmp = temp_beside(dest)?;
        Ok(Staged { tmp, hasher: Sha256::new(), dest: dest.to_path_buf(), written: 0 })
    }

    /// Copies all of `src` into the staging file; `what` names the source in errors.
    pub fn copy_from(&mut self, src: &mut dyn Read, what: &Path, bar: &ProgressBar) -> Result<(), FileError> {
        read_all(src, what, |piece| {
            self.write_all(piece)?;
            bar.inc(piece.len() as u64);
            Ok(())
        })
    }

    pub fn write_all(&mut self, data: &[u8]) -> Result<(), FileError> {
        let path = self.tmp.path().to_path_buf();
        self.tmp.as_file_mut().write_all(data).at("write", &path)?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// The sha256 of everything written so far.
    pub fn sha256(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Gives up hashing and hands over the temporary file, for callers that rename several
    /// files together.
    pub fn into_temp(self) -> tempfile::NamedTempFile {
        self.tmp
    }

    /// Moves the content to its final name (see [`persist`]).
    pub fn persist(self) -> Result<(), FileError> {
        persist(self.tmp, &self.dest)
    }
}

/// Flushes a finished temporary file to disk and renames it onto `dest`.
pub fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), FileError> {
    let tmp_path = tmp.path().to_path_buf();
    // Temporary files are created 0600; model files must be readable by the service user
    // even when root fetched them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).at("set permissions on", &tmp_path)?;
    }
    // The rename must not become visible before the data is durable.
    tmp.as_file().sync_all().at("flush", &tmp_path)?;
    tmp.persist(dest).map_err(|e| FileError::new("rename a temporary file onto", dest, e.error))?;
    sync_dir(parent_of(dest));
    Ok(())
}

/// Makes a rename durable. Best effort: some filesystems refuse to fsync a directory, and
/// the data itself is already on disk.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A `.wick-*.part` temporary file in `dest`'s directory (created if needed), so the final
/// rename stays on one filesystem and a killed process leaves only recognisable debris.
pub fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile, FileError> {
    temp_in(parent_of(dest))
}

/// A `.wick-*.part` temporary file in `dir` (created if needed).
pub fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile, FileError> {
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    tempfile::Builder::new().prefix(".wick-").suffix(".part").tempfile_in(dir).at("create a temporary file in", dir)
}

pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes a file if it exists; a missing file is not an error.
pub fn remove_if_exists(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new("remove", path, e)),
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
    fn a_staged_file_appears_only_when_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        let mut s = Staged::new(&dest).unwrap();
        s.copy_from(&mut &b"abc"[..], Path::new("memory"), &ProgressBar::hidden()).unwrap();
        // sha256("abc")
        assert_eq!(s.sha256(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(s.written(), 3);
        assert!(!dest.exists());
        s.persist().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert_eq!(sha256_file(&dest, &ProgressBar::hidden()).unwrap(), hex(&Sha256::digest(b"abc")));

        // Dropped unpersisted: nothing is left behind.
        let mut s = Staged::new(&dir.path().join("y.bin")).unwrap();
        s.write_all(b"half").unwrap();
        drop(s);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_operation_and_the_path() {
        let e = sha256_file(Path::new("/nonexistent/wick.bin"), &ProgressBar::hidden()).unwrap_err().to_string();
        assert!(e.contains("cannot open /nonexistent/wick.bin") && e.contains("check that the path exists"), "{e}");
    }
}
