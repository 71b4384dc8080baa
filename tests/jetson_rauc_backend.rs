//! The Jetson's RAUC bootloader backend (`board/jetson-orin-nx-devkit/rauc/bootloader-backend`)
//! run against a fake efivarfs directory and a stand-in `nvbootctrl`. The stand-in keeps the
//! boot chain's state in a file and, through test-only verbs, plays NVIDIA's L4TLauncher at a
//! reboot (retry counter, 0xFF status, fallback), so the tests follow whole update cycles:
//! what RAUC calls, which variables the backend writes (byte for byte) and which nvbootctrl
//! commands it runs. Real efivarfs, the real nvbootctrl and the scratch-register counter are
//! not involved; the board README says what that leaves unverified.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GUID: &str = "781e084c-a330-417c-b678-38e696380cb9";
const RETRY_MAX: u32 = 3;

/// The stand-in for nvbootctrl. `@ROOT@` becomes the test's temp dir. Verbs starting with `__`
/// are the test's own (a reboot through L4TLauncher) and are not logged.
const NVBOOTCTRL: &str = r#"#!/bin/bash
set -euo pipefail
ROOT='@ROOT@'
EFI=$ROOT/efivars
GUID=781e084c-a330-417c-b678-38e696380cb9

case ${1:-} in
__*) ;;
*) printf 'nvbootctrl %s\n' "$*" >>"$ROOT/calls.log" ;;
esac
if [[ -f $ROOT/nvbootctrl.fail && $(<"$ROOT/nvbootctrl.fail") == "${1:-}" ]]; then
	echo "E> injected failure of ${1:-}" >&2
	exit 1
fi
if [[ -f $ROOT/nvbootctrl.output.${1:-} ]]; then
	cat "$ROOT/nvbootctrl.output.$1"
	exit 0
fi

# current=, max=, retry0=, retry1=: the booted slot and the launcher's scratch-register counters.
source "$ROOT/nvbootctrl.state"
save() {
	printf 'current=%s\nmax=%s\nretry0=%s\nretry1=%s\n' "$current" "$max" "$retry0" "$retry1" \
		>"$ROOT/nvbootctrl.state"
}
letter() { if [[ $1 == 0 ]]; then echo A; else echo B; fi; }
var() { echo "$EFI/$1-$GUID"; }
get_var() {
	local f b
	f=$(var "$1")
	[[ -e $f ]] || return 1
	read -ra b < <(od -An -v -tu1 -j4 -N4 "$f")
	echo $((b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24))
}
set_var() {
	local f
	f=$(var "$1")
	printf "$(printf '\\x07\\x00\\x00\\x00\\x%02x\\x00\\x00\\x00' "$2")" >"$f"
}
status() { get_var "RootfsStatusSlot$(letter "$1")" || echo 0; }
retry() { local n=retry$1; echo "${!n}"; }
set_retry() { printf -v "retry$1" '%s' "$2"; }
recovery() {
	echo "both slots unbootable: the launcher boots the recovery kernel" >&2
	save
	exit 3
}

# A reboot: the boot chain in BootChainFwNext, if set, is taken (and the variable consumed)
# with a cold reset, which re-initialises the counters (0 for a 0xFF slot, else the maximum);
# a slot marked 0xFF is passed over; the booted slot's counter goes down by one.
boot() {
	local slot=$current next s
	if next=$(get_var BootChainFwNext); then
		slot=$next
		rm -f "$(var BootChainFwNext)"
		for s in 0 1; do
			if [[ $(status $s) == 255 ]]; then set_retry $s 0; else set_retry $s "$max"; fi
		done
	fi
	if [[ $(status "$slot") == 255 ]]; then
		slot=$((1 - slot))
		[[ $(status "$slot") != 255 ]] || recovery
	fi
	current=$slot
	if (($(retry "$slot") > 0)); then set_retry "$slot" $(($(retry "$slot") - 1)); fi
}

case ${1:-} in
get-current-slot) echo "$current" ;;
set-active-boot-slot)
	[[ ${2:-} == 0 || ${2:-} == 1 ]] || { echo "E> invalid slot '${2:-}'" >&2; exit 1; }
	# Not known to be what the real tool does; it makes the test catch a backend that switches
	# before clearing a 0xFF status.
	[[ $(status "$2") != 255 ]] || { echo "E> slot $2 is unbootable" >&2; exit 1; }
	set_var BootChainFwNext "$2"
	;;
verify)
	set_retry "$current" "$max"
	save
	;;
dump-slots-info)
	active=$(get_var BootChainFwNext || echo "$current")
	echo "Current version: 36.4.3"
	echo "Capsule update status: 0"
	echo "Current bootloader slot: $(letter "$current")"
	echo "Active bootloader slot: $(letter "$active")"
	echo "num_slots: 2"
	for s in 0 1; do
		if [[ $(status $s) == 255 ]]; then st=unbootable; else st=normal; fi
		echo "slot: $s,             status: $st"
	done
	;;
# The next boot reaches user space (whether it is then verified is up to the caller).
__boot)
	boot
	save
	;;
# The next boot fails before anyone verifies it (the watchdog resets the board). When that
# slot's counter reaches 0 the launcher marks it 0xFF and boots the other one if it can.
__boot-fails)
	boot
	if (($(retry "$current") == 0)); then
		set_var "RootfsStatusSlot$(letter "$current")" 255
		[[ $(status $((1 - current))) != 255 ]] || recovery
		set_var BootChainFwNext $((1 - current))
		boot
	fi
	save
	;;
*)
	echo "usage: nvbootctrl [-t bootloader|rootfs] <command>" >&2
	exit 1
	;;
esac
"#;

/// The stand-in for chattr: logs the call; fails (as on tmpfs) when `chattr.fail` exists.
const CHATTR: &str = r#"#!/bin/bash
printf 'chattr %s\n' "$*" >>'@ROOT@/calls.log'
if [[ -e '@ROOT@/chattr.fail' ]]; then
	echo "chattr: Operation not supported while reading flags on ${*: -1}" >&2
	exit 1
fi
"#;

fn backend_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("board/jetson-orin-nx-devkit/rauc/bootloader-backend")
}

/// One test's world: a temp dir holding `efivars/`, `bin/` (stand-ins), the stand-in's state
/// and the log of calls.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    /// A board booted from `current` (0 = A, 1 = B), both counters full, no variables set.
    fn new(current: u32) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_str().expect("utf-8 temp dir").to_string();
        assert!(!root.contains('\''), "temp dir {root} must not contain a quote");
        std::fs::create_dir(dir.path().join("efivars")).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        for (name, text) in [("nvbootctrl", NVBOOTCTRL), ("chattr", CHATTR)] {
            let path = dir.path().join("bin").join(name);
            std::fs::write(&path, text.replace("@ROOT@", &root)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let rig = Rig { dir };
        rig.write_state(current, RETRY_MAX, RETRY_MAX);
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn var_path(&self, name: &str) -> PathBuf {
        self.path("efivars").join(format!("{name}-{GUID}"))
    }

    fn write_state(&self, current: u32, retry0: u32, retry1: u32) {
        let text = format!("current={current}\nmax={RETRY_MAX}\nretry0={retry0}\nretry1={retry1}\n");
        std::fs::write(self.path("nvbootctrl.state"), text).unwrap();
    }

    /// The stand-in's state: `current`, `max`, `retry0`, `retry1`.
    fn state(&self) -> BTreeMap<String, u32> {
        std::fs::read_to_string(self.path("nvbootctrl.state"))
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').expect("key=value");
                (k.to_string(), v.parse().expect("number"))
            })
            .collect()
    }

    /// Writes a variable file as efivarfs shows it: attributes, then the value (LE u32s).
    fn set_var(&self, name: &str, attributes: u32, value: u32) {
        let mut bytes = attributes.to_le_bytes().to_vec();
        bytes.extend_from_slice(&value.to_le_bytes());
        std::fs::write(self.var_path(name), bytes).unwrap();
    }

    fn var_bytes(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.var_path(name)).ok()
    }

    fn env_path(&self) -> String {
        let bin = self.path("bin");
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
    }

    fn run_backend(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(backend_path());
        cmd.args(args)
            .env("PATH", self.env_path())
            .env("WICK_EFIVARS", self.path("efivars"))
            .env_remove("WICK_NVBOOTCTRL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run bootloader-backend")
    }

    /// Runs the backend as RAUC does; it must succeed silently on stderr. Returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_backend(args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "backend {args:?} failed ({}): {stderr}", out.status);
        assert!(stderr.is_empty(), "backend {args:?} wrote to stderr: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the backend expecting failure; returns (exit code, stdout, stderr).
    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = self.run_backend(args, env);
        let code = out.status.code().expect("exit code");
        assert_ne!(code, 0, "backend {args:?} succeeded, stdout: {}", String::from_utf8_lossy(&out.stdout));
        (code, String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }

    /// Runs the stand-in directly (the test's `__boot` verbs, `dump-slots-info`).
    fn nvbootctrl(&self, args: &[&str]) -> String {
        let out = Command::new(self.path("bin/nvbootctrl")).args(args).output().expect("run the stand-in nvbootctrl");
        assert!(out.status.success(), "stand-in nvbootctrl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The logged calls since the last look, then cleared.
    fn calls(&self) -> Vec<String> {
        let log = self.path("calls.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(str::to_string).collect()
    }
}

fn var(attributes: u32, value: u32) -> Vec<u8> {
    let mut bytes = attributes.to_le_bytes().to_vec();
    bytes.extend_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn get_current_maps_the_booted_slot_to_its_bootname() {
    for (slot, name) in [(0, "A\n"), (1, "B\n")] {
        let rig = Rig::new(slot);
        assert_eq!(rig.ok(&["get-current"]), name);
        assert_eq!(rig.calls(), ["nvbootctrl get-current-slot"]);
    }
}

#[test]
fn get_primary_is_boot_chain_fw_next_else_the_current_slot() {
    let rig = Rig::new(0);
    assert_eq!(rig.ok(&["get-primary"]), "A\n");
    assert_eq!(rig.calls(), ["nvbootctrl get-current-slot"]);

    rig.ok(&["set-primary", "B"]);
    assert_eq!(rig.calls(), ["nvbootctrl set-active-boot-slot 1"]);
    assert_eq!(rig.var_bytes("BootChainFwNext"), Some(var(7, 1)));
    // The next boot is B while A is still running.
    assert_eq!(rig.ok(&["get-primary"]), "B\n");
    assert_eq!(rig.calls(), Vec::<String>::new(), "get-primary read BootChainFwNext only");
    assert_eq!(rig.ok(&["get-current"]), "A\n");

    // The reboot consumes BootChainFwNext; primary falls back to the booted slot.
    rig.nvbootctrl(&["__boot"]);
    assert_eq!(rig.var_bytes("BootChainFwNext"), None);
    assert_eq!(rig.ok(&["get-current"]), "B\n");
    assert_eq!(rig.ok(&["get-primary"]), "B\n");

    // Switching back to A before rebooting.
    rig.calls();
    rig.ok(&["set-primary", "A"]);
    assert_eq!(rig.calls(), ["nvbootctrl set-active-boot-slot 0"]);
    assert_eq!(rig.var_bytes("BootChainFwNext"), Some(var(7, 0)));
    assert_eq!(rig.ok(&["get-primary"]), "A\n");
    assert_eq!(rig.ok(&["get-current"]), "B\n");

    // BootChainFwNext is decoded as a little-endian u32: 256 is no slot.
    rig.set_var("BootChainFwNext", 7, 256);
    let (_, stdout, stderr) = rig.fails(&["get-primary"], &[]);
    assert_eq!(stdout, "");
    assert!(stderr.contains("BootChainFwNext") && stderr.contains("'256'"), "{stderr}");
}

#[test]
fn set_primary_clears_an_unbootable_status_before_switching() {
    let rig = Rig::new(0);
    rig.set_var("RootfsStatusSlotB", 7, 0xFF);
    assert_eq!(rig.ok(&["get-state", "B"]), "bad\n");

    rig.ok(&["set-primary", "B"]);
    // The stand-in refuses to switch to a 0xFF slot, so this also proves the order.
    let var_b = rig.var_path("RootfsStatusSlotB").display().to_string();
    assert_eq!(rig.calls(), [format!("chattr -i -- {var_b}"), "nvbootctrl set-active-boot-slot 1".into()]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(var(7, 0)));
    assert_eq!(rig.var_bytes("BootChainFwNext"), Some(var(7, 1)));
    assert_eq!(rig.ok(&["get-state", "B"]), "good\n");
    assert_eq!(rig.ok(&["get-primary"]), "B\n");

    // A status variable that does not exist yet is created, without chattr.
    rig.calls();
    rig.ok(&["set-primary", "A"]);
    assert_eq!(rig.calls(), ["nvbootctrl set-active-boot-slot 0"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotA"), Some(var(7, 0)));
}

#[test]
fn get_state_reads_the_rootfs_status_variables() {
    let rig = Rig::new(0);
    // Never marked by the launcher: good.
    assert_eq!(rig.ok(&["get-state", "A"]), "good\n");
    assert_eq!(rig.ok(&["get-state", "B"]), "good\n");
    rig.set_var("RootfsStatusSlotA", 7, 0);
    rig.set_var("RootfsStatusSlotB", 7, 0xFF);
    assert_eq!(rig.ok(&["get-state", "A"]), "good\n");
    assert_eq!(rig.ok(&["get-state", "B"]), "bad\n");
    rig.set_var("RootfsStatusSlotA", 7, 0xFF);
    rig.set_var("RootfsStatusSlotB", 7, 0);
    assert_eq!(rig.ok(&["get-state", "A"]), "bad\n");
    assert_eq!(rig.ok(&["get-state", "B"]), "good\n");
    assert_eq!(rig.calls(), Vec::<String>::new(), "get-state needs no nvbootctrl");
}

#[test]
fn a_status_other_than_0_or_0xff_is_an_error() {
    let rig = Rig::new(0);
    for value in [1, 0xFE, 0x1FF] {
        rig.set_var("RootfsStatusSlotB", 7, value);
        let (code, stdout, stderr) = rig.fails(&["get-state", "B"], &[]);
        assert_eq!(code, 1);
        assert_eq!(stdout, "", "nothing for RAUC to misread");
        assert!(stderr.contains("RootfsStatusSlotB") && stderr.contains(&format!("holds {value},")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    // A file too short to hold a value.
    std::fs::write(rig.var_path("RootfsStatusSlotA"), [7, 0, 0, 0, 0xFF]).unwrap();
    let (_, _, stderr) = rig.fails(&["get-state", "A"], &[]);
    assert!(stderr.contains("RootfsStatusSlotA") && stderr.contains("too short"), "{stderr}");
}

#[test]
fn set_state_writes_the_status_and_verifies_only_the_booted_slot() {
    let rig = Rig::new(0);
    rig.nvbootctrl(&["__boot"]); // A boots and uses a try
    assert_eq!(rig.state()["retry0"], RETRY_MAX - 1);

    rig.ok(&["set-state", "B", "bad"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(var(7, 0xFF)));
    assert_eq!(rig.calls(), Vec::<String>::new());
    assert_eq!(rig.ok(&["get-state", "B"]), "bad\n");

    rig.ok(&["set-state", "B", "good"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(var(7, 0)));
    let calls = rig.calls();
    assert!(!calls.iter().any(|c| c.contains("verify")), "B is not booted: {calls:?}");
    assert_eq!(rig.state()["retry0"], RETRY_MAX - 1);

    rig.ok(&["set-state", "A", "good"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotA"), Some(var(7, 0)));
    assert_eq!(rig.calls(), ["nvbootctrl get-current-slot", "nvbootctrl verify"]);
    assert_eq!(rig.state()["retry0"], RETRY_MAX, "verify refilled the booted slot's counter");

    rig.ok(&["set-state", "A", "bad"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotA"), Some(var(7, 0xFF)));
    let calls = rig.calls();
    assert!(!calls.iter().any(|c| c.contains("verify")), "bad never verifies: {calls:?}");
    assert_eq!(rig.ok(&["get-state", "A"]), "bad\n");
}

#[test]
fn an_update_whose_slot_never_turns_good_falls_back_after_the_retries() {
    let rig = Rig::new(0);
    rig.ok(&["set-state", "A", "good"]);
    rig.calls();

    // RAUC installs into B: marks it bad, writes it, makes it primary.
    rig.ok(&["set-state", "B", "bad"]);
    rig.ok(&["set-primary", "B"]);
    let var_b = rig.var_path("RootfsStatusSlotB").display().to_string();
    assert_eq!(rig.calls(), [format!("chattr -i -- {var_b}"), "nvbootctrl set-active-boot-slot 1".into()]);
    assert_eq!(rig.ok(&["get-primary"]), "B\n");
    assert_eq!(rig.ok(&["get-current"]), "A\n");
    assert_eq!(rig.ok(&["get-state", "B"]), "good\n");

    // B boots and never passes the health gate, RootfsRetryCountMax (3) times.
    rig.nvbootctrl(&["__boot-fails"]);
    assert_eq!(rig.state()["current"], 1);
    assert_eq!(rig.state()["retry1"], 2);
    rig.nvbootctrl(&["__boot-fails"]);
    assert_eq!(rig.state()["current"], 1);
    rig.nvbootctrl(&["__boot-fails"]);
    // The launcher marked B unbootable and went back to A.
    assert_eq!(rig.state()["current"], 0);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(var(7, 0xFF)));
    assert!(rig.nvbootctrl(&["dump-slots-info"]).contains("slot: 1,             status: unbootable"));
    rig.calls();

    // What RAUC sees on A.
    assert_eq!(rig.ok(&["get-current"]), "A\n");
    assert_eq!(rig.ok(&["get-primary"]), "A\n");
    assert_eq!(rig.ok(&["get-state", "B"]), "bad\n");
    assert_eq!(rig.ok(&["get-state", "A"]), "good\n");
    rig.ok(&["set-state", "A", "good"]); // wick's health gate on A
    assert_eq!(rig.state()["retry0"], RETRY_MAX);
    rig.calls();

    // The next update reuses B: its 0xFF is cleared, and this time B comes up good.
    rig.ok(&["set-state", "B", "bad"]);
    rig.ok(&["set-primary", "B"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(var(7, 0)));
    assert_eq!(rig.ok(&["get-primary"]), "B\n");
    rig.nvbootctrl(&["__boot"]);
    assert_eq!(rig.ok(&["get-current"]), "B\n");
    assert_eq!(rig.state()["retry1"], RETRY_MAX - 1);
    rig.calls();
    rig.ok(&["set-state", "B", "good"]);
    assert_eq!(
        rig.calls(),
        [format!("chattr -i -- {var_b}"), "nvbootctrl get-current-slot".into(), "nvbootctrl verify".into()]
    );
    assert_eq!(rig.state()["retry1"], RETRY_MAX);
    assert_eq!(rig.ok(&["get-primary"]), "B\n");
    assert_eq!(rig.ok(&["get-state", "A"]), "good\n");
}

#[test]
fn variable_files_are_attributes_then_a_little_endian_u32() {
    let rig = Rig::new(1);
    // Created: attributes 0x00000007 (non-volatile, boot service, runtime), 8 bytes in all.
    rig.ok(&["set-state", "A", "bad"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotA"), Some(vec![0x07, 0, 0, 0, 0xFF, 0, 0, 0]));
    rig.ok(&["set-state", "A", "good"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotA"), Some(vec![0x07, 0, 0, 0, 0, 0, 0, 0]));
    // An existing variable keeps its own attributes (UEFI will not change them).
    rig.set_var("RootfsStatusSlotB", 0x06, 0);
    rig.ok(&["set-state", "B", "bad"]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(vec![0x06, 0, 0, 0, 0xFF, 0, 0, 0]));
    // The value is read as little-endian: FF 00 00 00 is bad, 00 00 00 FF is no status.
    std::fs::write(rig.var_path("RootfsStatusSlotB"), [7, 0, 0, 0, 0, 0, 0, 0xFF]).unwrap();
    let (_, _, stderr) = rig.fails(&["get-state", "B"], &[]);
    assert!(stderr.contains(&format!("holds {},", 0xFF00_0000u32)), "{stderr}");
}

#[test]
fn chattr_runs_on_existing_variables_and_its_failure_alone_is_ignored() {
    let rig = Rig::new(0);
    rig.ok(&["set-state", "B", "bad"]);
    assert_eq!(rig.calls(), Vec::<String>::new(), "no chattr for a new variable");
    std::fs::write(rig.path("chattr.fail"), "").unwrap();
    rig.ok(&["set-state", "B", "good"]);
    let var_b = rig.var_path("RootfsStatusSlotB").display().to_string();
    assert_eq!(rig.calls(), [format!("chattr -i -- {var_b}"), "nvbootctrl get-current-slot".into()]);
    assert_eq!(rig.var_bytes("RootfsStatusSlotB"), Some(var(7, 0)));
}

#[test]
fn efivarfs_problems_fail_with_the_variable_named() {
    let rig = Rig::new(0);
    let missing = rig.path("no-efivars").display().to_string();
    let (code, stdout, stderr) = rig.fails(&["get-state", "A"], &[("WICK_EFIVARS", &missing)]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains(&missing) && stderr.contains("efivarfs"), "{stderr}");

    // A variable that cannot be written (a link into nowhere), or read (a directory).
    std::os::unix::fs::symlink(rig.path("nowhere/x"), rig.var_path("RootfsStatusSlotA")).unwrap();
    std::fs::create_dir(rig.var_path("RootfsStatusSlotB")).unwrap();
    for (slot, what) in [("A", "cannot write UEFI variable RootfsStatusSlotA"), ("B", "cannot read")] {
        let (code, _, stderr) = rig.fails(&["set-primary", slot], &[]);
        assert_eq!(code, 1);
        assert!(stderr.contains(what) && stderr.contains(&format!("RootfsStatusSlot{slot}-{GUID}")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    assert!(!rig.calls().iter().any(|c| c.starts_with("nvbootctrl")), "no switch after a failed write");
}

#[test]
fn nvbootctrl_missing_or_failing_fails_with_the_command_named() {
    let rig = Rig::new(0);
    let none = [("WICK_NVBOOTCTRL", "wick-no-such-nvbootctrl")];
    for args in [&["get-current"][..], &["get-primary"], &["set-primary", "B"], &["set-state", "A", "good"]] {
        let (code, stdout, stderr) = rig.fails(args, &none);
        assert_eq!((code, stdout.as_str()), (1, ""), "{args:?}");
        assert!(stderr.contains("wick-no-such-nvbootctrl") && stderr.contains("not found"), "{args:?}: {stderr}");
    }
    rig.calls();

    for (verb, args, command) in [
        ("get-current-slot", &["get-current"][..], "nvbootctrl get-current-slot"),
        ("set-active-boot-slot", &["set-primary", "A"], "nvbootctrl set-active-boot-slot 0"),
        ("verify", &["set-state", "A", "good"], "nvbootctrl verify"),
    ] {
        std::fs::write(rig.path("nvbootctrl.fail"), verb).unwrap();
        let (code, stdout, stderr) = rig.fails(args, &[]);
        assert_eq!((code, stdout.as_str()), (1, ""), "{args:?}");
        assert!(stderr.contains(&format!("'{command}' failed")), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("injected failure of {verb}")), "nvbootctrl's output: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    std::fs::remove_file(rig.path("nvbootctrl.fail")).unwrap();

    // Output the backend does not understand is an error, never a guess.
    std::fs::write(rig.path("nvbootctrl.output.get-current-slot"), "Current slot: A\n").unwrap();
    let (_, stdout, stderr) = rig.fails(&["get-current"], &[]);
    assert_eq!(stdout, "");
    assert!(stderr.contains("get-current-slot") && stderr.contains("printed 'Current slot: A'"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_touch_nothing() {
    let rig = Rig::new(0);
    let bad: [&[&str]; 11] = [
        &[],
        &["bogus"],
        &["get-current", "A"],
        &["get-primary", "A"],
        &["get-state"],
        &["get-state", "C"],
        &["set-primary", "APP"],
        &["set-primary", "A", "B"],
        &["set-state", "A"],
        &["set-state", "A", "ok"],
        &["set-state", "a", "good"],
    ];
    for args in bad {
        let (code, stdout, stderr) = rig.fails(args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(stderr.starts_with("usage:"), "{args:?}: {stderr}");
    }
    assert_eq!(rig.calls(), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(rig.path("efivars")).unwrap().count(), 0);
}

#[test]
fn the_backend_is_an_executable_strict_bash_script() {
    let path = backend_path();
    let mode = std::fs::metadata(&path).expect("bootloader-backend exists").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "{} must be executable (mode {mode:o})", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("#!/bin/bash\n"), "shebang");
    assert!(text.contains("\nset -euo pipefail\n"), "strict mode");
    let out = Command::new("bash").arg("-n").arg(&path).output().expect("bash -n");
    assert!(out.status.success(), "bash -n: {}", String::from_utf8_lossy(&out.stderr));
}

/// `[section]` -> key -> value, for RAUC's ini-style system.conf.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            assert!(sections.insert(current.clone(), BTreeMap::new()).is_none(), "[{name}] twice");
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        assert!(!current.is_empty(), "{line} outside a section");
        let old = sections.get_mut(&current).unwrap().insert(k.trim().into(), v.trim().into());
        assert!(old.is_none(), "{k} twice in [{current}]");
    }
    sections
}

#[test]
fn system_conf_matches_the_board_and_the_backend() {
    let board_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/jetson-orin-nx-devkit");
    let conf = parse_ini(&std::fs::read_to_string(board_dir.join("rauc/system.conf")).unwrap());
    let board: toml::Table = std::fs::read_to_string(board_dir.join("board.toml")).unwrap().parse().unwrap();
    let compatible = board["board"]["compatible"].as_str().expect("board.compatible");

    let system = &conf["system"];
    assert_eq!(system["compatible"], compatible);
    assert_eq!(system["bootloader"], "custom");
    assert!(system["data-directory"].starts_with("/data/"), "status must survive updates");
    assert_eq!(system["bundle-formats"], "-plain");
    assert_eq!(conf["keyring"]["path"], "/etc/rauc/keyring.pem");
    assert_eq!(conf["handlers"]["bootloader-custom-backend"], "/usr/lib/wick/rauc/bootloader-backend");
    assert_eq!(conf["handlers"]["pre-install"], "/usr/lib/wick/rauc/pre-install");

    let slots: Vec<[&str; 4]> = conf
        .iter()
        .filter(|(name, _)| name.starts_with("slot."))
        .map(|(name, s)| [name.as_str(), s["device"].as_str(), s["type"].as_str(), s["bootname"].as_str()])
        .collect();
    assert_eq!(
        slots,
        [
            ["slot.rootfs.0", "/dev/disk/by-partlabel/APP", "ext4", "A"],
            ["slot.rootfs.1", "/dev/disk/by-partlabel/APP_b", "ext4", "B"],
        ]
    );
    // Every bootname RAUC may pass is one the backend accepts.
    let rig = Rig::new(0);
    for [_, _, _, bootname] in slots {
        assert_eq!(rig.ok(&["get-state", bootname]), "good\n");
    }
}
