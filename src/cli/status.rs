//! `wick status`: what a person looking after the device wants to see at once: the running
//! service's state (from its control socket), the root slots (from RAUC) and the health gate's
//! last verdict. Parts that cannot be read are shown as such; the command fails only when the
//! service does not answer.

use std::process::ExitCode;

use anyhow::Result;

use wick::appliance::{gate, rauc};
use wick::config::Config;
use wick::input;

use super::args::StatusArgs;

pub fn run(config: &Config, args: StatusArgs) -> Result<ExitCode> {
    let socket = args.socket.unwrap_or_else(|| config.input.socket_path());
    let service = input::send(&socket, "status").map_err(|e| e.to_string());
    let service_json = service.as_ref().ok().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let slots = rauc::status().map_err(|e| e.to_string());
    let health =
        std::fs::read_to_string(gate::REPORT).ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let image = std::fs::read_to_string("/etc/wick/image").ok();
    let image_version =
        image.as_deref().and_then(|i| i.lines().find_map(|l| l.strip_prefix("version="))).map(str::to_string);

    if args.json {
        let v = serde_json::json!({
            "service": match (&service, &service_json) {
                (Ok(_), Some(v)) => v.clone(),
                (Ok(s), None) => serde_json::json!({ "answer": s }),
                (Err(e), _) => serde_json::json!({ "error": e }),
            },
            "image_version": image_version,
            "slots": match &slots {
                Ok(s) => serde_json::to_value(s)?,
                Err(e) => serde_json::json!({ "error": e }),
            },
            "health": health,
        });
        println!("{v}");
    } else {
        match (&service, &service_json) {
            (Ok(_), Some(v)) => println!(
                "service: {}{}, microphone {}, loudspeaker {}",
                v["state"].as_str().unwrap_or("?"),
                if v["ready"].as_bool() == Some(true) { " (ready)" } else { " (not ready yet)" },
                device_state(&v["capture"]),
                device_state(&v["playback"]),
            ),
            (Ok(s), None) => println!("service: {s}"),
            (Err(e), _) => println!("service: not answering: {e}"),
        }
        if let Some(v) = &image_version {
            println!("image: version {v}");
        }
        match &slots {
            Ok(s) => {
                println!("booted: slot {}", s.booted);
                for line in s.lines() {
                    println!("  {line}");
                }
            }
            Err(e) => println!("slots: unknown: {e}"),
        }
        if let Some(h) = &health {
            println!(
                "health gate: last verdict {} on slot {}{}",
                h["verdict"].as_str().unwrap_or("?"),
                h["slot"].as_str().unwrap_or("?"),
                h["problems"]
                    .as_array()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!(" ({})", p.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; ")))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if service.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn device_state(v: &serde_json::Value) -> String {
    v["state"].as_str().or(v.as_str()).unwrap_or("?").to_string()
}
