//! `wick run`: the appliance loop. The models are loaded by the caller; this opens the sound
//! devices and the button, starts the pipeline, and runs the supervisor until SIGTERM (or
//! SIGINT), speaking systemd's notify protocol on the way.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use super::assemble::Engines;
use super::devices::{AlsaLoudspeaker, AlsaMicrophone};
use super::notify::Notifier;
use super::turn_log::TurnLog;
use crate::audio::DeviceState;
use crate::config::Config;
use crate::input::{ControlSocket, Debouncer, InputEvent};
use crate::pipeline::{Control, Hooks, Pipeline};

/// Runs the appliance with its loaded `engines` until a stop signal. `stdin`: Enter on
/// standard input toggles the button.
pub fn run(config: &Config, engines: Engines, notifier: Notifier, stdin: bool) -> anyhow::Result<()> {
    let notifier = Rc::new(RefCell::new(notifier));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handlers")?;
    }

    let (input_tx, input_rx) = unbounded();
    let socket_path = config.input.socket_path();
    let socket = ControlSocket::bind(&socket_path, config.input.socket_group.as_deref(), input_tx.clone())
        .with_context(|| format!("opening the control socket {}", socket_path.display()))?;
    if crate::input::spawn_button(&config.input, input_tx.clone()).context("opening the push-to-talk button")?.is_none()
    {
        tracing::info!("no hardware button configured: use the control socket {}", socket_path.display());
    }
    if stdin {
        crate::input::spawn_stdin(input_tx.clone());
        eprintln!("wick: press Enter to start talking and Enter again to stop");
    }
    drop(input_tx);

    let microphone = AlsaMicrophone::new(&config.audio);
    let loudspeaker = AlsaLoudspeaker::new(&config.audio);
    let (capture, playback) = (microphone.state(), loudspeaker.state());

    let (controls_tx, controls_rx) = bounded(64);
    let debounce = Duration::from_millis(config.input.debounce_ms);
    std::thread::Builder::new()
        .name("wick-button".into())
        .spawn({
            let controls = controls_tx.clone();
            move || button(input_rx, controls, debounce)
        })
        .context("starting the button thread")?;

    let device_json = {
        let (capture, playback) = (capture.clone(), playback.clone());
        move || {
            let state =
                |s: &std::sync::Mutex<DeviceState>| serde_json::to_value(&*s.lock().unwrap()).unwrap_or_default();
            serde_json::json!({ "capture": state(&capture), "playback": state(&playback) })
        }
    };
    let ready_check = {
        let (capture, playback) = (capture.clone(), playback.clone());
        move || {
            matches!(*capture.lock().unwrap(), DeviceState::Open(_))
                && matches!(*playback.lock().unwrap(), DeviceState::Open(_))
        }
    };
    let hooks = Hooks {
        on_turn: Box::new({
            let mut log = TurnLog::start(std::io::stdout()).context("starting the turn log")?;
            move |record| log.record(record)
        }),
        on_state: Box::new({
            let notifier = notifier.clone();
            move |state| notifier.borrow().status(&state.to_string())
        }),
        on_failure: Box::new({
            let notifier = notifier.clone();
            move |failure| notifier.borrow().status(&format!("failed: {failure}"))
        }),
        status: Box::new({
            let notifier = notifier.clone();
            move || {
                let mut v = device_json();
                v["ready"] = notifier.borrow().is_ready().into();
                v
            }
        }),
        tick: Box::new({
            let notifier = notifier.clone();
            let mut stopping = false;
            let mut waiting_since: Option<Instant> = None;
            move |healthy| {
                let mut n = notifier.borrow_mut();
                // The watchdog is fed only while every stage shows life: a stuck stage makes
                // systemd restart wick even if wick itself could not notice.
                if healthy {
                    n.tick(Instant::now());
                }
                if !n.is_ready() {
                    if ready_check() {
                        n.ready("idle");
                        tracing::info!("ready: models loaded and sound devices open");
                    } else if waiting_since.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        waiting_since = Some(Instant::now());
                        n.status("waiting for the sound devices (see the log)");
                    }
                }
                if stop.load(Ordering::Relaxed) && !stopping {
                    stopping = true;
                    tracing::info!("stop signal: ending the current turn");
                    let _ = controls_tx.send(Control::Shutdown);
                }
            }
        }),
    };
    let stages = engines.into_stages(Box::new(microphone), Box::new(loudspeaker));
    let mut pipeline = Pipeline::start(stages, config.pipeline_settings(), hooks, false);
    let ended = pipeline.run(&controls_rx, false);
    notifier.borrow().stopping();
    pipeline.shutdown();
    drop(socket);
    ended
        .map(|_| ())
        .map_err(|failure| anyhow::anyhow!("{failure}; exiting so that systemd restarts wick (Restart=on-failure)"))
}

/// Turns the sources' raw edges into debounced presses and releases for the supervisor.
fn button(input: Receiver<InputEvent>, controls: Sender<Control>, window: Duration) {
    let mut debouncer = Debouncer::new(window);
    let send = |pressed: bool, at: Instant| {
        let c = if pressed { Control::Press { at } } else { Control::Release { at } };
        controls.send(c).is_ok()
    };
    loop {
        let event = match debouncer.deadline() {
            Some(deadline) => input.recv_deadline(deadline),
            None => input.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let ok = match event {
            Ok(InputEvent::Edge { pressed, at, source }) => {
                tracing::debug!(pressed, source, "button edge");
                match debouncer.edge(pressed, at) {
                    Some(level) => send(level, at),
                    None => true,
                }
            }
            Ok(InputEvent::Tap { at, .. }) => controls.send(Control::Tap { at }).is_ok(),
            Ok(InputEvent::Status { reply }) => controls.send(Control::Status { reply }).is_ok(),
            Err(RecvTimeoutError::Timeout) => match debouncer.poll(Instant::now()) {
                Some(level) => send(level, Instant::now()),
                None => true,
            },
            Err(RecvTimeoutError::Disconnected) => false,
        };
        if !ok {
            return;
        }
    }
}
