//! Model files from the Hugging Face hub (the `default` set), at pinned
//! commits. hf-hub downloads into `<dir>/cache/hub`; the blob is then checked
//! and moved (not copied: a 2 GB LLM should not sit on the device twice) into
//! the role directory.

use std::path::Path;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use indicatif::ProgressBar;

use super::checksum::{self, remove_if_exists};
use super::error::{IoContext, ModelError};
use super::manifest::{HubSource, ModelFile, Origin};
use super::progress;
use super::store::Store;

/// Adapts an indicatif bar to hf-hub's progress callbacks, keeping our style.
struct Bar(ProgressBar);

impl hf_hub::api::Progress for Bar {
    fn init(&mut self, size: usize, _filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
    }
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}

/// Makes `files` of a hub-sourced role present in `role_dir`.
pub(crate) fn fetch(store: &Store, hub: &HubSource, role_dir: &Path, files: &[&ModelFile]) -> Result<(), ModelError> {
    // Store::pull refuses unpinned entries before calling here.
    let revision = hub.revision.clone().unwrap_or_default();
    let hub_err = |file: &str, reason: String| ModelError::Hub {
        repo: hub.repo.clone(),
        revision: revision.clone(),
        file: file.to_string(),
        reason,
    };
    let cache = store.cache_dir().join("hub");
    std::fs::create_dir_all(&cache).at("create directory", &cache)?;
    let mut builder = ApiBuilder::from_env().with_cache_dir(cache).with_progress(false);
    if let Some(endpoint) = store.hub_endpoint() {
        builder = builder.with_endpoint(endpoint.to_string());
    }
    let api = builder.build().map_err(|e| hub_err(&hub.repo, e.to_string()))?;
    let repo = api.repo(Repo::with_revision(hub.repo.clone(), RepoType::Model, revision.clone()));

    for f in files {
        let Origin::Remote(remote) = &f.origin else {
            continue;
        };
        let dest = role_dir.join(&f.path);
        let bar = progress::bytes(f.size.unwrap_or(0), format!("downloading {}", f.path));
        let pointer =
            repo.download_with_progress(remote, Bar(bar.clone())).map_err(|e| hub_err(remote, e.to_string()))?;
        bar.finish_and_clear();
        // The snapshot entry is a symlink to a blob named by its etag.
        let blob = std::fs::canonicalize(&pointer).at("resolve", &pointer)?;
        let bar = progress::bytes(f.size.unwrap_or(0), format!("verifying {}", f.path));
        let actual = checksum::sha256_file(&blob, &bar)?;
        bar.finish_and_clear();
        let expected = f.sha256.clone().unwrap_or_default();
        if actual != expected {
            // Drop the bad download so the next pull fetches it afresh.
            remove_if_exists(&blob)?;
            remove_if_exists(&pointer)?;
            return Err(ModelError::ChecksumMismatch { file: dest, expected, actual });
        }
        install(&blob, &dest)?;
        remove_if_exists(&pointer)?;
    }
    Ok(())
}

/// Moves a verified blob to `dest` through a temporary name in its directory;
/// copies when the cache sits on another filesystem.
fn install(blob: &Path, dest: &Path) -> Result<(), ModelError> {
    let tmp = checksum::temp_beside(dest)?;
    if std::fs::rename(blob, tmp.path()).is_err() {
        std::fs::copy(blob, tmp.path()).at("copy into", tmp.path())?;
        remove_if_exists(blob)?;
    }
    // The rename replaced the file behind the handle; reopen so the flush in
    // `persist` reaches the moved data.
    let reopened = tempfile::NamedTempFile::from_parts(
        std::fs::File::open(tmp.path()).at("open", tmp.path())?,
        tmp.into_temp_path(),
    );
    Ok(checksum::persist(reopened, dest)?)
}
