#!/usr/bin/env bash
# The fallback base of the Jetson image: NVIDIA's Ubuntu 22.04 sample root from the same BSP
# (Tegra_Linux_Sample-Root-Filesystem_R36.x.x_aarch64.tbz2), for when an L4T package cannot be
# made to fit Debian (make image-jetson SAMPLE_ROOTFS=...). Its output takes the place of the
# Debian base (rootfs.sh) under layer.sh, so wick's layer is the same on both.
#
# Usage: sample-base.sh SAMPLE_ROOTFS DEBIAN_BASE.tar OUT.tar
#   SAMPLE_ROOTFS    NVIDIA's sample root tarball (or a directory it was unpacked into)
#   DEBIAN_BASE.tar  the Jetson's Debian base (rootfs.sh), whose RAUC the sample root gets
#
# What it changes in the sample root:
# - the packages of sample-packages.txt it lacks, installed with its own apt (this needs the
#   Ubuntu mirror its sources name, through the build host's network);
# - RAUC: Ubuntu 22.04's is 1.5, which has neither the custom backend's get-current (the Jetson
#   backend reports the booted slot through it) nor streamed installs; Debian trixie's RAUC is
#   copied with its own loader and libraries into /usr/lib/wick/rauc-runtime, so it runs on
#   Ubuntu's older C library without touching it, with its D-Bus and systemd files;
# - the multi-user target as default, set before NVIDIA's apply_binaries.sh, which would
#   otherwise make the first boot wait in NVIDIA's setup wizard (oem-config) for a screen user;
# - /etc/wick/base, which tells bsp.sh to apply every L4T package as NVIDIA does on this root.
# Needs root and, on a non-arm64 host, qemu-user with binfmt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "sample-base.sh: $*" >&2; exit 1; }
[ $# -eq 3 ] || { echo "usage: sample-base.sh SAMPLE_ROOTFS DEBIAN_BASE.tar OUT.tar" >&2; exit 2; }
sample=$1 debian=$2 out=$3
[ -e "$sample" ] || die "the sample root $sample does not exist: download Tegra_Linux_Sample-Root-Filesystem_R36.x.x_aarch64.tbz2 from NVIDIA, the same release as the BSP (README: Jetson)"
[ -f "$debian" ] || die "the Debian base $debian is missing (image-build/rootfs.sh makes it)"
[ "$(id -u)" = 0 ] || die "run as root: the sample root's files keep their owners, and its apt runs in a chroot"
if [ "$(uname -m)" != aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  die "the sample root's programs run through qemu-user: apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-aarch64"
fi
packages=$(grep -v '^\s*#' "$here/sample-packages.txt" | xargs)

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/sample-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root deb=$work/debian
mkdir -p "$root" "$deb"
if [ -d "$sample" ]; then
  cp -a "$sample/." "$root/"
else
  echo "sample-base.sh: unpacking $sample"
  tar -xpf "$sample" -C "$root" --numeric-owner ||
    die "$sample could not be unpacked: is it NVIDIA's Tegra_Linux_Sample-Root-Filesystem_R36.x.x_aarch64.tbz2 (bzip2 installed)?"
fi
[ -f "$root/etc/os-release" ] && [ -x "$root/usr/bin/dpkg" ] && [ -x "$root/usr/bin/apt-get" ] ||
  die "$sample is not a Debian-family root file system (no etc/os-release, dpkg or apt-get): is it the sample root, not the BSP?"
[ "$(od -An -tx1 -j18 -N1 "$root/usr/bin/dpkg" | tr -d ' ')" = b7 ] || die "$sample is not an arm64 root"
distro=$(. "$root/etc/os-release" && echo "${PRETTY_NAME:-$ID}")
echo "sample-base.sh: base $distro"

# ---- wick's run-time packages, with the sample root's own apt where it lacks them.
missing=()
for p in $packages; do
  chroot "$root" dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "sample-base.sh: installing ${missing[*]} with the sample root's apt"
  # The sample root resolves names through systemd-resolved, which does not run in a chroot.
  resolv=$root/etc/resolv.conf
  mv "$resolv" "$work/resolv.conf.sample" 2>/dev/null || true
  cp -L /etc/resolv.conf "$resolv"
  policy=$root/usr/sbin/policy-rc.d  # no service starts inside the build's chroot
  [ ! -e "$policy" ] || mv "$policy" "$work/policy-rc.d.sample"
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
  ok=1
  chroot "$root" apt-get update -q >"$work/apt.log" 2>&1 &&
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      >>"$work/apt.log" 2>&1 || ok=0
  chroot "$root" apt-get clean >/dev/null 2>&1 || true
  rm -f "$policy" "$resolv"
  mv "$work/resolv.conf.sample" "$resolv" 2>/dev/null || true
  mv "$work/policy-rc.d.sample" "$policy" 2>/dev/null || true
  if [ $ok = 0 ]; then
    tail -15 "$work/apt.log" >&2
    die "the sample root's apt could not install ${missing[*]} (its output is above): the build host needs the network to the mirrors in the sample root's /etc/apt/sources.list"
  fi
fi

# ---- RAUC: Debian's, with its own loader and libraries (the closure its loader lists).
echo "sample-base.sh: RAUC from $debian"
tar -xpf "$debian" -C "$deb" --numeric-owner
[ -x "$deb/usr/bin/rauc" ] || die "$debian has no RAUC (image-build/packages.txt lists rauc)"
loader=/usr/lib/ld-linux-aarch64.so.1
[ -e "$deb$loader" ] || die "$debian has no $loader: not an arm64 root"
runtime=/usr/lib/wick/rauc-runtime
mkdir -p "$root$runtime/lib" "$root$runtime/gio-modules"
listing=$(chroot "$deb" "$loader" --list /usr/bin/rauc) || die "the loader of $debian cannot list RAUC's libraries"
for lib in $(printf '%s\n' "$listing" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
  cp -L "$deb$lib" "$root$runtime/lib/"
done
cp -L "$deb$loader" "$root$runtime/ld-linux-aarch64.so.1"
install -m 755 "$deb/usr/bin/rauc" "$root$runtime/rauc"
# Its service, D-Bus policy and activation files, as the Debian packages install them.
for list in rauc rauc-service; do
  while read -r f; do
    case "$f" in /usr/bin/rauc|/usr/share/doc/*|/usr/share/man/*) continue ;; esac
    [ -f "$deb$f" ] && install -D -m "$(stat -c %a "$deb$f")" "$deb$f" "$root$f"
  done < "$deb/var/lib/dpkg/info/$list.list"
done
if chroot "$root" dpkg-query -W -f '${Status}' rauc 2>/dev/null | grep -q ' installed$'; then
  chroot "$root" dpkg --purge rauc rauc-service >/dev/null 2>&1 || true
fi
cat > "$root/usr/bin/rauc" <<WRAPPER
#!/bin/sh
# RAUC $(chroot "$deb" dpkg-query -W -f '${Version}' rauc) from Debian trixie, run by its own loader with its own
# libraries (image-build/jetson/sample-base.sh): this root's RAUC is too old for wick's updates.
# GLib's modules are this root's, built for its older GLib: RAUC needs none of them.
GIO_MODULE_DIR=$runtime/gio-modules exec $runtime/ld-linux-aarch64.so.1 --library-path $runtime/lib $runtime/rauc "\$@"
WRAPPER
chmod 755 "$root/usr/bin/rauc"
version=$(chroot "$root" /usr/bin/rauc --version 2>&1) || die "Debian's RAUC does not run in the sample root: $version"
echo "sample-base.sh: $version"

# ---- A headless appliance: the multi-user target, not NVIDIA's first-boot wizard.
ln -sfn /usr/lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"
mkdir -p "$root/etc/wick"
printf 'nvidia-sample-rootfs %s (%s)\n' "$(basename "$sample")" "$distro" > "$root/etc/wick/base"

tar -cpf "$out.part" -C "$root" --numeric-owner .
mv "$out.part" "$out"
echo "sample-base.sh: $out ($(du -h "$out" | cut -f1)): $distro with wick's packages and RAUC"
