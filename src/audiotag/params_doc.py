"""docs/parameters.md, generated from params.yaml's own comments.

params.yaml documents every key in a trailing comment; this module turns those comments into
the reference page, so the two cannot drift::

    python -m audiotag.params_doc            # rewrite docs/parameters.md
    python -m audiotag.params_doc --check    # exit 1 when the page is out of date

A key without a comment is an error naming its line. tests/unit/test_params_doc.py fails when the
committed page differs from what this writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARAMS = Path("params.yaml")  # relative to the project root, where the command runs
PAGE = Path("docs") / "parameters.md"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")
_COMMENT = re.compile(r"(^|\s)#\s?(?P<text>.*)$")

INTRO = """\
Every key of `params.yaml`, with its default and meaning. Change one for an experiment with
`dvc exp run -S group.key=value` ([experiments.md](experiments.md)); each stage in
`dvc.yaml` declares only the keys it reads, so only what a change affects re-runs.

Bad values stop the stage that reads them before it writes anything, with a message naming
the key (`params.yaml: train.lr: Input should be greater than 0 (got -0.1)`); misspelt keys
and unknown groups are errors too. The first stage, `check_params`, validates the whole file
whenever it changes, before any other stage runs (`train.epochz: unknown key; did you mean
train.epochs?`).
"""


class ParamsDocError(ValueError):
    """params.yaml cannot be documented (a key without a comment, an unparsed line)."""


@dataclass
class Entry:
    """One key of params.yaml: its dotted path, its value as written, its comment."""

    key: str
    value: str  # "" for a group (a mapping written over the following lines)
    comment: str
    line: int

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[-1]


def _split_comment(rest: str) -> tuple[str, str]:
    match = _COMMENT.search(rest)
    if match is None:
        return rest.strip(), ""
    return rest[: match.start()].strip(), match.group("text").strip()


def parse(text: str, where: str = "params.yaml") -> tuple[list[str], list[Entry]]:
    """The file's leading comment lines and every key, in file order."""
    preamble: list[str] = []
    entries: list[Entry] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the open groups
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            text_ = stripped.lstrip("#").strip()
            if entries:
                entries[-1].comment = f"{entries[-1].comment} {text_}".strip()
            else:
                preamble.append(text_)
            continue
        match = _KEY.match(line)
        if match is None:
            raise ParamsDocError(f"{where}: line {number}: not a `key: value  # comment` line: "
                                 f"{stripped!r}")
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [match.group("key")])
        value, comment = _split_comment(match.group("rest"))
        if not comment:
            raise ParamsDocError(f"{where}: line {number}: {key} has no comment; document it "
                                 "after the value (`key: value  # meaning`)")
        entries.append(Entry(key, value, comment, number))
        if not value:
            stack.append((indent, match.group("key")))
    return preamble, entries


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.append(prefix + str(key))
        if isinstance(value, dict) and value:
            keys += _flatten(value, f"{prefix}{key}.")
    return keys


def _prose(text: str) -> str:
    """A comment as Markdown: `<model>` outside code spans would be read as an HTML tag."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def _cell(text: str) -> str:
    return _prose(text).replace("|", "\\|")


def _table(rows: list[tuple[str, str, str]]) -> list[str]:
    out = ["| key | default | meaning |", "|---|---|---|"]
    out += [f"| `{key}` | {f'`{value}`' if value else ''} | {_cell(comment)} |"
            for key, value, comment in rows]
    return out


def _models(entries: list[Entry]) -> list[str]:
    """The models group: each model's own keys, then the keys several models share."""
    models = [e for e in entries if e.key.count(".") == 1 and not e.value]
    leaves = [e for e in entries if e.key.count(".") == 2]
    by_model: dict[str, list[Entry]] = {m.name: [] for m in models}
    for e in entries:  # a model's keys, and those of its blocks (models.cnn2d.train.epochs)
        if e.key.count(".") >= 2:
            by_model[e.key.split(".")[1]].append(e)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for e in leaves:
        groups.setdefault((e.name, e.value, e.comment), []).append(e.key.split(".")[1])
    shared = {sig: names for sig, names in groups.items() if len(names) > 1}
    out: list[str] = []
    for model in models:
        own = [(e.key, e.value, e.comment) for e in by_model[model.name]
               if (e.name, e.value, e.comment) not in shared]
        out += ["", f"### `{model.key}`", "", _prose(model.comment)]
        if own:
            out += [""] + _table(own)
    rows = []
    for (name, value, comment), names in shared.items():
        key = ("models.<any>" if len(names) == len(models)
               else "models.{" + ",".join(names) + "}") + f".{name}"
        rows.append((key, value, comment))
    out += ["", "### Keys several models share", "",
            "`<any>`: every model; `{a,b}`: the models named. Each model has its own copy in "
            "params.yaml, so `dvc exp run -S models.cnn2d.channels=[8,16]` changes one model; "
            "the options in `models.defaults` are written once for all "
            "(`-S '++models.cnn2d.dropout=0.3'` gives one model its own).",
            ""] + _table(rows)
    return out


def render(text: str, where: str = "params.yaml") -> str:
    """The Markdown page documenting every key of the params.yaml ``text``."""
    _, entries = parse(text, where)
    tree = yaml.safe_load(text) or {}
    parsed = [e.key for e in entries]
    expected = _flatten(tree)
    if parsed != expected:
        missing = sorted(set(expected) - set(parsed)) or sorted(set(parsed) - set(expected))
        raise ParamsDocError(f"{where}: keys read line by line differ from YAML's: {missing} "
                             "(one `key: value  # comment` per line, flow style for lists)")
    out = ["<!-- generated by `python -m audiotag.params_doc` from params.yaml's comments: "
           "edit those, then rerun it -->", "", "# Parameters", "", INTRO.rstrip()]
    top_leaves = [(e.key, e.value, e.comment) for e in entries
                  if "." not in e.key and e.value]
    if top_leaves:
        out += ["", "## Top level", ""] + _table(top_leaves)
    for group in (e for e in entries if "." not in e.key and not e.value):
        inside = [e for e in entries if e.key.startswith(group.key + ".")]
        out += ["", f"## `{group.key}`", "", _prose(group.comment)]
        if group.key == "models":
            out += _models(inside)
            continue
        sections: dict[str, list[Entry]] = {group.key: []}
        heads = {group.key: group}
        for e in inside:
            parent = e.key.rsplit(".", 1)[0]
            if not e.value:
                sections[e.key], heads[e.key] = [], e
            sections[parent].append(e)
        for name, members in sections.items():
            rows = [(e.key, e.value, e.comment) for e in members if e.value]
            if name != group.key:
                out += ["", f"### `{name}`", "", _prose(heads[name].comment)]
            if rows:
                out += [""] + _table(rows)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m audiotag.params_doc", description=__doc__
                                 .split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=PARAMS)
    ap.add_argument("--out", type=Path, default=PAGE)
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when --out differs from what would be written")
    args = ap.parse_args(argv)
    try:
        page = render(args.params.read_text(encoding="utf-8"), str(args.params))
    except ParamsDocError as err:
        print(err, file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != page:
            print(f"{args.out} is out of date with {args.params}: run "
                  "python -m audiotag.params_doc", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
