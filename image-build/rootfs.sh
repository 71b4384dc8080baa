#!/usr/bin/env bash
# The root filesystem recipe, one for every board: Debian trixie built by mmdebstrap from the
# common package list (packages.txt) and the board's own (board/NAME/board.toml), then the
# board's customize.sh run inside it with the board's build packages, which are removed again.
# Nothing of wick is in it yet (image-build/layer.sh adds that), so it is cached by its inputs.
#
# Usage: rootfs.sh BOARD_DIR OUT.tar [EXTRA_PACKAGES]
# EXTRA_PACKAGES (space-separated) are added for a test root only: the Jetson's arm64 root with
# Debian's arm64 kernel, booted in qemu-system-aarch64 where NVIDIA's kernel cannot run.
# Needs mmdebstrap and root (mmdebstrap's chroot mode; no mounts, no loop devices), and for a
# foreign architecture qemu-user with binfmt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
board_dir=$(cd "$1" && pwd)
out=$2 extra=${3:-}
eval "$("$here/board.py" "$board_dir/board.toml")"

command -v mmdebstrap >/dev/null || { echo "rootfs.sh: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "rootfs.sh: run as root (mmdebstrap builds the root in a chroot)" >&2; exit 1; }

mirror=${WICK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${WICK_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
common=$(grep -v '^\s*#' "$here/packages.txt" | xargs)
include=$(echo $common $BOARD_PACKAGES $extra | tr ' ' ,)
host_arch=$(dpkg --print-architecture 2>/dev/null || echo unknown)
if [ "$BOARD_ARCH" != "$host_arch" ]; then
  # mmdebstrap runs the root's own programs (maintainer scripts) through the kernel's binfmt.
  qemu=$(case "$BOARD_ARCH" in arm64) echo aarch64;; *) echo "$BOARD_ARCH";; esac)
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$qemu" ] || {
    echo "rootfs.sh: building an $BOARD_ARCH root on $host_arch needs qemu-user with binfmt: apt-get install qemu-user-static binfmt-support arch-test && update-binfmts --enable qemu-$qemu" >&2; exit 1; }
fi

# The board's build packages are installed only for its customize.sh and then purged with
# everything they pulled in (the difference of two package lists), so no compiler ships.
pkgs='chroot "$1" dpkg-query -W -f "\${Package}:\${Architecture}\n" | sort'
hooks=()
if [ -n "$BOARD_BUILD_PACKAGES" ]; then
  hooks+=(--customize-hook="$pkgs > \"\$1/tmp/wick-packages\""
          --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $BOARD_BUILD_PACKAGES >/dev/null")
fi
if [ -x "$board_dir/customize.sh" ]; then
  hooks+=(--customize-hook='mkdir -p "$1/tmp/wick-board"'
          --customize-hook="sync-in $board_dir /tmp/wick-board"
          --customize-hook='chroot "$1" sh /tmp/wick-board/customize.sh'
          --customize-hook='rm -rf "$1/tmp/wick-board"')
fi
if [ -n "$BOARD_BUILD_PACKAGES" ]; then
  hooks+=(--customize-hook="$pkgs | comm -13 \"\$1/tmp/wick-packages\" - | xargs -r chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q >/dev/null"
          --customize-hook='rm "$1/tmp/wick-packages"; ! chroot "$1" dpkg -l gcc make "linux-headers-*" 2>/dev/null | grep ^ii || { echo "rootfs.sh: build tools left in the image" >&2; exit 1; }')
fi

mkdir -p "$(dirname "$out")"
mmdebstrap --variant=apt --arch="$BOARD_ARCH" --format=tar \
  --include="$include" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  "${hooks[@]}" \
  trixie "$out.part" \
  "deb $mirror trixie main" "deb $mirror trixie-updates main" "deb $security trixie-security main"
mv "$out.part" "$out"
echo "rootfs.sh: $out ($(du -h "$out" | cut -f1)) for board $BOARD_NAME ($BOARD_ARCH)"
