//! `wick bench`: each engine's speed and memory as a table (or JSON), measured by the engine's
//! own bench module.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use wick::appliance::assemble::Assembly;
use wick::measure::{peak_rss_mib, round3};
use wick::{llm, stt, tts};

use super::args::{SttFilesArgs, VoiceArgs};
use super::say::open_speaker;

pub fn stt(assembly: &Assembly, args: SttFilesArgs) -> Result<ExitCode> {
    let load_start = Instant::now();
    let transcriber = assembly.transcriber(args.model.model_dir.as_deref(), args.model.language.as_deref())?;
    let load_s = load_start.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for file in &args.files {
        let samples = wick::audio::load_for_stt(file)?;
        let row = stt::bench::measure(&transcriber, file.display().to_string(), &samples)
            .with_context(|| format!("transcribing {}", file.display()))?;
        rows.push(row);
    }
    let total = stt::bench::total(&rows);
    let peak_rss_mb = peak_rss_mib();
    let (device, gpu_used_mb) = device_and_gpu(assembly)?;
    if args.json {
        for r in rows.iter().chain(std::iter::once(&total)) {
            let mut v = r.json();
            if std::ptr::eq(r, &total) {
                v["load_s"] = round3(load_s).into();
                v["peak_rss_mb"] = peak_rss_mb.map(|m| (m * 10.0).round() / 10.0).into();
                v["device"] = device.clone().into();
                v["gpu_used_mb"] = gpu_used_mb.into();
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
            "device: {device}; model load: {load_s:.3} s; peak RSS: {}; GPU memory in use: {}",
            peak_rss_mb.map_or("unknown".into(), |m| format!("{m:.0} MiB")),
            gpu_cell(gpu_used_mb)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tts(assembly: &Assembly, voice: &VoiceArgs, json: bool) -> Result<ExitCode> {
    let load_start = Instant::now();
    let speaker = open_speaker(assembly, voice)?;
    speaker.sample_rate()?;
    let load_s = load_start.elapsed().as_secs_f64();
    let rows = tts::bench::run(&speaker)?;
    let peak_rss_mb = peak_rss_mib().map(round3);
    let (device, gpu_used_mb) = device_and_gpu(assembly)?;
    if json {
        let v = serde_json::json!({
            "voice": speaker.engine_name(),
            "device": device,
            "gpu_used_mb": gpu_used_mb,
            "threads": rayon::current_num_threads(),
            "load_s": round3(load_s),
            "peak_rss_mb": peak_rss_mb,
            "texts": rows,
        });
        println!("{v}");
    } else {
        println!(
            "voice: {}, device {device}, load {:.2} s, peak RSS {:?} MiB, GPU memory in use {}",
            speaker.engine_name(),
            load_s,
            peak_rss_mb,
            gpu_cell(gpu_used_mb)
        );
        println!("| text | chars | chunks | audio s | synth s | RTF | first chunk s |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            let first = r.first_chunk_s.map_or("null".to_string(), |s| s.to_string());
            println!(
                "| {} | {} | {} | {} | {} | {} | {first} |",
                r.name, r.chars, r.chunks, r.audio_s, r.synth_s, r.rtf
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn llm(
    assembly: &Assembly,
    model: Option<PathBuf>,
    synthetic: Option<String>,
    vocab: Option<PathBuf>,
    prompt_tokens: usize,
    gen_tokens: usize,
    json: bool,
) -> Result<ExitCode> {
    use llm::synthetic;
    let path = match (model, synthetic) {
        (None, Some(name)) => {
            let names: Vec<&str> = synthetic::SPECS.iter().map(|s| s.name).collect();
            let spec = synthetic::spec(&name)
                .with_context(|| format!("no synthetic model {name:?}; choose one of {names:?}"))?;
            // One file per kind of vocabulary, so switching does not rewrite gigabytes each time.
            let (file, vocabulary) = match &vocab {
                Some(json) => (format!("{name}.vocab.gguf"), synthetic::Vocabulary::TokenizerJson(json)),
                None => (format!("{name}.gguf"), synthetic::Vocabulary::Placeholder),
            };
            let path = assembly.store()?.dir().join("synthetic").join(file);
            if synthetic::ensure(spec, &path, vocabulary).with_context(|| format!("writing {}", path.display()))? {
                eprintln!("wrote the synthetic model {} (kept for later runs)", path.display());
            }
            path
        }
        (given, _) => assembly.llm_path(given.as_deref())?,
    };
    if prompt_tokens == 0 || gen_tokens == 0 {
        anyhow::bail!("--prompt-tokens and --gen-tokens must be at least 1");
    }
    let mut file = llm::GgufFile::open(&path)?;
    let r = llm::bench::run(&mut file, prompt_tokens, gen_tokens, assembly.device()?)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "| model | device | threads | load s | prompt tok/s ({}) | gen tok/s ({}) | 50-token answer s | peak RSS MiB | GPU MiB |",
            r.prompt_tokens, r.gen_tokens
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.2} | {} | {} |",
            r.model,
            r.device,
            r.threads,
            r.load_s,
            r.prompt_tok_s,
            r.gen_tok_s,
            r.answer_50_s,
            r.peak_rss_mb.map_or("?".into(), |m| format!("{m:.0}")),
            gpu_cell(r.gpu_used_mb)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The device the models ran on, and the memory in use on it when it is a GPU (whole device).
fn device_and_gpu(assembly: &Assembly) -> Result<(String, Option<f64>)> {
    let device = assembly.device()?;
    let used = wick::device::gpu_info(device).map(|g| round3(g.used_mib()));
    Ok((wick::device::describe(device), used))
}

fn gpu_cell(used_mb: Option<f64>) -> String {
    used_mb.map_or("-".into(), |m| format!("{m:.0} MiB"))
}
