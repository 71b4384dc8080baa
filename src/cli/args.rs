//! The command line's words: every command, flag and help text, kept apart from what the
//! commands do (as ripgrep keeps its flags apart from its search).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use wick::device::DeviceChoice;

#[derive(Parser)]
#[command(
    name = "wick",
    version,
    about = "A local voice appliance: push to talk, Whisper hears, Llama thinks, a neural voice answers"
)]
pub struct Cli {
    /// Config file, the only one read (default: /etc/wick/wick.toml, then /data/wick/wick.toml
    /// over it key by key, each when it exists; else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Model data directory (overrides WICK_MODELS and the config's models.dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model manifest to use instead of the built-in one (also: WICK_MANIFEST).
    #[arg(long, global = true, value_name = "FILE", env = "WICK_MANIFEST", hide_env_values = true)]
    pub manifest: Option<PathBuf>,
    /// CPU threads for inference (overrides runtime.threads; 0 = all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Compute device for all three models: cpu, cuda or cuda:N (overrides runtime.device;
    /// default: CUDA when built with it and present, else the CPU).
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<DeviceChoice>,
    /// More log output (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Turn speech in WAV files into text with Whisper.
    #[command(
        mut_arg("json", |a| a.help(r#"One JSON object per line: {"file","text","audio_s","elapsed_s","speech_s","encoded_s","gain_db"} (speech_s: seconds of speech Whisper heard; encoded_s: seconds its encoder ran over, padding included; gain_db: how much it was amplified)"#)),
        mut_arg("files", |a| a.help("WAV files: 8-48 kHz, mono or stereo, 16/24/32-bit integer or 32-bit float"))
    )]
    Transcribe(SttFilesArgs),
    /// Talk to the language model: one answer with --prompt, else a conversation on stdin.
    Chat(ChatArgs),
    /// Speak text into a WAV file with the neural voice (espeak-ng when none loads).
    Say(SayArgs),
    /// Answer one spoken question from a WAV file, through the same pipeline as `wick run`.
    Ask(AskArgs),
    /// Run the appliance: hold the button and speak, hear the answer (sound devices, button
    /// and control socket from the config). Each turn prints one JSON line.
    Run(RunArgs),
    /// Talk to the running appliance through its control socket: press, release or tap the
    /// button, or print its status (one JSON line).
    Ctl(CtlArgs),
    /// Check that the configured appliance can run here: sound devices, button, CUDA, model
    /// files and checksums, memory. Exits non-zero when something must be fixed.
    Doctor(DoctorArgs),
    /// Show the appliance's state: the running service (through its control socket), the
    /// booted root slot, both slots' versions and states, and the health gate's last verdict.
    Status(StatusArgs),
    /// Install a signed update bundle (a file or an http(s) URL, streamed) into the other root
    /// slot with RAUC; it boots at the next restart and is kept only if it passes the health gate.
    Update(UpdateArgs),
    /// The health gate, run at boot by wick-health.service: confirm a newly installed root slot
    /// after checking the appliance (service ready, a self-test turn), or mark it bad and reboot
    /// into the other slot. Needs root.
    Health(HealthArgs),
    /// Measure speed and memory.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Fetch, list and check the model files.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Args)]
pub struct SttModelArgs {
    /// Whisper model directory (model.safetensors, config.json, tokenizer.json); default: the
    /// configured model set's.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Language for multilingual models ("auto" detects it); overrides stt.language.
    #[arg(long)]
    pub language: Option<String>,
}

/// Whisper and the WAV files it is to hear: `transcribe` and `bench stt` take the same
/// arguments; each command words `--json` and FILE for what it prints.
#[derive(Args)]
pub struct SttFilesArgs {
    #[command(flatten)]
    pub model: SttModelArgs,
    #[arg(long)]
    pub json: bool,
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ChatArgs {
    /// GGUF model (Llama architecture); default: llm.model, else the model set's.
    #[arg(long, value_name = "GGUF")]
    pub model: Option<PathBuf>,
    /// System prompt (default: llm.system from the config).
    #[arg(long, value_name = "TEXT", value_parser = clap::value_parser!(OsString))]
    pub system: Option<OsString>,
    /// An earlier turn: the user's message, then the assistant's answer (repeatable).
    #[arg(long, num_args = 2, value_names = ["USER", "ASSISTANT"], value_parser = clap::value_parser!(OsString))]
    pub history: Vec<OsString>,
    /// Answer this one message after the --history turns, then exit.
    #[arg(long, value_name = "TEXT", value_parser = clap::value_parser!(OsString))]
    pub prompt: Option<OsString>,
    /// Always take the most likely token (no sampling, no repeat penalty).
    #[arg(long)]
    pub greedy: bool,
    /// Most tokens in an answer (default: llm.max_tokens).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Print {"text","prompt_tokens","gen_tokens","load_s","prefill_s","first_token_s","decode_tok_s"}.
    #[arg(long)]
    pub json: bool,
    /// With --json, add "prompt_ids" (the whole rendered prompt) and "gen_ids".
    #[arg(long, requires = "json")]
    pub ids: bool,
}

#[derive(Args)]
pub struct VoiceArgs {
    /// Piper voice (.onnx or .onnx.json); default: tts.voice, else the model set's.
    #[arg(long, value_name = "ONNX")]
    pub voice: Option<PathBuf>,
    /// Voice variation (0: none); default: tts.noise_scale, else the voice file's.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub noise_scale: Option<f32>,
    /// Duration variation (0: none); default: tts.noise_w, else the voice file's.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub noise_w: Option<f32>,
    /// Speaking time multiplier (above 1 is slower); default: tts.length_scale, else the voice file's.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub length_scale: Option<f32>,
    /// Speaker of a multi-speaker voice: an id, or a name from its speaker_id_map; default:
    /// tts.speaker, else speaker 0.
    #[arg(long, value_name = "ID|NAME")]
    pub speaker: Option<String>,
}

#[derive(Args)]
pub struct SayArgs {
    /// The text to speak.
    #[arg(value_name = "TEXT", value_parser = clap::value_parser!(OsString),
          required_unless_present_any = ["stdin", "phoneme_ids"], conflicts_with_all = ["stdin", "phoneme_ids"])]
    pub text: Option<OsString>,
    /// Read the text from standard input.
    #[arg(long, conflicts_with = "phoneme_ids")]
    pub stdin: bool,
    /// Speak exactly these voice ids as one sentence (comma-separated; for parity checks).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub phoneme_ids: Option<Vec<i64>>,
    /// Output WAV (16-bit, the voice's sample rate).
    #[arg(short, long, value_name = "OUT.wav")]
    pub output: PathBuf,
    #[command(flatten)]
    pub voice: VoiceArgs,
    /// Print {"phonemes","phoneme_ids","samples","sample_rate","synth_s","first_chunk_s","voice","speaker"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AskArgs {
    /// The question: a WAV file (8-48 kHz, mono or stereo), used as the microphone from its
    /// first sample to its last (capped at input.max_record_s).
    #[arg(value_name = "IN.wav")]
    pub input: PathBuf,
    /// Write the spoken answer here (16-bit WAV at the voice's rate).
    #[arg(short, long, value_name = "OUT.wav")]
    pub output: Option<PathBuf>,
    /// Print {"transcript","reply","stt_s","first_token_s","first_audio_s","total_s","audio_out_s",...},
    /// times in seconds from the end of the input audio.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Also take the button from standard input: Enter starts talking, Enter again stops.
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Args)]
pub struct CtlArgs {
    /// press (start talking), release (stop talking), tap (stop the answer), or status.
    #[arg(value_name = "COMMAND", value_parser = ["press", "release", "tap", "status"])]
    pub command: String,
    /// Control socket (default: input.socket, else $XDG_RUNTIME_DIR/wick/control.sock, else
    /// /run/wick/control.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// One JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Control socket (default: input.socket).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// The bundle: a path, or an http:// or https:// URL (read in ranges as it installs).
    #[arg(value_name = "BUNDLE|URL")]
    pub source: String,
    /// Reboot into the new slot once it is installed.
    #[arg(long)]
    pub reboot: bool,
}

#[derive(Args)]
pub struct HealthArgs {
    /// How long to wait for the service to be READY before a new slot fails (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub ready_timeout: u64,
    /// Only run the self-test turn and print its result; mark nothing (no root needed).
    #[arg(long)]
    pub self_test: bool,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// One JSON object with every finding instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Language model: load time, prompt and generation tokens/s, 50-token answer latency, peak RSS.
    Llm {
        /// GGUF model (default: llm.model, else the model set's).
        #[arg(long, value_name = "GGUF", conflicts_with = "synthetic")]
        model: Option<PathBuf>,
        /// A random-valued model with a real model's tensors, written once into the models
        /// directory: llama-3.2-3b-q4_k_m or llama-3.2-1b-q4_k_m.
        #[arg(long, value_name = "NAME")]
        synthetic: Option<String>,
        /// The synthetic model's tokenizer: a Hugging Face tokenizer.json with the model's
        /// vocabulary and merges (Meta's Llama 3.2 one: `make llama3-text`), so that other
        /// engines tokenize as the real model does; without it, placeholder tokens.
        #[arg(long, value_name = "TOKENIZER_JSON", requires = "synthetic")]
        vocab: Option<PathBuf>,
        /// Prompt length for the prompt-processing measurement.
        #[arg(long, default_value_t = 128, value_name = "N")]
        prompt_tokens: usize,
        /// Tokens generated for the generation measurement.
        #[arg(long, default_value_t = 64, value_name = "N")]
        gen_tokens: usize,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Voice: real-time factor and time to the first chunk for short, medium and long texts.
    Tts {
        #[command(flatten)]
        voice: VoiceArgs,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Speech to text: real-time factor, front-end/encoder/decoder time, tokens, peak RSS.
    #[command(mut_arg("json", |a| a.help("One JSON object per file and one for the total, instead of a table")))]
    Stt(SttFilesArgs),
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download a model set, check every file's sha256 and import what needs importing.
    Pull {
        /// Model set: "test" (small, for CI and demos) or "default" (the device's).
        #[arg(long, default_value = "test")]
        set: String,
    },
    /// Show the files of the model sets and whether they are present.
    List {
        /// Only this model set.
        #[arg(long)]
        set: Option<String>,
        /// One JSON object per file: {"set","role","name","path","sha256","size","present"}.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every present model file and compare with the manifest.
    Verify {
        /// Only this model set.
        #[arg(long)]
        set: Option<String>,
    },
    /// Convert a CTranslate2 (faster-whisper) Whisper model directory into the layout wick loads.
    #[command(name = "import-ct2")]
    ImportCt2 {
        /// Directory with model.bin, config.json and tokenizer.json.
        src: PathBuf,
        /// Output directory for model.safetensors, config.json and tokenizer.json.
        dst: PathBuf,
    },
}
