//! A soak of `wick run` through real ALSA (see `common/appliance.rs`): many turns of random
//! questions, silences, barge-ins and taps, checking that every press gives exactly one
//! complete record and that memory, file descriptors and threads do not grow.
//!
//! `make test` runs a short soak (WICK_SOAK_TURNS, default 12 presses); `make soak` runs 200.
//! WICK_SOAK_SEED picks another random plan; WICK_SOAK_REPORT names a JSON file for the figures.

#[path = "common/appliance.rs"]
mod appliance;
mod common;

use std::time::{Duration, Instant};

use appliance::Appliance;
use common::{dev_clips, shared_dir};
use rand::{Rng, SeedableRng};

const LONG: Duration = Duration::from_secs(180);

/// What one step of the soak does.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Ask a question and hear the answer.
    Question,
    /// Hold the button in silence: the apology, without the LLM.
    Silence,
    /// Ask, and while the answer plays, press and ask again.
    BargeIn,
    /// Ask, and tap while the answer plays.
    Tap,
}

/// Resident memory (KiB), threads and open file descriptors of `pid`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Usage {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
    Usage { rss_kib: field("VmRSS:"), threads: field("Threads:"), fds }
}

/// Usage when nothing is going on: the fewest threads and descriptors over half a second, so
/// a control-socket connection just closing is not counted.
fn settled_usage(app: &Appliance) -> Usage {
    let pid = app.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let samples: Vec<Usage> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            usage(pid)
        })
        .collect();
    Usage {
        rss_kib: samples.last().unwrap().rss_kib,
        threads: samples.iter().map(|u| u.threads).min().unwrap(),
        fds: samples.iter().map(|u| u.fds).min().unwrap(),
    }
}

/// Checks that `r` is a whole record of its kind.
fn assert_complete(r: &serde_json::Value) {
    let num = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {r}"));
    match r["outcome"].as_str().unwrap() {
        "answered" => {
            assert!(!r["transcript"].as_str().unwrap().is_empty(), "{r}");
            assert!(!r["reply"].as_str().unwrap().is_empty(), "{r}");
            for k in ["stt_done_s", "first_token_s", "first_chunk_s", "first_sample_played_s", "done_s"] {
                assert!(num(k) >= 0.0, "{r}");
            }
            assert!(num("reply_audio_s") > 0.0 && r["gen_tokens"].as_u64().unwrap() > 0, "{r}");
        }
        "nothing_heard" => {
            assert_eq!(r["reply"], "Sorry, I didn't catch that.", "{r}");
            assert_eq!(r["gen_tokens"], 0, "{r}");
            assert!(num("done_s") >= 0.0, "{r}");
        }
        "cancelled" => assert!(r["cancelled_by"].is_string(), "{r}"),
        other => panic!("a soak turn ended {other}: {r}"),
    }
}

#[test]
fn many_random_turns_lose_nothing_and_leak_nothing() {
    let _ = shared_dir();
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let presses = env("WICK_SOAK_TURNS", 12) as usize;
    let seed = env("WICK_SOAK_SEED", 12);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let clips: Vec<Vec<f32>> = dev_clips().iter().map(|(p, _)| wick::audio::load_for_stt(p).unwrap()).collect();

    // Short answers keep a turn to a few seconds of real-time audio.
    let mut app = Appliance::start("[llm]\nmax_tokens = 24\n", None);
    app.wait_status("ready", LONG, |v| v["ready"] == true);
    let started = Instant::now();
    // Memory is compared from press 20 on (the caches have filled by then), or from the first
    // third of a short soak.
    let baseline_at = if presses >= 60 { 20 } else { (presses / 3).max(1) };
    let (mut pressed, mut records, mut steps) = (0usize, Vec::<serde_json::Value>::new(), Vec::new());
    let mut baseline = None;
    let ask = |app: &mut Appliance, rng: &mut rand_chacha::ChaCha8Rng, pressed: &mut usize| {
        app.press();
        *pressed += 1;
        app.wait_state("listening", LONG);
        let clip = &clips[rng.random_range(0..clips.len())];
        app.say(clip);
        app.release();
    };
    while pressed < presses {
        let step = match rng.random_range(0..100) {
            0..50 => Step::Question,
            50..65 => Step::Silence,
            65..85 => Step::BargeIn,
            _ => Step::Tap,
        };
        steps.push(step);
        let before = pressed;
        match step {
            Step::Question => ask(&mut app, &mut rng, &mut pressed),
            Step::Silence => {
                app.press();
                pressed += 1;
                app.wait_state("listening", LONG);
                app.say(&vec![0.0; 16_000 * rng.random_range(1..3)]);
                app.release();
            }
            Step::BargeIn => {
                ask(&mut app, &mut rng, &mut pressed);
                app.wait_state("speaking", LONG);
                ask(&mut app, &mut rng, &mut pressed);
            }
            Step::Tap => {
                ask(&mut app, &mut rng, &mut pressed);
                app.wait_state("speaking", LONG);
                assert_eq!(app.send(&["tap"]), ["ok"]);
            }
        }
        // One record per press, none more.
        for _ in before..pressed {
            let r = app.next_turn(LONG);
            assert_complete(&r);
            records.push(r);
        }
        app.wait_state("idle", LONG);
        if baseline.is_none() && pressed >= baseline_at {
            baseline = Some((pressed, settled_usage(&app)));
        }
        if pressed / 10 != before / 10 {
            let u = usage(app.child.id());
            let minutes = started.elapsed().as_secs_f64() / 60.0;
            eprintln!("soak: {pressed} presses, {minutes:.1} min, {} records, now {u:?}", records.len());
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(app.turns.try_recv().is_err(), "a record came without a press");
    let end = settled_usage(&app);
    let (baseline_turn, base) = baseline.expect("measured after the first turns");

    let ids: Vec<u64> = records.iter().map(|r| r["turn"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "turn ids repeat or go back: {ids:?}");
    let count = |o: &str| records.iter().filter(|r| r["outcome"] == o).count();
    let growth = (end.rss_kib as f64 / base.rss_kib as f64 - 1.0) * 100.0;
    let report = serde_json::json!({
        "presses": pressed, "seed": seed, "minutes": (started.elapsed().as_secs_f64() / 60.0 * 10.0).round() / 10.0,
        "answered": count("answered"), "nothing_heard": count("nothing_heard"), "cancelled": count("cancelled"),
        "usage_at": baseline_turn, "usage_then": base, "usage_end": end, "rss_growth_percent": (growth * 100.0).round() / 100.0,
    });
    eprintln!("soak: {report}");
    if let Ok(path) = std::env::var("WICK_SOAK_REPORT") {
        std::fs::write(path, report.to_string()).unwrap();
    }
    assert!(growth < 5.0, "resident memory grew {growth:.1} % from press {baseline_turn} to the end: {report}");
    assert_eq!((end.threads, end.fds), (base.threads, base.fds), "threads or descriptors leaked: {report}");
    assert!(app.terminate(), "{}", app.log());
}
