#!/usr/bin/env bash
# A stand-in for NVIDIA's Ubuntu 22.04 sample root (Tegra_Linux_Sample-Root-Filesystem), for
# testing the image's fallback base (sample-base.sh, bsp.sh on it) where neither NVIDIA's
# download nor Ubuntu's arm64 mirror can be reached (make jetson-test).
#
# It is Debian bookworm for arm64: like Ubuntu 22.04 a different release from the image's
# trixie, with an older C library (2.36; Ubuntu 22.04 has 2.35), so Debian trixie's RAUC runs
# on it only with its own loader and libraries, as on the real sample root. Like NVIDIA's root
# it has systemd, apt with a reachable mirror, a GNOME display manager's /etc/gdm3 (which makes
# apply_binaries.sh choose NVIDIA's first-boot wizard) and the libraries the stand-in L4T
# packages (standin_bsp.py) depend on; the Ubuntu-only ones among those are empty packages.
# It lacks ALSA's tools and eSpeak NG, which sample-base.sh must install with the root's apt.
#
# Usage: standin_sample.sh OUT.tbz2   (needs root, mmdebstrap, qemu-user with binfmt, lbzip2)
set -euo pipefail
out=$1
[ "$(id -u)" = 0 ] || { echo "standin_sample.sh: run as root (mmdebstrap's chroot)" >&2; exit 1; }
mirror=${WICK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=systemd-sysv,udev,dbus,kmod,e2fsprogs,procps,iproute2,libstdc++6,libexpat1,libegl1,libglib2.0-0,python3-yaml
include=$include,libx11-6,libxext6,libglvnd0,libgles2,libxrandr2,libasound2
# Ubuntu desktop packages the stand-in L4T packages name, too big or absent on Debian.
empty="xserver-xorg-core libffi6 libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 oem-config-gtk make gcc"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in $empty; do
  mkdir -p "$work/$name/DEBIAN"
  printf 'Package: %s\nVersion: 99\nArchitecture: all\nMaintainer: wick jetson-test <wick@localhost>\nDescription: stand-in for Ubuntu'"'"'s %s\n' \
    "$name" "$name" > "$work/$name/DEBIAN/control"
  dpkg-deb --root-owner-group -b "$work/$name" "$work/$name.deb" >/dev/null
done
mkdir -p "$(dirname "$out")"
mmdebstrap --variant=apt --arch=arm64 --format=tar --include="$include" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='mkdir -p "$1/tmp/empty" "$1/etc/gdm3"' \
  --customize-hook="sync-in $work /tmp/empty" \
  --customize-hook='chroot "$1" sh -c "dpkg -i /tmp/empty/*.deb" >/dev/null' \
  --customize-hook='rm -rf "$1/tmp/empty"' \
  bookworm "$work/root.tar" "deb $mirror bookworm main"
lbzip2 -c "$work/root.tar" > "$out.part"
mv "$out.part" "$out"
echo "standin_sample.sh: $out ($(du -h "$out" | cut -f1))"
