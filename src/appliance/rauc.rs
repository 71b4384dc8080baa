//! RAUC, the A/B update engine of the image, as wick sees it: the slots and their states
//! (`rauc status`), what a bundle is for (`rauc info`), installing one with its progress
//! (`rauc install`), and marking slots good, bad or active. RAUC is driven through its command
//! line (which talks to its D-Bus service), so wick needs no D-Bus library and does exactly
//! what a person at the console would do.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The `rauc` program; `WICK_RAUC` replaces it (a test's stand-in, another path).
fn rauc_program() -> PathBuf {
    std::env::var_os("WICK_RAUC").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("rauc"))
}

#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    #[error(
        "cannot run `{program}`: {source}; updates need RAUC and its system.conf, which the appliance image \
         installs (this is not an appliance image, or RAUC was removed)"
    )]
    Missing { program: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {output}")]
    Failed { command: String, status: String, output: String },
    #[error("`{command}` printed what wick cannot read ({message}): {output}")]
    Parse { command: String, message: String, output: String },
}

/// One slot of the system, as `rauc status --detailed` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Slot {
    /// RAUC's name, e.g. `rootfs.1`.
    pub name: String,
    /// The bootloader's name, e.g. `B`.
    pub bootname: String,
    pub device: String,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// The bootloader's view: `good` or `bad`.
    pub boot_status: Option<String>,
    /// The version of the bundle last installed there (the image's version for the factory slot).
    pub version: Option<String>,
    /// When that bundle was installed (absent for the factory slot).
    pub installed: Option<String>,
    /// RAUC's record of the last installation into it: `ok`, or what failed.
    pub status: Option<String>,
}

/// The system's slots and which one is booted and which boots next.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub compatible: String,
    /// Bootname of the booted slot.
    pub booted: String,
    /// Name of the slot the bootloader boots next (`None`: RAUC found no bootable slot).
    pub primary: Option<String>,
    pub slots: Vec<Slot>,
}

impl Status {
    pub fn slot_by_bootname(&self, bootname: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.bootname == bootname)
    }

    pub fn booted_slot(&self) -> Option<&Slot> {
        self.slot_by_bootname(&self.booted)
    }

    /// One line per slot for people: `slot B (rootfs.1): booted, next boot, good, version v2,
    /// installed 2026-12-02T10:00:00Z`.
    pub fn lines(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| {
                let mut parts = vec![s.state.clone()];
                if self.primary.as_deref() == Some(s.name.as_str()) {
                    parts.push("next boot".into());
                }
                parts.push(s.boot_status.clone().unwrap_or_else(|| "state unknown".into()));
                parts.push(format!("version {}", s.version.as_deref().unwrap_or("unknown (never installed)")));
                if let Some(t) = &s.installed {
                    parts.push(format!("installed {t}"));
                }
                if let Some(st) = s.status.as_deref().filter(|st| *st != "ok") {
                    parts.push(format!("last installation: {st}"));
                }
                format!("slot {} ({}): {}", s.bootname, s.name, parts.join(", "))
            })
            .collect()
    }

    /// Parses `rauc status --detailed --output-format=json`.
    pub fn parse(json: &str) -> Result<Status, String> {
        #[derive(Deserialize)]
        struct Raw {
            compatible: String,
            booted: Option<String>,
            boot_primary: Option<String>,
            slots: Vec<std::collections::BTreeMap<String, RawSlot>>,
        }
        #[derive(Deserialize)]
        struct RawSlot {
            device: String,
            bootname: Option<String>,
            state: String,
            boot_status: Option<String>,
            slot_status: Option<RawSlotStatus>,
        }
        #[derive(Deserialize)]
        struct RawSlotStatus {
            bundle: Option<RawBundle>,
            installed: Option<RawInstalled>,
            status: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawBundle {
            version: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawInstalled {
            timestamp: Option<String>,
        }
        let raw: Raw = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut slots = Vec::new();
        for entry in raw.slots {
            for (name, s) in entry {
                // Slots without a bootname (none in wick's images) are not root slots.
                let Some(bootname) = s.bootname else { continue };
                let st = s.slot_status;
                slots.push(Slot {
                    name,
                    bootname,
                    device: s.device,
                    state: s.state,
                    boot_status: s.boot_status,
                    version: st.as_ref().and_then(|st| st.bundle.as_ref()).and_then(|b| b.version.clone()),
                    installed: st.as_ref().and_then(|st| st.installed.as_ref()).and_then(|i| i.timestamp.clone()),
                    status: st.and_then(|st| st.status),
                });
            }
        }
        slots.sort_by(|a, b| a.bootname.cmp(&b.bootname));
        let booted = raw.booted.ok_or("no booted slot (is rauc.slot= on the kernel command line?)")?;
        Ok(Status { compatible: raw.compatible, booted, primary: raw.boot_primary, slots })
    }
}

/// What a bundle says about itself (`rauc info`), once its signature checked out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BundleInfo {
    pub compatible: String,
    pub version: Option<String>,
}

impl BundleInfo {
    pub fn parse(json: &str) -> Result<BundleInfo, String> {
        #[derive(Deserialize)]
        struct Raw {
            compatible: String,
            version: Option<String>,
        }
        let raw: Raw = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Ok(BundleInfo { compatible: raw.compatible, version: raw.version })
    }
}

/// Runs `rauc ARGS` to the end; its standard output when it succeeds.
fn run(args: &[&str]) -> Result<String, RaucError> {
    let program = rauc_program();
    let command = format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RaucError::Missing { program: program.display().to_string(), source })?;
    if !out.status.success() {
        let mut output = without_notices(&String::from_utf8_lossy(&out.stderr));
        if output.is_empty() {
            output = without_notices(&String::from_utf8_lossy(&out.stdout));
        }
        return Err(RaucError::Failed { command, status: out.status.to_string(), output });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// RAUC's output less its `rauc-Message:` notices (which config and status file it used), so
/// an error shows what went wrong.
fn without_notices(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("rauc-Message:")).collect();
    lines.join("\n").trim().to_string()
}

fn parsed<T>(args: &[&str], parse: impl Fn(&str) -> Result<T, String>) -> Result<T, RaucError> {
    let out = run(args)?;
    // RAUC may print notices before the JSON; the JSON is its last line.
    let json = out.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    parse(json).map_err(|message| RaucError::Parse {
        command: format!("rauc {}", args.join(" ")),
        message,
        output: out.trim().to_string(),
    })
}

pub fn status() -> Result<Status, RaucError> {
    parsed(&["status", "--detailed", "--output-format=json"], Status::parse)
}

/// Checks the bundle's signature against the system's keyring and reads its manifest. `source`
/// is a path or an http(s) URL (a verity bundle is read in ranges, not downloaded).
pub fn info(source: &str) -> Result<BundleInfo, RaucError> {
    parsed(&["info", "--output-format=json", source], BundleInfo::parse)
}

/// `rauc status mark-good|mark-bad|mark-active SLOT` (`SLOT`: `booted`, `other` or a slot name).
pub fn mark(action: Mark, slot: &str) -> Result<(), RaucError> {
    run(&["status", action.as_arg(), slot]).map(drop)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Good,
    Bad,
    Active,
}

impl Mark {
    fn as_arg(self) -> &'static str {
        match self {
            Mark::Good => "mark-good",
            Mark::Bad => "mark-bad",
            Mark::Active => "mark-active",
        }
    }
}

/// A line of `rauc install`'s progress: `  40% Copying image to rootfs.1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub percent: u8,
    pub message: String,
}

impl Progress {
    pub fn parse(line: &str) -> Option<Progress> {
        let line = line.trim();
        let (number, rest) = line.split_once('%')?;
        let percent: u8 = number.trim().parse().ok()?;
        Some(Progress { percent: percent.min(100), message: rest.trim().to_string() })
    }
}

/// Installs a bundle with `rauc install`, calling `on_line` with each line it prints (progress
/// lines and messages). RAUC checks the signature and the `compatible` again itself.
pub fn install(source: &str, on_line: &mut dyn FnMut(&str)) -> Result<(), RaucError> {
    let program = rauc_program();
    let command = format!("{} install {source}", program.display());
    let mut child = Command::new(&program)
        .args(["install", source])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RaucError::Missing { program: program.display().to_string(), source })?;
    // stderr is read on its own thread so that neither pipe can fill up and stall RAUC.
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.push(line);
        }
        lines
    });
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        on_line(&line);
    }
    let status =
        child.wait().map_err(|source| RaucError::Missing { program: program.display().to_string(), source })?;
    let errors = errors.join().unwrap_or_default();
    for line in &errors {
        on_line(line);
    }
    if !status.success() {
        let mut output = without_notices(&errors.join("\n"));
        // `rauc install` often exits before the service's reason reaches it ("Installing `X`
        // failed" and nothing more): the reason stays in the service's LastError property.
        if let Some(reason) = last_error() {
            if !output.contains(&reason) {
                output = format!("{output}: {reason}");
            }
        }
        return Err(RaucError::Failed { command, status: status.to_string(), output });
    }
    Ok(())
}

/// The RAUC service's account of the last failed installation (its D-Bus `LastError`), when
/// the service and `busctl` are there to ask; best effort, as it only adds to an error.
fn last_error() -> Option<String> {
    let out = Command::new("busctl")
        .args(["--system", "--json=short", "get-property", "de.pengutronix.rauc", "/"])
        .args(["de.pengutronix.rauc.Installer", "LastError"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_last_error(&String::from_utf8_lossy(&out.stdout))
}

/// `busctl --json=short get-property` prints `{"type":"s","data":"..."}`.
fn parse_last_error(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let text = value.get("data")?.as_str()?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape RAUC 1.13 prints (trimmed to what wick reads, plus fields it ignores).
    const STATUS: &str = r#"{"compatible":"wick-qemu-amd64","variant":"","booted":"A","boot_primary":"rootfs.1",
      "slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/disk/by-partlabel/rootfs-b","type":"ext4",
        "bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good",
        "slot_status":{"bundle":{"compatible":"wick-qemu-amd64","version":"v2"},
          "installed":{"timestamp":"2026-12-02T10:00:00Z","count":1},"status":"ok"}}},
        {"rootfs.0":{"class":"rootfs","device":"/dev/disk/by-partlabel/rootfs-a","type":"ext4",
        "bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"good",
        "slot_status":{"bundle":{"compatible":"wick-qemu-amd64","version":"v1"},"status":"ok"}}}]}"#;

    #[test]
    fn the_services_last_error_is_read_from_busctls_json() {
        let json = r#"{"type":"s","data":"Installation error: Failed to check bundle payload"}"#;
        assert_eq!(parse_last_error(json).as_deref(), Some("Installation error: Failed to check bundle payload"));
        assert_eq!(parse_last_error(r#"{"type":"s","data":""}"#), None);
        assert_eq!(parse_last_error("Failed to get property"), None);
    }

    #[test]
    fn rauc_status_gives_the_booted_slot_the_next_one_and_each_version() {
        let s = Status::parse(STATUS).unwrap();
        assert_eq!(s.compatible, "wick-qemu-amd64");
        assert_eq!(s.booted, "A");
        assert_eq!(s.primary.as_deref(), Some("rootfs.1"));
        let names: Vec<_> = s.slots.iter().map(|s| s.bootname.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        let a = s.booted_slot().unwrap();
        assert_eq!((a.name.as_str(), a.state.as_str(), a.version.as_deref()), ("rootfs.0", "booted", Some("v1")));
        assert_eq!(a.installed, None);
        let b = s.slot_by_bootname("B").unwrap();
        assert_eq!(b.version.as_deref(), Some("v2"));
        assert_eq!(b.installed.as_deref(), Some("2026-12-02T10:00:00Z"));
    }

    #[test]
    fn each_slot_gets_a_line_with_its_state_and_version() {
        let s = Status::parse(STATUS).unwrap();
        assert_eq!(
            s.lines(),
            [
                "slot A (rootfs.0): booted, good, version v1",
                "slot B (rootfs.1): inactive, next boot, good, version v2, installed 2026-12-02T10:00:00Z",
            ]
        );
    }

    #[test]
    fn a_status_without_a_booted_slot_says_where_rauc_looks_for_it() {
        let err = Status::parse(r#"{"compatible":"x","booted":null,"boot_primary":null,"slots":[]}"#).unwrap_err();
        assert!(err.contains("rauc.slot="), "{err}");
    }

    #[test]
    fn bundle_info_gives_compatible_and_version() {
        let i = BundleInfo::parse(r#"{"compatible":"wick-jetson-orin-nx-devkit","version":"v3","format":"verity"}"#)
            .unwrap();
        assert_eq!(i, BundleInfo { compatible: "wick-jetson-orin-nx-devkit".into(), version: Some("v3".into()) });
    }

    #[test]
    fn progress_lines_are_read_and_other_lines_are_not() {
        assert_eq!(
            Progress::parse("  40% Copying image to rootfs.1"),
            Some(Progress { percent: 40, message: "Copying image to rootfs.1".into() })
        );
        assert_eq!(
            Progress::parse("100% Installing done."),
            Some(Progress { percent: 100, message: "Installing done.".into() })
        );
        assert_eq!(Progress::parse("installing"), None);
        assert_eq!(Progress::parse("Installing `/tmp/b.raucb` succeeded"), None);
    }
}
