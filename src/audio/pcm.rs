//! ALSA capture and playback. A device is opened by PCM name in blocking, interleaved read/write
//! mode; rate, channels, sample format and period are agreed with it once, and from then on audio
//! moves one period at a time as mono `f32` at the device's rate. Overruns, underruns and suspends
//! are recovered here; a device that went away is reported as [`PcmError::Gone`] so that the
//! caller (see `reopen`) can close it and open it again when it is back.

use std::fmt;

use alsa::pcm::{Access, Format, HwParams, State, PCM};
use alsa::{Output, ValueOr};

use super::convert;
use super::settings::{PcmSettings, SampleFormat, Settings};

/// The rate asked for when the device leaves it open (the `null` and `file` plugins, `plughw:`).
const PREFERRED_RATE: u32 = 48_000;
/// A running device that neither delivers nor takes a period in this long is stalled (a
/// wedged USB device, a driver that stopped its clock): it is reported and reopened like an
/// unplugged one, instead of blocking its stage forever.
const STALL: std::time::Duration = std::time::Duration::from_secs(2);
/// Formats tried in order when `format` is not configured: exact integers first, as devices
/// produce them natively.
const FORMAT_PREFERENCE: [SampleFormat; 3] = [SampleFormat::S16, SampleFormat::S32, SampleFormat::F32];
/// Rates named in an error when the device refuses the configured one.
const COMMON_RATES: [u32; 10] = [8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 192_000];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Capture,
    Playback,
}

impl Direction {
    fn alsa(self) -> alsa::Direction {
        match self {
            Direction::Capture => alsa::Direction::Capture,
            Direction::Playback => alsa::Direction::Playback,
        }
    }

    /// The `wick.toml` table that configures this direction.
    pub fn config_key(self) -> &'static str {
        match self {
            Direction::Capture => "audio.capture",
            Direction::Playback => "audio.playback",
        }
    }

    fn list_command(self) -> &'static str {
        match self {
            Direction::Capture => "arecord -L",
            Direction::Playback => "aplay -L",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Capture => "capture",
            Direction::Playback => "playback",
        })
    }
}

/// What was agreed with a device. `period_frames` is the unit of every read and of the device
/// buffer; the buffer holds about `audio.buffer_periods` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PcmFormat {
    pub rate: u32,
    pub channels: u32,
    pub format: SampleFormat,
    pub period_frames: usize,
}

impl PcmFormat {
    /// Bytes of one interleaved frame.
    pub fn frame_bytes(&self) -> usize {
        self.channels as usize * convert::bytes_per_sample(self.format)
    }

    /// Bytes of one period: what a writer feeding the `file` plugin's `infile` writes at a time.
    pub fn period_bytes(&self) -> usize {
        self.period_frames * self.frame_bytes()
    }
}

impl fmt::Display for PcmFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} Hz, {} channel{}, {}, period {} frames ({:.1} ms)",
            self.rate,
            self.channels,
            if self.channels == 1 { "" } else { "s" },
            alsa_format(self.format),
            self.period_frames,
            self.period_frames as f64 * 1000.0 / self.rate as f64
        )
    }
}

fn alsa_format(format: SampleFormat) -> Format {
    match format {
        SampleFormat::S16 => Format::S16LE,
        SampleFormat::S32 => Format::S32LE,
        SampleFormat::F32 => Format::FloatLE,
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PcmError {
    /// The PCM could not be opened at all: unknown name, missing card, busy, no permission.
    #[error("cannot open {direction} device \"{device}\": {message}")]
    Open { device: String, direction: Direction, message: String },
    /// The device opened but refuses the configured (or any usable) rate, channels or format.
    #[error("sound device \"{device}\": {message}")]
    Config { device: String, message: String },
    /// The device stopped working under us (unplugged, driver gone); reopening may bring it back.
    #[error("sound device \"{device}\" went away: {message}")]
    Gone { device: String, message: String },
    /// A failure that reopening would not cure.
    #[error("sound device \"{device}\": {message}")]
    Io { device: String, message: String },
}

impl PcmError {
    pub fn device(&self) -> &str {
        match self {
            PcmError::Open { device, .. }
            | PcmError::Config { device, .. }
            | PcmError::Gone { device, .. }
            | PcmError::Io { device, .. } => device,
        }
    }
}

/// Runs `f` with alsa-lib's messages for this thread collected instead of printed on stderr, so
/// that they end up in our errors (e.g. "Unknown PCM x", "open /path failed") or in the log.
/// alsa-lib only offers a per-thread handler, and it stays installed after `f`; every ALSA call
/// of this module goes through here, so nothing it says is lost.
pub(crate) fn alsa_said<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buffer = Output::local_error_handler().ok();
    let value = f();
    let text = buffer.map(|b| b.borrow().to_string()).unwrap_or_default();
    let text = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    (value, text)
}

fn errno_text(e: &alsa::Error) -> String {
    nix::errno::Errno::from_raw(e.errno()).desc().to_string()
}

/// "No such device" plus what alsa-lib said about it, when it said something.
fn explain(e: &alsa::Error, said: &str) -> String {
    if said.is_empty() {
        errno_text(e)
    } else {
        format!("{} (alsa-lib: {said})", errno_text(e))
    }
}

/// Opens `cfg.device` and agrees a format with it. The PCM is prepared and ready to read or write.
pub(crate) fn open_pcm(
    cfg: &PcmSettings,
    audio: &Settings,
    direction: Direction,
) -> Result<(PCM, PcmFormat), PcmError> {
    let device = cfg.device.as_str();
    if device.contains('\0') {
        return Err(PcmError::Open {
            device: device.escape_debug().to_string(),
            direction,
            message: format!("the name contains a NUL byte; fix {}.device in wick.toml", direction.config_key()),
        });
    }
    let (opened, said) = alsa_said(|| PCM::new(device, direction.alsa(), false));
    let pcm = opened.map_err(|e| PcmError::Open {
        device: device.into(),
        direction,
        message: format!("{}; {}", explain(&e, &said), open_advice(e.errno(), direction)),
    })?;
    let (negotiated, said) = alsa_said(|| negotiate(&pcm, cfg, audio, direction));
    match negotiated {
        Ok(format) => {
            if !said.is_empty() {
                tracing::debug!("{direction} device \"{device}\": alsa-lib: {said}");
            }
            Ok((pcm, format))
        }
        Err(message) if said.is_empty() => Err(PcmError::Config { device: device.into(), message }),
        Err(message) => {
            Err(PcmError::Config { device: device.into(), message: format!("{message} (alsa-lib: {said})") })
        }
    }
}

fn open_advice(errno: i32, direction: Direction) -> String {
    let key = direction.config_key();
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::EBUSY => format!(
            "another program holds the device; stop it, or point {key}.device at a shared device \
             ({} on the card)",
            if direction == Direction::Capture { "dsnoop" } else { "dmix" }
        ),
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => {
            "permission denied; run wick as a user in the `audio` group".into()
        }
        _ => format!(
            "check {key}.device in wick.toml (`{}` lists the PCMs, `wick doctor` checks them)",
            direction.list_command()
        ),
    }
}

/// Sets access, format, channels, rate, period and buffer, in that order, and applies them.
/// Errors are the message of a [`PcmError::Config`].
fn negotiate(pcm: &PCM, cfg: &PcmSettings, audio: &Settings, direction: Direction) -> Result<PcmFormat, String> {
    let key = direction.config_key();
    let failed = |what: &str, e: alsa::Error| format!("cannot {what}: {}", errno_text(&e));
    let hw = HwParams::any(pcm).map_err(|e| failed("read the device's capabilities", e))?;
    hw.set_access(Access::RWInterleaved).map_err(|_| {
        "does not offer interleaved read/write access; use its plughw: or default PCM, which converts".to_string()
    })?;

    let format = match cfg.format {
        Some(f) => {
            hw.set_format(alsa_format(f)).map_err(|_| {
                format!(
                    "{key}.format = \"{}\" is refused; the device takes {}; set {key}.format to one of \
                     those, or remove it to let wick choose",
                    f.name(),
                    accepted_formats(&hw)
                )
            })?;
            f
        }
        None => {
            let f =
                FORMAT_PREFERENCE.into_iter().find(|&f| hw.test_format(alsa_format(f)).is_ok()).ok_or_else(|| {
                    format!(
                        "takes none of S16_LE, S32_LE, FLOAT_LE; use its plughw: or default PCM, which converts \
                     (the device takes {})",
                        accepted_formats(&hw)
                    )
                })?;
            hw.set_format(alsa_format(f)).map_err(|e| failed("set the sample format", e))?;
            f
        }
    };

    let channels = match cfg.channels {
        Some(c) => {
            hw.set_channels(c).map_err(|_| {
                format!(
                    "{key}.channels = {c} is refused; the device takes {} channels; set {key}.channels \
                     accordingly, or remove it to use the device's own",
                    range_text(hw.get_channels_min(), hw.get_channels_max())
                )
            })?;
            c
        }
        None => {
            // Mono needs no mixing; otherwise stereo, otherwise whatever the device starts at.
            let c = [1, 2]
                .into_iter()
                .find(|&c| hw.test_channels(c).is_ok())
                .map_or_else(|| hw.get_channels_min(), Ok)
                .map_err(|e| failed("read the channel count", e))?;
            hw.set_channels(c).map_err(|e| failed(&format!("set {c} channels"), e))?;
            c
        }
    };

    let rate = match cfg.rate {
        Some(r) => {
            hw.set_rate(r, ValueOr::Nearest).map_err(|_| {
                format!(
                    "{key}.rate = {r} is refused; the device takes {}; set {key}.rate to one of those, \
                     or remove it to use the device's own",
                    accepted_rates(&hw)
                )
            })?;
            r
        }
        None => hw.set_rate_near(PREFERRED_RATE, ValueOr::Nearest).map_err(|e| failed("set a rate", e))?,
    };

    let period_target = (rate as u64 * audio.period_ms as u64 / 1000).max(1) as alsa::pcm::Frames;
    let period = hw
        .set_period_size_near(period_target, ValueOr::Nearest)
        .map_err(|e| failed(&format!("set a period of {} ms", audio.period_ms), e))?;
    hw.set_buffer_size_near(period * audio.buffer_periods as alsa::pcm::Frames)
        .map_err(|e| failed(&format!("set a buffer of {} periods", audio.buffer_periods), e))?;
    pcm.hw_params(&hw).map_err(|e| {
        failed(&format!("apply {rate} Hz, {channels} channels, {}, {period}-frame periods", alsa_format(format)), e)
    })?;

    // The device may round period and buffer; what it chose is what reads and writes use.
    let current = pcm.hw_params_current().map_err(|e| failed("read back the settings", e))?;
    let period = current.get_period_size().map_err(|e| failed("read back the period size", e))?;
    let buffer = current.get_buffer_size().map_err(|e| failed("read back the buffer size", e))?;
    let sw = pcm.sw_params_current().map_err(|e| failed("read the software parameters", e))?;
    sw.set_avail_min(period).map_err(|e| failed("set avail_min", e))?;
    if direction == Direction::Playback {
        // Start once two periods are queued (or the buffer is full): one period of margin against
        // scheduling jitter, without waiting for a whole buffer before the first sound.
        sw.set_start_threshold((2 * period).min(buffer)).map_err(|e| failed("set the start threshold", e))?;
    }
    pcm.sw_params(&sw).map_err(|e| failed("apply the software parameters", e))?;
    let period_frames = usize::try_from(period).map_err(|_| format!("reported a period of {period} frames"))?;
    tracing::debug!(
        "{direction} device \"{}\" open: {rate} Hz, {channels} ch, {}, period {period} frames, buffer {buffer} frames",
        cfg.device,
        alsa_format(format)
    );
    Ok(PcmFormat { rate, channels, format, period_frames })
}

fn range_text(min: alsa::Result<u32>, max: alsa::Result<u32>) -> String {
    match (min, max) {
        (Ok(a), Ok(b)) if a == b => a.to_string(),
        (Ok(a), Ok(b)) => format!("{a}..={b}"),
        _ => "an unknown number of".into(),
    }
}

fn accepted_formats(hw: &HwParams) -> String {
    let names: Vec<String> = [
        Format::S16LE,
        Format::S24LE,
        Format::S243LE,
        Format::S32LE,
        Format::FloatLE,
        Format::Float64LE,
        Format::U8,
        Format::S16BE,
        Format::S32BE,
    ]
    .into_iter()
    .filter(|&f| hw.test_format(f).is_ok())
    .map(|f| match f {
        Format::S16LE => "S16_LE (\"S16\")".to_string(),
        Format::S32LE => "S32_LE (\"S32\")".to_string(),
        Format::FloatLE => "FLOAT_LE (\"FLOAT\")".to_string(),
        other => other.to_string(),
    })
    .collect();
    if names.is_empty() {
        "no common format".into()
    } else {
        names.join(", ")
    }
}

fn accepted_rates(hw: &HwParams) -> String {
    let range = range_text(hw.get_rate_min(), hw.get_rate_max());
    let common: Vec<String> = COMMON_RATES.iter().filter(|&&r| hw.test_rate(r).is_ok()).map(u32::to_string).collect();
    match common.len() {
        0 => format!("{range} Hz"),
        n if n == COMMON_RATES.len() => format!("any rate in {range} Hz"),
        _ => format!("{} Hz (range {range})", common.join(", ")),
    }
}

/// The device and its bookkeeping, shared by capture and playback.
struct Device {
    pcm: PCM,
    name: String,
    direction: Direction,
    format: PcmFormat,
    xruns: u64,
}

impl Device {
    fn open(cfg: &PcmSettings, audio: &Settings, direction: Direction) -> Result<Device, PcmError> {
        let (pcm, format) = open_pcm(cfg, audio, direction)?;
        Ok(Device { pcm, name: cfg.device.clone(), direction, format, xruns: 0 })
    }

    /// The stream's state, or [`PcmError::Gone`] when its card was disconnected (a USB unplug,
    /// a driver unbound): then only closing it lets the kernel free the card, and a card
    /// plugged in again gets its name back only once the old one is freed. Not the alsa crate's
    /// `state()`, which panics on the negative error a disconnected `hw` device returns.
    fn state(&self) -> Result<State, PcmError> {
        let raw = self.pcm.state_raw();
        match State::all().iter().copied().find(|&s| s as i32 == raw) {
            Some(State::Disconnected) | None => Err(PcmError::Gone {
                device: self.name.clone(),
                message: format!(
                    "{} went away (unplugged, or its driver unloaded); wick reopens it when it is back \
                     (check the cable and `{}`)",
                    self.direction,
                    self.direction.list_command()
                ),
            }),
            Some(state) => Ok(state),
        }
    }

    /// Recovers from a failed transfer when ALSA can (xrun, suspend, signal); otherwise the
    /// error says whether the device went away.
    fn recover(&mut self, e: alsa::Error, said: &str) -> Result<(), PcmError> {
        use nix::errno::Errno;
        match Errno::from_raw(e.errno()) {
            Errno::EINTR => Ok(()),
            errno @ (Errno::EPIPE | Errno::ESTRPIPE) => {
                self.xruns += 1;
                let what = match (errno, self.direction) {
                    (Errno::ESTRPIPE, _) => "was suspended (system sleep)",
                    (_, Direction::Capture) => "overran: wick read too late and audio was lost",
                    (_, Direction::Playback) => "underran: audio came too late and there was a gap",
                };
                // An underrun between two sentences is the expected gap, not a fault worth a warning.
                if self.direction == Direction::Playback && errno == Errno::EPIPE {
                    tracing::debug!("playback device \"{}\" {what} (xrun {})", self.name, self.xruns);
                } else {
                    tracing::warn!(
                        "{} device \"{}\" {what} (xrun {}); recovering",
                        self.direction,
                        self.name,
                        self.xruns
                    );
                }
                let (recovered, said) = alsa_said(|| self.pcm.try_recover(e, true));
                recovered.map_err(|e2| self.failure("recovering from an xrun", &e2, &said))
            }
            _ => Err(self.failure(if self.direction == Direction::Capture { "reading" } else { "writing" }, &e, said)),
        }
    }

    /// Classifies an error ALSA could not recover from.
    fn failure(&self, what: &str, e: &alsa::Error, said: &str) -> PcmError {
        use nix::errno::Errno;
        let gone = matches!(
            Errno::from_raw(e.errno()),
            Errno::ENODEV | Errno::ENXIO | Errno::EBADFD | Errno::EIO | Errno::ESHUTDOWN | Errno::ENOENT
        );
        let device = self.name.clone();
        if gone {
            let message = format!(
                "{} failed while {what}: {}; wick reopens it when it is back (check the cable and `{}`)",
                self.direction,
                explain(e, said),
                self.direction.list_command()
            );
            PcmError::Gone { device, message }
        } else {
            let message = format!("{} failed while {what}: {}", self.direction, explain(e, said));
            PcmError::Io { device, message }
        }
    }

    /// Gets a stream out of DRAINING/SETUP/XRUN and ready for the next transfer.
    /// Waits until a running device can take or give a period, for at most [`STALL`].
    fn wait_ready(&mut self, what: &str) -> Result<(), PcmError> {
        if self.state()? != State::Running {
            // Not started (capture starts with its first read) or needing recovery: the
            // transfer itself starts it or reports what is wrong.
            return Ok(());
        }
        match alsa_said(|| self.pcm.wait(Some(STALL.as_millis() as u32))) {
            (Ok(true), _) => Ok(()),
            (Ok(false), _) => Err(self.stalled(what)),
            // An xrun or a suspend shows here first; the transfer recovers from it.
            (Err(_), _) => Ok(()),
        }
    }

    fn stalled(&self, what: &str) -> PcmError {
        PcmError::Gone {
            device: self.name.clone(),
            message: format!(
                "{} stalled while {what}: nothing moved for {} s; wick reopens it (check the cable and `{}`)",
                self.direction,
                STALL.as_secs(),
                self.direction.list_command()
            ),
        }
    }

    fn prepare(&mut self) -> Result<(), PcmError> {
        let (prepared, said) = alsa_said(|| self.pcm.prepare());
        prepared.map_err(|e| self.failure("preparing", &e, &said))
    }
}

/// Which way a [`Stream`] moves audio. A type, so that capture and playback share one stream
/// type (opening, format, xrun count) while each has only its own transfers.
pub trait StreamKind {
    const DIRECTION: Direction;
}

/// Marks a [`Capture`] stream.
pub enum CaptureKind {}
/// Marks a [`Playback`] stream.
pub enum PlaybackKind {}

impl StreamKind for CaptureKind {
    const DIRECTION: Direction = Direction::Capture;
}

impl StreamKind for PlaybackKind {
    const DIRECTION: Direction = Direction::Playback;
}

/// An open device and its one-period transfer buffer.
pub struct Stream<K: StreamKind> {
    dev: Device,
    raw: Vec<u8>,
    kind: std::marker::PhantomData<K>,
}

/// A capture device delivering one period of mono audio per [`Capture::read`].
pub type Capture = Stream<CaptureKind>;
/// A playback device taking mono audio of any length per [`Playback::write`].
pub type Playback = Stream<PlaybackKind>;

impl<K: StreamKind> Stream<K> {
    pub fn open(cfg: &PcmSettings, audio: &Settings) -> Result<Self, PcmError> {
        let dev = Device::open(cfg, audio, K::DIRECTION)?;
        let raw = vec![0u8; dev.format.period_bytes()];
        Ok(Stream { dev, raw, kind: std::marker::PhantomData })
    }

    pub fn format(&self) -> PcmFormat {
        self.dev.format
    }

    pub fn device(&self) -> &str {
        &self.dev.name
    }

    /// Overruns (capture) or underruns (playback) and suspends recovered since the device was
    /// opened.
    pub fn xruns(&self) -> u64 {
        self.dev.xruns
    }
}

impl Capture {
    /// Blocks until one period has been captured, and appends it to `out` as mono samples in
    /// [-1, 1] at the device's rate (`format().period_frames` of them).
    pub fn read(&mut self, out: &mut Vec<f32>) -> Result<(), PcmError> {
        // Real drivers fill the whole period; the `file` plugin copies only what its infile read
        // returned and leaves the rest of our buffer alone. Zeroing first makes that silence
        // instead of a repeat of the previous period.
        self.raw.fill(0);
        let frame_bytes = self.dev.format.frame_bytes();
        let mut filled = 0;
        while filled < self.raw.len() {
            self.dev.wait_ready("capturing")?;
            let (result, said) = alsa_said(|| self.dev.pcm.io_bytes().readi(&mut self.raw[filled..]));
            match result {
                Ok(frames) => filled += frames * frame_bytes,
                Err(e) => self.dev.recover(e, &said)?,
            }
        }
        let f = self.dev.format;
        convert::decode_mono(f.format, f.channels as usize, &self.raw, out);
        Ok(())
    }
}

impl Playback {
    /// Queues `mono` (at the device's rate), blocking while the device buffer is full. Send about
    /// one period per call to be able to stop between periods. Playback starts once two periods
    /// are queued; call [`Playback::drain`] after the last samples so a short tail plays too.
    pub fn write(&mut self, mono: &[f32]) -> Result<(), PcmError> {
        let f = self.dev.format;
        let frame_bytes = f.frame_bytes();
        for chunk in mono.chunks(f.period_frames) {
            let bytes = chunk.len() * frame_bytes;
            convert::encode_mono(f.format, f.channels as usize, chunk, &mut self.raw[..bytes]);
            let mut done = 0;
            while done < bytes {
                self.dev.wait_ready("playing")?;
                let (result, said) = alsa_said(|| self.dev.pcm.io_bytes().writei(&self.raw[done..bytes]));
                match result {
                    Ok(frames) => done += frames * frame_bytes,
                    Err(e) => self.dev.recover(e, &said)?,
                }
            }
        }
        Ok(())
    }

    /// Ok while the device is still there; checked while nothing plays, since only a transfer
    /// would otherwise notice that it went away.
    pub fn check(&self) -> Result<(), PcmError> {
        self.dev.state().map(|_| ())
    }

    /// Drops everything queued now (`snd_pcm_drop`) and is ready to play again.
    pub fn stop(&mut self) -> Result<(), PcmError> {
        let (dropped, said) = alsa_said(|| self.dev.pcm.drop());
        dropped.map_err(|e| self.dev.failure("stopping", &e, &said))?;
        self.dev.prepare()
    }

    /// Waits until everything queued has played, then is ready to play again. Not ALSA's own
    /// drain, which blocks without a deadline: the queue is watched, and a device that stops
    /// taking audio is reported as stalled.
    pub fn drain(&mut self) -> Result<(), PcmError> {
        let pcm = &self.dev.pcm;
        match self.dev.state()? {
            // Nothing left to play: the xrun already emptied the buffer.
            State::XRun => return self.dev.prepare(),
            State::Suspended => {
                let (recovered, said) = alsa_said(|| pcm.recover(nix::libc::ESTRPIPE, true));
                return recovered.map_err(|e| self.dev.failure("resuming", &e, &said));
            }
            // Fewer frames than the start threshold are queued: start, so that they play.
            State::Prepared => {
                let (started, said) = alsa_said(|| pcm.start());
                if let Err(e) = started {
                    return Err(self.dev.failure("starting", &e, &said));
                }
            }
            _ => {}
        }
        let buffer = match alsa_said(|| pcm.hw_params_current().and_then(|h| h.get_buffer_size())) {
            (Ok(b), _) => b,
            (Err(e), said) => return Err(self.dev.failure("reading the buffer size", &e, &said)),
        };
        let rate = self.dev.format.rate.max(1) as u64;
        let period = std::time::Duration::from_millis((self.dev.format.period_frames as u64 * 1000 / rate).max(1));
        let mut last_avail = -1;
        let mut progress_at = std::time::Instant::now();
        loop {
            if self.dev.state()? != State::Running {
                break;
            }
            let avail = match alsa_said(|| pcm.avail_update()) {
                (Ok(a), _) => a,
                // An underrun at the end is the queue running dry: played.
                (Err(e), _) if e.errno() == nix::libc::EPIPE => break,
                (Err(e), said) => return Err(self.dev.failure("draining", &e, &said)),
            };
            if avail >= buffer {
                break;
            }
            if avail != last_avail {
                (last_avail, progress_at) = (avail, std::time::Instant::now());
            } else if progress_at.elapsed() > STALL {
                return Err(self.dev.stalled("playing"));
            }
            std::thread::sleep(period / 2);
        }
        let (dropped, said) = alsa_said(|| self.dev.pcm.drop());
        dropped.map_err(|e| self.dev.failure("draining", &e, &said))?;
        self.dev.prepare()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_serializes_with_wick_toml_names() {
        let f = PcmFormat { rate: 48_000, channels: 2, format: SampleFormat::F32, period_frames: 960 };
        assert_eq!(
            serde_json::to_value(f).unwrap(),
            serde_json::json!({"rate": 48000, "channels": 2, "format": "FLOAT", "period_frames": 960})
        );
        assert_eq!(f.to_string(), "48000 Hz, 2 channels, FLOAT_LE, period 960 frames (20.0 ms)");
        assert_eq!(f.period_bytes(), 960 * 2 * 4);
    }

    #[test]
    fn open_advice_names_the_setting_and_the_tools() {
        let advice = open_advice(nix::libc::ENOENT, Direction::Capture);
        assert!(advice.contains("audio.capture.device") && advice.contains("arecord -L"), "{advice}");
        assert!(open_advice(nix::libc::EBUSY, Direction::Playback).contains("dmix"));
        assert!(open_advice(nix::libc::EACCES, Direction::Capture).contains("`audio` group"));
    }
}
