#!/usr/bin/env python3
"""An HTTP/1.1 server for one connection on stdin and stdout, serving one file with byte ranges:
what RAUC needs to stream a verity bundle (it reads the bundle in ranges through the kernel's
NBD, never downloading it whole). QEMU's guestfwd runs it for each connection the VM opens to
10.0.2.100:80, so the VM reaches it through its user-mode network and nothing listens on the
host. Every request is logged as one JSON line (method, range, bytes sent) for the test.

Usage: rangeserve.py FILE LOG   (serves FILE at /NAME, NAME its file name)
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

CHUNK = 1 << 20


def main() -> int:
    path, log = sys.argv[1], sys.argv[2]
    name = "/" + os.path.basename(path)
    size = os.path.getsize(path)
    rfile, wfile = sys.stdin.buffer, sys.stdout.buffer
    with open(path, "rb") as f, open(log, "a") as logf:
        while True:
            request = rfile.readline(8192)
            if not request:
                return 0
            headers = {}
            while True:
                line = rfile.readline(8192)
                if line in (b"\r\n", b"\n", b""):
                    break
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            parts = request.decode("latin-1").split()
            if len(parts) != 3:
                return 0
            method, target, _ = parts
            entry = {"t": round(time.time(), 3), "method": method, "path": target, "range": headers.get("range")}
            if target.split("?")[0] != name or method not in ("GET", "HEAD"):
                body = b"not found\n"
                wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                wfile.flush()
                entry["status"] = 404
                logf.write(json.dumps(entry) + "\n")
                logf.flush()
                continue
            start, end, status = 0, size - 1, 200
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", headers.get("range", ""))
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # the last N bytes
                    start = max(size - int(m.group(2)), 0)
                status = 206
            if start > end or start >= size:
                wfile.write(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%d\r\nContent-Length: 0\r\n\r\n" % size)
                wfile.flush()
                entry["status"] = 416
                logf.write(json.dumps(entry) + "\n")
                logf.flush()
                continue
            length = end - start + 1
            head = [f"HTTP/1.1 {status} {'Partial Content' if status == 206 else 'OK'}",
                    "Accept-Ranges: bytes", f"Content-Length: {length}", "Content-Type: application/octet-stream"]
            if status == 206:
                head.append(f"Content-Range: bytes {start}-{end}/{size}")
            wfile.write(("\r\n".join(head) + "\r\n\r\n").encode())
            sent = 0
            if method == "GET":
                f.seek(start)
                while sent < length:
                    data = f.read(min(CHUNK, length - sent))
                    if not data:
                        break
                    wfile.write(data)
                    sent += len(data)
            wfile.flush()
            entry.update(status=status, bytes=sent)
            logf.write(json.dumps(entry) + "\n")
            logf.flush()
            if headers.get("connection", "").lower() == "close":
                return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)
