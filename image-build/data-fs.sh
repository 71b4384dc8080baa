#!/usr/bin/env bash
# The /data file system of every board, as an ext4 image: the model set, the directories
# wick's tmpfiles.d entry would make (owned by the image's wick user), the journal's directory,
# and RAUC's status with the factory slot's version. The twin's EFI disk and the Jetson's flash
# (its data partition) both write it; updates never touch it.
#
# Usage: data-fs.sh ROOT_DIR OUT.img SIZE_MIB [MODELS_DIR SET]
# ROOT_DIR is the layered root (layer.sh) the image is made for: its users and its version.
# Without MODELS_DIR and SET, /data/models is empty and `wick doctor` on the device says what
# to fetch. Prints the MiB used on its last line.
set -euo pipefail
root=$1 out=$2 size_mib=$3 models=${4:-} set=${5:-}
command -v mkfs.ext4 >/dev/null || { echo "data-fs.sh: mkfs.ext4 is missing (apt-get install e2fsprogs)" >&2; exit 1; }
[ -f "$root/etc/wick/image" ] || { echo "data-fs.sh: $root/etc/wick/image is missing: is $root a root made by layer.sh?" >&2; exit 1; }
if [ -n "$models" ]; then
  [ -d "$models/$set" ] || { echo "data-fs.sh: model set $models/$set is missing (wick models pull --set $set)" >&2; exit 1; }
fi
wick_ids=$(awk -F: '$1 == "wick" {print $3 ":" $4}' "$root/etc/passwd")
journal_gid=$(awk -F: '$1 == "systemd-journal" {print $3}' "$root/etc/group")
[ -n "$wick_ids" ] && [ -n "$journal_gid" ] || { echo "data-fs.sh: no wick user or systemd-journal group in $root" >&2; exit 1; }

work=$(mktemp -d "$(dirname "$out")/.data-fs.XXXXXX")
trap 'rm -rf "$work"' EXIT
data=$work/data
mkdir -p "$data/models" "$data/wick" "$data/log/journal" "$data/rauc"
# The set's directory, less a synthetic/ folder if one is there: `wick bench llm --synthetic`
# writes its 1.9 GB stand-in 3B into `<models dir>/synthetic/`, which is the set's own directory
# when it was run with --models-dir pointing at the set (a CI machine's /data overflowed so).
[ -z "$models" ] || tar -C "$models" --exclude="$set/synthetic" -cf - "$set" | tar -C "$data/models" -xpf -
# RAUC's status of the slots (data-directory=/data/rauc): slot A holds this image from the
# factory, so RAUC (and `wick status`) know its version before any update was installed.
eval "$(grep -E '^(version|compatible)=' "$root/etc/wick/image" | sed 's/^/image_/')"
cat > "$data/rauc/central.raucs" <<STATUS
[slot.rootfs.0]
bundle.compatible=$image_compatible
bundle.version=$image_version
bundle.description=factory image
status=ok
STATUS
chmod 755 "$data/rauc"
chown -R "$wick_ids" "$data/models" "$data/wick"
chmod 750 "$data/wick"
chown "0:$journal_gid" "$data/log/journal"
chmod 2755 "$data/log/journal"
used_mib=$(du -sm "$data" | cut -f1)
[ "$used_mib" -lt $((size_mib * 90 / 100)) ] || {
  echo "data-fs.sh: the models ($used_mib MiB) do not fit a $size_mib MiB /data; set WICK_DATA_MIB" >&2; exit 1; }
mkfs.ext4 -q -F -L data -d "$data" "$out" "${size_mib}M" >/dev/null
echo "$used_mib"
