"""`audiotag compare` (issue 18): experiments grouped over seeds, test lwlrap ± CI or mean ±
sd (n), and a paired bootstrap over test clips marking significant differences. Here on a
hand-made `dvc exp show --json` and fake per-clip predictions; the e2e test runs a real
2-config × 3-seed queue."""

from __future__ import annotations

import json
import sys
import zlib

import numpy as np
import pandas as pd
import pytest

from audiotag import cli
from audiotag.compare import CompareError, compare_table, render, runs_from_exp_show

CLASSES = ["a", "b", "c", "d"]


def _record(rev, name, seed, lr, lwlrap=0.5):
    # the headline under the model's name, with the CI that add_intervals reads from the
    # details file (tested on its own below)
    metrics = {"metrics/m.json": {"data": {"m": {"lwlrap": lwlrap, "lwlrap_ci_low": lwlrap - 0.1,
                                                 "lwlrap_ci_high": lwlrap + 0.1}}},
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
    result = compare_table(runs, loader, resamples=500)
    header, rows = result.header, result.rows
    assert not result.missing and not result.notes()
    assert header == ["experiments", "train.lr", "n", "m test lwlrap", "m Δ"]  # seed: grouped
    table = {r[1]: r for r in rows}
    assert table["0.002"][2:] == ["1", "0.600 [0.500, 0.700]", "ref"]
    assert table["0.004"][0] == "good-1+2" and table["0.004"][3] == "0.600 ± 0.000 (3)"
    # the baseline shares seed 1's test set with both rows: tested, and clearly different
    assert table["0.004"][4].startswith("+") and table["0.004"][4].endswith("*")
    assert table["0.001"][4].startswith("-") and table["0.001"][4].endswith("*")
    rows = compare_table(runs, loader, ref="bad-2", resamples=500).rows
    assert {r[1]: r[4] for r in rows}["0.001"] == "ref"
    md = render(header, rows, markdown=True)
    assert md.splitlines()[1] == "|---|---:|---:|---:|---:|"


def test_same_predictions_are_not_significant_and_unshared_test_sets_are_na():
    runs = runs_from_exp_show(exp_show())

    def same(run, model):  # every run scores like the baseline, each on its seed's clips
        return loader(type(run)("main", None, run.params, run.metrics), model)

    rows = compare_table(runs, same, resamples=500).rows
    assert all(r[4] in ("ref", "+0.000") for r in rows), rows
    for run in runs:  # the baseline on a test set no experiment has
        run.params["seed"] = 7 if run.baseline else run.params["seed"]
    rows = compare_table(runs, loader, resamples=500).rows
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
        data["metrics"]["metrics/ens.json"] = {"data": {"ens": dict(
            data["metrics"]["metrics/m.json"]["data"]["m"])}}
    runs = runs_from_exp_show(shown)
    opened = []

    def fake_open(path, repo, rev):
        opened.append(path)
        run = next(r for r in runs if r.rev == rev)
        return io.StringIO(loader(run, "m").to_csv(index=False))

    monkeypatch.setattr(dvc.api, "open", fake_open)
    table = compare_table(runs, dvc_loader("."), resamples=200)
    header, rows = table.header, table.rows
    assert header[-4:] == ["m test lwlrap", "m Δ", "ens test lwlrap", "ens Δ"]
    assert {r[1]: r[6] for r in rows}["0.004"].endswith("*")  # tested like the model
    assert set(opened) == {"predictions/m.csv", "ensembles/ens.csv"}


def _missing_open(missing: dict[str, Exception], runs):
    """A ``dvc.api.open`` that raises, for the runs named in ``missing``, the exception the
    real DVC raises (PathMissingError: an output whose object is neither in the cache nor on
    the remote, wrapping FileMissingError; RevError: a commit this clone lacks)."""
    import io

    def fake_open(path, repo, rev):
        run = next(r for r in runs if r.rev == rev)
        if run.name in missing:
            raise missing[run.name]
        return io.StringIO(loader(run, "m").to_csv(index=False))
    return fake_open


def test_predictions_not_at_hand_give_na_and_say_how_to_fetch_them(monkeypatch, tmp_path,
                                                                    capsys):
    """A fresh clone before `dvc pull` (issue 29): the metrics still fill the table, Δ is
    n/a where a side has no predictions, the runs at hand are still tested, and a note
    names the missing runs and the command that fetches each; exit status 0."""
    import dvc.api
    from dvc.exceptions import FileMissingError, PathMissingError
    from dvc.scm import RevError

    from audiotag.compare import dvc_loader

    runs = runs_from_exp_show(exp_show())
    missing = {"main": PathMissingError("predictions/m.csv", "."),
               "good-2": FileMissingError("predictions/m.csv"),
               "bad-1": RevError("unknown Git revision")}
    monkeypatch.setattr(dvc.api, "open", _missing_open(missing, runs))
    table = compare_table(runs, dvc_loader("."), resamples=200)
    by_lr = {r[1]: r for r in table.rows}
    assert by_lr["0.002"][3:] == ["0.600 [0.500, 0.700]", "ref"]
    assert by_lr["0.004"][3:] == ["0.600 ± 0.000 (3)", "n/a"]  # the reference is missing
    assert {m.run for m in table.missing} == {"main", "good-2", "bad-1"}
    notes = {line.split(":")[0].strip(): line for line in table.notes().splitlines()[1:]}
    assert notes["main"].endswith("predictions/m.csv not in the local DVC cache; `dvc pull` "
                                  "fetches them")
    assert notes["good-2"].endswith("not in the local DVC cache; `dvc exp pull origin good-2` "
                                    "fetches them")
    assert "at a commit this clone lacks; `dvc exp pull origin bad-1`" in notes["bad-1"]

    # against bad-2: good-1 and good-3 are at hand and still tested; bad-1 is left out
    table = compare_table(runs, dvc_loader("."), ref="bad-2", resamples=200)
    by_lr = {r[1]: r for r in table.rows}
    assert by_lr["0.004"][4].startswith("+") and by_lr["0.004"][4].endswith("*")
    assert by_lr["0.002"][4] == "n/a" and by_lr["0.001"][4] == "ref"

    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(exp_show()))
    cli.main(["compare", "--json", str(saved)])  # no SystemExit: exit status 0
    out = capsys.readouterr().out
    assert "n/a" in out and "`dvc pull` fetches them" in out


def test_an_empty_cache_in_a_real_dvc_repo_is_predictions_missing(tmp_path):
    """The real DVC: an output committed, its cache object deleted, no remote (a clone
    before `dvc pull`): both the workspace and the commit give PredictionsMissing."""
    import shutil
    import subprocess

    from audiotag.compare import PredictionsMissing, Run, dvc_loader

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    (tmp_path / "predictions").mkdir()
    loader(Run("main", None, {"seed": 1}, {}), "m").to_csv(tmp_path / "predictions/m.csv",
                                                            index=False)
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"],
                [*dvc, "add", "-q", "predictions/m.csv"], [*git, "add", "-A"],
                [*git, "commit", "-qm", "predictions"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True,
                          capture_output=True, text=True).stdout.strip()
    load = dvc_loader(tmp_path)
    assert len(load(Run("main", head, {}, {}, baseline=True), "m")) == 60  # while cached
    shutil.rmtree(tmp_path / ".dvc/cache")
    (tmp_path / "predictions/m.csv").unlink()
    for run in (Run("main", head, {}, {}, baseline=True), Run("workspace", None, {}, {}),
                Run("exp-1", head, {}, {})):
        with pytest.raises(PredictionsMissing) as err:
            load(run, "m")
        assert err.value.fetch == ("dvc exp pull origin exp-1" if run.name == "exp-1"
                                   else "dvc pull")


def test_a_single_runs_interval_comes_from_its_details_at_its_revision(tmp_path):
    """The 95 % CI is not a headline number (dvc exp show stays narrow): compare reads it
    from metrics/details/<model>.json, committed to git, at each run's revision."""
    import subprocess

    from audiotag.compare import Run, add_intervals

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    details = tmp_path / "metrics/details/m.json"
    details.parent.mkdir(parents=True)
    details.write_text(json.dumps({"lwlrap": 0.6, "lwlrap_ci_low": 0.5, "lwlrap_ci_high": 0.7}))
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    details.write_text(json.dumps({"lwlrap": 0.8, "lwlrap_ci_low": 0.75, "lwlrap_ci_high": 0.85}))
    runs = [Run("main", rev, {}, {"m": {"lwlrap": 0.6}, "gone": {"lwlrap": 0.1}}),
            Run("workspace", None, {}, {"m": {"lwlrap": 0.8}})]
    add_intervals(runs, tmp_path)
    assert runs[0].metrics["m"] == {"lwlrap": 0.6, "lwlrap_ci_low": 0.5, "lwlrap_ci_high": 0.7}
    assert runs[0].metrics["gone"] == {"lwlrap": 0.1}  # no details file: the value alone
    assert runs[1].metrics["m"]["lwlrap_ci_low"] == 0.75  # the workspace: from disk
    table = compare_table(runs[:1], loader, resamples=200)
    assert table.rows[0][table.header.index("m test lwlrap")] == "0.600 [0.500, 0.700]"
