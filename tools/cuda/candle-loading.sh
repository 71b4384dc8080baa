#!/usr/bin/env bash
# Makes DEST/candle-core-VERSION: crates.io's candle-core, with cudarc switched from
# `dynamic-linking` to `dynamic-loading`. CUDA builds use it through a cargo [patch]
# (`make cuda-check`, `make cross`), never the committed Cargo.toml.
#
# Why: candle-core 0.11 asks cudarc to link libcuda, cuBLAS and cuRAND at load time, so a
# CUDA build of wick does not even start on a machine without the NVIDIA driver: no error of
# ours, no CPU fallback, no `wick doctor` to say what is missing. With dynamic loading cudarc
# opens those libraries on first use, and src/device.rs checks for them before it does.
# Candle's own issue: huggingface/candle#3900 (an open pull request, #3916, makes it a
# feature); drop this script once a release has it. The other half, CUDA's runtime linked
# statically, needs no patch (see build.rs).
#
# The crate comes from cargo's own download of Cargo.lock's version (checked by cargo against
# the lock's sha256); the change is one word, and the script fails if that word is not there.
#
# Usage: tools/cuda/candle-loading.sh DEST   (prints the patched crate's directory)
set -euo pipefail

DEST=${1:?usage: tools/cuda/candle-loading.sh DEST}
cd "$(dirname "$0")/../.."
version=$(awk '/^name = "candle-core"$/ {getline; gsub(/[" ]/, "", $0); sub(/version=/, "", $0); print; exit}' Cargo.lock)
[ -n "$version" ] || { echo "candle-loading.sh: no candle-core in Cargo.lock" >&2; exit 1; }
out="$DEST/candle-core-$version"
if [ -f "$out/.patched" ]; then
  echo "$out"
  exit 0
fi

cargo fetch --locked >&2
crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"candle-core-$version.crate" 2>/dev/null | head -n1)
[ -n "$crate" ] || { echo "candle-loading.sh: cargo fetch did not leave candle-core-$version.crate in the registry cache" >&2; exit 1; }

mkdir -p "$DEST"
work=$(mktemp -d "$DEST/.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$crate" -C "$work"
toml="$work/candle-core-$version/Cargo.toml"
[ "$(grep -c '^ *"dynamic-linking",$' "$toml")" = 1 ] \
  || { echo "candle-loading.sh: candle-core $version no longer asks cudarc for \"dynamic-linking\" in one place; revisit this script" >&2; exit 1; }
sed -i 's/^\( *\)"dynamic-linking",$/\1"dynamic-loading",/' "$toml"
touch "$work/candle-core-$version/.patched"
rm -rf "$out"
mv "$work/candle-core-$version" "$out"
echo "$out"
