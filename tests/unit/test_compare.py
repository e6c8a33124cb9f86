"""`audiotag compare` (issue 18): experiments grouped over seeds, test lwlrap ± CI or mean ±
sd (n), and a paired bootstrap over test clips marking significant differences. Here on a
hand-made `dvc exp show --json` and fake per-clip predictions; the e2e test runs a real
2-config × 3-seed queue."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest

from audiotag import cli
from audiotag.compare import CompareError, compare_table, render, runs_from_exp_show

CLASSES = ["a", "b", "c", "d"]


def _record(rev, name, seed, lr, lwlrap=0.5):
    metrics = {"metrics/m.json": {"data": {"lwlrap": lwlrap, "lwlrap_ci_low": lwlrap - 0.1,
                                           "lwlrap_ci_high": lwlrap + 0.1}},
               "metrics/labels.json": {"data": {"flagged_fraction": 0.1}}}
    return {"rev": rev, "name": name, "data": {
        "params": {"params.yaml": {"data": {"seed": seed, "train": {"lr": lr, "epochs": 2}}}},
        "metrics": metrics}}


def exp_show() -> list[dict]:
    base = _record("b" * 40, "main", 1, 0.002, 0.6)
    exps = [_record(f"{i:040d}", f"{cfg}-{seed}", seed, lr, 0.5 + 0.1 * (cfg == "good"))
            for i, (cfg, lr, seed) in enumerate((c, lr, s) for c, lr in (("bad", 0.001),
                                                                            ("good", 0.004))
                                                for s in (1, 2, 3))]
    failed = {"rev": "f" * 40, "name": "broken", "data": {"params": {}, "metrics": {}}}
    # a queued run still running: `dvc exp show` gives it the workspace's metrics
    running = _record("e" * 40, "running", 2, 0.004, 0.9)
    base["experiments"] = [{"revs": [e]} for e in exps] + [{"revs": [failed]}] + [
        {"executor": {"state": "running"}, "revs": [running]}]
    return [{"rev": "workspace", "name": None, "data": base["data"]}, base]


def loader(run, model):
    """Per seed its own test set (as the synthetic dataset draws it); `good-*` runs score
    the true labels high, `bad-*` runs are noise, the baseline in between."""
    seed = run.params["seed"]
    rng = np.random.default_rng(seed)
    truth = rng.random((60, len(CLASSES))) < 0.3
    truth[np.arange(60), rng.integers(0, len(CLASSES), 60)] = True
    quality = {"good": 3.0, "bad": 0.0}.get(run.name.split("-")[0], 1.0)
    noise = np.random.default_rng(zlib.crc32(run.name.encode())).standard_normal(truth.shape)
    scores = quality * truth + noise
    labels = [";".join(c for c, t in zip(CLASSES, row, strict=True) if t) for row in truth]
    return pd.DataFrame({"clip_id": [f"s{seed}-{i}" for i in range(60)], "labels": labels,
                         **{c: scores[:, j] for j, c in enumerate(CLASSES)}})


def test_seeds_are_grouped_and_differences_marked():
    runs = runs_from_exp_show(exp_show())
    names = [r.name for r in runs]
    assert names[:2] == ["main", "bad-1"] and "broken" not in names and "running" not in names
    header, rows = compare_table(runs, loader, resamples=500)
    assert header == ["experiments", "train.lr", "n", "m test lwlrap", "m Δ"]  # seed: grouped
    table = {r[1]: r for r in rows}
    assert table["0.002"][2:] == ["1", "0.600 [0.500, 0.700]", "ref"]
    assert table["0.004"][0] == "good-1+2" and table["0.004"][3] == "0.600 ± 0.000 (3)"
    # the baseline shares seed 1's test set with both rows: tested, and clearly different
    assert table["0.004"][4].startswith("+") and table["0.004"][4].endswith("*")
    assert table["0.001"][4].startswith("-") and table["0.001"][4].endswith("*")
    _, rows = compare_table(runs, loader, ref="bad-2", resamples=500)
    assert {r[1]: r[4] for r in rows}["0.001"] == "ref"
    md = render(header, rows, markdown=True)
    assert md.splitlines()[1] == "|---|---:|---:|---:|---:|"


def test_same_predictions_are_not_significant_and_unshared_test_sets_are_na():
    runs = runs_from_exp_show(exp_show())

    def same(run, model):  # every run scores like the baseline, each on its seed's clips
        return loader(type(run)("main", None, run.params, run.metrics), model)

    _, rows = compare_table(runs, same, resamples=500)
    assert all(r[4] in ("ref", "+0.000") for r in rows), rows
    for run in runs:  # the baseline on a test set no experiment has
        run.params["seed"] = 7 if run.baseline else run.params["seed"]
    _, rows = compare_table(runs, loader, resamples=500)
    assert {r[1]: r[4] for r in rows}["0.004"] == "n/a"


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(CompareError, match="no experiment with metrics"):
        compare_table(runs_from_exp_show([]), loader)
    with pytest.raises(CompareError, match="--ref 'nope'"):
        compare_table(runs_from_exp_show(exp_show()), loader, ref="nope")

    def bad(run, model):
        return pd.DataFrame({"clip_id": ["x"], "labels": ["zebra"], "a": [0.1]})

    with pytest.raises(CompareError, match="bad-1: predictions/m.csv: label 'zebra'"):
        compare_table(runs_from_exp_show(exp_show()), bad, ref="main")
    broken = tmp_path / "exp.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit):
        cli.main(["compare", "--json", str(broken)])
    saved = tmp_path / "ok.json"
    saved.write_text(json.dumps(exp_show()))
    with pytest.raises(SystemExit):  # the runs' predictions are in no DVC repo here
        cli.main(["compare", "--json", str(saved), "--repo", str(tmp_path)])


def test_an_ensemble_is_a_column_read_from_its_own_predictions(monkeypatch):
    """An ensemble (``ensembles.<name>`` in the run's params) has ``metrics/<name>.json`` like
    a model; its paired bootstrap reads ``ensembles/<name>.csv``, a model's
    ``predictions/<model>.csv``."""
    import io

    import dvc.api

    from audiotag.compare import dvc_loader

    shown = exp_show()
    for record in [shown[1], *(e["revs"][0] for e in shown[1]["experiments"])]:
        data = record["data"]
        if "metrics/m.json" not in data["metrics"]:  # the failed run
            continue
        data["params"]["params.yaml"]["data"]["ensembles"] = {
            "ens": {"models": ["m", "m2"], "method": "mean"}}
        data["metrics"]["metrics/ens.json"] = {"data": dict(data["metrics"]["metrics/m.json"]
                                                            ["data"])}
    runs = runs_from_exp_show(shown)
    opened = []

    def fake_open(path, repo, rev):
        opened.append(path)
        run = next(r for r in runs if r.rev == rev)
        return io.StringIO(loader(run, "m").to_csv(index=False))

    monkeypatch.setattr(dvc.api, "open", fake_open)
    header, rows = compare_table(runs, dvc_loader("."), resamples=200)
    assert header[-4:] == ["m test lwlrap", "m Δ", "ens test lwlrap", "ens Δ"]
    assert {r[1]: r[6] for r in rows}["0.004"].endswith("*")  # tested like the model
    assert set(opened) == {"predictions/m.csv", "ensembles/ens.csv"}
