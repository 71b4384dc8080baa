//! `wick update` and `wick status` against a stand-in `rauc` (WICK_RAUC) that answers as RAUC
//! 1.13 does and logs how it was called: wick checks a bundle before RAUC writes anything,
//! refuses another board's with both names, passes RAUC's own reason on, and shows progress.
//! The real RAUC, bootloader and reboots are exercised by `make ota-test` in the VM.

use std::path::PathBuf;
use std::process::{Command, Output};

/// What the stand-in prints, in the shapes RAUC 1.13 uses (captured from the twin).
const STAND_IN: &str = r#"#!/bin/bash
echo "$*" >> "$RIG/calls"
case "$1" in
  status)
    echo "rauc-Message: 10:00:00.000: Using central status file /data/rauc/central.raucs" >&2
    echo '{"compatible":"wick-qemu-amd64","variant":"","booted":"A","boot_primary":"rootfs.0","slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/vda3","type":"ext4","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"bad","slot_status":{"bundle":{"compatible":null}}}},{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"ext4","bootname":"A","state":"booted","parent":null,"mountpoint":null,"boot_status":"good","slot_status":{"bundle":{"compatible":"wick-qemu-amd64","version":"v1","description":"factory image"},"status":"ok"}}}],"artifact-repositories":[]}'
    ;;
  info)
    echo "rauc-Message: 10:00:00.000: Reading bundle: $3" >&2
    if [ -n "${SIGNATURE_FAILS:-}" ]; then
      echo "rauc-Message: 10:00:00.001: Verifying bundle signature... " >&2
      echo "signature verification failed: Verify error: unable to get local issuer certificate" >&2
      exit 1
    fi
    echo "{\"compatible\":\"$BUNDLE_COMPATIBLE\",\"version\":\"v2\",\"format\":\"verity\"}"
    ;;
  install)
    for p in 0 10 20 30 40; do echo "$(printf '%3d' $p)% Checking bundle"; done
    for p in $(seq 46 99); do echo "$(printf '%3d' $p)% Copying image to rootfs.1"; done
    echo "100% Installing done."
    echo "idle"
    echo "Installing \`$2' succeeded"
    ;;
  *) echo "stand-in rauc: unexpected $*" >&2; exit 2 ;;
esac
"#;

struct Rig {
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let rauc = dir.path().join("rauc");
        std::fs::write(&rauc, STAND_IN).unwrap();
        std::fs::set_permissions(&rauc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let bundle = dir.path().join("next.raucb");
        std::fs::write(&bundle, b"a bundle").unwrap();
        Rig { dir, bundle }
    }

    fn wick(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wick"));
        cmd.args(["--config", self.config().to_str().unwrap()])
            .args(args)
            .env("WICK_RAUC", self.dir.path().join("rauc"))
            .env("RIG", self.dir.path())
            .env("BUNDLE_COMPATIBLE", "wick-qemu-amd64")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// A config whose control socket is in the rig (no service answers there).
    fn config(&self) -> PathBuf {
        let path = self.dir.path().join("wick.toml");
        let socket = self.dir.path().join("control.sock");
        std::fs::write(&path, format!("[input]\nsocket = {:?}\n", socket.to_str().unwrap())).unwrap();
        path
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default().lines().map(String::from).collect()
    }

    fn bundle(&self) -> &str {
        self.bundle.to_str().unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bundle_for_another_board_is_refused_with_both_names_before_anything_is_written() {
    let rig = Rig::new();
    let out = rig.wick(&["update", rig.bundle()], &[("BUNDLE_COMPATIBLE", "wick-jetson-orin-nx-devkit")]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("is for 'wick-jetson-orin-nx-devkit', and this device is 'wick-qemu-amd64'")
            && err.contains("nothing was installed"),
        "{err}"
    );
    assert!(rig.calls().iter().all(|c| !c.starts_with("install")), "{:?}", rig.calls());
}

#[test]
fn a_bundle_signed_under_another_ca_is_refused_with_raucs_reason_and_the_keyring() {
    let rig = Rig::new();
    let out = rig.wick(&["update", rig.bundle()], &[("SIGNATURE_FAILS", "1")]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("unable to get local issuer certificate") && err.contains("/etc/rauc/keyring.pem"), "{err}");
    assert!(!err.contains("rauc-Message"), "RAUC's notices are left out: {err}");
    assert!(rig.calls().iter().all(|c| !c.starts_with("install")), "{:?}", rig.calls());
}

#[test]
fn a_good_bundle_is_installed_with_its_progress_in_tenths() {
    let rig = Rig::new();
    let out = rig.wick(&["update", rig.bundle()], &[]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("installing v2 from") && err.contains("into slot B (booted: slot A, version v1)"), "{err}");
    let copying: Vec<&str> = err.lines().filter(|l| l.contains("Copying image")).collect();
    // 46..99 %: one line as the step starts, then one per tenth (50, 60, 70, 80, 90).
    assert_eq!(copying.len(), 6, "{err}");
    assert!(err.contains("100% Installing done."), "{err}");
    assert!(stdout.contains("installed v2 into slot B"), "{stdout}");
    assert!(stdout.contains("restart the device"), "{stdout}");
    assert_eq!(rig.calls().iter().filter(|c| c.starts_with("install")).count(), 1);
    assert!(rig.calls().contains(&format!("install {}", rig.bundle())), "{:?}", rig.calls());
}

#[test]
fn a_missing_bundle_file_is_named_and_rauc_is_not_asked() {
    let rig = Rig::new();
    let missing = rig.dir.path().join("nope.raucb");
    let out = rig.wick(&["update", missing.to_str().unwrap()], &[]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("nope.raucb: no such file"), "{err}");
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
}

#[test]
fn status_shows_the_slots_even_when_the_service_does_not_answer() {
    let rig = Rig::new();
    let out = rig.wick(&["status"], &[]);
    let (stdout, _) = text(&out);
    assert!(!out.status.success(), "no service answers in the rig");
    assert!(stdout.contains("service: not answering"), "{stdout}");
    assert!(stdout.contains("booted: slot A"), "{stdout}");
    assert!(stdout.contains("slot A (rootfs.0): booted, next boot, good, version v1"), "{stdout}");
    assert!(stdout.contains("slot B (rootfs.1): inactive, bad, version unknown (never installed)"), "{stdout}");

    let out = rig.wick(&["status", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slots"]["booted"], "A");
    assert_eq!(v["slots"]["slots"][0]["version"], "v1");
    assert!(v["service"]["error"].as_str().unwrap().contains("control.sock"), "{v}");
}

#[test]
fn without_rauc_update_says_it_needs_the_appliance_image() {
    let rig = Rig::new();
    let out = rig.wick(&["update", rig.bundle()], &[("WICK_RAUC", "/nonexistent/rauc")]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("cannot run `/nonexistent/rauc`") && err.contains("appliance image"), "{err}");
}
