//! The push-to-talk input layer: every way of pressing the button (a GPIO line, an evdev key,
//! the control socket, Enter on stdin) sends [`InputEvent`]s on one channel, and the supervisor
//! debounces the raw edges with [`Debouncer`]. Sources report raw levels and never decide what a
//! press means; that keeps the appliance's behaviour in one place whichever button is wired up.
//!
//! Hardware sources follow one policy: a problem found while starting (no such chip, line,
//! device or key, no permission) is returned as an [`InputError`] that names the setting to fix;
//! a problem after that (the device went away) is logged, a held button is released (a vanished
//! button is not held), and the source retries with a growing pause until the device is back.

mod debounce;
mod evdev_key;
mod gpio;
mod settings;
mod socket;
mod stdin;

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::retry::{self, Backoff};

pub use debounce::Debouncer;
pub use evdev_key::{list_devices, parse_key, spawn_evdev, InputDeviceInfo};
pub use gpio::{find_line, list_chips, spawn_gpio, ChipInfo, LineInfo};
pub use settings::{ButtonKind, Settings};
pub use socket::{send, ControlSocket};
pub use stdin::spawn_stdin;

/// What a button source tells the supervisor.
#[derive(Debug, Clone)]
pub enum InputEvent {
    /// The button's level changed (raw, before debouncing): pressed = true when held.
    Edge { pressed: bool, at: Instant, source: &'static str },
    /// A press and release in one (socket `tap`): stop what the appliance is doing.
    Tap { at: Instant, source: &'static str },
    /// Socket `status`: the supervisor answers one line of JSON on `reply`.
    Status { reply: crossbeam_channel::Sender<String> },
}

/// Starts the hardware button `cfg.button` names, sending on `tx`; `None` when it names none
/// (then the control socket, and stdin if asked for, are the only buttons).
pub fn spawn_button(cfg: &Settings, tx: Sender<InputEvent>) -> Result<Option<JoinHandle<()>>, InputError> {
    match cfg.button {
        ButtonKind::None => Ok(None),
        ButtonKind::Gpio => spawn_gpio(cfg, tx).map(Some),
        ButtonKind::Evdev => spawn_evdev(cfg, tx).map(Some),
    }
}

/// Why a button source could not start, or a control-socket client could not talk to wick.
/// Every message names the chip, line, device, key or socket involved and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("GPIO chip \"{chip}\" not found: {}; set input.gpio_chip to a chip's label or path (`wick doctor` lists them)", list_or_none(.available, "there are no GPIO chips here (no /dev/gpiochip*)", "the chips here are"))]
    GpioChipNotFound { chip: String, available: Vec<String> },

    #[error("GPIO line \"{line}\" not found on chip {chip} ({lines} lines): set input.gpio_line to a line name or an offset below {lines} (`wick doctor` lists the lines)", chip = .chip_path.display())]
    GpioLineNotFound { line: String, chip_path: PathBuf, lines: u32 },

    #[error("GPIO line {offset} (\"{name}\") on {chip} is in use by \"{consumer}\": stop that program, or free the pin in the device tree, or pick another line (input.gpio_line)", chip = .chip_path.display())]
    GpioLineBusy { chip_path: PathBuf, offset: u32, name: String, consumer: String },

    #[error("permission denied opening {}: add the wick user to the gpio group (`usermod -aG gpio wick`), or run wick as a user that may use GPIO", list_paths(.paths))]
    GpioPermission { paths: Vec<PathBuf> },

    #[error("GPIO chip {chip}: {}; set input.gpio_chip to a GPIO chip's label or path (`wick doctor` lists them)", no_period(.source), chip = .chip_path.display())]
    GpioChip {
        chip_path: PathBuf,
        #[source]
        source: gpiocdev::Error,
    },

    #[error("GPIO chip {chip} line \"{line}\": {}; check input.gpio_chip and input.gpio_line (`wick doctor` shows the line's state)", no_period(.source), chip = .chip_path.display())]
    Gpio {
        chip_path: PathBuf,
        line: String,
        #[source]
        source: gpiocdev::Error,
    },

    #[error("input device \"{device}\" not found: {}; set input.evdev_device to a device's name or /dev/input/event* path (`wick doctor` lists them)", list_or_none(.available, "there are no input devices here (no /dev/input/event*)", "the devices here are"))]
    EvdevDeviceNotFound { device: String, available: Vec<String> },

    #[error("permission denied opening {}: add the wick user to the input group (`usermod -aG input wick`)", list_paths(.paths))]
    EvdevPermission { paths: Vec<PathBuf> },

    #[error("unknown key name \"{key}\": set input.evdev_key to a Linux key code name such as \"KEY_PROG1\", \"BTN_0\" or \"KEY_SPACE\" (`evtest` shows what a button sends)")]
    EvdevUnknownKey { key: String },

    #[error("input device \"{name}\" ({path}) has no key {key}: set input.evdev_key to a key it has (`evtest {path}` shows them), or input.evdev_device to the device with that key", path = .path.display())]
    EvdevKeyMissing { name: String, path: PathBuf, key: String },

    #[error("{path} is not an input event device: set input.evdev_device to a /dev/input/event* path or a device's name (`wick doctor` lists them)", path = .path.display())]
    EvdevNotInput { path: PathBuf },

    #[error("input device {path}: {source}; check input.evdev_device", path = .path.display())]
    Evdev {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("another wick is running (socket {path} answers): stop it first, or give this one another input.socket", path = .path.display())]
    SocketInUse { path: PathBuf },

    #[error("control socket {path} exists and is not a socket: remove it, or set input.socket to another path", path = .path.display())]
    SocketNotSocket { path: PathBuf },

    #[error(
        "control socket group \"{group}\" does not exist: create it (`groupadd {group}`) or change input.socket_group"
    )]
    SocketGroupUnknown { group: String },

    #[error("cannot {action} group \"{group}\" for control socket {path}: {source}; run wick as root or as a member of that group, or change input.socket_group", path = .path.display())]
    SocketGroup {
        path: PathBuf,
        group: String,
        action: &'static str,
        #[source]
        source: nix::Error,
    },

    #[error("cannot {action} control socket {path}: {source}; {}", socket_hint(.action, .source), path = .path.display())]
    Socket {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("control socket {path}: {message}", path = .path.display())]
    SocketProtocol { path: PathBuf, message: String },

    #[error("cannot start the thread of the {what}: {source}")]
    Thread {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn list_or_none(items: &[String], none: &str, intro: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        format!("{intro} [{}]", items.join(", "))
    }
}

/// gpiocdev's messages end in a period; ours go on after them.
fn no_period(e: &gpiocdev::Error) -> String {
    e.to_string().trim_end_matches('.').to_string()
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// What to do about a failed socket operation: a client (`send`) and the appliance binding the
/// socket fail for different reasons.
fn socket_hint(action: &str, e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    let client = CLIENT_ACTIONS.contains(&action);
    match e.kind() {
        NotFound | ConnectionRefused if client => "is `wick run` running, with the same input.socket?",
        PermissionDenied if client => "join the socket's group (input.socket_group) to use it",
        TimedOut | WouldBlock if client => "wick did not answer in time; is it stuck?",
        PermissionDenied => {
            "set input.socket to a path in a directory this user may write, or run wick as its service user"
        }
        _ => "check input.socket",
    }
}

/// The `Socket` actions of the client side.
const CLIENT_ACTIONS: [&str; 4] = ["connect to", "set a timeout on", "write to", "read the answer from"];

/// Whether an I/O error is a permission problem (the fix is a group, not a setting).
fn is_permission(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
}

/// Longest spread between kernel timestamps of one read that is trusted; a larger one means
/// the clock was stepped, and the event is stamped with the time it was received instead.
const MAX_BATCH_SPREAD: Duration = Duration::from_secs(1);

/// The Instant of an event the kernel stamped `stamp_ns`, read together with events whose
/// newest was stamped `newest_ns` and received at `received`.
///
/// The kernel's clock (monotonic, realtime or a hardware engine) cannot be turned into an
/// `Instant` directly, but differences within one clock are exact: the newest event of a read
/// is taken to have happened when it was received, and earlier ones keep their true spacing
/// before it. A read thread waits in the kernel, so the newest event is at most a scheduling
/// delay old, while the spacing of a burst read at once is what debouncing needs.
fn instant_of(received: Instant, newest_ns: u64, stamp_ns: u64) -> Instant {
    let before = Duration::from_nanos(newest_ns.saturating_sub(stamp_ns));
    if before > MAX_BATCH_SPREAD {
        return received;
    }
    received.checked_sub(before).unwrap_or(received)
}

/// The longest pause between attempts to get a lost button back: a few seconds (unplugged,
/// driver reloading) costs next to nothing, and a replugged button works soon enough.
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// A hardware button: opened, read until it is lost, opened again. GPIO lines and input
/// devices differ only in how they open and read; what a loss means is the same for both.
trait Button: Send + 'static {
    /// What the button is read through while open (a line request, an input device).
    type Handle: Send;
    /// The source its events carry.
    const SOURCE: &'static str;
    /// How the log names it, e.g. `GPIO button (tegra234-gpio PQ.05)`.
    fn describe(&self) -> String;
    /// Opens it; returns the handle and whether the button is held now.
    fn open(&self) -> Result<(Self::Handle, bool), InputError>;
    /// Sends the button's changes until it fails or nobody listens, keeping `held` current.
    fn forward(&self, handle: &mut Self::Handle, held: &mut bool, tx: &Sender<InputEvent>) -> Stop;
}

/// Why forwarding stopped.
enum Stop {
    /// The receiver is gone: the appliance is shutting down.
    ReceiverGone,
    /// The button cannot be read any more.
    Lost(String),
}

/// Starts `button`'s thread on the `handle` just opened. A button already held is sent as a
/// press before this returns.
fn start<B: Button>(
    button: B,
    handle: B::Handle,
    pressed: bool,
    tx: Sender<InputEvent>,
    thread: &str,
) -> Result<JoinHandle<()>, InputError> {
    if pressed {
        // A failed send means nobody listens; the thread notices on its first event.
        let _ = send_edge(&tx, B::SOURCE, true, Instant::now());
    }
    let what = button.describe();
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || watch(button, handle, pressed, tx))
        .map_err(|source| InputError::Thread { what, source })
}

/// Forwards `button`'s changes until nobody listens. When it is lost that is logged, a held
/// button is released (a vanished button is not held, and would otherwise record until the
/// limit), and it is opened again with a growing pause; held when it is back, it is pressed.
fn watch<B: Button>(button: B, mut handle: B::Handle, mut held: bool, tx: Sender<InputEvent>) {
    let what = button.describe();
    loop {
        match button.forward(&mut handle, &mut held, &tx) {
            Stop::ReceiverGone => return,
            Stop::Lost(why) => tracing::error!("{what} lost: {why}; opening it again until it is back"),
        }
        drop(handle);
        if held && send_edge(&tx, B::SOURCE, false, Instant::now()).is_err() {
            return;
        }
        let (again, pressed) = retry::until_open(&what, &mut Backoff::new(REOPEN_MAX), || button.open());
        handle = again;
        if pressed && send_edge(&tx, B::SOURCE, true, Instant::now()).is_err() {
            return;
        }
        held = pressed;
    }
}

fn send_edge(tx: &Sender<InputEvent>, source: &'static str, pressed: bool, at: Instant) -> Result<(), ()> {
    tx.send(InputEvent::Edge { pressed, at, source }).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_spacing_before_the_newest_event() {
        let t = Instant::now() + Duration::from_secs(10);
        assert_eq!(instant_of(t, 5_000_000, 5_000_000), t);
        assert_eq!(instant_of(t, 5_000_000, 2_000_000), t - Duration::from_millis(3));
        // A stamp newer than the newest one (clock stepped back) is not put in the future.
        assert_eq!(instant_of(t, 5_000_000, 9_000_000), t);
        // A spread beyond a second is a clock step, not a burst.
        assert_eq!(instant_of(t, 5_000_000_000, 1_000_000_000), t);
    }

    #[test]
    fn empty_lists_say_there_is_nothing() {
        let e = InputError::GpioChipNotFound { chip: "tegra234-gpio".into(), available: vec![] }.to_string();
        assert!(e.contains("\"tegra234-gpio\"") && e.contains("no GPIO chips here"), "{e}");
        let e = InputError::GpioChipNotFound {
            chip: "x".into(),
            available: vec!["/dev/gpiochip0 (gpio-sim.0, 8 lines)".into()],
        }
        .to_string();
        assert!(e.contains("[/dev/gpiochip0 (gpio-sim.0, 8 lines)]"), "{e}");
    }
}
