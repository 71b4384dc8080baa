//! Putting the appliance together: which model set runs, which file each engine loads, the one
//! compute device they share, and the loaded engines themselves. Every command that loads a
//! model, `wick doctor` and the tests go through here, so they all agree on what "the
//! configured model" is.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;

use super::stages::{Conversational, Voice};
use crate::config::Config;
use crate::device::{self, DeviceChoice, DeviceError};
use crate::llm::engine::{Conversation, Engine};
use crate::llm::LlmError;
use crate::models::{Check, Manifest, ModelError, Store};
use crate::pipeline::{Loudspeaker, Microphone, Stages};
use crate::stt::{SttError, Transcriber};
use crate::tts::speaker::{SpeakError, Speaker};

/// The model set runs one file per role; these are the roles and the file each engine loads.
const STT: &str = "stt";
const LLM: &str = "llm";
const TTS: &str = "tts";
const LLM_FILE: &str = ".gguf";
const VOICE_FILE: &str = ".onnx.json";

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Models(Box<ModelError>),
    #[error("no {what} of set {set:?} (use `wick models pull --set test` for the small test set, or {instead})")]
    NotPulled {
        what: &'static str,
        set: String,
        instead: &'static str,
        #[source]
        source: Box<ModelError>,
    },
    #[error("model set {set:?} lists no {suffix} file for {role}")]
    NotInSet { set: String, role: &'static str, suffix: &'static str },
    #[error("{} (set by {key}) does not exist", path.display())]
    Configured { path: PathBuf, key: &'static str },
    #[error("models directory {}: {source}", dir.display())]
    ModelsDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("loading Whisper from {}", dir.display())]
    Whisper {
        dir: PathBuf,
        #[source]
        source: SttError,
    },
    #[error("loading the language model {}", path.display())]
    Llm {
        path: PathBuf,
        #[source]
        source: LlmError,
    },
    #[error("prefilling the system prompt")]
    Prefill(#[source] LlmError),
    #[error(transparent)]
    Voice(#[from] SpeakError),
}

impl From<ModelError> for AssembleError {
    fn from(e: ModelError) -> Self {
        AssembleError::Models(Box::new(e))
    }
}

/// Where the model files are: the `--models-dir` and `--manifest` overrides.
#[derive(Debug, Clone, Default)]
pub struct ModelsLocation {
    pub dir: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
}

/// The appliance's settings, where its models are, and its compute device (opened on first
/// use, then shared by every engine).
pub struct Assembly {
    pub config: Config,
    location: ModelsLocation,
    device_choice: DeviceChoice,
    device: OnceLock<Device>,
}

/// Whisper, the language model with its conversation, and the voice, ready to run.
pub struct Engines {
    pub hear: Transcriber,
    pub think: Conversational,
    pub voice: Voice,
}

impl Engines {
    /// The pipeline's stages: these engines between `microphone` and `loudspeaker`.
    pub fn into_stages(self, microphone: Box<dyn Microphone>, loudspeaker: Box<dyn Loudspeaker>) -> Stages {
        Stages {
            microphone,
            hear: Box::new(self.hear),
            think: Box::new(self.think),
            voice: Box::new(self.voice),
            loudspeaker,
        }
    }
}

/// The model files the appliance would load (`Err`: why a role has none), and the set's files
/// checked against their pins, for `wick doctor`.
pub struct ModelPaths {
    pub set: String,
    pub stt: Result<PathBuf, String>,
    pub llm: Result<PathBuf, String>,
    pub tts: Result<PathBuf, String>,
    /// (role, file, problem or None).
    pub checksums: Result<Vec<(String, String, Option<String>)>, String>,
}

impl Assembly {
    /// `device`: `--device` when given, else `runtime.device` from the config.
    pub fn new(config: Config, location: ModelsLocation, device: Option<DeviceChoice>) -> Assembly {
        let device_choice = device.unwrap_or(config.runtime.device);
        Assembly { config, location, device_choice, device: OnceLock::new() }
    }

    /// The compute device every engine runs on; opened once, at the first call.
    pub fn device(&self) -> Result<&Device, DeviceError> {
        if let Some(d) = self.device.get() {
            return Ok(d);
        }
        let opened = device::open(self.device_choice)?;
        tracing::info!(device = %device::describe(&opened), "compute device");
        Ok(self.device.get_or_init(|| opened))
    }

    /// The same models, location and device with other settings (the device is opened anew).
    pub fn with_config(&self, config: Config) -> Assembly {
        Assembly { config, location: self.location.clone(), device_choice: self.device_choice, device: OnceLock::new() }
    }

    pub fn device_choice(&self) -> DeviceChoice {
        self.device_choice
    }

    /// The model store: the manifest (built in, or `--manifest`) over the models directory.
    pub fn store(&self) -> Result<Store, AssembleError> {
        let manifest = match &self.location.manifest {
            Some(path) => Manifest::from_path(path)?,
            None => Manifest::builtin()?,
        };
        let dir = crate::models::resolve_models_dir(self.location.dir.clone(), self.config.models.dir.clone());
        // Absolute, so that `models list` reports paths usable from any directory.
        let dir = std::path::absolute(&dir).map_err(|source| AssembleError::ModelsDir { dir, source })?;
        Ok(Store::new(dir, manifest))
    }

    /// The model set that runs: `models.set`, else `default` when its language model is
    /// pulled (the device), else `test` when that one is (CI and demos), else `default`.
    pub fn model_set(&self, store: &Store) -> String {
        if let Some(set) = &self.config.models.set {
            return set.clone();
        }
        let pulled = |set: &str| store.require(set, LLM).is_ok();
        if pulled("default") || !pulled("test") { "default" } else { "test" }.to_string()
    }

    /// The directory of the set's files for `role`, checked to be all present.
    fn set_dir(&self, role: &'static str) -> Result<(Store, String, PathBuf), AssembleError> {
        let store = self.store()?;
        let set = self.model_set(&store);
        let (what, instead) = match role {
            STT => ("Whisper model", "--model-dir"),
            LLM => ("llm model", "pass the file"),
            _ => ("tts model", "pass the file"),
        };
        let dir = store.require(&set, role).map_err(|source| AssembleError::NotPulled {
            what,
            set: set.clone(),
            instead,
            source: Box::new(source),
        })?;
        Ok((store, set, dir))
    }

    /// The set's file for `role` whose name ends with `suffix`.
    fn set_file(&self, role: &'static str, suffix: &'static str) -> Result<PathBuf, AssembleError> {
        let (store, set, dir) = self.set_dir(role)?;
        let name = store
            .manifest()
            .set(&set)?
            .role(role)
            .and_then(|r| r.files.iter().find(|f| f.path.ends_with(suffix)))
            .map(|f| f.path.clone())
            .ok_or(AssembleError::NotInSet { set, role, suffix })?;
        Ok(dir.join(name))
    }

    /// Whisper's model directory: `given` (a flag), else `stt.model_dir`, else the set's.
    pub fn stt_dir(&self, given: Option<&Path>) -> Result<PathBuf, AssembleError> {
        resolve(given, self.config.stt.model_dir.as_deref(), "stt.model_dir", || Ok(self.set_dir(STT)?.2))
    }

    /// The language model's GGUF: `given`, else `llm.model`, else the set's.
    pub fn llm_path(&self, given: Option<&Path>) -> Result<PathBuf, AssembleError> {
        resolve(given, self.config.llm.model.as_deref(), "llm.model", || self.set_file(LLM, LLM_FILE))
    }

    /// The voice's `.onnx.json` (or `.onnx`): `given`, else `tts.voice`, else the set's.
    pub fn voice_path(&self, given: Option<&Path>) -> Result<PathBuf, AssembleError> {
        resolve(given, self.config.tts.voice.as_deref(), "tts.voice", || self.set_file(TTS, VOICE_FILE))
    }

    /// Loads Whisper from `dir` (see [`Assembly::stt_dir`]); `language` overrides `stt.language`
    /// ("auto" detects it).
    pub fn transcriber(&self, dir: Option<&Path>, language: Option<&str>) -> Result<Transcriber, AssembleError> {
        let dir = self.stt_dir(dir)?;
        let mut options = self.config.stt.options();
        if let Some(lang) = language {
            options.language = (lang != "auto").then(|| lang.to_string());
        }
        Transcriber::load(&dir, options, self.device()?).map_err(|source| AssembleError::Whisper { dir, source })
    }

    /// Opens the language model (see [`Assembly::llm_path`]) with `llm.context` tokens of cache.
    pub fn language_model(&self, path: Option<&Path>) -> Result<(Engine, PathBuf), AssembleError> {
        let path = self.llm_path(path)?;
        match Engine::open(&path, self.config.llm.context, self.device()?) {
            Ok(engine) => Ok((engine, path)),
            Err(source) => Err(AssembleError::Llm { path, source }),
        }
    }

    /// The voice to speak with: `voice` (a flag), else `tts.voice`, else the set's, with the
    /// synthesis `settings` (`[tts]` with any flags applied). A voice that cannot be found or
    /// loaded falls back to espeak-ng (the speaker says why): the appliance must always be able
    /// to answer out loud. Fails only when the compute device cannot be opened.
    pub fn speaker(&self, voice: Option<&Path>, settings: &crate::tts::Settings) -> Result<Speaker, AssembleError> {
        let device = self.device()?;
        Ok(match self.voice_path(voice) {
            Ok(path) => Speaker::open(Some(&path), settings, device),
            Err(e) => Speaker::fallback(settings, error_chain(&e)),
        })
    }

    /// Whisper, the language model with a fresh conversation (its system prompt prefilled now,
    /// not after the first question) and the voice, as configured.
    pub fn engines(&self) -> Result<Engines, AssembleError> {
        let hear = self.transcriber(None, None)?;
        let (mut engine, _) = self.language_model(None)?;
        let llm = &self.config.llm;
        let mut conversation = Conversation::new(llm.system.clone()).with_idle_reset(llm.idle_reset());
        let opening = engine.prefill_opening(&mut conversation).map_err(AssembleError::Prefill)?;
        tracing::info!(tokens = opening, "system prompt prefilled");
        let think = Conversational { engine, conversation, options: llm.generate_options() };
        let voice = Voice::new(self.speaker(None, &self.config.tts)?)?;
        Ok(Engines { hear, think, voice })
    }

    /// What the engines would load, resolved exactly as loading resolves it, and the set's
    /// files re-hashed against the manifest.
    pub fn model_paths(&self) -> ModelPaths {
        let text = |r: Result<PathBuf, AssembleError>| r.map_err(|e| error_chain(&e));
        let (set, checksums) = match self.store() {
            Ok(store) => {
                let set = self.model_set(&store);
                let checksums = store
                    .verify(Some(&set))
                    .map_err(|e| e.to_string())
                    .map(|outcomes| outcomes.into_iter().map(|o| (o.role, o.name, problem(&o.check))).collect());
                (set, checksums)
            }
            Err(e) => (self.config.models.set.clone().unwrap_or_else(|| "default".into()), Err(e.to_string())),
        };
        ModelPaths {
            set,
            stt: text(self.stt_dir(None)),
            llm: text(self.llm_path(None)),
            tts: text(self.voice_path(None)),
            checksums,
        }
    }
}

/// `given`, else the configured path (which must exist: it names the key that set it), else
/// the model set's.
fn resolve(
    given: Option<&Path>,
    configured: Option<&Path>,
    key: &'static str,
    from_set: impl FnOnce() -> Result<PathBuf, AssembleError>,
) -> Result<PathBuf, AssembleError> {
    match (given, configured) {
        (Some(path), _) => Ok(path.to_path_buf()),
        (None, Some(path)) if path.exists() => Ok(path.to_path_buf()),
        (None, Some(path)) => Err(AssembleError::Configured { path: path.to_path_buf(), key }),
        (None, None) => from_set(),
    }
}

/// What is wrong with a model file, or `None` when it is as pinned (or not pinned at all).
fn problem(check: &Check) -> Option<String> {
    match check {
        Check::Ok | Check::Unpinned { .. } => None,
        Check::Missing => Some("missing".to_string()),
        Check::Mismatch { expected, actual } => {
            Some(format!("sha256 {actual} differs from the pinned {expected} (damaged or replaced)"))
        }
    }
}

/// An error with its causes, as one line ("what: why: why").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
