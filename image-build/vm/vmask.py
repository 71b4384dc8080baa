#!/usr/bin/env python3
"""`make vm-ask IN=question.wav OUT=answer.wav`: asks the twin appliance one spoken question.
Boots the twin image in a VM (or reuses the one an earlier vm-ask left running), plays IN
into its microphone while the button is held, writes what its speaker played to OUT, and
prints the turn's JSON record on stdout. Progress goes to stderr. `--stop` powers the VM off.

Usage: vmask.py IMAGE IN.wav OUT.wav [--rundir DIR] [--button gpio|evdev|socket] [--kvm]
       vmask.py IMAGE --stop [--rundir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from appliance import Appliance
from vm import Qmp, Vm, VmError

BOOT_TIMEOUT = 900


def log(msg: str) -> None:
    print(f"vm-ask: {msg}", file=sys.stderr, flush=True)


def running(vm: Vm) -> bool:
    """A VM from an earlier vm-ask is still up: its QMP socket answers."""
    sock = vm.rundir / "qmp.sock"
    if not sock.exists():
        return False
    if vm.qmp is not None:
        # QEMU serves one machine-protocol client at a time.
        vm.qmp.close()
        vm.qmp = None
    try:
        vm.qmp = Qmp(sock)
        return True
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path)
    p.add_argument("input", type=Path, nargs="?")
    p.add_argument("output", type=Path, nargs="?")
    p.add_argument("--rundir", type=Path, default=Path("target/vm-ask"))
    p.add_argument("--button", choices=["gpio", "evdev", "socket"], default="gpio")
    p.add_argument("--kvm", action="store_true", help="use KVM (faster, where the host has it)")
    p.add_argument("--stop", action="store_true", help="power off the VM an earlier vm-ask left running")
    args = p.parse_args()
    vm = Vm(args.image, args.rundir, kvm=args.kvm)
    if args.stop:
        if running(vm):
            vm.request_poweroff()
            # QEMU exits with the guest, and its machine socket goes with it.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and running(vm):
                time.sleep(2)
            if running(vm):
                vm.qmp.command("quit")
                log("the VM did not power off within 120 s: QEMU was stopped")
            else:
                log("the VM is powered off")
        else:
            log("no VM is running")
        return 0
    if args.input is None or args.output is None:
        p.error("IN.wav and OUT.wav are needed (or --stop)")
    if not args.input.is_file():
        log(f"{args.input} is missing")
        return 1
    if not args.image.is_file():
        log(f"{args.image} is missing: make image-amd64")
        return 1
    try:
        if running(vm):
            log(f"reusing the VM running in {args.rundir}")
        else:
            log(f"booting {args.image} (TCG: a few minutes; `make vm-ask-stop` powers it off later)")
            vm.fresh_disk()
            # The VM outlives this command, so the next vm-ask finds it running.
            vm.start(detach=True)
            vm.wait_agent(BOOT_TIMEOUT)
        app = Appliance(vm)
        app.wait_ready(BOOT_TIMEOUT)
        vm.agent.upload(args.input.read_bytes(), "/tmp/vm-ask.wav")
        log(f"asking (button: {args.button})")
        answer = app.ask("/tmp/vm-ask.wav", args.button)
        args.output.write_bytes(answer.wav)
        log(f"the speaker's recording is in {args.output}; wick said: {answer.record.get('reply')!r}")
        print(json.dumps(answer.record))
        return 0
    except (VmError, TimeoutError, OSError) as e:
        log(f"{e}")
        log(f"the VM's console: {args.rundir}/console.log")
        return 1


if __name__ == "__main__":
    sys.exit(main())
