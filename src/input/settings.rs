//! The `[input]` table: which push-to-talk button to listen to, the control socket, and the
//! timing of a press (debounce, tap, pre-roll, longest recording).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::{Checked, Invalid};

/// Which push-to-talk button `wick run` listens to (the control socket always works too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ButtonKind {
    /// No hardware button: the control socket (and stdin with `wick run --stdin`) only.
    None,
    /// A GPIO line through the kernel's character device.
    Gpio,
    /// A key of an input device (gpio-keys overlay, USB button, keyboard).
    Evdev,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub button: ButtonKind,
    /// GPIO chip by label ("tegra234-gpio") or path ("/dev/gpiochip0").
    pub gpio_chip: String,
    /// GPIO line by name ("PQ.05", header pin 29 on the Orin NX devkit) or offset ("105").
    pub gpio_line: String,
    /// The line reads low while the button is held (a button to ground with a pull-up).
    pub active_low: bool,
    /// Edges closer together than this are one (kernel debounce on GPIO, the same in software for every source).
    pub debounce_ms: u64,
    /// Input device by path ("/dev/input/event3") or by name ("gpio-keys").
    pub evdev_device: String,
    /// Key code name, e.g. "KEY_PROG1", "BTN_0", "KEY_SPACE".
    pub evdev_key: String,
    /// Control socket (`press`, `release`, `tap`, `status` lines); unset: $XDG_RUNTIME_DIR/wick/control.sock,
    /// or /run/wick/control.sock.
    pub socket: Option<PathBuf>,
    /// Group that may use the control socket (mode 0660); unset: the process's group.
    pub socket_group: Option<String>,
    /// A press shorter than this while thinking or speaking only stops the answer.
    pub tap_ms: u64,
    /// Audio kept from before the press, so the first syllable is not lost.
    pub preroll_ms: u64,
    /// A recording ends by itself after this long.
    pub max_record_s: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            button: ButtonKind::None,
            gpio_chip: "tegra234-gpio".into(),
            gpio_line: "PQ.05".into(),
            active_low: true,
            debounce_ms: 25,
            evdev_device: "gpio-keys".into(),
            evdev_key: "KEY_PROG1".into(),
            socket: None,
            socket_group: None,
            tap_ms: 150,
            preroll_ms: 300,
            max_record_s: 30.0,
        }
    }
}

impl Settings {
    /// The control socket's path: configured, else in the user's runtime directory, else /run/wick.
    pub fn socket_path(&self) -> PathBuf {
        if let Some(p) = &self.socket {
            return p.clone();
        }
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => Path::new(&dir).join("wick/control.sock"),
            _ => PathBuf::from("/run/wick/control.sock"),
        }
    }

    pub fn check(&self) -> Checked {
        if self.button == ButtonKind::Gpio && (self.gpio_chip.trim().is_empty() || self.gpio_line.trim().is_empty()) {
            return Err(Invalid::new("gpio_line", "and input.gpio_chip must name the button's line and chip"));
        }
        if self.button == ButtonKind::Evdev && (self.evdev_device.trim().is_empty() || self.evdev_key.trim().is_empty())
        {
            return Err(Invalid::new("evdev_key", "and input.evdev_device must name the button's key and device"));
        }
        if self.debounce_ms > 1000 {
            return Err(Invalid::new("debounce_ms", format!("is {}; use 0..=1000 (25 is usual)", self.debounce_ms)));
        }
        if self.tap_ms > 2000 {
            return Err(Invalid::new("tap_ms", format!("is {}; use 0..=2000 (150 is usual)", self.tap_ms)));
        }
        if self.preroll_ms > 5000 {
            return Err(Invalid::new("preroll_ms", format!("is {}; use 0..=5000", self.preroll_ms)));
        }
        if !(self.max_record_s >= 1.0 && self.max_record_s <= 600.0) {
            return Err(Invalid::new("max_record_s", format!("is {}; use 1..=600 seconds", self.max_record_s)));
        }
        Ok(())
    }
}
