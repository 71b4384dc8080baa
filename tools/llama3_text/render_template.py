#!/usr/bin/env python3
"""Renders Meta's Llama 3.2 3B Instruct chat template (from `make llama3-text`) for the
conversations wick builds, with Jinja as Hugging Face's `apply_chat_template` runs it
(trim_blocks, lstrip_blocks, `raise_exception`), into the fixture tests/llm_llama3_text.rs
checks wick's prompts against. Run once when the cases change; the output is kept in git.

Usage: render_template.py REFERENCES_DIR OUT.json   (needs jinja2: pip install jinja2)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jinja2

BOS = "<|begin_of_text|>"
# (name, date_string, system or None, [(role, content), ...]); every case ends with the
# assistant's prompt (add_generation_prompt), as wick's prompts do.
CASES = [
    ("system and one question", "03 Dec 2026", "Answer in one short sentence.",
     [("user", "What is the capital of France?")]),
    ("no system prompt", "03 Dec 2026", None, [("user", "Hello there.")]),
    ("empty system prompt", "01 Jan 2025", "", [("user", "Hello there.")]),
    ("multi-turn", "29 Feb 2028", "You are a kitchen timer's voice.",
     [("user", "Set a timer for ten minutes."), ("assistant", "Ten minutes, starting now."),
      ("user", "How long is left?"), ("assistant", "About nine minutes."), ("user", "Thanks!")]),
    ("whitespace is trimmed", "15 Aug 2026", "  Be brief.\n\n",
     [("user", "\n  What's 2 + 2?  \n"), ("assistant", " Four. "), ("user", "\tAnd 3 + 3?\n")]),
    ("special-looking and non-ASCII text", "07 Jul 2027", "Réponds en français, s'il te plaît.",
     [("user", "Qu'est-ce que « <|eot_id|> » ? 日本語も 🦙")]),
]


def raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit("usage: render_template.py REFERENCES_DIR OUT.json")
    refs, out = Path(sys.argv[1]), Path(sys.argv[2])
    source = (refs / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(source)
    cases = []
    for name, date, system, turns in CASES:
        messages = ([{"role": "system", "content": system}] if system is not None else []) + \
            [{"role": r, "content": c} for r, c in turns]
        rendered = template.render(messages=messages, bos_token=BOS, add_generation_prompt=True, date_string=date)
        cases.append({"name": name, "date": date, "system": system, "messages": turns, "rendered": rendered})
    pins = json.loads((refs / "pins.json").read_text())
    doc = {"template": "meta-llama-Llama-3.2-3B-Instruct.jinja (llama-cpp-python 0.3.36 sdist, vendor/llama.cpp)",
           "sdist_sha256": pins["llama_cpp_python-0.3.36.tar.gz"]["sha256"], "jinja2": jinja2.__version__,
           "made_by": "tools/llama3_text/render_template.py", "cases": cases}
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"render_template.py: {out}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
