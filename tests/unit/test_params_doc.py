"""docs/parameters.md is generated from params.yaml's comments (audiotag.params_doc) and
committed: it must document every key, and be what the generator writes today."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from audiotag.params_doc import ParamsDocError, main, parse, render

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
PAGE = ROOT / "docs" / "parameters.md"


def _keys(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        out.append(prefix + key)
        if isinstance(value, dict) and value:
            out += _keys(value, f"{prefix}{key}.")
    return out


def test_committed_page_is_generated_from_params_yaml():
    expected = render(PARAMS.read_text(encoding="utf-8"))
    assert PAGE.exists(), "docs/parameters.md is missing: run python -m audiotag.params_doc"
    assert PAGE.read_text(encoding="utf-8") == expected, (
        "docs/parameters.md is out of date with params.yaml: run python -m audiotag.params_doc")


def test_every_params_key_is_on_the_page():
    page = PAGE.read_text(encoding="utf-8")
    tree = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    shared = {line.split("`")[1].rsplit(".", 1)[-1] for line in page.splitlines()
              if line.startswith("| `models.<any>.") or line.startswith("| `models.{")}
    missing = []
    for key in _keys(tree):
        parts = key.split(".")
        if f"`{key}`" in page:
            continue
        if parts[0] == "models" and len(parts) == 3 and parts[2] in shared:
            # a shared row names it: models.<any>.<key> or models.{...,name,...}.<key>
            rows = [line for line in page.splitlines()
                    if f".{parts[2]}` |" in line and (
                        "models.<any>." in line or f"{parts[1]}," in line
                        or f",{parts[1]}}}" in line or f"{{{parts[1]}," in line)]
            if rows:
                continue
        missing.append(key)
    assert not missing, f"params keys not documented in docs/parameters.md: {missing}"


def test_a_key_without_comment_is_an_error_naming_it():
    text = "train:  # training\n  lr: 0.1  # rate\n  epochs: 3\n"
    with pytest.raises(ParamsDocError, match=r"line 3: train.epochs has no comment"):
        parse(text)


def test_an_added_key_makes_the_committed_page_stale(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text(encoding="utf-8").replace(
        "\n  lr: 0.002 ", "\n  new_knob: 3                 # a knob added without regenerating"
        "\n  lr: 0.002 ", 1), encoding="utf-8")
    page = tmp_path / "parameters.md"
    page.write_text(PAGE.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["--params", str(params), "--out", str(page), "--check"]) == 1
    assert main(["--params", str(params), "--out", str(page)]) == 0
    assert "| `train.new_knob` | `3` | a knob added without regenerating |" in page.read_text()
    assert main(["--params", str(params), "--out", str(page), "--check"]) == 0


def test_shared_model_keys_are_collapsed_and_nested_groups_get_sections():
    page = render(PARAMS.read_text(encoding="utf-8"))
    assert "| `models.defaults.head_layers` |" in page  # written once in params.yaml
    assert page.count("head_layers` |") == 1
    assert "| `models.{lstm,gru}.pooling` |" in page
    assert "### `data.synthetic`" in page and "### `clean.detector.train`" in page
    assert "| `data.synthetic.num_classes` | `12` |" in page


def test_a_models_own_block_is_listed_under_that_model():
    text = ("models:  # per model\n  a:  # model a\n    width: 4  # a width\n"
            "    train:  # a's own training\n      epochs: 20  # a's epochs\n"
            "  b:  # model b\n    width: 4  # a width\n")
    page = render(text)
    a, b = page.index("### `models.a`"), page.index("### `models.b`")
    assert a < page.index("| `models.a.train.epochs` | `20` | a's epochs |") < b
    assert "| `models.<any>.width` | `4` |" in page  # shared keys still collapse
