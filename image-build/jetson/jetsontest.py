#!/usr/bin/env python3
"""make jetson-test: what can be checked of the Jetson image without a Jetson.

- boot: the Jetson's arm64 root (wick's aarch64 build, its units, RAUC, the board's files;
  Debian's arm64 kernel in place of L4T's) boots in qemu-system-aarch64 (`virt`, TCG) to the
  multi-user target, where wick runs `wick doctor` on the CPU and answers a dev clip.
- bsp, flash, inputs: `make image-jetson` and `image-build/jetson/flash` against a stand-in BSP
  tree (standin_bsp.py: NVIDIA's layout and script names, each script recording its arguments,
  environment and the rootfs it was handed): what runs with which arguments, and every input
  error's message.
- bundle: a RAUC bundle of the Jetson root, checked by `rauc info` against the image's keyring,
  with the Jetson's `compatible`.
- sample: the fallback base, `make image-jetson SAMPLE_ROOTFS=...` with a stand-in of NVIDIA's
  Ubuntu sample root (standin_sample.sh: another distribution's release with an older C
  library): wick's packages installed with the root's apt, Debian's RAUC running on it with its
  own libraries and checking the Jetson bundle, every L4T package applied as NVIDIA does, and
  NVIDIA's first-boot wizard kept out.

Writes REPORT (one entry per scenario: name, passed, figures or error, seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "vm"))

import standin_bsp  # noqa: E402
from appliance import words  # noqa: E402
from report import Report  # noqa: E402
from vm import Kernel, Vm, VmError  # noqa: E402

# bsp makes the tree flash, inputs and bundle use; boot is independent.
SCENARIOS = ["boot", "bsp", "flash", "inputs", "bundle", "sample"]
JETSON_COMPATIBLE = "wick-jetson-orin-nx-devkit"
# The packages l4t-packages.txt keeps, of those the stand-in BSP has.
PACKAGE_NAMES = list(standin_bsp.PACKAGES)
KEPT = sorted(line.split()[1] for line in (HERE / "l4t-packages.txt").read_text().splitlines()
              if line.startswith("keep "))
# What image-build/jetson/flash runs, after `cd Linux_for_Tegra` (the board's arguments last).
FLASH_ARGS = ["--external-device", "nvme0n1p1", "-c", "tools/kernel_flash/wick_t234_nvme_rootfs_ab.xml", "-S", "8GiB",
              "-p", "-c bootloader/generic/cfg/flash_t234_qspi.xml", "--showlogs", "--network", "usb0",
              "jetson-orin-nano-devkit", "external"]
# What the twin's wick.toml sets for emulation, in the Jetson VM's /data/wick/wick.toml.
EMULATION_SETTINGS = """# written by make jetson-test: settings for emulation (board/qemu-amd64/wick.toml says why)
[stt]
encoder_span = "speech"
temperatures = [0.0]

[llm]
system = "Answer in one short sentence."
max_tokens = 8

[runtime]
stage_stall_s = 400.0
"""
# Under TCG an arm64 boot of this root takes minutes; wick's first answer, several more.
BOOT_TIMEOUT = 900
ASK_TIMEOUT = 1800


def reference_transcript(clip: Path) -> str:
    with open(clip.parent / "manifest.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["file"] == clip.name:
                return row["transcript"]
    raise VmError(f"{clip.name} is not in {clip.parent / 'manifest.tsv'}")


def run(cmd: list[str], env: dict | None = None, timeout: float = 3600) -> tuple[int, str]:
    """A command from the repository's root; its exit status and its output (both streams)."""
    r = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return r.returncode, r.stdout


def calls(l4t: Path) -> list[dict]:
    log = l4t / "standin-calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def standin(out: Path, *options: str, tarball: bool = False) -> Path:
    """A stand-in BSP in `out`: the tarball NVIDIA ships, or the unpacked tree."""
    tbz2 = out.parent / f"{out.name}.tbz2"
    cmd = [sys.executable, str(HERE / "standin_bsp.py"), str(out), *options]
    if tarball:
        cmd += ["--tarball", str(tbz2)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return tbz2 if tarball else out / "Linux_for_Tegra"


def fake_usb(where: Path, *products: str) -> Path:
    """A stand-in for /sys/bus/usb/devices holding NVIDIA devices with these product ids."""
    if where.exists():
        subprocess.run(["rm", "-rf", str(where)], check=True)
    where.mkdir(parents=True)
    (where / "usb1").mkdir()
    (where / "usb1" / "idVendor").write_text("1d6b\n")
    (where / "usb1" / "idProduct").write_text("0002\n")
    for i, product in enumerate(products):
        d = where / f"1-{i + 1}"
        d.mkdir()
        (d / "idVendor").write_text("0955\n")
        (d / "idProduct").write_text(product + "\n")
    return where


class JetsonTest:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rundir: Path = args.rundir.resolve()
        self.l4t = REPO / "target" / "jetson" / "Linux_for_Tegra"

    def bsp(self) -> dict:
        """`make image-jetson` with a stand-in BSP tarball: NVIDIA's scripts run on wick's root."""
        work = self.rundir / "bsp"
        cuda = work / "cuda-debs"
        tbz2 = standin(work / "Jetson_Linux_R36.4.3_aarch64", "--cuda-debs", str(cuda), tarball=True)
        start = time.monotonic()
        rc, out = run(["make", "image-jetson", f"BSP={tbz2}", f"CUDA_DEBS={cuda}", "MODELS=none"])
        took = time.monotonic() - start
        if rc != 0:
            raise VmError(f"make image-jetson failed ({rc}):\n{out[-4000:]}")
        log = calls(self.l4t)
        apply = [c for c in log if c["script"] == "apply_binaries.sh"]
        debs = [c for c in log if c["script"] == "nv_tegra/nv-apply-debs.sh" and "installed" in c]
        if len(apply) != 1 or apply[0]["argv"] != [] or Path(apply[0]["cwd"]) != self.l4t or apply[0]["uid"] != 0:
            raise VmError(f"apply_binaries.sh was not run once, as root, from Linux_for_Tegra without arguments: {apply}")
        handed = apply[0]["rootfs"]
        for f in ("usr/bin/wick", "etc/wick/image", "etc/rauc/system.conf", "usr/lib/wick/rauc/bootloader-backend",
                  "usr/lib/systemd/system/wick.service", "usr/lib/systemd/system/wick-health.service"):
            if not handed.get(f):
                raise VmError(f"the root handed to apply_binaries.sh has no {f}: {handed}")
        if len(debs) != 1 or sorted(debs[0]["installed"]) != KEPT:
            raise VmError(f"nv-apply-debs.sh installed {debs[0]['installed'] if debs else None}, expected {KEPT}")
        rootfs = self.l4t / "rootfs"
        for f in ("etc/nv_tegra_release", "boot/Image", "usr/sbin/nvbootctrl", "lib/modules/5.15.148-tegra/updates/nvgpu.ko",
                  "usr/local/cuda-12.6/targets/aarch64-linux/lib/libcublas.so.12"):
            if not (rootfs / f).exists():
                raise VmError(f"rootfs/{f} (from the BSP's packages) is missing after apply_binaries.sh")
        if (rootfs / "usr/bin/wick").read_bytes()[18] != 0xB7:
            raise VmError("rootfs/usr/bin/wick is not an aarch64 program")
        append = [line.split() for line in (rootfs / "boot/extlinux/extlinux.conf").read_text().splitlines()
                  if line.strip().startswith("APPEND")]
        if not append or append[0][-1] != "ro":
            raise VmError(f"the boot menu does not mount the root read-only: {append}")
        masked = os.readlink(rootfs / "etc/systemd/system/nv-l4t-bootloader-config.service")
        if masked != "/dev/null":
            raise VmError(f"NVIDIA's boot verification is not masked: {masked}")
        status = (rootfs / "var/lib/dpkg/status").read_text()
        shims = [n for n in ("libegl1", "libx11-6", "libasound2", "libglib2.0-0")
                 if f"Package: {n}\nStatus: install ok installed" in status]
        layout = ET.parse(self.l4t / "tools/kernel_flash/wick_t234_nvme_rootfs_ab.xml")
        names = [p.get("name") for p in layout.iter("partition")]
        data = next(p for p in layout.iter("partition") if p.get("name") == "data")
        if names.index("data") != names.index("APP_b") + 1 or data.findtext("filename").strip() != "wick-data.img":
            raise VmError(f"the NVMe layout's partitions: {names}")
        image = (self.l4t / "bootloader/wick-data.img").read_bytes()[1080:1082]
        if image != b"\x53\xef":
            raise VmError("bootloader/wick-data.img is not an ext4 file system")
        skipped = sorted(p.name.split("_")[0] for p in (self.l4t / "wick-skipped-debs").glob("*.deb"))
        return {"make_s": round(took, 1), "kept": len(KEPT), "skipped": skipped, "empty_packages_installed": shims,
                "partitions": names, "report": (self.l4t.parent / "bsp-report.txt").read_text().splitlines()[:4]}

    def flash(self) -> dict:
        """The flash wrapper on the tree `bsp` made: --no-flash, then a board in recovery mode."""
        if not (self.l4t / "rootfs/etc/nv_tegra_release").exists():
            raise VmError("no prepared tree: the bsp scenario makes it")
        before = len(calls(self.l4t))
        rc, out = run(["image-build/jetson/flash", "--no-flash"])
        if rc != 0:
            raise VmError(f"flash --no-flash failed ({rc}):\n{out}")
        new = [c for c in calls(self.l4t)[before:] if c["script"] == "tools/kernel_flash/l4t_initrd_flash.sh"]
        want = ["--no-flash", "--massflash", "1", *FLASH_ARGS]
        env = {"ROOTFS_AB": "1", "ROOTFS_RETRY_COUNT_MAX": "3", "BOARDID": "3767", "FAB": "300", "BOARDSKU": "0000",
               "BOARDREV": ""}
        if len(new) != 1 or new[0]["argv"] != want or new[0]["env"] != env or Path(new[0]["cwd"]) != self.l4t:
            raise VmError(f"flash --no-flash ran {new}; expected argv {want} and env {env} in {self.l4t}")
        if not new[0]["rootfs"]["usr/bin/wick"]:
            raise VmError("the rootfs handed to the flash has no wick")
        mfi = self.l4t / "mfi_jetson-orin-nano-devkit.tar.gz"
        if not mfi.exists() or str(mfi) not in out:
            raise VmError(f"no massflash package reported: {out}")
        before = len(calls(self.l4t))
        usb = fake_usb(self.rundir / "flash" / "usb", "7323")
        rc, out = run(["image-build/jetson/flash", "--retry-count", "2"], env={"WICK_USB_DEVICES": str(usb)})
        if rc != 0:
            raise VmError(f"flash with a board in recovery mode failed ({rc}):\n{out}")
        new = [c for c in calls(self.l4t)[before:] if c["script"] == "tools/kernel_flash/l4t_initrd_flash.sh"]
        if len(new) != 1 or new[0]["argv"] != FLASH_ARGS or new[0]["env"] != {"ROOTFS_AB": "1", "ROOTFS_RETRY_COUNT_MAX": "2"}:
            raise VmError(f"flash ran {new}; expected argv {FLASH_ARGS}")
        return {"no_flash_argv": want, "no_flash_env": env, "flash_argv": FLASH_ARGS, "massflash_package": mfi.name}

    def inputs(self) -> dict:
        """Every input error of bsp.sh, make image-jetson and flash gives its message, and nothing runs."""
        work = self.rundir / "inputs"
        root = REPO / "target" / "jetson" / "root"
        data = REPO / "target" / "jetson" / "data.img"
        if not (root / "etc/wick/image").exists():
            raise VmError("no Jetson root: the bsp scenario makes it")
        usb = work / "usb"
        out_dir = work / "out"
        r35 = standin(work / "r35", "--release", "35.6.0", tarball=True)
        standin(work / "r36", tarball=True)
        cases = [
            ("bsp: no BSP", ["image-build/jetson/bsp.sh", str(work / "nothing.tbz2"), str(root), str(data), str(out_dir)],
             {}, "does not exist: download Jetson Linux R36"),
            ("bsp: not a tarball", ["image-build/jetson/bsp.sh", str(HERE / "l4t-deps.txt"), str(root), str(data), str(out_dir)],
             {}, "could not be unpacked"),
            ("bsp: R35", ["image-build/jetson/bsp.sh", str(r35), str(root), str(data), str(out_dir)],
             {}, "is L4T R35.6.0; wick's Jetson image needs L4T R36"),
            ("bsp: incomplete", ["image-build/jetson/bsp.sh",
                                 str(standin(work / "incomplete", "--without", "tools/kernel_flash/l4t_initrd_flash.sh")),
                                 str(root), str(data), str(out_dir)], {}, "has no tools/kernel_flash/l4t_initrd_flash.sh"),
            ("bsp: unknown package", ["image-build/jetson/bsp.sh",
                                      str(standin(work / "new", "--extra-deb", "nvidia-l4t-brand-new")),
                                      str(root), str(data), str(out_dir)], {}, "nvidia-l4t-brand-new (nv_tegra/l4t_deb_packages/"),
            ("bsp: unmet dependency", ["image-build/jetson/bsp.sh",
                                       str(standin(work / "dep", "--add-depends", "nvidia-l4t-cuda:libfoo9 (>= 2)")),
                                       str(root), str(data), str(out_dir)], {}, "nvidia-l4t-cuda needs libfoo9 (>= 2)"),
            ("bsp: not the Jetson's root", ["image-build/jetson/bsp.sh", str(work / "r35.tbz2"), str(work), str(data),
                                            str(out_dir)], {}, "is not a root made by image-build/layer.sh"),
            ("bsp: CUDA packages missing", ["image-build/jetson/bsp.sh", "--cuda-debs", str(work), str(r35), str(root),
                                            str(data), str(out_dir)], {}, "has no libcublas-12-*.deb and libcurand-12-*.deb"),
            ("bsp: sample root of another release", ["image-build/jetson/bsp.sh", str(r35.parent / "r36.tbz2"),
                                                     str(self.fake_root(work / "r36.3-root", "R36.3.0")), str(data),
                                                     str(out_dir)], {},
             "the root's base is NVIDIA's sample root of R36.3.0, the BSP is R36.4.3"),
            ("sample: not a root", ["image-build/jetson/sample-base.sh", str(r35), str(data), str(work / "s.tar")], {},
             "is not a Debian-family root file system"),
            ("sample: no sample root", ["image-build/jetson/sample-base.sh", str(work / "none.tbz2"), str(data),
                                        str(work / "s.tar")], {}, "download Tegra_Linux_Sample-Root-Filesystem_R36"),
            ("make: no sample root", ["make", "image-jetson", f"BSP={r35}", f"SAMPLE_ROOTFS={work / 'none.tbz2'}"], {},
             "does not exist (NVIDIA's Tegra_Linux_Sample-Root-Filesystem"),
            ("make: no BSP", ["make", "image-jetson"], {}, "usage: make image-jetson BSP="),
            ("flash: no tree", ["image-build/jetson/flash", "--l4t", str(work / "none")], {}, "no prepared BSP at"),
            ("flash: BSP not applied", ["image-build/jetson/flash", "--l4t", str(standin(work / "raw"))], {},
             "holds no wick image"),
            ("flash: bad retry count", ["image-build/jetson/flash", "--retry-count", "5"], {}, "must be 1, 2 or 3"),
            ("flash: no board", ["image-build/jetson/flash"], {"WICK_USB_DEVICES": str(fake_usb(usb / "none"))},
             "no Jetson Orin NX 16 GB in recovery mode"),
            ("flash: wrong board", ["image-build/jetson/flash"], {"WICK_USB_DEVICES": str(fake_usb(usb / "nx8", "7423"))},
             "an Orin NX 8 GB in recovery mode (0955:7423)"),
            ("flash: board running", ["image-build/jetson/flash"], {"WICK_USB_DEVICES": str(fake_usb(usb / "up", "7020"))},
             "not in recovery mode (0955:7020)"),
            ("flash: two boards", ["image-build/jetson/flash"],
             {"WICK_USB_DEVICES": str(fake_usb(usb / "two", "7323", "7323"))}, "2 Orin NX boards in recovery mode"),
            ("flash: host packages", ["image-build/jetson/flash", "--no-flash"], {"PATH": str(self.path_without("sshpass"))},
             "the host lacks packages NVIDIA's flash tools need: sshpass"),
        ]
        results = {}
        for name, cmd, env, expected in cases:
            before = len(calls(self.l4t))
            rc, out = run(cmd, env=env, timeout=600)
            if rc == 0 or expected not in out:
                raise VmError(f"{name}: exit {rc}, expected a message with {expected!r}:\n{out[-2000:]}")
            if len(calls(self.l4t)) != before:
                raise VmError(f"{name}: NVIDIA's scripts ran despite the error")
            results[name] = next((line for line in out.splitlines() if expected in line), out.strip().splitlines()[-1])
        return {"cases": results}

    @staticmethod
    def fake_root(where: Path, release: str) -> Path:
        """The little of a layered Jetson root bsp.sh reads before the BSP's release, on a sample base."""
        (where / "etc/wick").mkdir(parents=True, exist_ok=True)
        (where / "usr/bin").mkdir(parents=True, exist_ok=True)
        (where / "etc/wick/image").write_text(f"name=jetson-orin-nx-devkit\nversion=test\ncompatible={JETSON_COMPATIBLE}\n")
        (where / "etc/wick/base").write_text(
            f"nvidia-sample-rootfs Tegra_Linux_Sample-Root-Filesystem_{release}_aarch64.tbz2 (Ubuntu 22.04.4 LTS)\n")
        elf = bytearray(64)
        elf[:4], elf[18] = b"\x7fELF", 0xB7
        (where / "usr/bin/wick").write_bytes(bytes(elf))
        return where

    def path_without(self, program: str) -> Path:
        """A PATH directory with every program of this machine's but one."""
        d = self.rundir / "inputs" / f"path-without-{program}"
        if not d.exists():
            d.mkdir(parents=True)
            for src in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
                for f in Path(src).iterdir() if Path(src).is_dir() else []:
                    if f.name != program and not (d / f.name).exists():
                        (d / f.name).symlink_to(f)
        return d

    def bundle(self) -> dict:
        """A RAUC bundle of the BSP-applied root, checked against the image's keyring."""
        rootfs = self.l4t / "rootfs"
        if not (rootfs / "etc/wick/image").exists():
            raise VmError("no prepared tree: the bsp scenario makes it")
        rc, out = run(["make", "bundle-jetson"])
        if rc != 0:
            raise VmError(f"make bundle-jetson failed ({rc}):\n{out[-3000:]}")
        bundles = sorted((REPO / "target" / "bundle").glob("wick-jetson-orin-nx-devkit-*.raucb"), key=lambda p: p.stat().st_mtime)
        if not bundles:
            raise VmError(f"make bundle-jetson made no bundle:\n{out[-2000:]}")
        bundle = bundles[-1]
        info = subprocess.run(["rauc", "info", "--output-format=json", f"--keyring={rootfs / 'etc/rauc/keyring.pem'}",
                               str(bundle)], capture_output=True, text=True)
        if info.returncode != 0:
            raise VmError(f"rauc info refused the bundle with the image's keyring: {info.stderr}")
        meta = json.loads(info.stdout.strip().splitlines()[-1])
        if meta.get("compatible") != JETSON_COMPATIBLE:
            raise VmError(f"the bundle is for {meta.get('compatible')!r}, not {JETSON_COMPATIBLE}")
        image_version = next(line.split("=", 1)[1] for line in (rootfs / "etc/wick/image").read_text().splitlines()
                             if line.startswith("version="))
        if meta.get("version") != image_version or image_version not in bundle.name:
            raise VmError(f"{bundle.name} says version {meta.get('version')!r}; the root is {image_version!r}")
        images = [next(iter(i.values())) if isinstance(i, dict) and len(i) == 1 else i for i in meta.get("images", [])]
        # The JSON of the host's RAUC (bookworm's 1.8) leaves the format out; its text says it.
        text = subprocess.run(["rauc", "info", f"--keyring={rootfs / 'etc/rauc/keyring.pem'}", str(bundle)],
                              capture_output=True, text=True).stdout
        fmt = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Bundle Format:")), None)
        if fmt != "verity":
            raise VmError(f"the bundle's format is {fmt!r}, not verity (which the image's system.conf requires)")
        return {"bundle": bundle.name, "mib": round(bundle.stat().st_size / 2**20, 1), "compatible": meta["compatible"],
                "version": meta.get("version"), "format": fmt, "images": images}

    def sample(self) -> dict:
        """`make image-jetson SAMPLE_ROOTFS=...` on a stand-in of NVIDIA's Ubuntu sample root."""
        sample: Path | None = self.args.standin_sample
        if sample is None or not sample.exists():
            raise VmError(f"no stand-in sample root ({sample}): make jetson-test makes it with image-build/jetson/standin_sample.sh")
        bundles = sorted((REPO / "target" / "bundle").glob("wick-jetson-orin-nx-devkit-*.raucb"), key=lambda p: p.stat().st_mtime)
        if not bundles:
            raise VmError("no Jetson bundle to check with the sample root's RAUC: the bundle scenario makes it")
        work = self.rundir / "sample"
        cuda = work / "cuda-debs"
        tbz2 = standin(work / "Jetson_Linux_R36.4.3_aarch64", "--cuda-debs", str(cuda), tarball=True)
        start = time.monotonic()
        rc, out = run(["make", "image-jetson", f"BSP={tbz2}", f"SAMPLE_ROOTFS={sample}", f"CUDA_DEBS={cuda}", "MODELS=none"])
        took = time.monotonic() - start
        if rc != 0:
            raise VmError(f"make image-jetson SAMPLE_ROOTFS=... failed ({rc}):\n{out[-4000:]}")
        rootfs = self.l4t / "rootfs"
        base = (rootfs / "etc/wick/base").read_text().strip() if (rootfs / "etc/wick/base").exists() else ""
        if sample.name not in base:
            raise VmError(f"the root's etc/wick/base does not name the sample root: {base!r}")
        os_release = dict(line.split("=", 1) for line in (rootfs / "etc/os-release").read_text().splitlines() if "=" in line)
        if os_release.get("ID") == "debian" and os_release.get("VERSION_CODENAME") == "trixie":
            raise VmError("the root is Debian trixie: the sample root was not its base")
        log = calls(self.l4t)
        debs = [c for c in log if c["script"] == "nv_tegra/nv-apply-debs.sh" and "installed" in c]
        every = sorted(n for n in PACKAGE_NAMES if not any(t in n for t in ("igx", "dgpu", "factory")))
        if len(debs) != 1 or sorted(debs[0]["installed"]) != every:
            raise VmError(f"nv-apply-debs.sh installed {debs[0]['installed'] if debs else None}, expected all of {every}")
        if (self.l4t / "wick-skipped-debs").exists() and any((self.l4t / "wick-skipped-debs").iterdir()):
            raise VmError("bsp.sh set packages aside on NVIDIA's own base")
        status = (rootfs / "var/lib/dpkg/status").read_text()
        for pkg in ("alsa-utils", "libespeak-ng1", "nvidia-l4t-oem-config", "libcublas-12-6"):
            if f"Package: {pkg}\nStatus: install ok installed" not in status:
                raise VmError(f"{pkg} is not installed in the sample-based root")
        default = os.readlink(rootfs / "etc/systemd/system/default.target")
        if not default.endswith("/multi-user.target"):
            raise VmError(f"the default target is {default}, not multi-user (NVIDIA's first-boot wizard would wait)")
        masked = {u: os.readlink(rootfs / "etc/systemd/system" / u) for u in ("nv-oem-config.target", "nv-oem-config-gui.service")
                  if (rootfs / "etc/systemd/system" / u).is_symlink()}
        if set(masked) != {"nv-oem-config.target", "nv-oem-config-gui.service"} or set(masked.values()) != {"/dev/null"}:
            raise VmError(f"NVIDIA's first-boot wizard is not masked: {masked}")

        def chroot(*cmd: str) -> str:
            r = subprocess.run(["chroot", str(rootfs), *cmd], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise VmError(f"{' '.join(cmd)} in the sample-based root failed ({r.returncode}): {r.stdout}{r.stderr}")
            return r.stdout.strip()

        rauc = chroot("rauc", "--version")
        wick = chroot("wick", "--version")
        libc = chroot("sh", "-c", "ldd --version | head -1")
        bundle = rootfs / "tmp" / "wick-test.raucb"
        subprocess.run(["cp", "--reflink=auto", str(bundles[-1]), str(bundle)], check=True)
        try:
            info = chroot("rauc", "info", "--output-format=json", "--keyring=/etc/rauc/keyring.pem", "/tmp/wick-test.raucb")
        finally:
            bundle.unlink()
        meta = json.loads(info.splitlines()[-1])
        if meta.get("compatible") != JETSON_COMPATIBLE:
            raise VmError(f"the sample root's RAUC read the bundle as {meta.get('compatible')!r}")
        for f in ("usr/lib/systemd/system/rauc.service", "usr/share/dbus-1/system.d/de.pengutronix.rauc.conf",
                  "usr/share/dbus-1/system-services/de.pengutronix.rauc.service", "etc/rauc/system.conf",
                  "usr/lib/wick/rauc/bootloader-backend"):
            if not (rootfs / f).exists():
                raise VmError(f"the sample-based root has no {f}")
        return {"make_s": round(took, 1), "base": base, "os": os_release.get("PRETTY_NAME", "").strip('"'),
                "c_library": libc, "rauc": rauc, "wick": wick, "bundle_checked": bundles[-1].name,
                "packages_applied": len(every), "default_target": default, "masked": sorted(masked),
                "report": (self.l4t.parent / "bsp-report.txt").read_text().splitlines()[:3]}

    def boot(self) -> dict:
        virt: Path = self.args.virt
        kernel = Kernel(virt / "vmlinuz", virt / "initrd.img", (virt / "cmdline").read_text().strip())
        vm = Vm(virt / "disk.img", self.rundir / "boot", kernel=kernel)
        try:
            vm.fresh_disk()
            vm.start()
            to_agent = vm.wait_agent(BOOT_TIMEOUT)
            a = vm.agent
            # The agent starts early; the multi-user target is what a device reaches.
            deadline = time.monotonic() + BOOT_TIMEOUT
            while a.run("systemctl is-active --quiet multi-user.target")[0] != 0:
                if time.monotonic() > deadline:
                    raise VmError("multi-user.target was not reached:\n" + a.run("systemctl list-jobs --no-pager")[1])
                time.sleep(2)
            to_multi_user = time.monotonic() - vm.started_at
            arch = a.check("uname -m").strip()
            if arch != "aarch64":
                raise VmError(f"the VM runs {arch}, not aarch64")
            root = a.check("findmnt -n -o OPTIONS /").strip().split(",")[0]
            if root != "ro":
                raise VmError(f"the root is mounted {root}, not read-only")
            version = a.check("wick --version").strip()
            image = a.check("cat /etc/wick/image")
            if "compatible=wick-jetson-orin-nx-devkit" not in image:
                raise VmError(f"/etc/wick/image is not the Jetson's:\n{image}")
            failed = a.check("systemctl list-units --failed --plain --no-legend --no-pager | awk '{print $1}'").split()
            # The health gate marks slots through RAUC's Jetson backend, which needs the board's
            # UEFI variables and nvbootctrl: in this VM it fails, and must say why. Nothing else may.
            if set(failed) - {"wick-health.service"}:
                raise VmError(f"units failed at boot: {failed}")
            gate = a.check("journalctl -b -u wick-health -p warning -o cat --no-pager | head -3").strip()

            start = time.monotonic()
            rc, doctor = a.run("wick doctor 2>&1", timeout=600)
            doctor_s = time.monotonic() - start
            # No Tegra GPU, button or USB sound card here: doctor must say so and name the CPU.
            for needle in ("cpu", "tegra234-gpio", "WickUSB"):
                if needle.lower() not in doctor.lower():
                    raise VmError(f"wick doctor does not mention {needle!r}:\n{doctor}")

            # The device's settings are for the Orin; under emulation the CPU is far slower, so
            # the test gives wick the twin's emulation settings in the override file, as a user
            # would edit /data/wick/wick.toml (the twin's wick.toml says why each is needed).
            a.upload(EMULATION_SETTINGS.encode(), "/data/wick/wick.toml")
            clip: Path = self.args.clip
            a.upload(clip.read_bytes(), "/tmp/question.wav")
            start = time.monotonic()
            rc_ask, out = a.run("wick ask --json /tmp/question.wav -o /tmp/answer.wav 2>/tmp/ask.err", timeout=ASK_TIMEOUT)
            ask_s = time.monotonic() - start
            if rc_ask != 0:
                raise VmError(f"wick ask failed ({rc_ask}): {a.run('tail -20 /tmp/ask.err')[1]}")
            record = json.loads(out.strip().splitlines()[-1])
            expected = words(reference_transcript(clip))
            heard = words(record.get("transcript", ""))
            if len(expected & heard) * 2 < len(expected):
                raise VmError(f"heard {record.get('transcript')!r} for {clip.name} (expected {sorted(expected)})")
            if not record.get("reply", "").strip():
                raise VmError(f"no reply: {record}")
            answer_bytes = int(a.check("stat -c %s /tmp/answer.wav").strip())
            if answer_bytes <= 44:
                raise VmError("the spoken answer is empty")
            return {"boot_to_agent_s": round(to_agent, 1), "boot_to_multi_user_s": round(to_multi_user, 1),
                    "kernel": a.check("uname -r").strip(), "root_mount": root, "wick": version,
                    "failed_units": failed, "health_gate": gate.splitlines(), "doctor_exit": rc, "doctor_s": round(doctor_s, 1),
                    "doctor": doctor.strip().splitlines(), "ask_s": round(ask_s, 1),
                    "transcript": record.get("transcript"), "reply": record.get("reply"),
                    "first_audio_s": record.get("first_audio_s"), "answer_wav_bytes": answer_bytes}
        finally:
            vm.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path)
    p.add_argument("--rundir", type=Path, default=Path("target/jetson-test/run"))
    p.add_argument("--virt", type=Path, required=True, help="virt-disk.sh's output directory")
    p.add_argument("--root", type=Path, required=True, help="the layered Jetson root (layer.sh)")
    p.add_argument("--clip", type=Path, required=True, help="a dev clip listed in its manifest.tsv")
    p.add_argument("--standin-sample", type=Path, help="standin_sample.sh's stand-in of NVIDIA's sample root")
    p.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    args = p.parse_args()
    only = args.only.split(",") if args.only else SCENARIOS
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenarios {unknown}; known: {SCENARIOS}")
    t = JetsonTest(args)
    report = Report(args.report, SCENARIOS)
    results = [report.record(name, getattr(t, name)) for name in SCENARIOS if name in only]
    failed = [r["name"] for r in results if not r["passed"]]
    print(f"jetson-test: {len(results) - len(failed)} of {len(results)} scenarios passed; report: {args.report}")
    if failed:
        print(f"jetson-test: failed: {', '.join(failed)} (consoles: {args.rundir}/NAME/console.log)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
