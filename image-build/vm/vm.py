"""One virtual machine running the twin image under QEMU (q35, OVMF, TCG), or the Jetson's arm64
root with Debian's kernel (`virt`, direct kernel boot), and the ways a test reaches into it:

- the agent: a root shell on the virtio serial port org.wick.vmtest, which the twin image
  starts only when that port exists (board/qemu-amd64: wick-vmtest-agent.service);
- QMP: QEMU's own control socket, for the virtual keyboard's keys, resets and power-off;
- the serial console, written to console.log in the run directory.

All three are Unix sockets or files in the run directory: nothing leaves this machine, and
the VM has no network device at all.
"""

from __future__ import annotations

import base64
import gzip
import json
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

OVMF_DIRS = [Path("/usr/share/OVMF"), Path("/usr/share/ovmf")]


class VmError(Exception):
    pass


@dataclass
class Kernel:
    """What QEMU boots directly, without firmware: the arm64 test disk's Debian kernel."""
    image: Path
    initrd: Path
    cmdline: str


def find_ovmf() -> tuple[Path, Path]:
    for d in OVMF_DIRS:
        code, vars_ = d / "OVMF_CODE_4M.fd", d / "OVMF_VARS_4M.fd"
        if code.is_file() and vars_.is_file():
            return code, vars_
    raise VmError("OVMF firmware not found in /usr/share/OVMF: apt-get install ovmf")


class Agent:
    """The root shell on the VM's test port, one command at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.sock: socket.socket | None = None
        self.buf = b""

    def connect(self, timeout: float = 30.0) -> None:
        """Connects and waits until the shell answers: after the previous client left, the
        guest's shell sees the port close and is started again, and what is sent meanwhile
        may be lost, so a greeting is repeated until one comes back."""
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.path))
        self.sock = s
        self.buf = b""
        tag = uuid.uuid4().hex[:12]
        deadline = time.monotonic() + timeout
        while True:
            s.sendall(f"echo @@hello-{tag}@@\n".encode())
            try:
                self._read_until(f"@@hello-{tag}@@".encode(), min(deadline, time.monotonic() + 1.0))
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.close()
                    raise TimeoutError(f"the VM's test agent did not answer on {self.path} within {timeout:.0f} s")
        # The greeting may have been echoed more than once: drop what is buffered so far.
        time.sleep(0.2)
        s.settimeout(0.2)
        try:
            while s.recv(65536):
                pass
        except socket.timeout:
            pass
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        assert self.sock is not None
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError("the VM's test port closed")
            self.buf += chunk
        i = self.buf.index(marker)
        out, self.buf = self.buf[:i], self.buf[i + len(marker):]
        return out

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        """Runs one shell command line as root in the VM; returns its exit status and output."""
        if self.sock is None:
            self.connect()
        tag = uuid.uuid4().hex[:12]
        line = f"( {command} ) </dev/null 2>&1; echo \"@@{tag} $?@@\"\n"
        self.sock.sendall(line.encode())
        deadline = time.monotonic() + timeout
        try:
            out = self._read_until(f"@@{tag} ".encode(), deadline)
            rc = self._read_until(b"@@", deadline)
        except TimeoutError:
            # The shell is still busy with the command: a fresh connection gets a fresh shell.
            self.close()
            raise TimeoutError(f"no answer within {timeout:.0f} s to: {command}")
        return int(rc), out.decode(errors="replace")

    def check(self, command: str, timeout: float = 60.0) -> str:
        rc, out = self.run(command, timeout)
        if rc != 0:
            raise VmError(f"in the VM, `{command}` exited {rc}: {out.strip()[-2000:]}")
        return out

    def upload(self, data: bytes, path: str, timeout: float = 120.0) -> None:
        """Writes `data` to `path` in the VM (base64 through the shell)."""
        if self.sock is None:
            self.connect()
        tag = uuid.uuid4().hex[:12]
        text = base64.encodebytes(data).decode()
        self.sock.sendall(f"base64 -d > {path} <<'@@{tag}'\n{text}@@{tag}\necho \"@@{tag} $?@@\"\n".encode())
        deadline = time.monotonic() + timeout
        self._read_until(f"@@{tag} ".encode(), deadline)
        rc = int(self._read_until(b"@@", deadline))
        if rc != 0:
            raise VmError(f"writing {path} in the VM failed ({rc})")

    def download(self, path: str, timeout: float = 300.0) -> bytes:
        """Reads `path` from the VM, gzipped on the way: a recording of the speaker is minutes
        of mostly silence, which the emulated CPU compresses faster than it encodes."""
        return gzip.decompress(base64.b64decode(self.check(f"gzip -1 -c {path} | base64 -w0", timeout)))


class Qmp:
    """QEMU's machine protocol: JSON commands, one answer each (events are skipped)."""

    def __init__(self, path: Path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        s.settimeout(30)
        self.file = s.makefile("rw")
        self.sock = s
        json.loads(self.file.readline())  # greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments) -> dict:
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("QMP closed")
            reply = json.loads(line)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise VmError(f"QMP {name}: {reply['error']}")

    def key(self, qcode: str, down: bool) -> None:
        self.command("input-send-event", events=[{"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}])

    def close(self) -> None:
        self.sock.close()


class Vm:
    """The twin image booted from a copy-on-write overlay in `rundir`, so each run starts from
    the image as built and the image itself is never written."""

    def __init__(self, image: Path, rundir: Path, memory_mib: int = 3072, cpus: int = 2, kvm: bool = False,
                 media: Path | None = None, http_cmd: list[str] | None = None, kernel: Kernel | None = None):
        """`media`: a raw disk image attached read-only as a second disk (a USB stick of update
        bundles, /dev/vdb in the guest). `http_cmd`: a user-mode network with no way out
        (restrict=on) whose only reachable address, 10.0.2.100:80, runs this command on the host
        for each TCP connection, talking over its stdin and stdout (QEMU's guestfwd): a server
        that the guest reaches without any socket listening on the host. `kernel`: an arm64 disk
        booted by QEMU's `virt` machine straight into this kernel (no firmware, no bootloader)."""
        self.kernel = kernel
        self.media = media.resolve() if media else None
        self.http_cmd = http_cmd
        self.image = image.resolve()
        self.rundir = rundir.resolve()
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.kvm = kvm
        self.proc: subprocess.Popen | None = None
        self.agent = Agent(self.rundir / "agent.sock")
        self.qmp: Qmp | None = None
        self.started_at = 0.0

    def fresh_disk(self) -> None:
        """A new overlay over the image, and fresh firmware variables."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        overlay = self.rundir / "disk.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image), str(overlay)], check=True)
        if self.kernel is None:
            _, vars_ = find_ovmf()
            shutil.copyfile(vars_, self.rundir / "OVMF_VARS.fd")

    def start(self, detach: bool = False) -> None:
        """Powers on. `detach`: QEMU runs in a session of its own and outlives this process."""
        machine = self._arm64_machine() if self.kernel else self._amd64_machine()
        if shutil.which(machine[0]) is None:
            raise VmError(f"{machine[0]} is missing: apt-get install {'qemu-system-arm' if self.kernel else 'qemu-system-x86'}")
        if not (self.rundir / "disk.qcow2").exists():
            self.fresh_disk()
        for s in ("agent.sock", "qmp.sock"):
            (self.rundir / s).unlink(missing_ok=True)
        cmd = [
            *machine, "-smp", str(self.cpus), "-m", str(self.memory_mib),
            "-drive", f"if=virtio,format=qcow2,file={self.rundir / 'disk.qcow2'}",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={self.rundir / 'agent.sock'},server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=org.wick.vmtest",
            "-device", "virtio-keyboard-pci",
            "-qmp", f"unix:{self.rundir / 'qmp.sock'},server=on,wait=off",
            "-serial", f"file:{self.rundir / 'console.log'}",
            "-display", "none", "-monitor", "none", "-no-user-config",
        ]
        if self.media is not None:
            cmd += ["-drive", f"if=virtio,format=raw,readonly=on,file={self.media}"]
        if self.http_cmd:
            # QEMU splits -nic options at commas; a command is passed as one word without any.
            words = " ".join(shlex.quote(w) for w in self.http_cmd)
            if "," in words:
                raise VmError(f"the HTTP command may not contain a comma: {words}")
            cmd += ["-nic", f"user,model=virtio-net-pci,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:{words}"]
        else:
            cmd += ["-nic", "none"]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.rundir / "qemu.log", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=detach)
        deadline = time.monotonic() + 30
        while not (self.rundir / "qmp.sock").exists():
            if self.proc.poll() is not None:
                raise VmError(f"QEMU exited at once ({self.proc.returncode}); see {self.rundir / 'qemu.log'}")
            if time.monotonic() > deadline:
                raise VmError("QEMU did not open its QMP socket within 30 s")
            time.sleep(0.1)
        self.qmp = Qmp(self.rundir / "qmp.sock")

    def _amd64_machine(self) -> list[str]:
        code, _ = find_ovmf()
        # Under TCG the CPU has SSE4.2 and no AVX: QEMU emulates AVX's 256-bit float operations
        # and FMA lane by lane in soft float. Measured with qemu-x86_64 on the same machine,
        # a float dot product runs 1200 times slower than native with FMA and 40 times with
        # SSE, and `wick bench stt` of a dev clip takes 28 s with this model against 242 s with
        # `-cpu max` (0.24 s native); wick's kernels pick their SSE paths at run time.
        accel = ["-accel", "kvm", "-cpu", "host"] if self.kvm else ["-accel", "tcg,thread=multi", "-cpu", "Nehalem"]
        return ["qemu-system-x86_64", "-machine", "q35", *accel,
                "-drive", f"if=pflash,format=raw,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,file={self.rundir / 'OVMF_VARS.fd'}"]

    def _arm64_machine(self) -> list[str]:
        assert self.kernel is not None
        # `max` has the Orin's NEON and dot product instructions, which the Jetson build of wick
        # is compiled for; QEMU's own pointer-authentication algorithm instead of the
        # architected one (pauth-impdef) saves the time TCG spends on every signed return.
        return ["qemu-system-aarch64", "-machine", "virt", "-accel", "tcg,thread=multi",
                "-cpu", "max,pauth-impdef=on", "-kernel", str(self.kernel.image),
                "-initrd", str(self.kernel.initrd), "-append", self.kernel.cmdline]

    def wait_agent(self, timeout: float) -> float:
        """Waits until the agent answers; returns seconds since power-on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise VmError(f"QEMU exited ({self.proc.returncode}); see {self.rundir}/console.log")
            try:
                self.agent.connect(timeout=5)
                rc, out = self.agent.run("echo alive", timeout=3)
                if rc == 0 and "alive" in out:
                    return time.monotonic() - self.started_at
            except (OSError, TimeoutError, ConnectionError, ValueError):
                pass
            time.sleep(1)
        raise VmError(f"the VM's test agent did not answer within {timeout:.0f} s; see {self.rundir}/console.log")

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = (self.rundir / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def request_poweroff(self) -> None:
        """Asks the guest to power off: the agent's shell asks systemd, from a transient unit a
        second on so that the answer comes back first; ACPI's power button (which the twin's
        logind acts on) is the fallback when the agent does not answer."""
        try:
            self.agent.check("systemd-run --quiet --on-active=1 systemctl poweroff", timeout=30)
        except (OSError, TimeoutError, VmError):
            if self.qmp is not None:
                self.qmp.command("system_powerdown")

    def stop(self, timeout: float = 120.0) -> None:
        """Powers off cleanly, and pulls the plug if it does not go in time."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.request_poweroff()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired, VmError, ConnectionError):
            self.kill()
        self._closed()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._closed()

    def _closed(self) -> None:
        self.agent.close()
        if self.qmp is not None:
            try:
                self.qmp.close()
            except OSError:
                pass
            self.qmp = None
        self.proc = None
