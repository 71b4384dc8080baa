#!/usr/bin/env python3
"""`make ota-test`: over-the-air updates of the twin in QEMU, each scenario from a fresh copy of
the image or in a VM another scenario handed on (below), through the real path: `wick update`
-> RAUC -> GRUB's environment -> a reboot -> wick's health gate. The bundles (ota-bundles.sh)
reach the VM on a read-only second disk, as on a USB stick, or, for `stream`, from an HTTP
server QEMU runs for the VM's connections.
Writes one entry per scenario (name, passed, figures, and why it failed) to the report, also
when a scenario fails; exits non-zero when any did.

`--jobs 2` runs two VMs at once; on two cores that made every step about twice as slow and
RAUC's streaming time out, so the default is one (and no VM is handed on).

A boot under TCG costs minutes, so a scenario that passed and left the VM in a state it checked
hands that VM on to the next one instead of a fresh copy: the two refusals (slot B checked
untouched) go on to `update`; `bad-update-rolls-back` (back on A, B marked bad) to
`no-boot-rolls-back`; `power-cut` (back on A, the same bundle then installed whole) to
`stream`, which installs it again over HTTP, and `stream` (/data listed before) to
`data-kept`, which reboots into the streamed slot. Run alone, or after a failure, each boots a
fresh copy. A spoken turn costs minutes too: the health gate's self-test turn (a question
spoken, heard, answered and spoken back) is what shows that an updated slot answers, and a
slot that comes back after a rollback is shown to be ready; `make vm-test` asks the questions.

Usage: otatest.py IMAGE BUNDLES_DIR REPORT [--rundir DIR] [--kvm] [--jobs N] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance import Appliance
from report import Report
from vm import Vm, VmError

HERE = Path(__file__).resolve().parent
# Limits for a run that has gone wrong, not targets (a 2-core machine under TCG).
BOOT_TIMEOUT = 900
READY_TIMEOUT = 900
GATE_TIMEOUT = 1800
INSTALL_TIMEOUT = 900
# `wick doctor` right after a boot shares the emulated CPU with the models loading (and, on a
# new slot, the gate's self-test): over a minute on a slow TCG host.
DOCTOR_TIMEOUT = 600
MEDIA_IN_VM = "/run/bundles"
# The kernel's panic= on the twin's command line and GRUB's tries per slot (grub.cfg.in).
TRIES = 3
GRUBENV = "/boot/efi/EFI/BOOT/grubenv"
# How much of slot B power-cut lets RAUC write before it pulls the plug (the image is ~600 MiB).
CUT_AFTER_BYTES = 200 << 20
ORDER = ["wrong-key", "wrong-board", "update", "bad-update-rolls-back", "no-boot-rolls-back", "power-cut",
         "stream", "data-kept"]
# What data-kept compares before and after an update: every file of the models and settings.
DATA_LISTING = "cd /data && find models wick -type f -print0 | sort -z | xargs -0 sha256sum"
# The owner's setting data-kept looks for on the new slot.
KEPT_SETTING = ("printf '# kept across updates (OTA test)\\n[llm]\\nmax_tokens = 14\\n' > /data/wick/wick.toml"
                " && chown wick:wick /data/wick/wick.toml")


# The line GRUB prints as it starts a menu entry (grub.cfg.in's titles).
GRUB_BOOT = re.compile(r"Booting `wick, slot ([AB])'")


def grub_boots(console: str) -> list[tuple[str, str]]:
    """GRUB's boots in a console log, in order: the slot and what that boot printed."""
    boots: list[tuple[str, list[str]]] = []
    for line in console.splitlines():
        m = GRUB_BOOT.search(line)
        if m:
            boots.append((m.group(1), []))
        elif boots:
            boots[-1][1].append(line)
    return [(slot, "\n".join(lines)) for slot, lines in boots]


class Ota:
    def __init__(self, image: Path, bundles: Path, report: Path, rundir: Path, kvm: bool):
        self.image = image
        self.bundles = bundles.resolve()
        self.report_path = report
        self.rundir = rundir.resolve()
        self.kvm = kvm
        self.report = Report(report, ORDER)
        self.local = threading.local()  # each scenario's VM, on the thread that runs it
        self.media = self.rundir / "bundles.img"
        # Handing a VM on works only when the scenarios run one after another.
        self.hand_on = True
        # Whether stream lists /data for data-kept (set by main from the chosen scenarios).
        self.hands_data_on = True

    @property
    def vm(self) -> Vm | None:
        return getattr(self.local, "vm", None)

    @vm.setter
    def vm(self, vm: Vm | None) -> None:
        self.local.vm = vm

    # ---- the harness ----
    def record(self, name: str, fn, hand_on: bool = False) -> None:
        """Runs a scenario. With `hand_on`, its VM (and what it noted in `self.local.handed`)
        stays up for the next scenario when it passed; otherwise, or when it failed, the VM goes."""
        def run() -> dict:
            figures = fn()
            self.local.keep = hand_on and self.hand_on
            return figures

        def stop() -> None:
            if self.vm is not None and not getattr(self.local, "keep", False):
                self.vm.kill()  # each scenario's disk is thrown away: no need to shut down
                self.vm = None
                self.local.handed = {}
            self.local.keep = False
        self.report.record(name, run, on_failure=lambda: self.vm.console_tail() if self.vm else "", finally_=stop)

    def handed_on(self) -> dict | None:
        """What the scenario before left for this one, with its VM; None when there is no such VM."""
        handed = getattr(self.local, "handed", None)
        if self.vm is None or handed is None:
            return None
        self.local.handed = {}
        return handed

    def make_media(self) -> None:
        """The bundles on an ext4 disk image (no mounts on the host: mkfs.ext4 -d)."""
        stick = self.rundir / "stick"
        if stick.exists():
            subprocess.run(["rm", "-rf", str(stick)], check=True)
        stick.mkdir(parents=True)
        size = 64 << 20
        for b in sorted(self.bundles.glob("*.raucb")):
            (stick / b.name).hardlink_to(b)
            size += b.stat().st_size
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "bundles", "-d", str(stick), str(self.media),
                        f"{size * 11 // 10 >> 20}M"], check=True)
        subprocess.run(["rm", "-rf", str(stick)], check=True)

    def boot(self, name: str, http_bundle: str | None = None) -> tuple[Vm, Appliance]:
        """A fresh copy of the image, powered on, with the bundle stick attached and mounted."""
        if self.vm is not None:  # handed on, but this scenario wants a fresh copy
            self.vm.kill()
            self.vm = None
        self.local.handed = {}
        http_cmd = None
        if http_bundle:
            http_cmd = [sys.executable, str(HERE / "rangeserve.py"), str(self.bundles / http_bundle),
                        str(self.rundir / name / "http.log")]
        vm = Vm(self.image, self.rundir / name, kvm=self.kvm, media=self.media, http_cmd=http_cmd)
        self.vm = vm
        vm.fresh_disk()
        (self.rundir / name / "http.log").unlink(missing_ok=True)
        vm.start()
        vm.wait_agent(BOOT_TIMEOUT)
        self.after_boot(vm)
        return vm, Appliance(vm)

    def after_boot(self, vm: Vm) -> None:
        vm.agent.check(f"mkdir -p {MEDIA_IN_VM} && mount -o ro /dev/vdb {MEDIA_IN_VM}")

    def sh(self, command: str, timeout: float = 120) -> str:
        assert self.vm is not None
        return self.vm.agent.check(command, timeout=timeout)

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id").strip()

    def booted(self) -> str:
        """The slot the kernel was booted from (GRUB's rauc.slot=)."""
        cmdline = self.sh("cat /proc/cmdline")
        return next((w.split("=", 1)[1] for w in cmdline.split() if w.startswith("rauc.slot=")), "?")

    def grubenv(self) -> dict:
        out = self.sh(f"grub-editenv {GRUBENV} list")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def slots(self) -> dict:
        """RAUC's status: {'booted': 'A', 'primary': 'rootfs.1', 'A': {...}, 'B': {...}}."""
        raw = json.loads(self.sh("rauc status --detailed --output-format=json 2>/dev/null").strip().splitlines()[-1])
        out = {"booted": raw.get("booted"), "primary": raw.get("boot_primary")}
        for entry in raw["slots"]:
            for name, s in entry.items():
                status = s.get("slot_status") or {}
                out[s["bootname"]] = {"name": name, "boot_status": s.get("boot_status"),
                                      "version": (status.get("bundle") or {}).get("version"),
                                      "installed": (status.get("installed") or {}).get("timestamp")}
        return out

    def image_version(self) -> str:
        return self.sh("sed -n 's/^version=//p' /etc/wick/image").strip()

    def update(self, source: str, timeout: float = INSTALL_TIMEOUT) -> tuple[int, str, float]:
        assert self.vm is not None
        start = time.monotonic()
        rc, out = self.vm.agent.run(f"wick update {source} 2>&1", timeout=timeout)
        took = time.monotonic() - start
        if rc != 0:  # RAUC's own account of it, for the report
            out += "\n-- rauc's journal:\n" + self.vm.agent.run("journalctl -u rauc -o cat --no-pager | tail -15")[1]
            out += "\n-- the kernel's and the nbd holder's:\n" + self.vm.agent.run(
                "journalctl -b -o short-monotonic --no-pager | grep -E 'nbd|verity|wick-nbd-hold' | tail -15")[1]
        return rc, out, took

    def reboot(self) -> float:
        """`systemctl reboot` and wait for the agent of the next boot; seconds taken."""
        assert self.vm is not None
        old = self.boot_id()
        self.sh("systemd-run --quiet --on-active=2 systemctl reboot")
        return self.wait_boot(old)

    def wait_boot(self, *old_ids: str, timeout: float = BOOT_TIMEOUT) -> float:
        """Waits until the agent answers from a boot that is none of `old_ids`."""
        assert self.vm is not None
        start = time.monotonic()
        self.vm.agent.close()
        while True:
            if time.monotonic() - start > timeout:
                raise VmError(f"no new boot within {timeout} s")
            time.sleep(3)
            try:
                self.vm.wait_agent(timeout)
                if self.boot_id() not in old_ids:
                    self.after_boot(self.vm)
                    return time.monotonic() - start
            except (TimeoutError, ConnectionError, OSError, VmError):
                self.vm.agent.close()

    def wait_slot(self, slot: str, *old_ids: str, timeout: float = BOOT_TIMEOUT * 2) -> list[str]:
        """Waits for a boot of `slot` that is none of `old_ids`, through any boots between (a
        slot that fails its gate reboots by itself); the slots seen on the way."""
        seen: list[str] = []
        ids = set(old_ids)
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.wait_boot(*ids, timeout=timeout)
            try:
                ids.add(self.boot_id())
                now = self.booted()
            except (TimeoutError, ConnectionError, OSError, VmError):
                continue
            seen.append(now)
            if now == slot:
                return seen
        raise VmError(f"no boot of slot {slot} within {timeout} s (seen: {seen})")

    def verdicts(self) -> list[dict]:
        """Every verdict of the health gate, oldest first (/data/rauc/wick-health.log)."""
        out = self.sh("cat /data/rauc/wick-health.log 2>/dev/null || true")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_gate(self, timeout: float = GATE_TIMEOUT) -> dict:
        """Waits until this boot's health gate has given its verdict; the report."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            state = self.sh("systemctl show -p ActiveState --value wick-health").strip()
            if state in ("active", "failed"):
                return json.loads(self.sh("cat /data/rauc/wick-health.json"))
            time.sleep(5)
        raise VmError(f"the health gate gave no verdict within {timeout} s:\n"
                      + self.sh("journalctl -b -u wick-health -u wick -o cat --no-pager | tail -30"))

    def slot_b_untouched(self) -> None:
        """Slot B as the image left it: no filesystem, zeros, no pending verdict."""
        fs = self.vm.agent.run("blkid -p -o value -s TYPE /dev/disk/by-partlabel/rootfs-b")[1].strip()
        if fs:
            raise VmError(f"slot B was written: it now holds a {fs} filesystem")
        rc, out = self.vm.agent.run("cmp -n 67108864 /dev/disk/by-partlabel/rootfs-b /dev/zero", timeout=300)
        if rc != 0:
            raise VmError(f"slot B's first 64 MiB are no longer zeros: {out.strip()}")
        if self.vm.agent.run("test -e /data/rauc/wick-pending-slot")[0] == 0:
            raise VmError("an installation was started: /data/rauc/wick-pending-slot exists")

    def expect(self, what: str, got, want) -> None:
        if got != want:
            raise VmError(f"{what}: {got!r}, expected {want!r}")

    # ---- the scenarios ----
    def update_scenario(self) -> dict:
        if self.handed_on() is None:
            self.boot("update")
        app = Appliance(self.vm)
        factory = self.image_version()
        app.wait_ready(READY_TIMEOUT)
        first = self.wait_gate()
        self.expect("the factory slot's gate verdict", (first["slot"], first["verdict"]), ("A", "confirmed"))
        rc, out, install_s = self.update(f"{MEDIA_IN_VM}/next.raucb")
        if rc != 0:
            raise VmError(f"wick update failed ({rc}):\n{out}")
        env = self.grubenv()
        self.expect("ORDER after the installation", env.get("ORDER"), "B A")
        rebooted = time.monotonic()
        reboot_s = self.reboot()
        self.expect("booted slot", self.booted(), "B")
        version = self.image_version()
        if version == factory or not version.endswith("-next"):
            raise VmError(f"slot B runs version {version!r}, not the bundle's (factory {factory!r})")
        gate = self.wait_gate()
        gate_done_s = time.monotonic() - rebooted
        self.expect("the gate's verdict on B", (gate["slot"], gate["verdict"]), ("B", "passed"))
        slots = self.slots()
        self.expect("B's state after the gate", slots["B"]["boot_status"], "good")
        # It stays on B across another reboot, and is confirmed there without a new check.
        self.reboot()
        self.expect("booted slot after a second reboot", self.booted(), "B")
        again = self.wait_gate()
        self.expect("the gate's verdict at the second boot of B", again["verdict"], "confirmed")
        ready_s = app.wait_ready(READY_TIMEOUT)
        return {"vm": self.vm.rundir.name, "factory_version": factory, "new_version": version,
                "install_s": round(install_s, 1),
                "reboot_to_agent_s": round(reboot_s, 1), "gate_s": gate["elapsed_s"],
                "self_test": {k: gate["self_test"][k] for k in ("transcript", "reply", "turn_s", "load_s")},
                "reboot_to_marked_good_s": round(gate_done_s, 1),
                "install_to_marked_good_s": round(install_s + gate_done_s, 1),
                "bundle_mib": round((self.bundles / "next.raucb").stat().st_size / 2**20, 1),
                "slots": {k: slots[k] for k in ("A", "B")}, "second_boot_ready_after_gate_s": round(ready_s, 1)}

    def bad_update(self) -> dict:
        vm, app = self.boot("bad-update-rolls-back")
        rc, out, install_s = self.update(f"{MEDIA_IN_VM}/broken.raucb")
        if rc != 0:
            raise VmError(f"wick update failed ({rc}):\n{out}")
        old = self.boot_id()
        self.sh("systemd-run --quiet --on-active=2 systemctl reboot")
        # B boots, its gate fails and reboots into A by itself.
        start = time.monotonic()
        seen = self.wait_slot("A", old)
        verdicts = self.verdicts()
        failed_gate = next((v for v in reversed(verdicts) if v["slot"] == "B"), None)
        if failed_gate is None:
            raise VmError(f"slot B gave no verdict (seen: {seen}); the gate's log: {verdicts}")
        self.expect("the gate's verdict on the broken slot", failed_gate["verdict"], "failed")
        back_s = time.monotonic() - start
        self.expect("booted slot after the failed gate", self.booted(), "A")
        slots = self.slots()
        self.expect("B after the failed gate", slots["B"]["boot_status"], "bad")
        env = self.grubenv()
        self.expect("ORDER after the rollback", env.get("ORDER"), "A B")
        boots = self.sh("journalctl --list-boots --no-pager -q | wc -l").strip()
        why = self.sh("journalctl -b -1 -u wick-health -o cat --no-pager | grep -m1 'failed the health gate' || true").strip()
        ready_s = app.wait_ready(READY_TIMEOUT)
        return {"install_s": round(install_s, 1), "reboot_to_back_on_a_s": round(back_s, 1),
                "slots_booted": seen, "b_gate_problems": failed_gate.get("problems"),
                "b_gate_s": failed_gate.get("elapsed_s"), "a_ready_after_s": round(back_s + ready_s, 1),
                "journal_boots": int(boots), "journal": why, "grubenv": env}

    def no_boot(self) -> dict:
        if self.handed_on() is None:
            self.boot("no-boot-rolls-back")
        app = Appliance(self.vm)
        rc, out, install_s = self.update(f"{MEDIA_IN_VM}/noboot.raucb")
        if rc != 0:
            raise VmError(f"wick update failed ({rc}):\n{out}")
        console_log = self.vm.rundir / "console.log"
        seen_before = len(console_log.read_text(errors="replace"))
        start = time.monotonic()
        self.reboot()
        back_s = time.monotonic() - start
        # Every boot of B must fail, GRUB must give it exactly its tries, then go back to A.
        # A boot counts as failed when its kernel panicked: the bundle's init exiting is the
        # usual cause, but under TCG the emulated kernel has also died earlier (an Oops in
        # early boot), which uses up a try just the same; those are reported, not failed.
        b_boots = [text for slot, text in grub_boots(console_log.read_text(errors="replace")[seen_before:])
                   if slot == "B"]
        panics = sum("Kernel panic" in text for text in b_boots)
        init_exits = sum("Attempted to kill init" in text for text in b_boots)
        other = [next((l.strip() for l in text.splitlines() if "Kernel panic" in l), "")
                 for text in b_boots if "Kernel panic" in text and "Attempted to kill init" not in text]
        self.expect("GRUB's boots of slot B before going back to A", len(b_boots), TRIES)
        self.expect("boots of slot B that ended in a kernel panic", panics, TRIES)
        self.expect("booted slot after B's tries", self.booted(), "A")
        app.wait_ready(READY_TIMEOUT)
        gate = self.wait_gate()
        self.expect("the gate's verdict back on A", (gate["verdict"], gate["marked_bad"]), ("rolled-back", "B"))
        slots = self.slots()
        self.expect("B after its tries ran out", slots["B"]["boot_status"], "bad")
        env = self.grubenv()
        return {"install_s": round(install_s, 1), "reboot_to_back_on_a_s": round(back_s, 1),
                "b_boots": len(b_boots), "b_panics": panics, "b_init_exits": init_exits,
                "b_other_panics": other, "grubenv": env, "gate": gate["problems"], "vm": self.vm.rundir.name}

    def refused(self, name: str, bundle: str, message: str) -> dict:
        if self.handed_on() is None:
            self.boot(name)
        rc, out, took = self.update(f"{MEDIA_IN_VM}/{bundle}")
        if rc == 0:
            raise VmError(f"wick update installed {bundle}:\n{out}")
        if message not in out:
            raise VmError(f"wick update's refusal does not say {message!r}:\n{out}")
        self.slot_b_untouched()
        self.expect("booted slot", self.booted(), "A")
        said = next((line for line in out.splitlines() if line.startswith("wick: error:")), out.strip())
        return {"exit_status": rc, "message": said, "seconds": round(took, 1),
                "slot_b_written": False, "vm": self.vm.rundir.name}

    def wrong_key(self) -> dict:
        return self.refused("wrong-key", "otherkey.raucb", "signature verification failed")

    def wrong_board(self) -> dict:
        return self.refused("wrong-board", "otherboard.raucb",
                            "is for 'wick-jetson-orin-nx-devkit', and this device is 'wick-qemu-amd64'")

    def power_cut(self) -> dict:
        # stream goes on in this VM: its HTTP server comes with it (the guest has no address
        # until stream gives it one).
        vm, app = self.boot("power-cut", http_bundle="next.raucb" if self.hand_on else None)
        # The cut comes when a third of the image has gone into slot B, seen from the host as
        # the VM's disk overlay grows (RAUC's progress reaches the guest's log in bursts).
        overlay = self.rundir / "power-cut" / "disk.qcow2"
        size_before = overlay.stat().st_size
        self.sh(f"systemd-run --unit=ota-update -p StandardOutput=append:/run/update.log "
                f"-p StandardError=append:/run/update.log wick update {MEDIA_IN_VM}/next.raucb")
        start = time.monotonic()
        while (grown := overlay.stat().st_size - size_before) < CUT_AFTER_BYTES:
            if time.monotonic() - start > INSTALL_TIMEOUT:
                raise VmError(f"slot B was not being written after {INSTALL_TIMEOUT} s:\n"
                              + self.vm.agent.run("cat /run/update.log")[1])
            time.sleep(0.2)
        cut_at = f"{grown >> 20} MiB written, {time.monotonic() - start:.1f} s after wick update started"
        vm.kill()
        # Power back on: the same disk, as the cut left it.
        vm.start()
        vm.wait_agent(BOOT_TIMEOUT)
        self.after_boot(vm)
        self.expect("booted slot after the power cut", self.booted(), "A")
        env = self.grubenv()
        self.expect("B in GRUB's environment after the cut", (env.get("ORDER"), env.get("B_OK")), ("A B", "0"))
        app = Appliance(vm)
        app.wait_ready(READY_TIMEOUT)
        gate = self.wait_gate()
        self.expect("the gate's verdict after the cut", (gate["verdict"], gate["marked_bad"]), ("rolled-back", "B"))
        rc, out, install_s = self.update(f"{MEDIA_IN_VM}/next.raucb")
        if rc != 0:
            raise VmError(f"the same update failed after the power cut ({rc}):\n{out}")
        # Installed whole and next to boot (`update` shows such a slot booting and passing the
        # gate; doing it again here would add minutes under emulation and show nothing new).
        slots = self.slots()
        self.expect("B after the second installation", (slots["B"]["boot_status"], slots["primary"]),
                    ("good", slots["B"]["name"]))
        if not (slots["B"]["version"] or "").endswith("-next"):
            raise VmError(f"B holds version {slots['B']['version']!r} after the second installation")
        return {"cut_at": cut_at, "second_install_s": round(install_s, 1), "slot_b": slots["B"]}

    def data_kept(self) -> dict:
        handed = self.handed_on()
        if handed and "data_before" in handed:
            before, installed_by = handed["data_before"], "stream (over HTTP)"
        else:
            self.boot("data-kept")
            self.sh(KEPT_SETTING)
            before = self.sh(DATA_LISTING, timeout=600)
            rc, out, _ = self.update(f"{MEDIA_IN_VM}/next.raucb")
            if rc != 0:
                raise VmError(f"wick update failed ({rc}):\n{out}")
            installed_by = "data-kept (from the stick)"
        self.reboot()
        self.expect("booted slot", self.booted(), "B")
        after = self.sh(DATA_LISTING, timeout=600)
        if before != after:
            raise VmError(f"/data changed across the update:\nbefore:\n{before}\nafter:\n{after}")
        doctor = self.vm.agent.run("wick doctor", timeout=DOCTOR_TIMEOUT)[1]
        if "/data/wick/wick.toml" not in doctor:
            raise VmError(f"wick doctor on the new slot does not read the kept settings:\n{doctor}")
        boots = int(self.sh("journalctl --list-boots --no-pager -q | wc -l").strip())
        if boots < 2:
            raise VmError(f"the journal of the boot before the update is gone ({boots} boot listed)")
        return {"files_compared": len(before.splitlines()), "identical": True, "journal_boots": boots,
                "version": self.image_version(), "installed_by": installed_by, "vm": self.vm.rundir.name}

    def stream(self) -> dict:
        if self.handed_on() is None or not self.vm.http_cmd:
            self.boot("stream", http_bundle="next.raucb")
        installed_before = self.slots()["B"]["installed"]
        if self.hands_data_on:
            # data-kept goes on from here: the owner's files as they are before the update.
            self.sh(KEPT_SETTING)
            self.local.handed = {"data_before": self.sh(DATA_LISTING, timeout=600)}
        iface = self.sh("ls /sys/class/net | grep -v '^lo$' | head -1").strip()
        self.sh(f"ip link set {iface} up && ip addr add 10.0.2.15/24 dev {iface}")
        tmp_before = self.sh("df --output=used -k /tmp /run /var | awk 'NR > 1 {s += $1} END {print s}'").strip()
        rc, out, install_s = self.update("http://10.0.2.100/next.raucb")
        if rc != 0:
            raise VmError(f"wick update over HTTP failed ({rc}):\n{out}")
        tmp_after = self.sh("df --output=used -k /tmp /run /var | awk 'NR > 1 {s += $1} END {print s}'").strip()
        # The log of the server this VM was started with (power-cut's, when it handed the VM on).
        log = [json.loads(line) for line in (self.vm.rundir / "http.log").read_text().splitlines()]
        size = (self.bundles / "next.raucb").stat().st_size
        sent = sum(e.get("bytes", 0) for e in log)
        ranged = [e for e in log if e.get("status") == 206]
        largest = max((e.get("bytes", 0) for e in log), default=0)
        if len(ranged) < 10 or largest > size // 4:
            raise VmError(f"the bundle was not streamed in ranges: {len(ranged)} range requests, the largest "
                          f"{largest} bytes of {size}")
        grown_kib = int(tmp_after) - int(tmp_before)
        if grown_kib * 1024 > size // 10:
            raise VmError(f"the VM's RAM file systems grew by {grown_kib} KiB: the bundle was copied first")
        slots = self.slots()
        if not (slots["B"]["version"] or "").endswith("-next") or slots["primary"] != slots["B"]["name"]:
            raise VmError(f"slot B after the streamed installation: {slots}")
        if slots["B"]["installed"] == installed_before:
            raise VmError(f"slot B's installation time did not change ({installed_before}): nothing was installed")
        return {"install_s": round(install_s, 1), "requests": len(log), "range_requests": len(ranged),
                "largest_request_bytes": largest, "bytes_sent": sent, "bundle_bytes": size,
                "ram_fs_growth_kib": grown_kib, "slot_b": slots["B"], "vm": self.vm.rundir.name}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path)
    p.add_argument("bundles", type=Path)
    p.add_argument("report", type=Path)
    p.add_argument("--rundir", type=Path, default=Path("target/ota-test/run"))
    p.add_argument("--kvm", action="store_true", help="use KVM (faster; CI has none and uses TCG)")
    p.add_argument("--only", help="comma-separated scenario names")
    p.add_argument("--jobs", type=int, default=1, help="VMs at a time (default 1: two VMs on two cores slowed every step by half, and RAUC's streaming timed out)")
    args = p.parse_args()
    missing = [str(args.image)] if not args.image.is_file() else []
    missing += [str(args.bundles / b) for b in ("next.raucb", "broken.raucb", "noboot.raucb", "otherkey.raucb",
                                                 "otherboard.raucb") if not (args.bundles / b).is_file()]
    if missing:
        print(f"otatest: missing: {', '.join(missing)} (make ota-test builds them)", file=sys.stderr)
        return 1
    t = Ota(args.image, args.bundles, args.report, args.rundir, args.kvm)
    t.rundir.mkdir(parents=True, exist_ok=True)
    t.make_media()
    # (name, scenario, whether it hands its VM on to the next one when it passes)
    scenarios = [
        ("wrong-key", t.wrong_key, True),
        ("wrong-board", t.wrong_board, True),
        ("update", t.update_scenario, False),
        ("bad-update-rolls-back", t.bad_update, True),
        ("no-boot-rolls-back", t.no_boot, False),
        ("power-cut", t.power_cut, True),
        ("stream", t.stream, True),
        ("data-kept", t.data_kept, False),
    ]
    assert [name for name, _, _ in scenarios] == ORDER
    only = set(args.only.split(",")) if args.only else None
    if only and only - set(ORDER):
        print(f"otatest: no scenario {', '.join(sorted(only - set(ORDER)))}", file=sys.stderr)
        return 2
    chosen = [s for s in scenarios if only is None or s[0] in only]
    # One worker runs them in order, so a VM handed on always reaches the next scenario (which
    # uses it or stops it); the last one has nobody to hand to.
    t.hand_on = args.jobs <= 1
    t.hands_data_on = t.hand_on and "data-kept" in {name for name, _, _ in chosen}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(t.record, name, fn, hand_on and i + 1 < len(chosen))
                   for i, (name, fn, hand_on) in enumerate(chosen)]
        for future in futures:
            future.result()
    failed = t.report.failed()
    print(f"ota-test: {len(t.report.results) - len(failed)} of {len(t.report.results)} scenarios passed; report: {args.report}")
    if failed:
        print(f"ota-test: failed: {', '.join(failed)} (consoles: {args.rundir}/NAME/console.log, NAME being the "
              f"scenario that booted the VM)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
