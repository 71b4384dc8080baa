#!/usr/bin/env python3
"""Reads a board's board.toml and prints its settings as shell assignments, so the image
scripts (shell) share one parser and one set of checks: a missing or mistyped key is an error
naming the file and the key, not an empty variable.

Usage: board.py board/NAME/board.toml  ->  BOARD_NAME=... BOARD_ARCH=... (eval-able)
"""
import shlex
import sys
import tomllib

# key -> (table, name, type); lists become space-separated words.
KEYS = {
    "BOARD_NAME": ("board", "name", str),
    "BOARD_DESCRIPTION": ("board", "description", str),
    "BOARD_ARCH": ("board", "arch", str),
    "BOARD_COMPATIBLE": ("board", "compatible", str),
    "BOARD_PACKAGES": ("image", "packages", list),
    "BOARD_BUILD_PACKAGES": ("image", "build_packages", list),
    "BOARD_CMDLINE": ("image", "cmdline", str),
    "BOARD_MODULES": ("image", "modules", list),
    "BOARD_ESP_MOUNT": ("image", "esp_mount", str),
    "BOARD_BUTTON_KIND": ("button", "kind", str),
    "BOARD_SOUND_CARD": ("sound", "card", str),
}
OPTIONAL = {"BOARD_BUILD_PACKAGES", "BOARD_MODULES", "BOARD_ESP_MOUNT"}


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: board.py board/NAME/board.toml", file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    out = []
    for var, (table, name, kind) in KEYS.items():
        value = data.get(table, {}).get(name)
        if value is None:
            if var in OPTIONAL:
                value = [] if kind is list else ""
            else:
                print(f"{path}: [{table}] {name} is missing", file=sys.stderr)
                return 1
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            print(f"{path}: [{table}] {name} must be a {'list of strings' if kind is list else 'string'}", file=sys.stderr)
            return 1
        text = " ".join(value) if kind is list else value
        out.append(f"{var}={shlex.quote(text)}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
