"""The scenario report both VM tests write (`make vm-test`, `make ota-test`): each scenario runs
as a function returning its figures; a failure is recorded with its reason and the run goes on
to the next scenario. The report is rewritten after every scenario (one entry each: name,
passed, figures or error, seconds, in the tests' own order), so a run cut short still leaves
what it found. Scenarios may run on several threads at once.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable


class Report:
    def __init__(self, path: Path, order: list[str]):
        self.path = path
        self.order = order
        self.results: list[dict] = []
        self.lock = threading.Lock()

    def record(self, name: str, fn: Callable[[], dict | None], on_failure: Callable[[], str] = lambda: "",
               finally_: Callable[[], None] = lambda: None) -> dict:
        """Runs one scenario; `on_failure` gives text to print after a failure's traceback (a
        console's tail), `finally_` runs whatever happened (stopping its VM)."""
        print(f"== {name}", flush=True)
        start = time.monotonic()
        entry: dict = {"name": name}
        try:
            figures = fn() or {}
            entry.update(passed=True, figures=figures)
        except Exception as e:  # every failure is reported, and the next scenario still runs
            entry.update(passed=False, error=f"{type(e).__name__}: {e}")
            traceback.print_exc()
            print(on_failure(), file=sys.stderr, flush=True)
        finally:
            finally_()
        entry["seconds"] = round(time.monotonic() - start, 1)
        with self.lock:
            self.results.append(entry)
            self.results.sort(key=lambda r: self.order.index(r["name"]) if r["name"] in self.order else len(self.order))
            print(f"== {name}: {'passed' if entry['passed'] else 'FAILED'} in {entry['seconds']} s "
                  f"{json.dumps(entry.get('figures', entry.get('error')))}", flush=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"scenarios": self.results}, indent=2) + "\n")
        return entry

    def failed(self) -> list[str]:
        return [r["name"] for r in self.results if not r["passed"]]
