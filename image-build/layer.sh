#!/usr/bin/env bash
# Puts wick on a board's root filesystem: unpacks the cached base (rootfs.sh) into ROOT_DIR and
# adds the binary, its units, sysusers and tmpfiles entries, the udev rules, the board's files
# (wick.toml, asound.conf, board.toml, its rootfs/ overlay) and what a read-only root needs
# (fstab with /data, a tmpfs /var, persistent logs on /data). Shared by every board: the twin's
# EFI disk (efi-disk.sh) and the Jetson's BSP step both start from its output.
#
# Usage: layer.sh BOARD_DIR BASE.tar WICK_BINARY VERSION ROOT_DIR KEYRING.pem
# KEYRING.pem: the CA certificate(s) update bundles must be signed under (RAUC's keyring).
# Needs root: the files keep their owners (mkfs.ext4 -d copies them as they are).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
board_dir=$(cd "$1" && pwd)
base=$2 wick=$3 version=$4 root=$5 keyring=${6:-}
eval "$("$here/board.py" "$board_dir/board.toml")"
[ "$(id -u)" = 0 ] || { echo "layer.sh: run as root (the root filesystem's files keep their owners)" >&2; exit 1; }
for f in "$base" "$wick" "$keyring"; do [ -f "$f" ] || { echo "layer.sh: ${f:-the keyring (6th argument)} is missing" >&2; exit 1; }; done
grep -q 'BEGIN CERTIFICATE' "$keyring" || { echo "layer.sh: $keyring holds no PEM certificate (RAUC's keyring)" >&2; exit 1; }
[ -f "$board_dir/rauc/system.conf" ] || { echo "layer.sh: $board_dir/rauc/system.conf is missing (RAUC's slots for this board)" >&2; exit 1; }
grep -qx "compatible=$BOARD_COMPATIBLE" "$board_dir/rauc/system.conf" || {
  echo "layer.sh: $board_dir/rauc/system.conf must say compatible=$BOARD_COMPATIBLE (board.toml)" >&2; exit 1; }

rm -rf "$root"
mkdir -p "$root"
tar -xpf "$base" -C "$root" --numeric-owner

# wick itself.
install -D -m 755 "$wick" "$root/usr/bin/wick"
install -D -m 644 "$repo/systemd/wick.service" "$root/usr/lib/systemd/system/wick.service"
install -D -m 644 "$repo/systemd/wick-health.service" "$root/usr/lib/systemd/system/wick-health.service"
install -D -m 644 "$repo/systemd/sysusers.d/wick.conf" "$root/usr/lib/sysusers.d/wick.conf"
install -D -m 644 "$repo/systemd/tmpfiles.d/wick.conf" "$root/usr/lib/tmpfiles.d/wick.conf"
for rules in "$repo"/udev/*.rules; do
  install -D -m 644 "$rules" "$root/usr/lib/udev/rules.d/$(basename "$rules")"
done
install -D -m 644 "$repo/README.md" "$root/usr/share/doc/wick/README.md"
install -D -m 644 "$repo/wick.example.toml" "$root/usr/share/doc/wick/wick.example.toml"

# Updates: RAUC's slots and bootloader for the board, the keyring bundles are checked against,
# the pre-install handler that names the slot for wick's health gate, and the board's own
# bootloader backend when RAUC has none built in (the Jetson's).
install -D -m 644 "$board_dir/rauc/system.conf" "$root/etc/rauc/system.conf"
install -D -m 644 "$keyring" "$root/etc/rauc/keyring.pem"
install -D -m 755 "$here/rauc/pre-install" "$root/usr/lib/wick/rauc/pre-install"
install -D -m 755 "$here/rauc/nbd-hold" "$root/usr/lib/wick/nbd-hold"
install -D -m 644 "$repo/systemd/modules-load.d/wick-rauc.conf" "$root/usr/lib/modules-load.d/wick-rauc.conf"
if [ -f "$board_dir/rauc/bootloader-backend" ]; then
  install -D -m 755 "$board_dir/rauc/bootloader-backend" "$root/usr/lib/wick/rauc/bootloader-backend"
fi
install -D -m 644 "$repo/systemd/rauc.service.d/wick.conf" "$root/usr/lib/systemd/system/rauc.service.d/wick.conf"

# The board.
install -D -m 644 "$board_dir/wick.toml" "$root/etc/wick/wick.toml"
install -D -m 644 "$board_dir/board.toml" "$root/etc/wick/board.toml"
install -D -m 644 "$board_dir/asound.conf" "$root/etc/asound.conf"
if [ -d "$board_dir/rootfs" ]; then
  cp -a --no-preserve=ownership "$board_dir/rootfs/." "$root/"
fi
if [ -n "$BOARD_MODULES" ]; then
  printf '%s\n' "# Loaded at boot for board $BOARD_NAME (board.toml [image] modules)." $BOARD_MODULES \
    > "$root/etc/modules-load.d/wick.conf"
fi
printf 'name=%s\nversion=%s\ncompatible=%s\n' "$BOARD_NAME" "$version" "$BOARD_COMPATIBLE" \
  > "$root/etc/wick/image"

# A read-only root. /data (its own partition, never touched by updates; its file system grows
# to fill it at mount, where the partition is bigger than the image) holds the models,
# wick's state and settings, and the journal; /var is a tmpfs that each boot starts afresh.
cat > "$root/etc/fstab" <<FSTAB
# Written by image-build/layer.sh. The root filesystem is mounted read-only by the kernel (ro).
PARTLABEL=data  /data     ext4   defaults,noatime,nosuid,nodev,x-systemd.growfs  0 2
tmpfs           /var      tmpfs  mode=0755,nosuid,nodev,size=64M    0 0
/data/log       /var/log  none   bind,x-systemd.requires-mounts-for=/data  0 0
FSTAB
mkdir -p "$root/data"
if [ -n "$BOARD_ESP_MOUNT" ]; then
  # The EFI partition holds the bootloader's slot choice, which RAUC edits: mounted only while
  # used, so a power cut rarely finds its FAT open.
  echo "PARTLABEL=esp  $BOARD_ESP_MOUNT  vfat  noauto,x-systemd.automount,x-systemd.idle-timeout=10s,umask=0077,noatime,flush  0 0" \
    >> "$root/etc/fstab"
  mkdir -p "$root$BOARD_ESP_MOUNT"
fi
echo wick > "$root/etc/hostname"
# A machine id fixed per board, the same in every image for it: /etc is read-only, and an id
# made afresh at each boot would hide the journal of the boots before (journalctl shows only
# this machine's journals); a per-board id also survives updates. The appliance has no
# network, where a shared id could matter.
printf 'wick machine %s' "$BOARD_NAME" | sha256sum | cut -c1-32 > "$root/etc/machine-id"
mkdir -p "$root/etc/systemd/journald.conf.d"
cat > "$root/etc/systemd/journald.conf.d/wick.conf" <<'JOURNAL'
# The journal goes to /var/log/journal, which is /data/log/journal: logs survive a reboot.
[Journal]
Storage=persistent
SystemMaxUse=64M
JOURNAL

# Users, and the units a board enables.
chroot "$root" systemd-sysusers >/dev/null
enable=(wick.service wick-health.service)
if [ -d "$board_dir/rootfs/usr/lib/systemd/system" ]; then
  for unit in "$board_dir"/rootfs/usr/lib/systemd/system/*; do
    [ -f "$unit" ] || continue  # drop-in directories
    grep -q '^\[Install\]' "$unit" && enable+=("$(basename "$unit")")
  done
fi
systemctl --root="$root" enable "${enable[@]}" >/dev/null 2>&1
# Nothing on the appliance uses the network, time sync or apt at run time.
for unit in apt-daily.timer apt-daily-upgrade.timer systemd-networkd.service systemd-timesyncd.service; do
  [ -e "$root/usr/lib/systemd/system/$unit" ] && systemctl --root="$root" mask "$unit" >/dev/null 2>&1
done
echo "layer.sh: $root: wick $version on board $BOARD_NAME (enabled: ${enable[*]})"
