"""The README is the front door: short, every command in it valid, every link resolving.

Fast and offline: nothing is run. Each line of the README's ```bash blocks is checked:
`dvc exp run -S key=value` names a params.yaml key with a value the project's own params
checker accepts (every value of a comma-separated sweep), `audiotag ...` parses with the
command's argparse parser, `make <target>` names a Makefile target, `python -m <module>` and
`python <script>` exist; other commands must be of a known kind. Every relative link of the
README and of docs/*.md names an existing file and, with `#anchor`, an existing heading.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from audiotag.cli import parser as audiotag_parser
from audiotag.params_check import ParamsError, check_params  # wherever ParamsError lives

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# commands whose arguments are not checked here (dvc's own subcommands, shell builtins)
OTHER_COMMANDS = {"dvc", "source", "cat", "git", "cd", "export", "ls"}
TOPICS = ["parameters", "datasets", "features", "models", "training", "label-cleaning",
          "evaluation", "team", "benchmarks", "experiments", "using-a-model", "reproducibility"]


def bash_lines(markdown: str) -> list[str]:
    """Commands of the ```bash blocks: comments dropped, continuation lines joined."""
    lines, block, pending = [], False, ""
    for line in markdown.splitlines():
        if line.startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        code = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].rstrip()
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        code = (pending + code).strip()
        pending = ""
        if code:
            lines.append(code)
    return lines


def _sweep_values(value: str) -> list[str]:
    """`a,b,c` of a queued sweep, commas inside brackets kept (`[cnn1d, crnn]`)."""
    values, depth, current = [], 0, ""
    for char in value:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    return values + [current]


def _set(params: dict, key: str, value: str, add: bool) -> None:
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {}) if add else node.get(part)
        if not isinstance(node, dict):
            raise ParamsError(f"-S {key}: {part} is not a params group")
    if last not in node and not add:
        raise ParamsError(f"-S {key}: not a key of params.yaml (`+{key}` adds one)")
    node[last] = yaml.safe_load(value)


def check_exp_run(argv: list[str], params: dict, tmp: Path) -> None:
    """Every `-S key=value` (each value of a sweep) through audiotag.params_check."""
    overrides = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-S", "--set-param")]
    for override in overrides:
        key, sep, value = override.partition("=")
        assert sep, f"-S {override}: expected key=value"
        add = key.startswith("+")
        key = key.lstrip("+")
        for one in _sweep_values(value) if "--queue" in argv else [value]:
            trial = copy.deepcopy(params)
            _set(trial, key, one, add)
            # the rest of the command's overrides (e.g. the folder paths and their inputs)
            for other in overrides:
                if other != override:
                    okey, _, ovalue = other.partition("=")
                    _set(trial, okey.lstrip("+"), _sweep_values(ovalue)[0]
                         if "--queue" in argv else ovalue, okey.startswith("+"))
            path = tmp / "params.yaml"
            path.write_text(yaml.safe_dump(trial), encoding="utf-8")
            check_params(path)


def make_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", makefile.read_text(), re.MULTILINE))


def check_command(line: str, params: dict, tmp: Path) -> None:
    """Raise AssertionError, ParamsError or SystemExit when ``line`` is not valid."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    argv: list[str] = []
    for token in [*lexer, ";"]:
        if token in (";", "&&", "||", "|"):
            if argv:
                _check_one(line, argv, params, tmp)
            argv = []
        else:
            argv.append(token)


def _check_one(line: str, argv: list[str], params: dict, tmp: Path) -> None:
    if argv[:3] == ["dvc", "exp", "run"]:
        check_exp_run(argv, params, tmp)
    elif argv[0] == "audiotag":
        if argv[1:2] == ["tune"]:
            return  # tune parses its own options (python -m audiotag.tune -h)
        audiotag_parser().parse_args(argv[1:])
    elif argv[0] == "make":
        missing = [t for t in argv[1:] if not t.startswith("-") and "=" not in t
                   and t not in make_targets(ROOT / "Makefile")]
        assert not missing, f"{line!r}: no Makefile target {missing}"
    elif argv[0] in ("python", "python3"):
        if argv[1] == "-m":
            assert importlib.util.find_spec(argv[2]) is not None, f"{line!r}: no module {argv[2]}"
        else:
            assert (ROOT / argv[1]).is_file(), f"{line!r}: no script {argv[1]}"
    else:
        assert argv[0] in OTHER_COMMANDS, f"{line!r}: a command this test does not know"


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def broken_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks hold no links
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s): and mailto: links are not checked offline
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{page.name}: {target}: no file {path_part}")
            continue
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.MULTILINE)
            if anchor not in {slug(h) for h in headings}:
                problems.append(f"{page.name}: {target}: no heading #{anchor} in {dest.name}")
    return problems


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_readme_is_a_short_front_door_linking_every_topic():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 210, "README.md: keep it a front door; details go to docs/"
    missing = [t for t in TOPICS if f"(docs/{t}.md" not in text]
    assert not missing, f"README.md links no docs page for {missing}"
    assert all((DOCS / f"{t}.md").is_file() for t in TOPICS)


def test_readme_commands_are_valid(params, tmp_path):
    lines = bash_lines(README.read_text(encoding="utf-8"))
    assert any(line.startswith("dvc exp run") for line in lines)
    assert any(line.startswith("audiotag predict") for line in lines)
    for line in lines:
        check_command(line, params, tmp_path)


def test_readme_keeps_the_commands_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in bash_lines(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_links_resolve(page):
    assert not broken_links(page)


@pytest.mark.parametrize("line, error", [
    ("dvc exp run -S train.lrr=0.1", ParamsError),
    ("dvc exp run -S train.lr=-1", ParamsError),
    ("dvc exp run --queue -S 'train.lr=0.001,-0.5'", ParamsError),
    ("dvc exp run -S 'train.models=[cnn2d, nosuchnet]'", ParamsError),
    ("audiotag predict --checkpoint m.pt --nope x.wav", SystemExit),
    ("audiotag nosuch", SystemExit),
    ("make nosuchtarget", AssertionError),
    ("python -m audiotag.nosuch", AssertionError),
    ("rm -rf data", AssertionError),
])
def test_the_checks_reject_bad_commands(line, error, params, tmp_path):
    with pytest.raises(error):
        check_command(line, params, tmp_path)


def test_valid_commands_pass(params, tmp_path):
    for line in ["dvc exp run --queue -S 'train.models=[cnn1d, crnn],[cnn2d]'",
                 "dvc exp run -S data.dataset=folder -S data.folder.audio_dir=/a "
                 "-S data.folder.csv=/l.csv -S +data.inputs.audio=/a -S +data.inputs.labels=/l.csv",
                 "audiotag export --checkpoint m.pt --format onnx", "make pipeline",
                 "python -m audiotag.params_doc"]:
        check_command(line, params, tmp_path)


def test_broken_links_are_found(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n## Some `code` (x)\n")
    page = tmp_path / "p.md"
    page.write_text("[ok](a.md#some-code-x) [bad](a.md#nope) [gone](b.md) [web](https://x.y)\n")
    assert broken_links(page) == ["p.md: a.md#nope: no heading #nope in a.md",
                                  "p.md: b.md: no file b.md"]
