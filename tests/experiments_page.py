"""docs/experiments.md read as commands: its ```bash lines, its ``## `` sections and the
``--keep`` regexes of its `dvc exp show` lines (tests/unit/test_experiments_page.py checks
them against params.yaml and the headline metrics; tests/e2e/test_experiments_doc.py runs
them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "experiments.md"


def bash_lines(text: str) -> list[str]:
    """The command lines of the ```bash blocks, in order (comments and blanks dropped,
    backslash continuations joined)."""
    lines: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [ln.strip() for ln in joined.splitlines()
                  if ln.strip() and not ln.strip().startswith("#")]
    return lines


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## +(.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def keep_alternatives(line: str) -> list[str]:
    """The top-level ``|`` alternatives of a ``dvc exp show --keep`` regex."""
    tokens = shlex.split(line)
    regex = tokens[tokens.index("--keep") + 1]
    out, depth, cur = [], 0, ""
    for ch in regex:
        depth += 1 if ch == "(" else -1 if ch == ")" else 0
        if ch == "|" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


def split_top_level(value: str) -> list[str]:
    """``a,b`` -> [a, b] but ``[1,2],[3,4]`` -> [[1,2], [3,4]] (Hydra's sweep syntax)."""
    out, depth, cur = [], 0, ""
    for ch in value:
        depth += 1 if ch in "[(" else -1 if ch in "])" else 0
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


def parse_value(text: str):
    """A ``-S`` value as Hydra (hence DVC) types it."""
    from dvc.utils.hydra import to_hydra_overrides

    return to_hydra_overrides([f"k={text}"])[0].value()
