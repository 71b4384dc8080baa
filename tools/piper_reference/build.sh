#!/usr/bin/env bash
# Builds the synthetic Piper voices and their onnxruntime reference audio into OUT
# (see synthetic_voices.py for why). Everything comes from PyPI: a venv with the pinned
# requirements, and Piper's VITS code from the piper-tts 1.8.0 sdist, checked by sha256.
#
# OUT and VENV are whole or absent, so an interrupted run never leaves one that counts as
# built: OUT is written beside it and renamed, and VENV (its scripts name its own path, so it
# is made in place) counts only once its .complete marker, written last, is there. An OUT
# that exists is kept: its name should say what it was built from (the Makefile's does).
# Runs that share OUT or VENV take turns (flock, where util-linux has it).
#
# usage: build.sh OUT LIKE.onnx.json REFERENCE.json [VENV]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"; like="$2"; ids="$3"; venv="${4:-$(dirname "$out")/piper-venv}"

sdist_url="https://files.pythonhosted.org/packages/02/cc/95b18b58d9c235d8e0bcece7321b7a7347873c14f9fea2c734b31ef04ff2/piper_tts-1.8.0.tar.gz"
sdist_sha256="830588aded347df579c91a32703e0fc2a3685d84f1e3533b14f2de69135d4904"

for f in "$like" "$ids"; do
  [ -f "$f" ] || { echo "build.sh: $f is missing (run \`make models\`; the shared references sit in ../shared)" >&2; exit 1; }
done

# lock PATH [-s]: holds PATH.lock until the script exits, exclusively or (-s) shared.
# relock [-s]: makes the last lock taken exclusive or (-s) shared.
lock() {
  mkdir -p "$(dirname "$1")"
  command -v flock >/dev/null 2>&1 || return 0
  exec {lock_fd}>"$1.lock"
  lock_path="$1"
  relock "${2:-}"
}
relock() {
  [ -n "${lock_fd:-}" ] || return 0
  local mode="${1:-}"
  flock -n $mode "$lock_fd" || { echo "== waiting for another build of $lock_path"; flock $mode "$lock_fd"; }
}
venv_ok() { [ -f "$venv/.complete" ] && cmp -s "$here/requirements.txt" "$venv/requirements.txt"; }

lock "$out"
if [ -f "$out/manifest.json" ]; then
  echo "== $out is already built"
  exit 0
fi

# Shared while the venv is used; exclusive to make it, so it is never replaced under a user.
lock "$venv" -s
if ! venv_ok; then
  relock
  if ! venv_ok; then
    echo "== installing torch, onnx and onnxruntime into $venv (about 5.5 GB, once)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
    "$venv/bin/python" -c "import torch, onnx, onnxruntime"
    cp "$here/requirements.txt" "$venv/requirements.txt"
    touch "$venv/.complete"
  fi
  relock -s
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== fetching Piper's training code (piper-tts 1.8.0 sdist)"
"$venv/bin/python" - "$sdist_url" "$sdist_sha256" "$work/piper.tar.gz" <<'PY'
import hashlib, sys, urllib.request
url, sha, dest = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=120).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"build.sh: {url} does not have the expected sha256 {sha}")
open(dest, "wb").write(data)
PY
tar -xzf "$work/piper.tar.gz" -C "$work" piper_tts-1.8.0/src/piper/train/vits

echo "== building the synthetic voices and their reference audio into $out"
rm -rf "$out.tmp"
PYTHONWARNINGS=ignore "$venv/bin/python" "$here/synthetic_voices.py" \
  --piper-train "$work/piper_tts-1.8.0/src/piper/train" --like "$like" --ids "$ids" --out "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
