#!/usr/bin/env bash
# The disk of an EFI board (the twin): a GPT disk image with
#   1 esp       EFI system partition: GRUB (built into the root by the board's customize.sh),
#               its grub.cfg and its environment block (which slot to boot)
#   2 rootfs-a  root slot A: the layered root filesystem, read-only at run time
#   3 rootfs-b  root slot B: empty until an update writes it
#   4 data      /data: models, wick's state and settings, logs; updates never touch it
# Each filesystem is made in a file of its own (mkfs.ext4 -d, mkfs.vfat and mtools) and copied
# into place: no loop devices, no mounts.
#
# Usage: efi-disk.sh ROOT_DIR MODELS_DIR SET OUT.img   (ROOT_DIR from layer.sh)
# The model set SET (MODELS_DIR/SET, as `wick models pull --set SET` left it) goes into
# /data/models/SET.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$1 models=$2 set=$3 out=$4
eval "$("$here/board.py" "$root/etc/wick/board.toml")"
for tool in mkfs.ext4 mkfs.vfat mcopy sfdisk; do
  command -v "$tool" >/dev/null || { echo "efi-disk.sh: $tool is missing (apt-get install e2fsprogs dosfstools mtools fdisk)" >&2; exit 1; }
done
efi=$root/usr/lib/wick/boot/BOOTX64.EFI
[ -f "$efi" ] || { echo "efi-disk.sh: $efi is missing: the board's customize.sh builds it" >&2; exit 1; }
[ -d "$models/$set" ] || { echo "efi-disk.sh: model set $models/$set is missing (wick models pull --set $set)" >&2; exit 1; }

# Sizes in MiB; WICK_SLOT_MIB and WICK_DATA_MIB override them.
esp_mib=64 slot_mib=${WICK_SLOT_MIB:-1024} data_mib=${WICK_DATA_MIB:-1024}
# Fixed partition ids, so the kernel command line (root=PARTUUID=) and every build agree.
disk_uuid=7f1c2a4e-9b61-4d0a-8c55-2f0b7a1e9d01
esp_uuid=7f1c2a4e-9b61-4d0a-8c55-2f0b7a1e9d02
a_uuid=7f1c2a4e-9b61-4d0a-8c55-2f0b7a1e9d0a
b_uuid=7f1c2a4e-9b61-4d0a-8c55-2f0b7a1e9d0b
data_uuid=7f1c2a4e-9b61-4d0a-8c55-2f0b7a1e9dda

work=$(mktemp -d "$(dirname "$out")/.efi-disk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Root slot A. The root must fit its slot with room for what a later update adds.
used_mib=$(( $(du -sm --apparent-size "$root" | cut -f1) ))
[ "$used_mib" -lt $((slot_mib * 85 / 100)) ] || {
  echo "efi-disk.sh: the root filesystem ($used_mib MiB) does not fit a $slot_mib MiB slot; set WICK_SLOT_MIB" >&2; exit 1; }
mkfs.ext4 -q -F -L wick-root -d "$root" "$work/root.img" "${slot_mib}M" >/dev/null

# /data: the models, wick's directories, RAUC's status of the factory slot.
models_mib=$("$here/data-fs.sh" "$root" "$work/data.img" "$data_mib" "$models" "$set" | tail -1)

# The EFI partition: GRUB, its menu, and the slot choice (a GRUB environment block: a header
# line, KEY=VALUE lines, padded with '#' to 1024 bytes). Slot A is good and untried; B is empty.
sed -e "s/@A_UUID@/$a_uuid/" -e "s/@B_UUID@/$b_uuid/" -e "s|@CMDLINE@|$BOARD_CMDLINE|" \
  "$here/efi/grub.cfg.in" > "$work/grub.cfg"
{ printf '# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\nB_TRY=0\n'; } > "$work/grubenv"
head -c $((1024 - $(stat -c %s "$work/grubenv"))) /dev/zero | tr '\0' '#' >> "$work/grubenv"
mkfs.vfat -n ESP -C "$work/esp.img" $((esp_mib * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$work/grub.cfg" "$work/grubenv" ::/EFI/BOOT/

# The GPT, then each filesystem at its partition's offset.
rm -f "$out.part"
truncate -s $(( (1 + esp_mib + 2 * slot_mib + data_mib + 1) * 1024 * 1024 )) "$out.part"
sfdisk -q "$out.part" <<TABLE
label: gpt
label-id: $disk_uuid
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_uuid, name=esp
size=${slot_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$a_uuid, name=rootfs-a
size=${slot_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$b_uuid, name=rootfs-b
size=${data_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$data_uuid, name=data
TABLE
place() { # IMAGE START_MIB
  dd if="$1" of="$out.part" bs=1M seek="$2" conv=notrunc,sparse status=none
}
place "$work/esp.img" 1
place "$work/root.img" $((1 + esp_mib))
place "$work/data.img" $((1 + esp_mib + 2 * slot_mib))
mv "$out.part" "$out"
echo "efi-disk.sh: $out: ESP ${esp_mib} MiB, slots ${slot_mib} MiB (A: $used_mib MiB used), /data ${data_mib} MiB ($models_mib MiB used)"
