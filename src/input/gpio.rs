//! The push-to-talk button on a GPIO line, through the kernel's GPIO character device
//! (`/dev/gpiochip*`, uAPI v2): the line is requested as an input watching both edges, with the
//! kernel's debounce and active-low inversion, so an edge's kind already says pressed or
//! released. Also the chip and line listings `wick doctor` shows.
//!
//! The line's bias is left as the device tree set it: a pull-up or pull-down belongs with the
//! wiring, and not every chip can change it.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::{Chip, Request};

use super::{instant_of, send_edge, Button, InputError, InputEvent, Settings, Stop};

const SOURCE: &str = "gpio";
/// The name the line's consumer shows in `gpioinfo` while wick holds it.
const CONSUMER: &str = "wick";
/// Edge events read at once; a bounce burst the kernel did not filter fits in one read.
const EVENTS_PER_READ: usize = 16;

/// One GPIO chip, as `wick doctor` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipInfo {
    /// The character device, e.g. /dev/gpiochip0.
    pub path: PathBuf,
    /// The kernel's name for it, e.g. "gpiochip0".
    pub name: String,
    /// What the chip is, e.g. "tegra234-gpio": stable across boots, unlike the number.
    pub label: String,
    /// How many lines it has.
    pub lines: u32,
    /// Why it could not be opened (then `label` is empty and `lines` 0), e.g. permission denied.
    pub error: Option<String>,
}

/// One GPIO line, found by [`find_line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInfo {
    pub chip_path: PathBuf,
    pub chip_label: String,
    pub offset: u32,
    /// The line's name from the device tree ("PQ.05"); may be empty.
    pub name: String,
    /// Whether something (a driver, a hog, another program) holds the line.
    pub used: bool,
    /// Who holds it, as it told the kernel; empty when unused or held by the kernel unnamed.
    pub consumer: String,
}

/// Every GPIO chip here, in number order; empty when there are none.
pub fn list_chips() -> Vec<ChipInfo> {
    // chips() only fails when /dev cannot be read: then there is nothing to list either.
    gpiocdev::chip::chips().unwrap_or_default().iter().map(|path| chip_info(path)).collect()
}

fn chip_info(path: &Path) -> ChipInfo {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match Chip::from_path(path).and_then(|chip| chip.info()) {
        Ok(info) => ChipInfo { path: path.into(), name, label: info.label, lines: info.num_lines, error: None },
        Err(e) => ChipInfo { path: path.into(), name, label: String::new(), lines: 0, error: Some(e.to_string()) },
    }
}

/// Finds `line` (a name or an offset) on `chip` (a label, a path or a gpiochipN name), as
/// `input.gpio_chip` and `input.gpio_line` name them.
pub fn find_line(chip: &str, line: &str) -> Result<LineInfo, InputError> {
    let (chip, info) = open_chip(chip)?;
    let found = resolve_line(&chip, &info, line)?;
    Ok(line_info(&chip, &info, found))
}

fn line_info(chip: &Chip, info: &gpiocdev::chip::Info, line: gpiocdev::line::Info) -> LineInfo {
    LineInfo {
        chip_path: chip.path().into(),
        chip_label: info.label.clone(),
        offset: line.offset,
        name: line.name,
        used: line.used,
        consumer: line.consumer,
    }
}

/// Starts watching the button line set in `cfg`. The line is requested now, so a wrong chip or
/// line, a busy line or a missing permission is an error here; if the button is already held,
/// that is sent as a press before this returns.
///
/// Each edge is sent as [`InputEvent::Edge`] with source "gpio". Its `at` keeps the spacing of
/// the kernel's timestamps within one read, the newest edge of a read counting as received now
/// (see [`instant_of`]). If the line is lost later (the chip's driver went away), that is
/// logged, a held button is released, and the line is requested again with a growing pause.
/// The thread ends when the receiving side of `tx` is gone and an edge comes.
pub fn spawn_gpio(cfg: &Settings, tx: Sender<InputEvent>) -> Result<JoinHandle<()>, InputError> {
    let button = GpioButton {
        chip: cfg.gpio_chip.trim().to_string(),
        line: cfg.gpio_line.trim().to_string(),
        active_low: cfg.active_low,
        debounce: Duration::from_millis(cfg.debounce_ms),
    };
    let (req, pressed, found) = button.request()?;
    tracing::info!(
        chip = %found.chip_path.display(), label = %found.chip_label, offset = found.offset, name = %found.name,
        active_low = button.active_low, "push-to-talk button on a GPIO line"
    );
    super::start(button, req, pressed, tx, "wick-gpio")
}

struct GpioButton {
    chip: String,
    line: String,
    active_low: bool,
    debounce: Duration,
}

impl GpioButton {
    /// Requests the line; returns it with whether the button is held now, and what it is.
    fn request(&self) -> Result<(Request, bool, LineInfo), InputError> {
        let (chip, info) = open_chip(&self.chip)?;
        let line = resolve_line(&chip, &info, &self.line)?;
        let found = line_info(&chip, &info, line);
        if found.used {
            let consumer = match found.consumer.as_str() {
                "" => "the kernel (a driver or a GPIO hog)".to_string(),
                c => c.to_string(),
            };
            return Err(InputError::GpioLineBusy {
                chip_path: found.chip_path,
                offset: found.offset,
                name: found.name,
                consumer,
            });
        }
        let mut builder = Request::builder();
        builder
            .on_chip(chip.path())
            .with_consumer(CONSUMER)
            .with_line(found.offset)
            .as_input()
            .with_edge_detection(EdgeDetection::BothEdges);
        if self.active_low {
            // The kernel then inverts both the value and the edge kinds: active = held.
            builder.as_active_low();
        }
        if !self.debounce.is_zero() {
            builder.with_debounce_period(self.debounce);
        }
        let gpio_err =
            |source| InputError::Gpio { chip_path: found.chip_path.clone(), line: self.line.clone(), source };
        let req = builder.request().map_err(gpio_err)?;
        let pressed = req.lone_value().map_err(gpio_err)? == Value::Active;
        Ok((req, pressed, found))
    }
}

impl Button for GpioButton {
    type Handle = Request;
    const SOURCE: &'static str = SOURCE;

    fn describe(&self) -> String {
        format!("GPIO button ({} line {})", self.chip, self.line)
    }

    fn open(&self) -> Result<(Request, bool), InputError> {
        self.request().map(|(req, pressed, _)| (req, pressed))
    }

    /// Sends the line's edges until it fails or nobody listens.
    fn forward(&self, req: &mut Request, held: &mut bool, tx: &Sender<InputEvent>) -> Stop {
        let size = req.edge_event_u64_size();
        let mut buf = vec![0u64; size * EVENTS_PER_READ];
        loop {
            let words = match req.read_edge_events_into_slice(&mut buf) {
                Ok(0) => return Stop::Lost("the line request was closed (end of file)".into()),
                Ok(n) => n,
                Err(e) => return Stop::Lost(e.to_string()),
            };
            let received = Instant::now();
            let mut events = Vec::with_capacity(words / size);
            for raw in buf[..words].chunks_exact(size) {
                match req.edge_event_from_slice(raw) {
                    Ok(event) => events.push(event),
                    Err(e) => return Stop::Lost(format!("unreadable edge event: {e}")),
                }
            }
            let Some(newest) = events.last().map(|e| e.timestamp_ns) else { continue };
            for event in events {
                let pressed = event.kind == EdgeKind::Rising;
                if send_edge(tx, SOURCE, pressed, instant_of(received, newest, event.timestamp_ns)).is_err() {
                    return Stop::ReceiverGone;
                }
                *held = pressed;
            }
        }
    }
}

/// The errno of an error from opening a chip, if it came from the OS.
fn errno(e: &gpiocdev::Error) -> Option<std::io::Error> {
    match e {
        gpiocdev::Error::Os(errno) => Some(std::io::Error::from_raw_os_error(errno.0)),
        _ => None,
    }
}

/// Opens the chip `spec` names: a path ("/dev/gpiochip0"), a kernel name ("gpiochip0") or a
/// label ("tegra234-gpio"; the first chip with it, in number order).
fn open_chip(spec: &str) -> Result<(Chip, gpiocdev::chip::Info), InputError> {
    let by_path = if spec.contains('/') {
        Some(PathBuf::from(spec))
    } else if spec.starts_with("gpiochip") && Path::new("/dev").join(spec).exists() {
        Some(Path::new("/dev").join(spec))
    } else {
        None
    };
    if let Some(path) = by_path {
        let opened = Chip::from_path(&path).and_then(|chip| chip.info().map(|info| (chip, info)));
        return opened.map_err(|e| match errno(&e) {
            Some(io) if super::is_permission(&io) => InputError::GpioPermission { paths: vec![path] },
            Some(io) if io.kind() == std::io::ErrorKind::NotFound => not_found(spec),
            _ => InputError::GpioChip { chip_path: path, source: e },
        });
    }
    let mut denied = vec![];
    for path in gpiocdev::chip::chips().unwrap_or_default() {
        match Chip::from_path(&path).and_then(|chip| chip.info().map(|info| (chip, info))) {
            Ok((chip, info)) if info.label == spec => return Ok((chip, info)),
            Ok(_) => {}
            Err(e) if errno(&e).is_some_and(|io| super::is_permission(&io)) => denied.push(path),
            // A chip that cannot be read cannot be ours; doctor shows why.
            Err(_) => {}
        }
    }
    // The chip may be one of those this user may not open: that is what to fix first.
    if !denied.is_empty() {
        return Err(InputError::GpioPermission { paths: denied });
    }
    Err(not_found(spec))
}

fn not_found(spec: &str) -> InputError {
    let available = list_chips()
        .into_iter()
        .map(|c| match c.error {
            None => format!("{} ({}, {} lines)", c.path.display(), c.label, c.lines),
            Some(e) => format!("{} ({e})", c.path.display()),
        })
        .collect();
    InputError::GpioChipNotFound { chip: spec.to_string(), available }
}

/// Finds a line by name, else by offset.
fn resolve_line(chip: &Chip, info: &gpiocdev::chip::Info, spec: &str) -> Result<gpiocdev::line::Info, InputError> {
    if let Some(line) = chip.find_line_info(spec) {
        return Ok(line);
    }
    let not_found =
        || InputError::GpioLineNotFound { line: spec.into(), chip_path: chip.path().into(), lines: info.num_lines };
    match spec.parse::<u32>() {
        Ok(offset) if offset < info.num_lines => chip.line_info(offset).map_err(|source| InputError::Gpio {
            chip_path: chip.path().into(),
            line: spec.into(),
            source,
        }),
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_chip_path_is_not_found() {
        let e = find_line("/dev/gpiochip-none-such", "PQ.05").unwrap_err();
        assert!(matches!(e, InputError::GpioChipNotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("\"/dev/gpiochip-none-such\""), "{e}");
    }

    #[test]
    fn a_file_that_is_no_chip_is_named() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = find_line(file.path().to_str().unwrap(), "0").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, InputError::GpioChip { .. }), "{e:?}");
        assert!(text.contains(&file.path().display().to_string()) && text.contains("not a character device"), "{text}");
    }
}
