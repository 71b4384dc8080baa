"""The appliance inside the twin VM as a user meets it: its service, its status, its turn
records, and asking it a question by holding a button (simulated GPIO line, virtual keyboard
key, or the control socket) while a clip plays into the loopback microphone, recording what
comes out of the loopback speaker.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from vm import Vm, VmError

# snd-aloop, named WickLoop by udev: what is played into DEV=0 comes out of DEV=1 (same
# subdevice). wick hears subdevice 0 and speaks into subdevice 1 (board/qemu-amd64/asound.conf).
MIC_IN = "plughw:CARD=WickLoop,DEV=0,SUBDEV=0"
SPEAKER_OUT = "hw:CARD=WickLoop,DEV=1,SUBDEV=1"
# The key of the virtual keyboard, as QMP names it (KEY_PAUSE in the guest).
KEY = "pause"


@dataclass
class Answer:
    record: dict
    wav: bytes  # what the speaker played, from before the press to after the turn
    release_to_first_audio_s: float | None
    release_to_done_s: float | None


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) >= 3}


class Appliance:
    def __init__(self, vm: Vm):
        self.vm = vm
        self.agent = vm.agent

    def main_pid(self) -> int:
        return int(self.agent.check("systemctl show -p MainPID --value wick").strip() or 0)

    def active(self) -> bool:
        return self.agent.run("systemctl is-active --quiet wick")[0] == 0

    def wait_ready(self, timeout: float, not_pid: int | None = None) -> float:
        """Waits until wick.service is active (READY=1 sent), by a process other than `not_pid`;
        returns the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if self.active() and (not_pid is None or self.main_pid() not in (0, not_pid)):
                    return time.monotonic() - start
            except (TimeoutError, ConnectionError, VmError):
                self.vm.agent.close()
            time.sleep(1)
        raise VmError(f"wick did not become ready within {timeout:.0f} s:\n" + self.journal(lines=40))

    def journal(self, lines: int = 30) -> str:
        """wick's last journal lines, for an error message: what went wrong with the agent
        itself is said instead, so it does not hide the error being reported."""
        try:
            return self.agent.run(f"journalctl -u wick -n {lines} --no-pager -o short-monotonic")[1]
        except (TimeoutError, ConnectionError, VmError) as e:
            return f"(no journal: {e})"

    def status(self) -> dict:
        rc, out = self.agent.run("wick ctl status", timeout=20)
        if rc != 0:
            raise VmError(f"wick ctl status: {out.strip()}")
        return json.loads(out.strip().splitlines()[-1])

    def wait_state(self, state: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.status()
                if last.get("state") == state:
                    return
            except (VmError, ValueError) as e:
                last = str(e)
            time.sleep(0.5)
        raise VmError(f"wick did not reach state {state!r} within {timeout:.0f} s (last status: {last});"
                      f" wick's journal:\n{self.journal(lines=40)}")

    def cursor(self) -> str:
        out = self.agent.check("journalctl -u wick -n 0 --show-cursor --no-pager")
        m = re.search(r"-- cursor: (\S+)", out)
        if not m:
            raise VmError(f"no journal cursor in: {out}")
        return m.group(1)

    def turns_after(self, cursor: str) -> list[dict]:
        out = self.agent.check(f"journalctl -u wick --after-cursor='{cursor}' -o cat --no-pager")
        turns = []
        for line in out.splitlines():
            if line.startswith('{"turn"'):
                try:
                    turns.append(json.loads(line))
                except ValueError:
                    pass
        return turns

    def wait_turn(self, cursor: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            turns = self.turns_after(cursor)
            if turns:
                return turns[-1]
            time.sleep(2)
        raise VmError(f"no turn record within {timeout:.0f} s:\n" + self.journal(lines=40))

    # ---- the button, three ways ----
    def button(self, how: str, held: bool) -> None:
        """Holds (`held`) or lets go of the button: the simulated GPIO line, the virtual
        keyboard's key (QMP), or the control socket."""
        if how == "gpio":
            self.agent.check(f"/usr/lib/wick/twin-button {'press' if held else 'release'}")
        elif how == "evdev":
            self.vm.qmp.key(KEY, held)
        elif how == "socket":
            self.agent.check(f"wick ctl {'press' if held else 'release'}")
        else:
            raise ValueError(how)

    def press(self, how: str) -> None:
        self.button(how, True)

    def release(self, how: str) -> None:
        self.button(how, False)

    def start_recording(self, path: str = "/tmp/answer.wav") -> None:
        self.agent.check(f"rm -f {path}; arecord -q -D {SPEAKER_OUT} -f S16_LE -r 48000 -c 2 {path} >/tmp/arecord.log 2>&1 & echo $! > /tmp/arecord.pid")

    def stop_recording(self) -> None:
        self.agent.check("kill -INT $(cat /tmp/arecord.pid); while kill -0 $(cat /tmp/arecord.pid) 2>/dev/null; do sleep 0.1; done")

    def play(self, clip: str) -> None:
        self.agent.check(f"aplay -q -D {MIC_IN} {clip}", timeout=120)

    def ask(self, clip: str, how: str, timeout: float = 600) -> Answer:
        """Holds the button `how` while `clip` (a path in the VM) plays into the microphone,
        then waits for the answer and transcribes what the speaker played."""
        self.wait_state("idle", 120)
        cursor = self.cursor()
        self.start_recording()
        self.press(how)
        self.play(clip)
        time.sleep(0.2)
        self.release(how)
        record = self.wait_turn(cursor, timeout)
        time.sleep(0.5)
        self.stop_recording()
        wav = self.agent.download("/tmp/answer.wav")
        return Answer(record, wav, record.get("first_sample_played_s"), record.get("done_s"))
