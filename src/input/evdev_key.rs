//! The push-to-talk button as a key of a Linux input device (`/dev/input/event*`): a gpio-keys
//! device-tree overlay, a USB button or foot switch, or a keyboard key. Also the device listing
//! `wick doctor` shows.
//!
//! The device is not grabbed: when the key is on a keyboard, the console and other programs
//! keep working, and a device that only holds the button loses nothing by being shared.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Sender;
use evdev::{Device, EventSummary, KeyCode};

use super::{instant_of, is_permission, send_edge, Button, InputError, InputEvent, Settings, Stop};

const SOURCE: &str = "evdev";
const INPUT_DIR: &str = "/dev/input";

/// One input device, as `wick doctor` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDeviceInfo {
    /// e.g. /dev/input/event3.
    pub path: PathBuf,
    /// The name the driver gives it, e.g. "gpio-keys"; what input.evdev_device may name.
    pub name: String,
    /// How many key codes it can send (0: not a button, e.g. an accelerometer).
    pub keys: usize,
    /// Why it could not be opened (then `name` is empty and `keys` 0), e.g. permission denied.
    pub error: Option<String>,
}

/// Every `/dev/input/event*` device here, in number order; empty when there are none.
pub fn list_devices() -> Vec<InputDeviceInfo> {
    event_paths()
        .into_iter()
        .map(|path| match Device::open(&path) {
            Ok(dev) => InputDeviceInfo {
                name: dev.name().unwrap_or_default().to_string(),
                keys: dev.supported_keys().map_or(0, |keys| keys.iter().count()),
                path,
                error: None,
            },
            Err(e) => InputDeviceInfo { path, name: String::new(), keys: 0, error: Some(e.to_string()) },
        })
        .collect()
}

/// The event device nodes, sorted by number (event2 before event10).
fn event_paths() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(INPUT_DIR) else { return vec![] };
    let mut numbered: Vec<(u32, PathBuf)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let number = e.file_name().to_str()?.strip_prefix("event")?.parse().ok()?;
            Some((number, e.path()))
        })
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, path)| path).collect()
}

/// Parses a key code name as the kernel's headers spell it ("KEY_PROG1", "BTN_0", "KEY_SPACE";
/// case does not matter).
pub fn parse_key(name: &str) -> Result<KeyCode, InputError> {
    name.trim().to_ascii_uppercase().parse().map_err(|_| InputError::EvdevUnknownKey { key: name.to_string() })
}

/// Starts watching the key set in `cfg`. The key name is checked and the device opened now, so
/// a wrong name, a missing device, a device without that key or a missing permission is an
/// error here; if the key is already held, that is sent as a press before this returns.
///
/// Key value 1 is sent as a press and 0 as a release ([`InputEvent::Edge`], source "evdev");
/// 2 (autorepeat while held) is not a change and is dropped. `at` keeps the spacing of the
/// kernel's timestamps within one read, the newest event of a read counting as received now
/// (see [`instant_of`]). If the device goes away later (unplugged), that is logged, a held key
/// is released, and the device is looked for again, by the same path or name, with a growing
/// pause. The thread ends when the receiving side of `tx` is gone and an event comes.
pub fn spawn_evdev(cfg: &Settings, tx: Sender<InputEvent>) -> Result<JoinHandle<()>, InputError> {
    let key = parse_key(&cfg.evdev_key)?;
    let button = EvdevButton { device: cfg.evdev_device.trim().to_string(), key };
    let (dev, path, pressed) = button.open_device()?;
    tracing::info!(
        path = %path.display(), name = dev.name().unwrap_or_default(), key = ?key,
        "push-to-talk button on an input device"
    );
    super::start(button, dev, pressed, tx, "wick-evdev")
}

struct EvdevButton {
    /// A path (contains '/') or a device name.
    device: String,
    key: KeyCode,
}

impl EvdevButton {
    /// Opens the device that has the key; returns it, its path and whether the key is held now.
    fn open_device(&self) -> Result<(Device, PathBuf, bool), InputError> {
        let (dev, path) = if self.device.contains('/') {
            let path = PathBuf::from(&self.device);
            let dev = Device::open(&path).map_err(|e| open_error(&self.device, &path, e))?;
            if !has_key(&dev, self.key) {
                return Err(self.key_missing(&dev, path));
            }
            (dev, path)
        } else {
            self.open_by_name()?
        };
        let held = dev.get_key_state().map_err(|source| InputError::Evdev { path: path.clone(), source })?;
        let pressed = held.contains(self.key);
        Ok((dev, path, pressed))
    }

    /// The first device with the configured name that has the key.
    fn open_by_name(&self) -> Result<(Device, PathBuf), InputError> {
        let mut denied = vec![];
        let mut without_key = None;
        for path in event_paths() {
            match Device::open(&path) {
                Ok(dev) if dev.name() == Some(self.device.as_str()) => {
                    if has_key(&dev, self.key) {
                        return Ok((dev, path));
                    }
                    without_key.get_or_insert((dev, path));
                }
                Ok(_) => {}
                Err(e) if is_permission(&e) => denied.push(path),
                // A node that cannot be opened cannot be ours; doctor shows why.
                Err(_) => {}
            }
        }
        if let Some((dev, path)) = without_key {
            return Err(self.key_missing(&dev, path));
        }
        // It may be one of those this user may not open: that is what to fix first.
        if !denied.is_empty() {
            return Err(InputError::EvdevPermission { paths: denied });
        }
        Err(not_found(&self.device))
    }

    fn key_missing(&self, dev: &Device, path: PathBuf) -> InputError {
        InputError::EvdevKeyMissing {
            name: dev.name().unwrap_or_default().into(),
            path,
            key: format!("{:?}", self.key),
        }
    }
}

impl Button for EvdevButton {
    type Handle = Device;
    const SOURCE: &'static str = SOURCE;

    fn describe(&self) -> String {
        format!("input device button ({} key {:?})", self.device, self.key)
    }

    fn open(&self) -> Result<(Device, bool), InputError> {
        self.open_device().map(|(dev, _, pressed)| (dev, pressed))
    }

    /// Sends the key's changes until the device fails or nobody listens.
    fn forward(&self, dev: &mut Device, held: &mut bool, tx: &Sender<InputEvent>) -> Stop {
        loop {
            // Blocks until the kernel has events; after a buffer overrun the crate resynchronises
            // and reports the key's true state as events, so no release is missed.
            let events: Vec<evdev::InputEvent> = match dev.fetch_events() {
                Ok(events) => events.collect(),
                Err(e) => return Stop::Lost(e.to_string()),
            };
            let received = Instant::now();
            let Some(newest) = events.iter().map(|e| stamp_ns(e.timestamp())).max() else { continue };
            for event in events {
                let EventSummary::Key(_, code, value) = event.destructure() else { continue };
                if code != self.key {
                    continue;
                }
                let pressed = match value {
                    1 => true,
                    0 => false,
                    // 2: autorepeat of a held key, not a change.
                    _ => continue,
                };
                if send_edge(tx, SOURCE, pressed, instant_of(received, newest, stamp_ns(event.timestamp()))).is_err() {
                    return Stop::ReceiverGone;
                }
                *held = pressed;
            }
        }
    }
}

fn has_key(dev: &Device, key: KeyCode) -> bool {
    dev.supported_keys().is_some_and(|keys| keys.contains(key))
}

/// An event's kernel timestamp in ns (only differences between them are used).
fn stamp_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn open_error(spec: &str, path: &Path, e: std::io::Error) -> InputError {
    if is_permission(&e) {
        InputError::EvdevPermission { paths: vec![path.into()] }
    } else if e.kind() == std::io::ErrorKind::NotFound {
        not_found(spec)
    } else if [nix::errno::Errno::ENOTTY, nix::errno::Errno::ENOSYS].iter().any(|&n| e.raw_os_error() == Some(n as i32))
    {
        // It opened, but the evdev ioctls are not its own: some other file or device. (Under
        // user-mode emulation, where the aarch64 tests run, an ioctl the emulator does not
        // translate answers ENOSYS instead of the kernel's ENOTTY.)
        InputError::EvdevNotInput { path: path.into() }
    } else {
        InputError::Evdev { path: path.into(), source: e }
    }
}

fn not_found(spec: &str) -> InputError {
    let available = list_devices()
        .into_iter()
        .map(|d| match d.error {
            None => format!("{} \"{}\" ({} keys)", d.path.display(), d.name, d.keys),
            Some(e) => format!("{} ({e})", d.path.display()),
        })
        .collect();
    InputError::EvdevDeviceNotFound { device: spec.to_string(), available }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_parse_as_the_kernel_spells_them() {
        assert_eq!(parse_key("KEY_PROG1").unwrap(), KeyCode::KEY_PROG1);
        assert_eq!(parse_key("BTN_0").unwrap(), KeyCode::BTN_0);
        assert_eq!(parse_key(" key_space ").unwrap(), KeyCode::KEY_SPACE);
        let e = parse_key("KEY_BANANA").unwrap_err().to_string();
        assert!(e.contains("\"KEY_BANANA\"") && e.contains("KEY_PROG1"), "{e}");
    }

    #[test]
    fn a_file_that_is_no_input_device_is_named() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let button = EvdevButton { device: file.path().to_str().unwrap().into(), key: KeyCode::KEY_PROG1 };
        let e = button.open_device().expect_err("a plain file is no input device");
        assert!(matches!(e, InputError::EvdevNotInput { .. }), "{e:?}");
        assert!(e.to_string().contains(&file.path().display().to_string()), "{e}");
    }
}
