#!/usr/bin/env bash
# Makes the peers' venv at VENV from requirements.txt beside this script, whole or not at all:
# it is built at VENV.partial and renamed (only VENV/bin/python is used, which survives the
# move). An existing VENV is kept; its name should say what it was built from (the Makefile's
# hash does).
#
# usage: venv.sh VENV
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$1"
[ -x "$venv/bin/python" ] && exit 0
rm -rf "$venv.partial"
python3 -m venv "$venv.partial"
"$venv.partial/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
mv "$venv.partial" "$venv"
echo "== peers' venv ready: $venv"
