//! The health gate (`wick health`, run at every boot by `wick-health.service`): the judge of a
//! newly installed root slot. RAUC's pre-install handler names the slot an installation writes
//! in [`PENDING`] before it writes anything; at the next boot the gate finds one of three cases:
//!
//! - nothing pending: the booted slot was confirmed before; it is marked good for this boot
//!   (which resets the bootloader's try counter) and nothing else is checked, so that a
//!   microphone unplugged at boot never rolls a good system back;
//! - the pending slot is booted: the appliance is checked for real (the service READY, its
//!   models loaded and sound devices open, then a self-test turn through speech-to-text, the
//!   language model and the voice). Passed: the slot is marked good. Failed: it is marked bad,
//!   the other slot active, and the machine reboots into it;
//! - another slot is booted: the pending one never reached the gate (the installation was cut
//!   short, or its kernel or system did not come up and the bootloader's tries ran out): it is
//!   marked bad and the booted slot active and good.
//!
//! Every verdict is written to [`REPORT`] (JSON) and the journal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::appliance::rauc::{self, Mark, Status};
use crate::appliance::selftest::SelfTest;

/// The slot an installation is writing or has written and nobody has judged yet (its bootname
/// on one line), written by the image's RAUC pre-install handler.
pub const PENDING: &str = "/data/rauc/wick-pending-slot";
/// The last verdict.
pub const REPORT: &str = "/data/rauc/wick-health.json";
/// Every verdict, one JSON line each, oldest first: what happened over the updates (the last
/// [`HISTORY_LINES`] are kept).
pub const HISTORY: &str = "/data/rauc/wick-health.log";
const HISTORY_LINES: usize = 200;

/// What the gate does at this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The booted slot was confirmed before.
    Confirm,
    /// The booted slot is new: check the appliance.
    Judge,
    /// The pending slot (`0`) is not the booted one: it never came up.
    NeverCameUp(String),
}

/// `pending`: the bootname in [`PENDING`], if any; `booted`: the booted slot's bootname.
pub fn plan(pending: Option<&str>, booted: &str) -> Plan {
    match pending.map(str::trim).filter(|p| !p.is_empty()) {
        None => Plan::Confirm,
        Some(p) if p == booted => Plan::Judge,
        Some(p) => Plan::NeverCameUp(p.to_string()),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `confirmed`, `passed`, `failed` or `rolled-back`.
    pub verdict: &'static str,
    /// The booted slot's bootname and version.
    pub slot: String,
    pub version: Option<String>,
    /// The slot marked bad, if any.
    pub marked_bad: Option<String>,
    pub problems: Vec<String>,
    /// Seconds from the gate's start until the service was READY (judged boots only).
    pub ready_s: Option<f64>,
    pub self_test: Option<SelfTest>,
    /// Seconds the gate took.
    pub elapsed_s: f64,
    /// Seconds since boot when the verdict was given (from /proc/uptime).
    pub uptime_s: Option<f64>,
}

/// What the gate needs from the system, so that its decisions can be tested without one.
pub trait System {
    fn rauc_status(&mut self) -> anyhow::Result<Status>;
    fn mark(&mut self, action: Mark, slot: &str) -> anyhow::Result<()>;
    /// Waits until the service says it is READY; `Err` says what it showed last.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()>;
    fn self_test(&mut self) -> anyhow::Result<SelfTest>;
    fn reboot(&mut self) -> anyhow::Result<()>;
}

pub struct Gate {
    pub pending: PathBuf,
    pub report: PathBuf,
    pub history: PathBuf,
    pub ready_timeout: Duration,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            pending: PENDING.into(),
            report: REPORT.into(),
            history: HISTORY.into(),
            ready_timeout: Duration::from_secs(300),
        }
    }
}

impl Gate {
    pub fn run(&self, system: &mut dyn System) -> anyhow::Result<Report> {
        let started = Instant::now();
        let status = system.rauc_status()?;
        let booted = status.booted.clone();
        let pending = read_pending(&self.pending)?;
        let mut report = Report {
            verdict: "confirmed",
            slot: booted.clone(),
            version: status.booted_slot().and_then(|s| s.version.clone()),
            marked_bad: None,
            problems: Vec::new(),
            ready_s: None,
            self_test: None,
            elapsed_s: 0.0,
            uptime_s: None,
        };
        let mut reboot = false;
        match plan(pending.as_deref(), &booted) {
            Plan::Confirm => {
                tracing::info!(slot = %booted, "slot {booted} was confirmed before: marking it good for this boot");
                system.mark(Mark::Good, "booted")?;
            }
            Plan::NeverCameUp(failed) => {
                let name = slot_name(&status, &failed)?;
                tracing::warn!(
                    "slot {failed} was installed but this boot is slot {booted}: the installation was cut short or \
                     slot {failed} did not come up; marking it bad"
                );
                system.mark(Mark::Bad, &name)?;
                system.mark(Mark::Active, "booted")?;
                system.mark(Mark::Good, "booted")?;
                report.verdict = "rolled-back";
                report.marked_bad = Some(failed.clone());
                report.problems.push(format!(
                    "slot {failed} never reached the health gate (installation cut short, or its kernel or system did \
                     not come up)"
                ));
            }
            Plan::Judge => {
                tracing::info!(slot = %booted, "slot {booted} is newly installed: checking the appliance");
                let problems = self.judge(system, &mut report);
                if problems.is_empty() {
                    system.mark(Mark::Good, "booted")?;
                    report.verdict = "passed";
                    tracing::info!("slot {booted} passed the health gate: marked good");
                } else {
                    tracing::error!("slot {booted} failed the health gate: {}", problems.join("; "));
                    report.problems = problems;
                    report.verdict = "failed";
                    report.marked_bad = Some(booted.clone());
                    system.mark(Mark::Bad, "booted")?;
                    system.mark(Mark::Active, "other")?;
                    reboot = true;
                }
            }
        }
        if pending.is_some() {
            remove_pending(&self.pending)?;
        }
        report.elapsed_s = crate::measure::round3(started.elapsed().as_secs_f64());
        report.uptime_s = uptime_s();
        write_report(&self.report, &self.history, &report)?;
        if reboot {
            tracing::warn!("rebooting into the other slot");
            system.reboot()?;
        }
        Ok(report)
    }

    /// Checks the appliance; the problems found (none: it passed).
    fn judge(&self, system: &mut dyn System, report: &mut Report) -> Vec<String> {
        let started = Instant::now();
        if let Err(e) = system.wait_ready(self.ready_timeout) {
            return vec![format!("the service did not become ready: {e:#}")];
        }
        report.ready_s = Some(crate::measure::round3(started.elapsed().as_secs_f64()));
        match system.self_test() {
            Err(e) => vec![format!("the self-test could not run: {e:#}")],
            Ok(test) => {
                let problems = test.problems.iter().map(|p| format!("self-test: {p}")).collect();
                report.self_test = Some(test);
                problems
            }
        }
    }
}

fn slot_name(status: &Status, bootname: &str) -> anyhow::Result<String> {
    status.slot_by_bootname(bootname).map(|s| s.name.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "the pending slot {bootname:?} is none of RAUC's slots ({}); remove the stale marker",
            status.slots.iter().map(|s| s.bootname.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}

fn read_pending(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn remove_pending(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
    sync_dir(path);
    Ok(())
}

/// Writes the report by rename, so a power cut leaves the old one or the new one, and adds it to
/// the history (rewritten whole by rename too, keeping its last lines).
fn write_report(path: &Path, history: &Path, report: &Report) -> anyhow::Result<()> {
    let mut staged = crate::durable::Staged::new(path)?;
    staged.write_all(serde_json::to_string_pretty(report)?.as_bytes())?;
    staged.persist()?;
    let old = std::fs::read_to_string(history).unwrap_or_default();
    let mut lines: Vec<&str> = old.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = serde_json::to_string(report)?;
    lines.push(&line);
    let keep = &lines[lines.len().saturating_sub(HISTORY_LINES)..];
    let mut staged = crate::durable::Staged::new(history)?;
    staged.write_all((keep.join("\n") + "\n").as_bytes())?;
    staged.persist()?;
    Ok(())
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

fn uptime_s() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()
}

/// What RAUC's service answers while it is installing, and how long the gate waits it out (an
/// installation under emulation takes minutes).
const RAUC_BUSY: &str = "already processing a different method";
const BUSY_WAIT: Duration = Duration::from_secs(20 * 60);

/// Restarts of wick.service after which the gate stops waiting for it.
const GIVE_UP_AFTER_RESTARTS: u32 = 3;

/// How often systemd has restarted wick.service since boot (`None`: systemd cannot tell).
fn service_restarts() -> Option<u32> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "--property=NRestarts", "--value", "wick.service"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// wick.service's last error line in this boot's journal (wick writes `wick: error: ...` on
/// stderr, which the journal keeps at the default priority, so the text is searched).
fn last_service_error() -> Option<String> {
    let out = std::process::Command::new("journalctl")
        .args(["--boot", "--unit=wick.service", "--lines=50", "--output=cat", "--no-pager"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.contains("error:") || l.contains("ERROR"))
        .map(|l| l.trim().to_string())
}

/// The real system: RAUC's command line, the service's control socket, the configured models.
pub struct Device<'a> {
    pub assembly: &'a crate::appliance::assemble::Assembly,
    pub socket: PathBuf,
}

impl System for Device<'_> {
    fn rauc_status(&mut self) -> anyhow::Result<Status> {
        Ok(rauc::status()?)
    }

    fn mark(&mut self, action: Mark, slot: &str) -> anyhow::Result<()> {
        // RAUC's service does one thing at a time: while an installation runs (someone ran
        // `wick update` right after boot) it refuses to mark, so the gate waits its turn.
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            match rauc::mark(action, slot) {
                Err(e) if e.to_string().contains(RAUC_BUSY) && Instant::now() < deadline => {
                    tracing::info!("RAUC is busy (an installation?); marking slot {slot} again in 5 s");
                    std::thread::sleep(Duration::from_secs(5));
                }
                other => return Ok(other?),
            }
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match crate::input::send(&self.socket, "status") {
                Ok(answer) => {
                    if serde_json::from_str::<serde_json::Value>(&answer).ok().and_then(|v| v["ready"].as_bool())
                        == Some(true)
                    {
                        return Ok(());
                    }
                    last = answer;
                }
                Err(e) => last = e.to_string(),
            }
            // A service that keeps failing (a model that does not load) will not get ready:
            // say so now rather than at the deadline.
            if let Some(restarts) = service_restarts() {
                if restarts >= GIVE_UP_AFTER_RESTARTS {
                    anyhow::bail!(
                        "wick.service failed and was restarted {restarts} times; its last error: {} (more in \
                         `journalctl -u wick`)",
                        last_service_error().unwrap_or(last)
                    );
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!("not ready after {} s; its last status: {last}", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn self_test(&mut self) -> anyhow::Result<SelfTest> {
        crate::appliance::selftest::run(self.assembly)
    }

    fn reboot(&mut self) -> anyhow::Result<()> {
        let status = std::process::Command::new("systemctl").arg("reboot").status()?;
        anyhow::ensure!(status.success(), "`systemctl reboot` failed ({status})");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::rauc::Slot;

    #[test]
    fn the_plan_follows_the_pending_slot() {
        assert_eq!(plan(None, "A"), Plan::Confirm);
        assert_eq!(plan(Some("  \n"), "A"), Plan::Confirm);
        assert_eq!(plan(Some("B\n"), "B"), Plan::Judge);
        assert_eq!(plan(Some("B"), "A"), Plan::NeverCameUp("B".into()));
    }

    /// A system that records what the gate did.
    struct Fake {
        booted: &'static str,
        ready: bool,
        test_passes: bool,
        calls: Vec<String>,
    }

    impl System for Fake {
        fn rauc_status(&mut self) -> anyhow::Result<Status> {
            let slot = |bootname: &str, name: &str| Slot {
                name: name.into(),
                bootname: bootname.into(),
                device: format!("/dev/{name}"),
                state: if bootname == self.booted { "booted" } else { "inactive" }.into(),
                boot_status: Some("good".into()),
                version: Some(format!("v-{bootname}")),
                installed: None,
                status: None,
            };
            Ok(Status {
                compatible: "c".into(),
                booted: self.booted.into(),
                primary: None,
                slots: vec![slot("A", "rootfs.0"), slot("B", "rootfs.1")],
            })
        }
        fn mark(&mut self, action: Mark, slot: &str) -> anyhow::Result<()> {
            self.calls.push(format!("{action:?} {slot}"));
            Ok(())
        }
        fn wait_ready(&mut self, _: Duration) -> anyhow::Result<()> {
            self.calls.push("wait_ready".into());
            anyhow::ensure!(self.ready, "not ready");
            Ok(())
        }
        fn self_test(&mut self) -> anyhow::Result<SelfTest> {
            self.calls.push("self_test".into());
            Ok(SelfTest {
                passed: self.test_passes,
                problems: if self.test_passes { vec![] } else { vec!["heard nothing".into()] },
                phrase: String::new(),
                transcript: String::new(),
                reply: String::new(),
                gen_tokens: 0,
                phrase_s: 0.0,
                reply_audio_s: 0.0,
                load_s: 0.0,
                turn_s: 0.0,
            })
        }
        fn reboot(&mut self) -> anyhow::Result<()> {
            self.calls.push("reboot".into());
            Ok(())
        }
    }

    fn gate(dir: &Path, pending: Option<&str>) -> Gate {
        let g = Gate {
            pending: dir.join("pending"),
            report: dir.join("report.json"),
            history: dir.join("history.log"),
            ready_timeout: Duration::ZERO,
        };
        if let Some(p) = pending {
            std::fs::write(&g.pending, p).unwrap();
        }
        g
    }

    fn run(pending: Option<&str>, fake: &mut Fake) -> (Report, bool, serde_json::Value) {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path(), pending);
        let report = g.run(fake).unwrap();
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&g.report).unwrap()).unwrap();
        let history = std::fs::read_to_string(&g.history).unwrap();
        let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
        assert_eq!(last, written, "the history ends with the report");
        (report, g.pending.exists(), written)
    }

    #[test]
    fn the_history_keeps_every_verdict_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path(), None);
        for _ in 0..HISTORY_LINES + 5 {
            g.run(&mut Fake { booted: "A", ready: true, test_passes: true, calls: vec![] }).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&g.history).unwrap().lines().count(), HISTORY_LINES);
    }

    #[test]
    fn a_confirmed_slot_is_marked_good_without_any_check() {
        let mut fake = Fake { booted: "A", ready: false, test_passes: false, calls: vec![] };
        let (report, pending_left, written) = run(None, &mut fake);
        assert_eq!(fake.calls, ["Good booted"]);
        assert_eq!(report.verdict, "confirmed");
        assert!(!pending_left);
        assert_eq!(written["verdict"], "confirmed");
        assert_eq!(written["version"], "v-A");
    }

    #[test]
    fn a_new_slot_that_passes_is_marked_good() {
        let mut fake = Fake { booted: "B", ready: true, test_passes: true, calls: vec![] };
        let (report, pending_left, _) = run(Some("B\n"), &mut fake);
        assert_eq!(fake.calls, ["wait_ready", "self_test", "Good booted"]);
        assert_eq!(report.verdict, "passed");
        assert!(report.self_test.is_some());
        assert!(!pending_left, "the verdict is given once");
    }

    #[test]
    fn a_new_slot_that_fails_the_self_test_is_marked_bad_and_the_machine_reboots_into_the_other() {
        let mut fake = Fake { booted: "B", ready: true, test_passes: false, calls: vec![] };
        let (report, pending_left, written) = run(Some("B"), &mut fake);
        assert_eq!(fake.calls, ["wait_ready", "self_test", "Bad booted", "Active other", "reboot"]);
        assert_eq!(report.verdict, "failed");
        assert_eq!(report.problems, ["self-test: heard nothing"]);
        assert!(!pending_left);
        assert_eq!(written["marked_bad"], "B");
    }

    #[test]
    fn a_new_slot_whose_service_never_gets_ready_fails_without_a_self_test() {
        let mut fake = Fake { booted: "B", ready: false, test_passes: true, calls: vec![] };
        let (report, _, _) = run(Some("B"), &mut fake);
        assert_eq!(fake.calls, ["wait_ready", "Bad booted", "Active other", "reboot"]);
        assert!(report.problems[0].contains("did not become ready"), "{:?}", report.problems);
    }

    #[test]
    fn a_pending_slot_that_is_not_booted_never_came_up_and_is_marked_bad_by_name() {
        let mut fake = Fake { booted: "A", ready: true, test_passes: true, calls: vec![] };
        let (report, pending_left, _) = run(Some("B"), &mut fake);
        assert_eq!(fake.calls, ["Bad rootfs.1", "Active booted", "Good booted"]);
        assert_eq!(report.verdict, "rolled-back");
        assert_eq!(report.marked_bad.as_deref(), Some("B"));
        assert!(!pending_left);
    }

    #[test]
    fn a_pending_slot_unknown_to_rauc_is_an_error_naming_the_slots() {
        let mut fake = Fake { booted: "A", ready: true, test_passes: true, calls: vec![] };
        let dir = tempfile::tempdir().unwrap();
        let err = gate(dir.path(), Some("C")).run(&mut fake).unwrap_err().to_string();
        assert!(err.contains("\"C\"") && err.contains("A, B"), "{err}");
    }
}
