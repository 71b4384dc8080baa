#!/usr/bin/env bash
# The Jetson's root filesystem as a disk for qemu-system-aarch64's `virt` machine, for the test
# of everything in the image that does not need NVIDIA's hardware (make jetson-test): the same
# layered root as the device's (layer.sh on the Jetson board), built with Debian's arm64 kernel
# because L4T's kernel only boots on a Tegra, and the VM test's agent unit, which no device image
# carries. The partitions are named as on the device's NVMe (APP, APP_b, data), so RAUC's
# system.conf and the fstab are the device's own.
#
# Usage: virt-disk.sh ROOT_DIR MODELS_DIR SET OUT_DIR
# Writes OUT_DIR/disk.img, OUT_DIR/vmlinuz, OUT_DIR/initrd.img and OUT_DIR/cmdline.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
root=$1 models=$2 set=$3 out=$4
for tool in mkfs.ext4 sfdisk; do
  command -v "$tool" >/dev/null || { echo "virt-disk.sh: $tool is missing (apt-get install e2fsprogs fdisk)" >&2; exit 1; }
done
vmlinuz=$(ls "$root"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* 2>/dev/null | sort -V | tail -1)
[ -n "$vmlinuz" ] && [ -n "$initrd" ] || {
  echo "virt-disk.sh: no kernel and initrd in $root/boot: the test root is built with linux-image-arm64 (make jetson-test)" >&2; exit 1; }
slot_mib=${WICK_SLOT_MIB:-1024} data_mib=${WICK_DATA_MIB:-1024}
mkdir -p "$out"
work=$(mktemp -d "$out/.virt-disk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The test agent: a root shell on the virtio port only the test's QEMU provides.
agent=usr/lib/systemd/system/wick-vmtest-agent.service
install -D -m 644 "$repo/board/qemu-amd64/rootfs/$agent" "$root/$agent"
systemctl --root="$root" enable wick-vmtest-agent.service >/dev/null 2>&1

used_mib=$(du -sm --apparent-size "$root" | cut -f1)
[ "$used_mib" -lt $((slot_mib * 85 / 100)) ] || {
  echo "virt-disk.sh: the root filesystem ($used_mib MiB) does not fit a $slot_mib MiB slot; set WICK_SLOT_MIB" >&2; exit 1; }
mkfs.ext4 -q -F -L wick-root -d "$root" "$work/root.img" "${slot_mib}M" >/dev/null
data_used=$("$here/data-fs.sh" "$root" "$work/data.img" "$data_mib" "$models" "$set" | tail -1)

rm -f "$work/disk.img"
truncate -s $(( (1 + 2 * slot_mib + data_mib + 1) * 1024 * 1024 )) "$work/disk.img"
sfdisk -q "$work/disk.img" <<TABLE
label: gpt
start=1MiB, size=${slot_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=APP
size=${slot_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=APP_b
size=${data_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
TABLE
dd if="$work/root.img" of="$work/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/data.img" of="$work/disk.img" bs=1M seek=$((1 + 2 * slot_mib)) conv=notrunc,sparse status=none
cp "$vmlinuz" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"
# Read-only root, as on the device; panic=10 turns a failed boot into a reboot the test sees.
echo "root=PARTLABEL=APP ro rootwait console=ttyAMA0 panic=10" > "$out/cmdline"
mv "$work/disk.img" "$out/disk.img"
echo "virt-disk.sh: $out/disk.img: APP $used_mib MiB used of $slot_mib, data $data_used MiB used of $data_mib; kernel $(basename "$vmlinuz")"
