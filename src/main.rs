//! The `wick` command line: one binary for the appliance and for every tool around it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use wick::config::Config;
use wick::models::{Check, Manifest, Store};
use wick::stt::{self, Transcriber};

// Inference allocates and frees tensors of many megabytes per layer; glibc's malloc hands
// those back to the kernel and page-faults them in again every time, which cost about a
// tenth of the encoder's time. mimalloc keeps and reuses them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wick",
    version,
    about = "A local voice appliance: push to talk, Whisper hears, Llama thinks, a neural voice answers"
)]
struct Cli {
    /// Config file (default: /etc/wick/wick.toml when it exists, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Model data directory (overrides WICK_MODELS and the config's models.dir).
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Model manifest to use instead of the built-in one (also: WICK_MANIFEST).
    #[arg(long, global = true, value_name = "FILE", env = "WICK_MANIFEST", hide_env_values = true)]
    manifest: Option<PathBuf>,
    /// CPU threads for inference (overrides runtime.threads; 0 = all cores).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// More log output (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn speech in WAV files into text with Whisper.
    Transcribe(TranscribeArgs),
    /// Talk to the language model: one answer with --prompt, else a conversation on stdin.
    Chat(ChatArgs),
    /// Speak text into a WAV file with the neural voice (espeak-ng when none loads).
    Say(SayArgs),
    /// Answer one spoken question from a WAV file, through the same pipeline as `wick run`.
    Ask(AskArgs),
    /// Run the appliance: hold the button and speak, hear the answer (sound devices, button
    /// and control socket from the config). Each turn prints one JSON line.
    Run(RunArgs),
    /// Check that the configured appliance can run here: sound devices, button, CUDA, model
    /// files and checksums, memory. Exits non-zero when something must be fixed.
    Doctor(DoctorArgs),
    /// Measure speed and memory.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Fetch, list and check the model files.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Args)]
struct SttModelArgs {
    /// Whisper model directory (model.safetensors, config.json, tokenizer.json); default: the
    /// configured model set's.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Language for multilingual models ("auto" detects it); overrides stt.language.
    #[arg(long)]
    language: Option<String>,
}

#[derive(Args)]
struct TranscribeArgs {
    #[command(flatten)]
    model: SttModelArgs,
    /// One JSON object per line: {"file","text","audio_s","elapsed_s"}.
    #[arg(long)]
    json: bool,
    /// WAV files: 8-48 kHz, mono or stereo, 16/24/32-bit integer or 32-bit float.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Args)]
struct ChatArgs {
    /// GGUF model (Llama architecture); default: llm.model, else the model set's.
    #[arg(long, value_name = "GGUF")]
    model: Option<PathBuf>,
    /// System prompt (default: llm.system from the config).
    #[arg(long, value_name = "TEXT", value_parser = clap::value_parser!(std::ffi::OsString))]
    system: Option<std::ffi::OsString>,
    /// An earlier turn: the user's message, then the assistant's answer (repeatable).
    #[arg(long, num_args = 2, value_names = ["USER", "ASSISTANT"], value_parser = clap::value_parser!(std::ffi::OsString))]
    history: Vec<std::ffi::OsString>,
    /// Answer this one message after the --history turns, then exit.
    #[arg(long, value_name = "TEXT", value_parser = clap::value_parser!(std::ffi::OsString))]
    prompt: Option<std::ffi::OsString>,
    /// Always take the most likely token (no sampling, no repeat penalty).
    #[arg(long)]
    greedy: bool,
    /// Most tokens in an answer (default: llm.max_tokens).
    #[arg(long, value_name = "N")]
    max_tokens: Option<usize>,
    /// Print {"text","prompt_tokens","gen_tokens","load_s","prefill_s","first_token_s","decode_tok_s"}.
    #[arg(long)]
    json: bool,
    /// With --json, add "prompt_ids" (the whole rendered prompt) and "gen_ids".
    #[arg(long, requires = "json")]
    ids: bool,
}

#[derive(Args)]
struct VoiceArgs {
    /// Piper voice (.onnx or .onnx.json); default: tts.voice, else the model set's.
    #[arg(long, value_name = "ONNX")]
    voice: Option<PathBuf>,
    /// Voice variation (0: none); default: tts.noise_scale, else the voice file's.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    noise_scale: Option<f32>,
    /// Duration variation (0: none); default: tts.noise_w, else the voice file's.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    noise_w: Option<f32>,
    /// Speaking time multiplier (above 1 is slower); default: tts.length_scale, else the voice file's.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    length_scale: Option<f32>,
    /// Speaker of a multi-speaker voice: an id, or a name from its speaker_id_map; default:
    /// tts.speaker, else speaker 0.
    #[arg(long, value_name = "ID|NAME")]
    speaker: Option<String>,
}

#[derive(Args)]
struct SayArgs {
    /// The text to speak.
    #[arg(value_name = "TEXT", value_parser = clap::value_parser!(std::ffi::OsString),
          required_unless_present_any = ["stdin", "phoneme_ids"], conflicts_with_all = ["stdin", "phoneme_ids"])]
    text: Option<std::ffi::OsString>,
    /// Read the text from standard input.
    #[arg(long, conflicts_with = "phoneme_ids")]
    stdin: bool,
    /// Speak exactly these voice ids as one sentence (comma-separated; for parity checks).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    phoneme_ids: Option<Vec<i64>>,
    /// Output WAV (16-bit, the voice's sample rate).
    #[arg(short, long, value_name = "OUT.wav")]
    output: PathBuf,
    #[command(flatten)]
    voice: VoiceArgs,
    /// Print {"phonemes","phoneme_ids","samples","sample_rate","synth_s","first_chunk_s","voice","speaker"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AskArgs {
    /// The question: a WAV file (8-48 kHz, mono or stereo), used as the microphone from its
    /// first sample to its last (capped at input.max_record_s).
    #[arg(value_name = "IN.wav")]
    input: PathBuf,
    /// Write the spoken answer here (16-bit WAV at the voice's rate).
    #[arg(short, long, value_name = "OUT.wav")]
    output: Option<PathBuf>,
    /// Print {"transcript","reply","stt_s","first_token_s","first_audio_s","total_s","audio_out_s",...},
    /// times in seconds from the end of the input audio.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Also take the button from standard input: Enter starts talking, Enter again stops.
    #[arg(long)]
    stdin: bool,
}

#[derive(Args)]
struct DoctorArgs {
    /// One JSON object with every finding instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Language model: load time, prompt and generation tokens/s, 50-token answer latency, peak RSS.
    Llm {
        /// GGUF model (default: llm.model, else the model set's).
        #[arg(long, value_name = "GGUF", conflicts_with = "synthetic")]
        model: Option<PathBuf>,
        /// A random-valued model with a real model's tensors, written once into the models
        /// directory: llama-3.2-3b-q4_k_m or llama-3.2-1b-q4_k_m.
        #[arg(long, value_name = "NAME")]
        synthetic: Option<String>,
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
    Stt {
        #[command(flatten)]
        model: SttModelArgs,
        /// One JSON object per file and one for the total, instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wick: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let threads = match cli.threads.unwrap_or(config.runtime.threads) {
        0 => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    };
    // Candle sizes every CPU matmul from this variable, and without it asks the OS for the
    // core count on each call (reading /proc), which cost a quarter of the decoder's time.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let ctx = Context_ { config, models_dir: cli.models_dir, manifest: cli.manifest };
    match cli.command {
        Command::Transcribe(args) => transcribe(&ctx, args),
        Command::Chat(args) => chat(&ctx, args),
        Command::Say(args) => say(&ctx, args),
        Command::Ask(args) => ask(&ctx, args),
        Command::Run(args) => run_appliance(&ctx, args),
        Command::Doctor(args) => doctor(&ctx, args),
        Command::Bench(BenchCommand::Tts { voice, json }) => bench_tts(&ctx, &voice, json),
        Command::Bench(BenchCommand::Stt { model, json, files }) => bench_stt(&ctx, &model, json, &files),
        Command::Bench(BenchCommand::Llm { model, synthetic, prompt_tokens, gen_tokens, json }) => {
            bench_llm(&ctx, model, synthetic, prompt_tokens, gen_tokens, json)
        }
        Command::Models(cmd) => models(&ctx, cmd),
    }
}

/// What every command needs: the config and where the models are.
struct Context_ {
    config: Config,
    models_dir: Option<PathBuf>,
    manifest: Option<PathBuf>,
}

impl Context_ {
    fn store(&self) -> Result<Store> {
        let manifest = match &self.manifest {
            Some(path) => Manifest::from_path(path)?,
            None => Manifest::builtin()?,
        };
        let dir = wick::models::resolve_models_dir(self.models_dir.clone(), self.config.models.dir.clone());
        // Absolute, so that `models list` reports paths usable from any directory.
        let dir = std::path::absolute(&dir).with_context(|| format!("models directory {}", dir.display()))?;
        Ok(Store::new(dir, manifest))
    }

    /// The model set to run: configured, else `default` when pulled, else `test`.
    fn model_set(&self, store: &Store, role: &str) -> String {
        if let Some(set) = &self.config.models.set {
            return set.clone();
        }
        let pulled = |set: &str| store.require(set, role).is_ok();
        if pulled("default") || !pulled("test") { "default" } else { "test" }.to_string()
    }

    /// The model set's file for `role` whose name ends with `suffix`, checked to be present.
    fn model_file(&self, role: &str, suffix: &str) -> Result<PathBuf> {
        let store = self.store()?;
        let set = self.model_set(&store, role);
        let dir = store.require(&set, role).with_context(|| {
            format!("no {role} model of set {set:?} (use `wick models pull --set test` for the small test set, or pass the file)")
        })?;
        let name = store
            .manifest()
            .set(&set)?
            .role(role)
            .and_then(|r| r.files.iter().find(|f| f.path.ends_with(suffix)))
            .map(|f| f.path.clone())
            .with_context(|| format!("model set {set:?} lists no {suffix} file for {role}"))?;
        Ok(dir.join(name))
    }

    fn load_transcriber(&self, args: &SttModelArgs) -> Result<Transcriber> {
        let dir = match (&args.model_dir, &self.config.stt.model_dir) {
            (Some(dir), _) | (None, Some(dir)) => dir.clone(),
            (None, None) => {
                let store = self.store()?;
                let set = self.model_set(&store, "stt");
                store.require(&set, "stt").with_context(|| {
                    format!("no Whisper model of set {set:?} (use `wick models pull --set test` for the small test set, or --model-dir)")
                })?
            }
        };
        let mut options = self.config.stt_options();
        if let Some(lang) = &args.language {
            options.language = (lang != "auto").then(|| lang.clone());
        }
        let device = stt::default_device();
        Transcriber::load(&dir, options, &device).with_context(|| format!("loading Whisper from {}", dir.display()))
    }
}

/// A text argument that must be UTF-8; the error names the flag.
fn utf8_arg(flag: &str, value: std::ffi::OsString) -> Result<String> {
    value
        .into_string()
        .map_err(|raw| anyhow::anyhow!("{flag} is not valid UTF-8 text ({:?}); pass the text in UTF-8", raw))
}

/// Writes streamed text at once (stdout is line-buffered and answers arrive mid-line).
fn print_now(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn chat(ctx: &Context_, args: ChatArgs) -> Result<ExitCode> {
    use std::io::BufRead;
    use wick::llm::engine::{Conversation, Engine};

    let system =
        args.system.map(|s| utf8_arg("--system", s)).transpose()?.unwrap_or_else(|| ctx.config.llm.system.clone());
    let history: Vec<String> = args.history.into_iter().map(|h| utf8_arg("--history", h)).collect::<Result<_>>()?;
    let turns = history.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    let prompt = args.prompt.map(|p| utf8_arg("--prompt", p)).transpose()?;
    let mut options = ctx.config.generate_options();
    if args.greedy {
        options.sampling = wick::llm::sampling::SamplingOptions::greedy();
    }
    if let Some(n) = args.max_tokens {
        options.max_tokens = n;
    }

    let path = match args.model.or_else(|| ctx.config.llm.model.clone()) {
        Some(p) => p,
        None => ctx.model_file("llm", ".gguf")?,
    };
    let load_start = Instant::now();
    let device = stt::default_device();
    let mut engine = Engine::open(&path, ctx.config.llm.context, &device)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let mut conv = Conversation::with_history(system, turns).with_idle_reset(ctx.config.llm.idle_reset());

    let Some(prompt) = prompt else {
        eprintln!(
            "wick chat: {} ({} tokens of context). Type a message; an empty line or Ctrl-D ends.",
            path.display(),
            engine.model.max_context()
        );
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.context("reading stdin")?;
            if line.trim().is_empty() {
                break;
            }
            if conv.forget_if_idle(Instant::now()) {
                eprintln!("(idle for over {} s: starting a new conversation)", ctx.config.llm.idle_reset_s);
            }
            let answered = engine.reply(&mut conv, line.trim(), &options, &mut print_now, &|| false);
            println!();
            // A turn that fails (a message too long for the context) leaves the conversation usable.
            if let Err(e) = answered {
                eprintln!("wick: error: {e}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    };

    let json = args.json;
    let reply = engine.reply(
        &mut conv,
        &prompt,
        &options,
        &mut |d| {
            if !json {
                print_now(d)
            }
        },
        &|| false,
    )?;
    if json {
        let decoded = reply.gen_ids.len().saturating_sub(1);
        let mut v = serde_json::json!({
            "text": reply.text,
            "prompt_tokens": reply.prompt_ids.len(),
            "gen_tokens": reply.gen_ids.len(),
            "load_s": round3(load_s),
            "prefill_s": round3(reply.prefill_s),
            "first_token_s": round3(reply.first_token_s),
            "decode_tok_s": if reply.decode_s > 0.0 { round3(decoded as f64 / reply.decode_s) } else { 0.0 },
        });
        if args.ids {
            v["prompt_ids"] = reply.prompt_ids.into();
            v["gen_ids"] = reply.gen_ids.into();
        }
        println!("{v}");
    } else {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn transcribe(ctx: &Context_, args: TranscribeArgs) -> Result<ExitCode> {
    let transcriber = ctx.load_transcriber(&args.model)?;
    let mut failed = 0;
    for file in &args.files {
        let start = Instant::now();
        match transcribe_file(&transcriber, file) {
            Ok((transcript, audio_s)) => {
                let elapsed_s = start.elapsed().as_secs_f64();
                if args.json {
                    let line = serde_json::json!({
                        "file": file, "text": transcript.text, "audio_s": round3(audio_s), "elapsed_s": round3(elapsed_s),
                    });
                    println!("{line}");
                } else if args.files.len() > 1 {
                    println!("{}: {}", file.display(), transcript.text);
                } else {
                    println!("{}", transcript.text);
                }
            }
            Err(e) => {
                eprintln!("wick: error: {e:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn transcribe_file(transcriber: &Transcriber, file: &Path) -> Result<(stt::Transcript, f64)> {
    let samples = wick::audio::load_for_stt(file)?;
    let audio_s = samples.len() as f64 / wick::audio::STT_SAMPLE_RATE as f64;
    let transcript = transcriber.transcribe(&samples).with_context(|| format!("transcribing {}", file.display()))?;
    Ok((transcript, audio_s))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn bench_llm(
    ctx: &Context_,
    model: Option<PathBuf>,
    synthetic: Option<String>,
    prompt_tokens: usize,
    gen_tokens: usize,
    json: bool,
) -> Result<ExitCode> {
    use wick::llm::synthetic;
    let path = match (model, synthetic) {
        (Some(p), _) => p,
        (None, Some(name)) => {
            let names: Vec<&str> = synthetic::SPECS.iter().map(|s| s.name).collect();
            let spec = synthetic::spec(&name)
                .with_context(|| format!("no synthetic model {name:?}; choose one of {names:?}"))?;
            let path = ctx.store()?.dir().join("synthetic").join(format!("{name}.gguf"));
            if synthetic::ensure(spec, &path).with_context(|| format!("writing {}", path.display()))? {
                eprintln!("wrote the synthetic model {} (kept for later runs)", path.display());
            }
            path
        }
        (None, None) => match &ctx.config.llm.model {
            Some(p) => p.clone(),
            None => ctx.model_file("llm", ".gguf")?,
        },
    };
    if prompt_tokens == 0 || gen_tokens == 0 {
        anyhow::bail!("--prompt-tokens and --gen-tokens must be at least 1");
    }
    let mut file = wick::llm::GgufFile::open(&path)?;
    let r = wick::llm::bench::run(&mut file, prompt_tokens, gen_tokens, &stt::default_device())?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "| model | threads | load s | prompt tok/s ({}) | gen tok/s ({}) | 50-token answer s | peak RSS MiB |",
            r.prompt_tokens, r.gen_tokens
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.1} | {:.2} | {} |",
            r.model,
            r.threads,
            r.load_s,
            r.prompt_tok_s,
            r.gen_tok_s,
            r.answer_50_s,
            r.peak_rss_mb.map_or("?".into(), |m| format!("{m:.0}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl Context_ {
    /// The voice to speak with: the flags, then `[tts]`, then the model set's voice. A voice
    /// that cannot be found or loaded falls back to espeak-ng (the speaker says why).
    fn open_speaker(&self, args: &VoiceArgs) -> wick::tts::speaker::Speaker {
        use wick::tts::speaker::Speaker;
        let t = &self.config.tts;
        let voice = match args.voice.clone().or_else(|| t.voice.clone()) {
            Some(v) => Some(v),
            None => match self.model_file("tts", ".onnx.json") {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!("{e:#}");
                    None
                }
            },
        };
        let settings = wick::config::TtsConfig {
            noise_scale: args.noise_scale.or(t.noise_scale),
            length_scale: args.length_scale.or(t.length_scale),
            noise_w: args.noise_w.or(t.noise_w),
            speaker: args.speaker.clone().map(wick::tts::voice::SpeakerChoice::Name).or_else(|| t.speaker.clone()),
            ..t.clone()
        };
        let speaker = Speaker::open(voice.as_deref(), &settings, &stt::default_device());
        if let Some(reason) = speaker.fallback_reason() {
            eprintln!("wick: warning: {reason}; speaking with espeak-ng");
        }
        speaker
    }
}

impl Context_ {
    /// Whisper, the language model with a fresh conversation, and the voice, as configured.
    fn load_stages(
        &self,
    ) -> Result<(Transcriber, wick::appliance::stages::Conversational, wick::appliance::stages::Voice)> {
        use wick::llm::engine::{Conversation, Engine};
        let transcriber = self.load_transcriber(&SttModelArgs { model_dir: None, language: None })?;
        let path = match &self.config.llm.model {
            Some(p) => p.clone(),
            None => self.model_file("llm", ".gguf")?,
        };
        let engine = Engine::open(&path, self.config.llm.context, &stt::default_device())
            .with_context(|| format!("loading the language model {}", path.display()))?;
        let conversation =
            Conversation::new(self.config.llm.system.clone()).with_idle_reset(self.config.llm.idle_reset());
        let mut thinker =
            wick::appliance::stages::Conversational { engine, conversation, options: self.config.generate_options() };
        // The system prompt is prefilled now, not after the first question.
        let opening = thinker.engine.prefill_opening(&mut thinker.conversation)?;
        tracing::info!(tokens = opening, "system prompt prefilled");
        let no_overrides =
            VoiceArgs { voice: None, noise_scale: None, noise_w: None, length_scale: None, speaker: None };
        let voice = wick::appliance::stages::Voice::new(self.open_speaker(&no_overrides))?;
        Ok((transcriber, thinker, voice))
    }

    fn pipeline_settings(&self) -> wick::pipeline::Settings {
        let i = &self.config.input;
        wick::pipeline::Settings {
            recorder: wick::pipeline::RecorderSettings {
                preroll: std::time::Duration::from_millis(i.preroll_ms),
                max_record: std::time::Duration::from_secs_f64(i.max_record_s),
            },
            tap: std::time::Duration::from_millis(i.tap_ms),
        }
    }
}

fn ask(ctx: &Context_, args: AskArgs) -> Result<ExitCode> {
    use wick::appliance::stages::{MemoryLoudspeaker, WavMicrophone};
    use wick::pipeline::{Hooks, Pipeline, Speak, Stages};
    let microphone = WavMicrophone::open(&args.input)?;
    let input_s = microphone.duration_s();
    let (hear, think, voice) = ctx.load_stages()?;
    let rate = voice.rate();
    let (loudspeaker, played) = MemoryLoudspeaker::new(rate);
    let stages = Stages {
        microphone: Box::new(microphone),
        hear: Box::new(hear),
        think: Box::new(think),
        voice: Box::new(voice),
        loudspeaker: Box::new(loudspeaker),
    };
    let hooks =
        Hooks { on_turn: Box::new(|r| tracing::info!(target: "wick::turn", "{}", r.json())), ..Default::default() };
    let mut pipeline = Pipeline::start(stages, ctx.pipeline_settings(), hooks, true);
    // Nothing drives this pipeline but the file: the controls stay open and silent.
    let (_controls_tx, controls) = crossbeam_channel::unbounded();
    let record = pipeline.run(&controls, true);
    pipeline.shutdown();
    let record = record.context("the turn ended without a record (see the log above)")?;
    let audio = std::mem::take(&mut *played.lock().unwrap());
    if let Some(out) = &args.output {
        wick::audio::write_wav_mono_i16(out, &audio, rate)?;
    }
    if args.json {
        let v = serde_json::json!({
            "transcript": record.transcript,
            "reply": record.reply,
            "stt_s": record.stt_done_s,
            "first_token_s": record.first_token_s,
            "first_audio_s": record.first_sample_played_s,
            "total_s": record.done_s,
            "audio_out_s": round3(audio.len() as f64 / rate as f64),
            "outcome": record.outcome,
            "input_s": round3(input_s),
            "recorded_s": record.recorded_s,
            "capped": record.capped,
            "first_chunk_s": record.first_chunk_s,
            "prompt_tokens": record.prompt_tokens,
            "gen_tokens": record.gen_tokens,
            "error": record.error,
        });
        println!("{v}");
    } else {
        println!("you:  {}", record.transcript);
        println!("wick: {}", record.reply);
        println!(
            "({}; first audio {} s, done {} s after the end of the question; {:.1} s of answer{})",
            serde_json::to_value(record.outcome)?.as_str().unwrap_or("?"),
            record.first_sample_played_s.map_or("-".into(), |s| format!("{s:.2}")),
            record.done_s.map_or("-".into(), |s| format!("{s:.2}")),
            audio.len() as f64 / rate as f64,
            args.output.as_ref().map_or(String::new(), |o| format!(", written to {}", o.display())),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_appliance(ctx: &Context_, args: RunArgs) -> Result<ExitCode> {
    use wick::appliance::{notify::Notifier, service};
    let notifier = Notifier::from_env();
    notifier.status("loading models");
    let (hear, think, voice) = ctx.load_stages()?;
    let models = service::Models { hear: Box::new(hear), think: Box::new(think), voice: Box::new(voice) };
    service::run(&ctx.config, models, ctx.pipeline_settings(), notifier, args.stdin)?;
    Ok(ExitCode::SUCCESS)
}

fn doctor(ctx: &Context_, args: DoctorArgs) -> Result<ExitCode> {
    use wick::appliance::doctor::{self, Level, ModelPaths};
    let store = ctx.store()?;
    let set = ctx.model_set(&store, "llm");
    let exists = |p: &PathBuf, key: &str| {
        if p.exists() {
            Ok(p.clone())
        } else {
            Err(format!("{} (set by {key}) does not exist", p.display()))
        }
    };
    let c = &ctx.config;
    let models = ModelPaths {
        stt: match &c.stt.model_dir {
            Some(d) => exists(d, "stt.model_dir"),
            None => store.require(&set, "stt").map_err(|e| e.to_string()),
        },
        llm: match &c.llm.model {
            Some(p) => exists(p, "llm.model"),
            None => ctx.model_file("llm", ".gguf").map_err(|e| format!("{e:#}")),
        },
        tts: match &c.tts.voice {
            Some(p) => exists(p, "tts.voice"),
            None => ctx.model_file("tts", ".onnx.json").map_err(|e| format!("{e:#}")),
        },
        checksums: store.verify(Some(&set)).map_err(|e| e.to_string()).map(|outcomes| {
            outcomes
                .into_iter()
                .map(|o| {
                    let problem = match &o.check {
                        Check::Ok | Check::Unpinned { .. } => None,
                        Check::Missing => Some("missing".to_string()),
                        Check::Mismatch { expected, actual } => {
                            Some(format!("sha256 {actual} differs from the pinned {expected} (damaged or replaced)"))
                        }
                    };
                    (o.role, o.name, problem)
                })
                .collect()
        }),
        set,
    };
    let report = doctor::run(c, &models);
    if args.json {
        println!("{}", serde_json::json!({ "ok": !report.failed(), "findings": report.findings }));
    } else {
        for f in &report.findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Info => "    ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag} {:<7} {}", f.area, f.what);
            if let Some(fix) = &f.fix {
                println!("             -> {fix}");
            }
        }
    }
    if report.failed() {
        eprintln!("wick doctor: the configured appliance cannot run here; fix the FAIL lines above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn say(ctx: &Context_, args: SayArgs) -> Result<ExitCode> {
    let speaker = ctx.open_speaker(&args.voice);
    let rate = speaker.sample_rate()?;
    let start = Instant::now();
    let (audio, phonemes, ids, first_chunk_s) = if let Some(ids) = &args.phoneme_ids {
        let audio = speaker.speak_ids(ids)?;
        let first = start.elapsed().as_secs_f64();
        (audio, Vec::new(), vec![ids.clone()], Some(first))
    } else {
        let text = match args.text {
            Some(t) => utf8_arg("TEXT", t)?,
            None => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading stdin")?;
                String::from_utf8(bytes).context("the text on stdin is not valid UTF-8")?
            }
        };
        let mut audio = Vec::new();
        let said = speaker.speak_text(&text, &mut |a| audio.extend_from_slice(a))?;
        (audio, said.spoken.phonemes, said.spoken.phoneme_ids, said.first_chunk_s)
    };
    let synth_s = start.elapsed().as_secs_f64();
    wick::audio::write_wav_mono_i16(&args.output, &audio, rate)?;
    if args.json {
        let v = serde_json::json!({
            "phonemes": phonemes,
            "phoneme_ids": ids,
            "samples": audio.len(),
            "sample_rate": rate,
            "synth_s": round3(synth_s),
            "first_chunk_s": first_chunk_s.map(round3),
            "voice": speaker.engine_name(),
            "speaker": speaker.speaker_id(),
        });
        println!("{v}");
    } else if audio.is_empty() {
        eprintln!("nothing to say: wrote {} with no audio", args.output.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_tts(ctx: &Context_, voice: &VoiceArgs, json: bool) -> Result<ExitCode> {
    const TEXTS: [(&str, &str); 3] = [
        ("short", "Hello there."),
        ("medium", "The kitchen timer is set for ten minutes, and I will remind you when it rings."),
        (
            "long",
            "Tomorrow will be mostly sunny, with a high of twenty-two degrees in the afternoon. \
             A light breeze comes from the west, and the evening should stay dry, so it is a good \
             day for a walk. If you plan to go out early, take a jacket: mornings are still cool \
             at this time of year.",
        ),
    ];
    let load_start = Instant::now();
    let speaker = ctx.open_speaker(voice);
    let rate = speaker.sample_rate()? as f64;
    let load_s = load_start.elapsed().as_secs_f64();
    // One untimed run so the first row does not pay for first-use allocations.
    speaker.speak_text(TEXTS[0].1, &mut |_| {})?;
    let mut rows = Vec::new();
    for (name, text) in TEXTS {
        let said = speaker.speak_text(text, &mut |_| {})?;
        let audio_s = said.spoken.samples as f64 / rate;
        rows.push(serde_json::json!({
            "name": name,
            "chars": text.chars().count(),
            "chunks": said.chunks.len(),
            "audio_s": round3(audio_s),
            "synth_s": round3(said.synth_s),
            "rtf": if audio_s > 0.0 { round3(said.synth_s / audio_s) } else { 0.0 },
            "first_chunk_s": said.first_chunk_s.map(round3),
        }));
    }
    let peak_rss_mb = wick::bench::peak_rss_bytes().map(|b| round3(b as f64 / (1 << 20) as f64));
    if json {
        let v = serde_json::json!({
            "voice": speaker.engine_name(),
            "threads": rayon::current_num_threads(),
            "load_s": round3(load_s),
            "peak_rss_mb": peak_rss_mb,
            "texts": rows,
        });
        println!("{v}");
    } else {
        println!("voice: {}, load {:.2} s, peak RSS {:?} MiB", speaker.engine_name(), load_s, peak_rss_mb);
        println!("| text | chars | chunks | audio s | synth s | RTF | first chunk s |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r["name"].as_str().unwrap_or_default(),
                r["chars"],
                r["chunks"],
                r["audio_s"],
                r["synth_s"],
                r["rtf"],
                r["first_chunk_s"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_stt(ctx: &Context_, model: &SttModelArgs, json: bool, files: &[PathBuf]) -> Result<ExitCode> {
    let load_start = Instant::now();
    let transcriber = ctx.load_transcriber(model)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for file in files {
        let samples = wick::audio::load_for_stt(file)?;
        let start = Instant::now();
        let t = transcriber.transcribe(&samples).with_context(|| format!("transcribing {}", file.display()))?;
        let total_s = start.elapsed().as_secs_f64();
        let audio_s = samples.len() as f64 / wick::audio::STT_SAMPLE_RATE as f64;
        rows.push(BenchRow { name: file.display().to_string(), audio_s, total_s, timings: t.timings });
    }
    let total = BenchRow {
        name: "total".into(),
        audio_s: rows.iter().map(|r| r.audio_s).sum(),
        total_s: rows.iter().map(|r| r.total_s).sum(),
        timings: rows.iter().fold(stt::SttTimings::default(), |mut acc, r| {
            acc.front_end_s += r.timings.front_end_s;
            acc.encoder_s += r.timings.encoder_s;
            acc.decoder_s += r.timings.decoder_s;
            acc.windows += r.timings.windows;
            acc.tokens += r.timings.tokens;
            acc
        }),
    };
    let peak_rss_mb = wick::bench::peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0));
    if json {
        for r in rows.iter().chain(std::iter::once(&total)) {
            let mut v = r.json();
            if r.name == "total" {
                v["load_s"] = round3(load_s).into();
                v["peak_rss_mb"] = peak_rss_mb.map(|m| (m * 10.0).round() / 10.0).into();
            }
            println!("{v}");
        }
    } else {
        println!("| file | audio s | total s | RTF | front end s | encoder s | decoder s | tokens |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in rows.iter().chain(std::iter::once(&total)) {
            println!(
                "| {} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
                r.name,
                r.audio_s,
                r.total_s,
                r.rtf(),
                r.timings.front_end_s,
                r.timings.encoder_s,
                r.timings.decoder_s,
                r.timings.tokens
            );
        }
        println!();
        println!(
            "model load: {load_s:.3} s; peak RSS: {}",
            peak_rss_mb.map_or("unknown".into(), |m| format!("{m:.0} MiB"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct BenchRow {
    name: String,
    audio_s: f64,
    total_s: f64,
    timings: stt::SttTimings,
}

impl BenchRow {
    fn rtf(&self) -> f64 {
        if self.audio_s > 0.0 {
            self.total_s / self.audio_s
        } else {
            0.0
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.name, "audio_s": round3(self.audio_s), "total_s": round3(self.total_s), "rtf": round3(self.rtf()),
            "front_end_s": round3(self.timings.front_end_s), "encoder_s": round3(self.timings.encoder_s),
            "decoder_s": round3(self.timings.decoder_s), "windows": self.timings.windows, "tokens": self.timings.tokens,
        })
    }
}

fn models(ctx: &Context_, cmd: ModelsCommand) -> Result<ExitCode> {
    if let ModelsCommand::ImportCt2 { src, dst } = &cmd {
        let report = wick::models::ct2::import(src, dst)?;
        for f in &report.files {
            println!("{}  {}", f.sha256, f.path.display());
        }
        eprintln!("imported {} ({} tensors, {}) into {}", src.display(), report.tensors, report.dtype, dst.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = ctx.store()?;
    match cmd {
        ModelsCommand::Pull { set } => {
            store.pull(&set)?;
            eprintln!("model set {set:?} is ready in {}", store.role_dir(&set, "").display());
        }
        ModelsCommand::List { set, json } => {
            for f in store.list(set.as_deref())? {
                if json {
                    println!("{}", serde_json::to_string(&f)?);
                } else {
                    println!(
                        "{:<8} {:<4} {:<7} {:<40} {}",
                        f.set,
                        f.role,
                        if f.present { "present" } else { "missing" },
                        f.name,
                        f.path.display()
                    );
                }
            }
        }
        ModelsCommand::Verify { set } => {
            let outcomes = store.verify(set.as_deref())?;
            let mut bad = 0;
            for o in &outcomes {
                let status = match &o.check {
                    Check::Ok => "ok".to_string(),
                    Check::Missing => "MISSING".to_string(),
                    Check::Mismatch { expected, actual } => {
                        format!("MISMATCH (expected sha256 {expected}, found {actual})")
                    }
                    Check::Unpinned { actual } => format!("unpinned (sha256 {actual})"),
                };
                println!("{:<8} {:<4} {:<40} {status}", o.set, o.role, o.name);
                bad += usize::from(!o.is_ok());
            }
            if bad > 0 {
                eprintln!("wick: {bad} model file(s) missing or damaged; run `wick models pull` to fetch them again");
                return Ok(ExitCode::FAILURE);
            }
        }
        ModelsCommand::ImportCt2 { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
