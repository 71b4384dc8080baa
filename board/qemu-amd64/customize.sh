#!/bin/sh
# Runs inside the twin's root filesystem while it is built (image-build/rootfs.sh), with the
# board's build_packages installed: builds gpio-sim for each installed kernel, and the GRUB EFI
# loader that the disk's EFI partition carries.
set -eu
here=$(dirname "$0")
for kver in $(ls /lib/modules); do
    sh "$here/gpio-sim/build.sh" "$kver"
done
# GRUB as one EFI binary with the modules it needs built in, looking for its grub.cfg in
# /EFI/BOOT of the partition it was loaded from.
mkdir -p /usr/lib/wick/boot
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o /usr/lib/wick/boot/BOOTX64.EFI \
    part_gpt fat ext2 normal linux configfile loadenv test echo search search_fs_uuid \
    search_label regexp serial terminal sleep reboot halt efi_gop all_video gzio zstd
