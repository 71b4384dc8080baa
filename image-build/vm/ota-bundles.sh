#!/usr/bin/env bash
# The bundles `make ota-test` installs on the twin, all from the same layered root as the image
# (the same base, wick and board), each a real signed RAUC bundle made by bundle.sh:
#   next.raucb        version VERSION-next: the update that must succeed
#   broken.raucb      its wick.toml points at models that are not there: fails the health gate
#   noboot.raucb      its /sbin/init exits at once: the kernel panics, the slot never comes up
#   otherboard.raucb  next's root, for the Jetson's compatible: refused
#   otherkey.raucb    next's root, signed under another CA than the image's keyring: refused
# Usage: ota-bundles.sh BOARD_DIR BASE.tar WICK VERSION OUT_DIR   (BUNDLE_KEY/CERT/KEYRING set)
# Needs root, like layer.sh and bundle.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
board=$1 base=$2 wick=$3 version=$4 out=$5
mkdir -p "$out"
root=$out/root
layer() { "$here/layer.sh" "$board" "$base" "$wick" "$1" "$root" "$BUNDLE_KEYRING" >/dev/null; }

layer "$version-next"
"$here/bundle.sh" "$root" "$out/next.raucb"
BUNDLE_COMPATIBLE=wick-jetson-orin-nx-devkit "$here/bundle.sh" "$root" "$out/otherboard.raucb"
"$here/rauc/dev-pki.sh" "$out/other-pki" "not wick's" >/dev/null
BUNDLE_KEY=$out/other-pki/signing.key.pem BUNDLE_CERT=$out/other-pki/signing.cert.pem \
  BUNDLE_KEYRING=$out/other-pki/ca.cert.pem "$here/bundle.sh" "$root" "$out/otherkey.raucb"

layer "$version-broken"
# The owner's settings on /data do not name the models directory, so the image's do.
sed -i 's|^dir = "/data/models"$|dir = "/data/models-that-are-not-there"|' "$root/etc/wick/wick.toml"
grep -q 'models-that-are-not-there' "$root/etc/wick/wick.toml" || { echo "ota-bundles.sh: could not break $root/etc/wick/wick.toml" >&2; exit 1; }
"$here/bundle.sh" "$root" "$out/broken.raucb"

layer "$version-noboot"
ln -sf /usr/bin/false "$root/usr/sbin/init"
"$here/bundle.sh" "$root" "$out/noboot.raucb"
rm -rf "$root"
