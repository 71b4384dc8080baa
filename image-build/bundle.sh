#!/usr/bin/env bash
# An update bundle for RAUC: the layered root filesystem (layer.sh's output) as an ext4 image
# in a signed `verity` bundle, for the board and version the root says it is
# (/etc/wick/image). RAUC writes the image into the other root slot; verity lets a device
# check every block as it reads it, so a bundle can be streamed from a URL.
#
# Usage: bundle.sh ROOT_DIR OUT.raucb
# Signing: BUNDLE_KEY and BUNDLE_CERT (PEM files or PKCS#11 URLs), checked against
# BUNDLE_KEYRING (the CA the device's /etc/rauc/keyring.pem holds) before the bundle is kept.
# BUNDLE_COMPATIBLE replaces the board's `compatible` (the OTA test's bundle for another board).
# Needs root (the ext4 image keeps the files' owners), rauc, mksquashfs and mkfs.ext4.
set -euo pipefail
root=$1 out=$2
for tool in rauc mksquashfs mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "bundle.sh: $tool is missing (apt-get install rauc squashfs-tools e2fsprogs)" >&2; exit 1; }
done
[ -f "$root/etc/wick/image" ] || { echo "bundle.sh: $root/etc/wick/image is missing: ROOT_DIR must come from layer.sh" >&2; exit 1; }
for var in BUNDLE_KEY BUNDLE_CERT BUNDLE_KEYRING; do
  [ -n "${!var:-}" ] || { echo "bundle.sh: $var is not set (the Makefile's dev PKI, or your own key: see the README's Updates)" >&2; exit 1; }
done
for f in "$BUNDLE_CERT" "$BUNDLE_KEYRING"; do
  [ -f "$f" ] || { echo "bundle.sh: $f is missing" >&2; exit 1; }
done
case $BUNDLE_KEY in pkcs11:*) ;; *) [ -f "$BUNDLE_KEY" ] || { echo "bundle.sh: $BUNDLE_KEY is missing" >&2; exit 1; } ;; esac
image_name="" image_version="" image_compatible=""
eval "$(grep -E '^(name|version|compatible)=' "$root/etc/wick/image" | sed 's/^/image_/')"
compatible=${BUNDLE_COMPATIBLE:-$image_compatible}

work=$(mktemp -d "$(dirname "$out")/.bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
# The root's size plus a tenth and 64 MiB for the filesystem's own metadata: the image is
# written whole into the slot, so every unused MiB would be read, checked and written again.
used_mib=$(du -sm --apparent-size "$root" | cut -f1)
mkfs.ext4 -q -F -L wick-root -d "$root" "$work/content/rootfs.ext4" "$((used_mib + used_mib / 10 + 64))M" >/dev/null
cat > "$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=$compatible
version=$image_version
description=wick $image_version for $image_name
build=$(date -u +%Y-%m-%dT%H:%M:%SZ)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$out"
# zstd: about as small as gzip and much faster to unpack on the device (and under emulation).
rauc bundle --cert="$BUNDLE_CERT" --key="$BUNDLE_KEY" --signing-keyring="$BUNDLE_KEYRING" \
  --mksquashfs-args="-comp zstd -Xcompression-level 6 -quiet" "$work/content" "$out" >/dev/null
rauc info --keyring="$BUNDLE_KEYRING" "$out" >/dev/null 2>&1 || {
  echo "bundle.sh: rauc info cannot verify $out against $BUNDLE_KEYRING" >&2; rauc info --keyring="$BUNDLE_KEYRING" "$out" >&2; exit 1; }
echo "bundle.sh: $out: $compatible $image_version, $(du -m "$out" | cut -f1) MiB (rootfs $used_mib MiB)"
