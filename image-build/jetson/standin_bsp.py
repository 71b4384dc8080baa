#!/usr/bin/env python3
"""A stand-in for NVIDIA's L4T BSP, for testing wick's Jetson image build and flash wrapper
where no BSP can be downloaded (make jetson-test). It has the R36 BSP's layout and script names
(see README: Jetson), and:

- apply_binaries.sh and nv_tegra/nv-apply-debs.sh do what NVIDIA's do to a root in deb mode:
  check the root, copy every .deb of nv_tegra/l4t_deb_packages, kernel, bootloader and tools
  into it, make /dev/random and /dev/urandom with mknod (failing where they exist), and run
  `dpkg -i` in a chroot, nvidia-l4t-core first, without --force-depends;
- the packages are real .deb files made here with dpkg-deb, named as R36's and shaped like them
  (their dependencies are this test's guess at R36's, not copied from NVIDIA's), with small
  payloads (nv_tegra_release, a kernel placeholder, a stand-in nvbootctrl);
- every script records its arguments, environment, working directory and what the root it was
  handed holds in Linux_for_Tegra/standin-calls.jsonl;
- l4t_initrd_flash.sh writes what `--no-flash --massflash` would (mfi_<board>.tar.gz).

Usage: standin_bsp.py OUT_DIR [--release 36.4.3] [--tarball FILE] [--extra-deb NAME[:DEPENDS]]
                       [--add-depends NAME:DEPENDS] [--without PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

# Each script of the stand-in begins with this: it appends one JSON line describing its call.
RECORD = r'''
import json, os, sys
from pathlib import Path
L4T = Path(__file__).resolve().parent
while not (L4T / "nv_tegra").is_dir():
    L4T = L4T.parent
KEYS = ("ROOTFS_AB", "ROOTFS_RETRY_COUNT_MAX", "BOARDID", "FAB", "BOARDSKU", "BOARDREV", "EXTOPTIONS",
        "ADDITIONAL_DTB_OVERLAY_OPT", "EXT_NUM_SECTORS", "LDK_ROOTFS_DIR", "L4T_ROOTFS_DIR")
rootfs = L4T / "rootfs"
WICK_FILES = ("usr/bin/wick", "etc/wick/image", "etc/rauc/system.conf", "usr/lib/wick/rauc/bootloader-backend",
              "usr/lib/systemd/system/wick.service", "usr/lib/systemd/system/wick-health.service",
              "etc/nv_tegra_release", "boot/Image", "usr/sbin/nvbootctrl")
def record(**extra):
    entry = {"script": str(Path(sys.argv[0]).resolve().relative_to(L4T)), "argv": sys.argv[1:],
             "cwd": os.getcwd(), "uid": os.getuid(), "env": {k: os.environ[k] for k in KEYS if k in os.environ},
             "rootfs": {f: (rootfs / f).exists() for f in WICK_FILES}}
    entry.update(extra)
    with open(L4T / "standin-calls.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
'''

APPLY_BINARIES = RECORD + r'''
import shutil, subprocess
record()
if os.getuid() != 0:
    sys.exit("apply_binaries.sh (stand-in): run as root")
if subprocess.run(["dpkg", "-s", "qemu-user-static"], capture_output=True).returncode != 0 and os.uname().machine != "aarch64":
    sys.exit("apply_binaries.sh (stand-in): qemu-user-static is not installed")
if (L4T / "bootloader" / "extlinux.conf").exists():  # NVIDIA's installs its boot menu template
    (rootfs / "boot" / "extlinux").mkdir(parents=True, exist_ok=True)
    shutil.copy(L4T / "bootloader" / "extlinux.conf", rootfs / "boot" / "extlinux" / "extlinux.conf")
# NVIDIA's chooses its first-boot wizard as the default target on a root with a display
# manager (the Ubuntu sample root) that has none set.
default = rootfs / "etc" / "systemd" / "system" / "default.target"
if not default.is_symlink() and not default.exists() and (rootfs / "etc" / "gdm3").is_dir():
    default.parent.mkdir(parents=True, exist_ok=True)
    default.symlink_to("/lib/systemd/system/nv-oem-config.target")
passwd = rootfs / "etc" / "passwd"
if not passwd.is_file() or passwd.stat().st_uid != 0:
    sys.exit(f"apply_binaries.sh (stand-in): {passwd} is missing or not owned by root")
sys.exit(subprocess.run([str(L4T / "nv_tegra" / "nv-apply-debs.sh"), "-r", str(rootfs)]).returncode)
'''

APPLY_DEBS = RECORD + r'''
import shutil, subprocess
record()
root = Path(sys.argv[sys.argv.index("-r") + 1]) if "-r" in sys.argv else rootfs
pkgdir = root / "opt" / "nvidia" / "l4t-packages"
debs = []
for sub, src in (("standalone", "tools"), ("userspace", "nv_tegra/l4t_deb_packages"), ("kernel", "kernel"),
                 ("bootloader", "bootloader")):
    for deb in sorted((L4T / src).glob("*.deb")):
        if any(tag in deb.name for tag in ("igx", "dgpu", "factory")):
            continue  # NVIDIA's skips the packages of other platforms
        (pkgdir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(deb, pkgdir / sub / deb.name)
        debs.append(f"/opt/nvidia/l4t-packages/{sub}/{deb.name}")
(pkgdir / ".nv-l4t-disable-boot-fw-update-in-preinstall").touch()
for node, minor in (("random", 8), ("urandom", 9)):
    # NVIDIA's script makes these with mknod and stops when it cannot.
    subprocess.run(["mknod", "-m", "444", str(root / "dev" / node), "c", "1", str(minor)], check=True)
core = [d for d in debs if "/nvidia-l4t-core_" in d]
rest = [d for d in debs if d not in core]
for batch in (core, rest):
    if batch:
        r = subprocess.run(["chroot", str(root), "dpkg", "-i", *batch])
        if r.returncode != 0:
            sys.exit(f"nv-apply-debs.sh (stand-in): dpkg -i failed ({r.returncode})")
for node in ("random", "urandom"):
    (root / "dev" / node).unlink()
shutil.rmtree(pkgdir)
record(installed=[Path(d).name.split("_")[0] for d in debs])
'''

INITRD_FLASH = RECORD + r'''
import tarfile
board = [a for a in sys.argv[1:] if not a.startswith("-")]
record()
if "--no-flash" in sys.argv and "--massflash" in sys.argv:
    name = "jetson-orin-nano-devkit"
    mfi = L4T / f"mfi_{name}.tar.gz"
    with tarfile.open(mfi, "w:gz") as t:
        t.add(L4T / "standin-calls.jsonl", arcname=f"mfi_{name}/standin-calls.jsonl")
    print(f"Massflash package is generated at {mfi}")
'''

PLAIN = RECORD + "record()\n"

NVME_AB_XML = """<?xml version="1.0"?>
<!-- stand-in: the partition names and order of NVIDIA's R36 flash_l4t_t234_nvme_rootfs_ab.xml -->
<partition_layout version="01.00.0000">
    <device type="external" instance="0" sector_size="512" num_sectors="EXT_NUM_SECTORS">
""" + "".join(f'        <partition name="{n}" type="data"><size> 1 </size></partition>\n' for n in (
    "master_boot_record", "primary_gpt", "A_kernel", "A_kernel-dtb", "A_reserved_on_user", "B_kernel", "B_kernel-dtb",
    "B_reserved_on_user", "RECNAME", "RECDTB-NAME", "esp", "RECNAME_alt", "RECDTB-NAME_alt", "esp_alt", "UDA",
    "reserved", "APP", "APP_b", "secondary_gpt")) + """    </device>
</partition_layout>
"""

# name -> (directory, Depends, files); @V@ is the L4T version, @K@ the kernel's.
PACKAGES = {
    "nvidia-l4t-core": ("nv_tegra/l4t_deb_packages", "libc6 (>= 2.34), libgcc-s1, libstdc++6, libexpat1, libegl1, libglib2.0-0 (>= 2.56)",
                        {"etc/nv_tegra_release": "# R@R@ (release), REVISION: @M@, GCID: 0, BOARD: generic, EABI: aarch64, DATE: stand-in\n"}),
    "nvidia-l4t-init": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), bash, python3-yaml", {}),
    "nvidia-l4t-firmware": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {"lib/firmware/nvidia/stand-in.bin": "x"}),
    "nvidia-l4t-xusb-firmware": ("nv_tegra/l4t_deb_packages", "", {}),
    "nvidia-l4t-configs": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-tools": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), libasound2 (>= 1.0.16)",
                         {"usr/sbin/nvbootctrl": "#!/bin/sh\necho 'nvbootctrl (stand-in)' >&2\nexit 1\n"}),
    "nvidia-l4t-nvpmodel": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-nvsci": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-3d-core": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), libx11-6, libxext6, libglvnd0, libgles2", {}),
    "nvidia-l4t-cuda": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), nvidia-l4t-nvsci (= @V@), nvidia-l4t-3d-core",
                        {"usr/lib/aarch64-linux-gnu/nvidia/libcuda.so.1.1": "stand-in"}),
    "nvidia-l4t-nvml": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-nvfancontrol": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-optee": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-initrd": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@)", {}),
    "nvidia-l4t-x11": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), xserver-xorg-core, libxrandr2", {}),
    "nvidia-l4t-wayland": ("nv_tegra/l4t_deb_packages", "libffi6", {}),
    "nvidia-l4t-camera": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), libgstreamer1.0-0", {}),
    "nvidia-l4t-multimedia": ("nv_tegra/l4t_deb_packages", "nvidia-l4t-core (= @V@), libgstreamer-plugins-base1.0-0", {}),
    "nvidia-l4t-oem-config": ("nv_tegra/l4t_deb_packages", "oem-config-gtk",
                              {"lib/systemd/system/nv-oem-config.target": "[Unit]\nDescription=stand-in\n",
                               "lib/systemd/system/nv-oem-config-gui.service": "[Unit]\nDescription=stand-in\n"}),
    "nvidia-l4t-apt-source": ("nv_tegra/l4t_deb_packages", "", {}),
    "nvidia-l4t-kernel": ("kernel", "nvidia-l4t-tools (= @V@)",
                          {"boot/Image": "stand-in kernel\n", "lib/modules/@K@/modules.dep": ""}),
    "nvidia-l4t-kernel-dtbs": ("kernel", "nvidia-l4t-kernel (= @KV@)", {"boot/tegra234-p3768-0000+p3767-0000-nv.dtb": "x"}),
    "nvidia-l4t-kernel-oot-modules": ("kernel", "nvidia-l4t-kernel (= @KV@)", {"lib/modules/@K@/updates/nvgpu.ko": "x"}),
    "nvidia-l4t-display-kernel": ("kernel", "nvidia-l4t-kernel (= @KV@)", {}),
    "nvidia-l4t-kernel-headers": ("kernel", "nvidia-l4t-kernel (= @KV@), make, gcc", {}),
    "nvidia-l4t-bootloader": ("bootloader", "nvidia-l4t-tools (= @V@)", {}),
    "nvidia-igx-bootloader": ("bootloader", "nvidia-igx-systemd-reboot-hooks", {}),
    "jetson-gpio-common": ("tools", "", {}),
    "python3-jetson-gpio": ("tools", "python3, jetson-gpio-common", {}),
}


def make_deb(work: Path, out_dir: Path, name: str, version: str, depends: str, files: dict[str, str]) -> None:
    d = work / name
    (d / "DEBIAN").mkdir(parents=True)
    control = [f"Package: {name}", f"Version: {version}", "Architecture: arm64", "Maintainer: stand-in <nobody@localhost>"]
    if depends:
        control.append(f"Depends: {depends}")
    control.append(f"Description: stand-in for NVIDIA's {name} (wick's jetson-test)")
    (d / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    if name == "nvidia-l4t-core":
        # Reported of NVIDIA's: the preinst checks the board unless this marker says it is an image build.
        (d / "DEBIAN" / "preinst").write_text(
            "#!/bin/sh\n[ -e /opt/nvidia/l4t-packages/.nv-l4t-disable-boot-fw-update-in-preinstall ] && exit 0\n"
            "[ -e /proc/device-tree/compatible ] || { echo 'not a Jetson' >&2; exit 1; }\n")
        (d / "DEBIAN" / "preinst").chmod(0o755)
    for path, text in files.items():
        f = d / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        if path.startswith("usr/sbin/"):
            f.chmod(0o755)
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(d), str(out_dir / f"{name}_{version}_arm64.deb")],
                   check=True, stdout=subprocess.DEVNULL)


def script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env python3\n# Stand-in for NVIDIA's script of this name (wick's jetson-test).\n" + body)
    path.chmod(0o755)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--release", default="36.4.3", help="BSP_VERSION (default 36.4.3)")
    p.add_argument("--tarball", type=Path, help="also pack it as NVIDIA ships it (tar.bz2 of Linux_for_Tegra/)")
    p.add_argument("--extra-deb", action="append", default=[], help="NAME[:DEPENDS] another package in l4t_deb_packages")
    p.add_argument("--add-depends", action="append", default=[], help="NAME:DEPENDS added to a package's Depends")
    p.add_argument("--without", action="append", default=[], help="a file of the layout to leave out")
    p.add_argument("--cuda-debs", type=Path, help="also make stand-ins of NVIDIA's CUDA 12.6 packages (cuBLAS, cuRAND) here")
    args = p.parse_args()
    branch, major, minor = args.release.split(".")
    version = f"{args.release}-20250107174145"
    kernel = "5.15.148-tegra"
    kernel_version = f"{kernel}-{version}"
    l4t = args.out / "Linux_for_Tegra"
    if args.out.exists():
        shutil.rmtree(args.out)
    (l4t / "rootfs").mkdir(parents=True)
    (l4t / "rootfs" / "README.txt").write_text("Download and extract the sample filesystem to this directory.\n")
    (l4t / "nv_tegra").mkdir()
    (l4t / "nv_tegra" / "bsp_version").write_text(
        f'BSP_BRANCH={branch}\nBSP_MAJOR={major}\nBSP_MINOR={minor}\nBSP_VERSION="${{BSP_BRANCH}}.${{BSP_MAJOR}}.${{BSP_MINOR}}"\n')
    script(l4t / "apply_binaries.sh", APPLY_BINARIES)
    script(l4t / "nv_tegra" / "nv-apply-debs.sh", APPLY_DEBS)
    script(l4t / "flash.sh", PLAIN)
    script(l4t / "tools" / "kernel_flash" / "l4t_initrd_flash.sh", INITRD_FLASH)
    script(l4t / "tools" / "l4t_flash_prerequisites.sh", PLAIN)
    (l4t / "tools" / "kernel_flash" / "flash_l4t_t234_nvme_rootfs_ab.xml").write_text(NVME_AB_XML)
    cfg = l4t / "bootloader" / "generic" / "cfg"
    cfg.mkdir(parents=True)
    (cfg / "flash_t234_qspi.xml").write_text('<?xml version="1.0"?>\n<partition_layout version="01.00.0000"/>\n')
    (l4t / "bootloader" / "extlinux.conf").write_text(
        "TIMEOUT 30\nDEFAULT primary\n\nMENU TITLE L4T boot options\n\nLABEL primary\n      MENU LABEL primary kernel\n"
        "      LINUX /boot/Image\n      INITRD /boot/initrd\n      APPEND ${cbootargs}\n")
    (l4t / "p3768-0000-p3767-0000-a0.conf").write_text("# stand-in board configuration\n")
    (l4t / "jetson-orin-nano-devkit.conf").symlink_to("p3768-0000-p3767-0000-a0.conf")
    work = args.out / ".debs"
    packages = dict(PACKAGES)
    for extra in args.extra_deb:
        name, _, depends = extra.partition(":")
        packages[name] = ("nv_tegra/l4t_deb_packages", depends, {})
    for extra in args.add_depends:
        name, _, depends = extra.partition(":")
        where, old, files = packages[name]
        packages[name] = (where, f"{old}, {depends}" if old else depends, files)
    for name, (where, depends, files) in packages.items():
        def fill(s: str) -> str:
            return (s.replace("@KV@", kernel_version).replace("@V@", version).replace("@K@", kernel)
                    .replace("@R@", branch).replace("@M@", f"{major}.{minor}"))
        pkg_version = kernel_version if where == "kernel" else version
        make_deb(work, l4t / where, name, pkg_version, fill(depends), {fill(k): fill(v) for k, v in files.items()})
    if args.cuda_debs:
        # Shaped like NVIDIA's Jetson CUDA repository's: the libraries under /usr/local/cuda-12.6,
        # found through an ld.so.conf.d entry from the config package they depend on.
        lib = "usr/local/cuda-12.6/targets/aarch64-linux/lib"
        make_deb(work, args.cuda_debs, "cuda-toolkit-config-common", "12.6.68-1", "",
                 {"etc/ld.so.conf.d/000_cuda.conf": f"/{lib}\n"})
        make_deb(work, args.cuda_debs, "libcublas-12-6", "12.6.1.4-1", "cuda-toolkit-config-common",
                 {f"{lib}/libcublas.so.12": "stand-in", f"{lib}/libcublasLt.so.12": "stand-in"})
        make_deb(work, args.cuda_debs, "libcurand-12-6", "10.3.7.68-1", "cuda-toolkit-config-common",
                 {f"{lib}/libcurand.so.10": "stand-in"})
    shutil.rmtree(work)
    for rel in args.without:
        target = l4t / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    if args.tarball:
        with tarfile.open(args.tarball, "w:bz2") as t:
            t.add(l4t, arcname="Linux_for_Tegra")
    print(f"standin_bsp.py: {l4t} (R{args.release}, {len(packages)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
