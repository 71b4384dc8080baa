#!/usr/bin/env python3
"""`make vm-test`: boots the twin image under QEMU and checks the appliance as a user meets it.
Writes one entry per scenario (name, passed, figures, and why it failed) to the report, also
when a scenario fails; exits non-zero when any did.

Usage: vmtest.py IMAGE CLIP REPORT --wick WICK --models DIR [--rundir DIR] [--kvm] [--only NAME,...]
(WICK and DIR: wick on this machine and its test models, to transcribe the speaker's recordings)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from appliance import Appliance, words
from report import Report
from vm import Vm, VmError

# Under TCG a 2-core machine boots the twin and loads the test models in a few minutes; these
# are limits for a run that has gone wrong, not targets.
BOOT_TIMEOUT = 900
READY_TIMEOUT = 900
ASK_TIMEOUT = 900
# `wick doctor` right after a boot shares the emulated CPU with the models loading (and, on a
# new slot, the gate's self-test): over a minute on a slow TCG host.
DOCTOR_TIMEOUT = 600
# wick.service's WatchdogSec, and how long systemd may take past it to restart wick.
WATCHDOG_S = 30
CLIP_IN_VM = "/tmp/question.wav"
SECURITY_LIMIT = 2.0
# A spoken turn costs minutes under TCG, so each one shows as much as it can: barge-in's first
# question is asked through the control socket (the third button) and cut by the GPIO one.
SCENARIOS = ["boot", "unprivileged", "ask-gpio", "barge-in", "unplug", "crash", "hang", "reboot-persists", "ask-evdev"]


class Scenarios:
    def __init__(self, vm: Vm, clip: Path, report: Path, wick: Path, models: Path):
        self.vm = vm
        self.wick = wick
        self.models = models
        self.app = Appliance(vm)
        self.clip = clip
        self.report_path = report
        self.report = Report(report, SCENARIOS)

    def record(self, name: str, fn) -> None:
        self.report.record(name, fn, on_failure=self.vm.console_tail)

    # ---- the scenarios ----
    def boot(self) -> dict:
        self.vm.fresh_disk()
        self.vm.start()
        agent_s = self.vm.wait_agent(BOOT_TIMEOUT)
        self.app.wait_ready(READY_TIMEOUT)
        power_on_to_ready = time.monotonic() - self.vm.started_at
        mono = int(self.vm.agent.check("systemctl show -p ActiveEnterTimestampMonotonic --value wick").strip())
        self.vm.agent.upload(self.clip.read_bytes(), CLIP_IN_VM)
        return {
            "power_on_to_ready_s": round(power_on_to_ready, 1),
            "kernel_to_ready_s": round(mono / 1e6, 1),
            "power_on_to_agent_s": round(agent_s, 1),
        }

    def unprivileged(self) -> dict:
        a = self.vm.agent
        pid = self.app.main_pid()
        user = a.check(f"ps -o user= -p {pid}").strip()
        if user != "wick":
            raise VmError(f"wick runs as {user!r}, not as wick")
        groups = a.check(f"ps -o supgrp= -p {pid}").strip()
        # Listening sockets of any internet family, in wick's own network namespace and the host's.
        inet = a.check(f"cat /proc/{pid}/net/tcp /proc/{pid}/net/tcp6 /proc/{pid}/net/udp /proc/{pid}/net/udp6 /proc/{pid}/net/raw /proc/{pid}/net/raw6 | grep -v 'local_address' || true").strip()
        if inet:
            raise VmError(f"wick's network namespace has sockets: {inet}")
        host = a.check(f"ss -H -l -t -u -w -p | grep 'pid={pid},' || true").strip()
        if host:
            raise VmError(f"wick listens on the network: {host}")
        netns_own = a.check(f"readlink /proc/{pid}/ns/net /proc/1/ns/net").split()
        if len(set(netns_own)) != 2:
            raise VmError("wick shares the host's network namespace (PrivateNetwork= is off)")
        out = a.check("systemd-analyze security wick.service --no-pager")
        m = re.search(r"Overall exposure level for wick\.service:\s*([0-9.]+)\s+(\S+)", out)
        if not m:
            raise VmError(f"no exposure level in systemd-analyze's output: {out[-500:]}")
        exposure = float(m.group(1))
        if exposure > SECURITY_LIMIT:
            raise VmError(f"systemd-analyze security rates wick.service {exposure} {m.group(2)}; at most {SECURITY_LIMIT} wanted:\n{out}")
        root_writable = a.run(f"nsenter -t {pid} -m sh -c 'touch /usr/.wick-test' 2>&1")[0] == 0
        if root_writable:
            raise VmError("wick could write /usr")
        return {"user": user, "groups": groups, "security_exposure": exposure, "security_rating": m.group(2),
                "network_namespace": "private", "listening_inet_sockets": 0}

    def transcribe(self, wav: bytes, name: str) -> str:
        """What Whisper hears in a recording from the VM's speaker: wick on this machine, with
        the same test models (native speed; the VM's own CPU is emulated)."""
        path = self.report_path.parent / f"{name}.wav"
        path.write_bytes(wav)
        out = subprocess.run([str(self.wick), "--models-dir", str(self.models), "transcribe", "--json", str(path)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise VmError(f"wick transcribe {path}: {out.stderr.strip()}")
        return json.loads(out.stdout.strip().splitlines()[-1]).get("text", "")

    def ask(self, how: str, name: str | None = None) -> dict:
        name = name or f"ask-{how}"
        answer = self.app.ask(CLIP_IN_VM, how, ASK_TIMEOUT)
        r = answer.record
        if r.get("outcome") != "answered":
            raise VmError(f"the turn was not answered: {json.dumps(r)}")
        heard = self.transcribe(answer.wav, name)
        shared = sorted(words(heard) & words(r.get("reply", "")))
        if not shared:
            raise VmError(f"the speaker's recording ({heard!r}) shares no word with the reply ({r.get('reply')!r})")
        return {
            "transcript": r.get("transcript"),
            "reply": r.get("reply"),
            "heard_from_speaker": heard,
            "shared_words": len(shared),
            "release_to_first_audio_s": answer.release_to_first_audio_s,
            "release_to_done_s": answer.release_to_done_s,
        }

    def ask_evdev(self) -> dict:
        # reboot-persists left `button = "evdev"` in /data/wick/wick.toml: the virtual keyboard's
        # key is the button now.
        if "evdev" not in self.vm.agent.check("cat /data/wick/wick.toml"):
            raise VmError("the override file from reboot-persists is not there")
        return self.ask("evdev")

    def barge_in(self) -> dict:
        a = self.app
        a.wait_state("idle", 120)
        cursor = a.cursor()
        a.start_recording("/tmp/barge.wav")
        a.press("socket")
        a.play(CLIP_IN_VM)
        time.sleep(0.2)
        a.release("socket")
        a.wait_state("speaking", ASK_TIMEOUT)
        time.sleep(1.0)
        pressed = time.monotonic()
        a.press("gpio")
        a.wait_state("listening", 30)
        to_listening = time.monotonic() - pressed
        # Held long enough to be a question, with nothing said: the next turn hears nothing.
        time.sleep(1.5)
        a.release("gpio")
        deadline = time.monotonic() + ASK_TIMEOUT
        turns = []
        while time.monotonic() < deadline:
            turns = a.turns_after(cursor)
            if len(turns) >= 2:
                break
            time.sleep(2)
        a.stop_recording()
        if not turns or turns[0].get("outcome") != "cancelled" or turns[0].get("cancelled_by") != "barge-in":
            raise VmError(f"the spoken answer was not cut by the press: {turns}")
        if turns[0].get("first_sample_played_s") is None:
            raise VmError(f"the press came before the answer was heard: {turns[0]}")
        if not words(turns[0].get("transcript") or ""):
            raise VmError(f"the question asked through the socket was not heard: {turns[0]}")
        return {"socket_turn_transcript": turns[0].get("transcript"), "press_to_listening_s": round(to_listening, 2),
                "release_to_first_sample_s": turns[0].get("first_sample_played_s"),
                "cut_reply": turns[0].get("reply"),
                "next_turn": turns[1].get("outcome") if len(turns) > 1 else None}

    def unplug(self) -> dict:
        a = self.vm.agent
        # Unbinding the driver is what a USB unplug does to an open card. The kernel frees the
        # card only once every process has closed it (until then the write below waits, so it
        # runs in the background); then the module goes and comes back, and udev names the
        # new card again.
        a.check("rm -f /tmp/unbind.done; (echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/unbind;"
                " touch /tmp/unbind.done) >/dev/null 2>&1 &")
        start = time.monotonic()
        status: dict = {}
        while time.monotonic() - start < 60:
            status = self.app.status()
            if status.get("capture", {}).get("state") == "unavailable":
                break
            time.sleep(1)
        else:
            raise VmError(f"60 s after the card went, the status does not say the microphone is unavailable: {status}")
        unavailable_s = time.monotonic() - start
        while a.run("test -e /tmp/unbind.done")[0] != 0:
            if time.monotonic() - start > 60:
                holders = a.check("for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | grep -q /dev/snd/ &&"
                                  " echo \"${p#/proc/} $(cat $p/comm)\"; done; true")
                raise VmError(f"the unplugged card was not let go of within 60 s; /dev/snd is open in: {holders}")
            time.sleep(1)
        freed_s = time.monotonic() - start
        a.check("modprobe -r snd-aloop && modprobe snd-aloop")
        back = time.monotonic()
        fig = self.ask("gpio", "unplug")
        fig.update(unplug_to_unavailable_s=round(unavailable_s, 1), unplug_to_card_freed_s=round(freed_s, 1),
                   status_unplugged=status, replugged_to_answer_s=round(time.monotonic() - back, 1))
        return fig

    def crash(self) -> dict:
        """wick killed outright: systemd starts it again, to READY (models loaded, sound devices
        open); ask-evdev asks a wick started afresh."""
        pid = self.app.main_pid()
        self.vm.agent.check(f"kill -9 {pid}")
        waited = self.app.wait_ready(READY_TIMEOUT, not_pid=pid)
        return {"restart_to_ready_s": round(waited, 1), "killed_pid": pid, "new_pid": self.app.main_pid()}

    def hang(self) -> dict:
        pid = self.app.main_pid()
        self.vm.agent.check(f"kill -STOP {pid}")
        waited = self.app.wait_ready(READY_TIMEOUT, not_pid=pid)
        # systemd's own words for a restart by the watchdog (wick's log also says "watchdog"
        # when it starts, which proves nothing).
        log = self.vm.agent.check("journalctl -u wick --no-pager -o cat | grep -E \"Watchdog timeout|result 'watchdog'\" | tail -3")
        if "result 'watchdog'" not in log:
            raise VmError(f"wick was restarted, but not by the watchdog: {self.app.journal()}")
        return {"stop_to_ready_s": round(waited, 1), "watchdog_s": WATCHDOG_S, "journal": log.strip().splitlines()[-1]}

    def reboot_persists(self) -> dict:
        """A setting on /data survives a reboot and takes effect; the root stays read-only.
        The setting switches the button to the virtual keyboard, which ask-evdev then uses."""
        a = self.vm.agent
        a.check("printf '# written by the VM test\\n[input]\\nbutton = \"evdev\"\\n' > /data/wick/wick.toml"
                " && chown wick:wick /data/wick/wick.toml")
        boot_id = a.check("cat /proc/sys/kernel/random/boot_id").strip()
        rc, out = a.run("touch /etc/wick/x")
        if rc == 0 or "Read-only" not in out:
            raise VmError(f"the root filesystem could be written: {out}")
        # From a transient unit two seconds on: the answer comes back first, and the shell this
        # runs in (stopped on the way down) takes nothing with it.
        a.check("systemd-run --quiet --on-active=2 systemctl reboot")
        a.close()
        rebooted = time.monotonic()
        # Until the old system is down its shell may still answer: wait for a new boot id.
        while True:
            if time.monotonic() - rebooted > BOOT_TIMEOUT:
                raise VmError(f"the VM did not come back within {BOOT_TIMEOUT} s of `systemctl reboot`")
            time.sleep(5)
            self.vm.wait_agent(BOOT_TIMEOUT)
            try:
                if a.check("cat /proc/sys/kernel/random/boot_id").strip() != boot_id:
                    break
            except (TimeoutError, ConnectionError, VmError):
                a.close()
        self.app.wait_ready(READY_TIMEOUT)
        reboot_to_ready = time.monotonic() - rebooted
        # /tmp is a tmpfs: the question goes there again for the scenarios after this one.
        a.upload(self.clip.read_bytes(), CLIP_IN_VM)
        kept = a.check("cat /data/wick/wick.toml")
        if 'button = "evdev"' not in kept:
            raise VmError(f"/data/wick/wick.toml did not survive: {kept}")
        doctor = a.run("wick doctor", timeout=DOCTOR_TIMEOUT)[1]
        if "/data/wick/wick.toml" not in doctor:
            raise VmError(f"wick doctor does not read the kept settings: {doctor}")
        opened = a.check("journalctl -b -u wick -o cat --no-pager | grep -i 'QEMU Virtio Keyboard' || true").strip()
        boots = int(a.check("journalctl --list-boots --no-pager -q | wc -l").strip())
        if boots < 2:
            raise VmError(f"the journal of the boot before is gone ({boots} boot listed)")
        if a.run("touch /usr/bin/x")[0] == 0:
            raise VmError("the root filesystem could be written after the reboot")
        root = a.check("findmnt -n -o OPTIONS /").strip()
        return {"reboot_to_ready_s": round(reboot_to_ready, 1), "journal_boots": boots, "root_mount": root.split(",")[0],
                "setting_kept": True, "button_log": opened.splitlines()[-1] if opened else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path)
    p.add_argument("clip", type=Path)
    p.add_argument("report", type=Path)
    p.add_argument("--wick", type=Path, required=True, help="wick on this machine, to transcribe the speaker's recordings")
    p.add_argument("--models", type=Path, required=True, help="its models directory (the test set)")
    p.add_argument("--rundir", type=Path, default=Path("target/vm-test/run"))
    p.add_argument("--kvm", action="store_true", help="use KVM (faster; CI has none and uses TCG)")
    p.add_argument("--only", help="comma-separated scenario names (boot always runs)")
    args = p.parse_args()
    for f in (args.image, args.clip):
        if not f.is_file():
            print(f"vmtest: {f} is missing", file=sys.stderr)
            return 1
    vm = Vm(args.image, args.rundir, kvm=args.kvm)
    s = Scenarios(vm, args.clip, args.report, args.wick.resolve(), args.models.resolve())
    scenarios = [
        ("boot", s.boot),
        ("unprivileged", s.unprivileged),
        ("ask-gpio", lambda: s.ask("gpio")),
        ("barge-in", s.barge_in),
        ("unplug", s.unplug),
        ("crash", s.crash),
        ("hang", s.hang),
        # Leaves the button on the virtual keyboard for ask-evdev, which must come after it.
        ("reboot-persists", s.reboot_persists),
        ("ask-evdev", s.ask_evdev),
    ]
    only = set(args.only.split(",")) if args.only else None
    try:
        for name, fn in scenarios:
            if only is None or name == "boot" or name in only:
                s.record(name, fn)
                if name == "boot" and not s.report.results[-1]["passed"]:
                    break
    finally:
        vm.stop()
    failed = s.report.failed()
    print(f"vm-test: {len(s.report.results) - len(failed)} of {len(s.report.results)} scenarios passed; report: {args.report}")
    if failed:
        print(f"vm-test: failed: {', '.join(failed)} (console: {args.rundir}/console.log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
