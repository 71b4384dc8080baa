//! Pinned files: every file the store installs is staged under a temporary name (see
//! `crate::durable`) and reaches its final name only once its sha256 matches the manifest's
//! pin, so a bad download never replaces a file an engine loads.

pub(crate) use crate::durable::{persist, remove_if_exists, sha256_file, temp_beside, Staged};

use super::error::ModelError;

/// Checks the staged content against `expected` (when pinned) and only then moves it to its
/// final name; returns its sha256. On a mismatch the staging file is deleted.
pub(crate) fn commit(staged: Staged, expected: Option<&str>) -> Result<String, ModelError> {
    let actual = staged.sha256();
    if let Some(expected) = expected {
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(ModelError::ChecksumMismatch {
                file: staged.dest().to_path_buf(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    staged.persist()?;
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_file_is_renamed_only_when_the_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        // sha256("abc")
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

        let mut s = Staged::new(&dest).unwrap();
        s.write_all(b"abd").unwrap();
        let err = commit(s, Some(good)).unwrap_err();
        assert!(matches!(err, ModelError::ChecksumMismatch { .. }));
        assert!(!dest.exists());
        // The temporary file is gone too.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut s = Staged::new(&dest).unwrap();
        s.write_all(b"abc").unwrap();
        assert_eq!(commit(s, Some(good)).unwrap(), good);
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
    }
}
