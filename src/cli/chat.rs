//! `wick chat`: the language model on its own. With `--prompt` one answer (streamed, or one
//! JSON object); without, a conversation on stdin, a line per message.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use wick::appliance::assemble::Assembly;
use wick::llm::engine::Conversation;
use wick::llm::sampling::SamplingOptions;
use wick::measure::round3;

use super::args::ChatArgs;
use super::{print_now, utf8_arg};

pub fn run(assembly: &Assembly, args: ChatArgs) -> Result<ExitCode> {
    let settings = &assembly.config.llm;
    let system = args.system.map(|s| utf8_arg("--system", s)).transpose()?.unwrap_or_else(|| settings.system.clone());
    let history: Vec<String> = args.history.into_iter().map(|h| utf8_arg("--history", h)).collect::<Result<_>>()?;
    let turns = history.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    let prompt = args.prompt.map(|p| utf8_arg("--prompt", p)).transpose()?;
    let mut options = settings.generate_options();
    if args.greedy {
        options.sampling = SamplingOptions::greedy();
    }
    if let Some(n) = args.max_tokens {
        options.max_tokens = n;
    }

    let load_start = Instant::now();
    let (mut engine, path) = assembly.language_model(args.model.as_deref())?;
    let load_s = load_start.elapsed().as_secs_f64();
    let mut conv = Conversation::with_history(system, turns).with_idle_reset(settings.idle_reset());

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
                eprintln!("(idle for over {} s: starting a new conversation)", settings.idle_reset_s);
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
