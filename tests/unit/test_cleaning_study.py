"""benchmarks/cleaning_study.py's table maths: mean ± sd, the paired gain, the recovered
fraction of the oracle's gain, the seed-spread verdict, and which configurations run once."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest


@pytest.fixture()
def study(monkeypatch, repo_root):
    # run as a script, the benchmark finds pipeline.py beside it (sys.path[0])
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    return importlib.import_module("cleaning_study")


def test_mean_sd_is_the_sample_sd(study):
    mean, sd = study.mean_sd([0.70, 0.72, 0.77])
    assert mean == pytest.approx(0.73)
    assert sd == pytest.approx(math.sqrt(((0.03) ** 2 + 0.01**2 + 0.04**2) / 2))  # n - 1
    assert study.mean_sd([0.5]) == (0.5, 0.0)


def test_recovered_fraction(study):
    # none 0.70, oracle 0.80: a default at 0.76 recovers 60 % of the oracle's gain
    assert study.recovered_fraction(0.70, 0.76, 0.80) == pytest.approx(0.6)
    assert study.recovered_fraction(0.70, 0.70, 0.80) == pytest.approx(0.0)
    assert study.recovered_fraction(0.70, 0.65, 0.80) == pytest.approx(-0.5)  # worse than none
    assert study.recovered_fraction(0.70, 0.82, 0.80) == pytest.approx(1.2)  # beats the oracle
    # an oracle that gains nothing (or loses) has no gain to recover
    assert study.recovered_fraction(0.70, 0.75, 0.70) is None
    assert study.recovered_fraction(0.70, 0.75, 0.69) is None


def test_spread_verdict(study):
    none, oracle = [0.70, 0.71, 0.72], [0.75, 0.76, 0.77]  # gain 0.05, sd 0.01
    line = study.spread_verdict("crnn", none, oracle)
    assert "+0.0500 exceeds" in line and "sd 0.0100" in line
    # the larger sd of the two counts: gain 0.05 inside an oracle sd of 0.06
    line = study.spread_verdict("crnn", none, [0.70, 0.76, 0.82])
    assert "+0.0500 is inside" in line and "sd 0.0600" in line and "not meaningful" in line
    # an oracle below no cleaning gains nothing, whatever the spread
    line = study.spread_verdict("crnn", [0.817, 0.819, 0.815], [0.810, 0.812, 0.814])
    assert "gains nothing" in line and "-0.0050" in line and "not meaningful" in line
    assert "exceeds" not in line and "inside" not in line


def _runs(study, lwlrap: dict[str, list[float]]):
    out = {}
    for label, values in lwlrap.items():
        method, _, action = label.partition("/")
        run = study.Runs({"method": method, "action": action or "weight", "lsoft_beta": 1.0})
        run.lwlrap["crnn"] = values
        run.clean_wall, run.clean_cpu = [10.0, 12.0], [8.0, 9.0]
        out[label] = run
    return out


def test_table_rows(study):
    runs = _runs(study, {"none": [0.70, 0.70], "oracle": [0.80, 0.80],
                         "default = weight": [0.76, 0.74], "relabel": [0.72, 0.72]})
    runs["default = weight"].detection = {"detection_precision": [0.9, 0.8],
                                          "detection_recall": [0.5, 0.5],
                                          "detection_f1": [0.6, 0.7]}
    lines = study.study_table(runs, ["crnn"])
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines[2:6]}
    assert rows["default = weight"][3] == "1.0"  # train.lsoft_beta
    assert rows["default = weight"][4:6] == ["0.750 ± 0.014", "0.760, 0.740"]
    assert rows["default = weight"][7:9] == ["0.50", "0.850 ± 0.071"]
    assert rows["relabel"][7] == "0.20"
    assert rows["none"][7] == "0.00" and rows["oracle"][7] == "1.00"
    assert rows["relabel"][6] == "–"  # no per-clip scores kept: no paired gain
    assert rows["relabel"][8] == "–"  # no detection scores given
    assert rows["none"][-1] == "8.5 |"
    assert lines[-1].startswith("crnn: the oracle's gain +0.1000 exceeds")


def test_paired_gain_is_over_seed_averaged_clips(study):
    """The gain over none: each configuration's per-clip precision sums averaged over its
    seeds, then a paired bootstrap; a clearly better configuration has an interval above 0."""
    rng = np.random.default_rng(0)
    n = np.ones(200)
    none, better = study.Runs({}), study.Runs({})
    none.clips["crnn"] = [(rng.uniform(0.4, 0.8, 200), n) for _ in range(3)]
    better.clips["crnn"] = [(p + 0.1, n) for p, _ in none.clips["crnn"]]
    diff, low, high, p = study.paired_gain(better, none, "crnn")
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1) and p < 0.05
    same = study.paired_gain(none, none, "crnn")
    assert same[0] == 0.0 and same[3] == 1.0
    assert study.paired_gain(study.Runs({}), none, "crnn") is None
    assert study._gain_cell((0.1, 0.05, 0.15, 0.001)) == "+0.100 [+0.050, +0.150] *"


def test_identical_configs_run_once(study, tmp_path):
    params = {"clean": {"method": "none", "action": "weight"}, "train": {"lsoft_beta": 0.7}}
    configs = study._configs(["none", "lsoft", "default", "cleanlab", "relabel"], params)
    assert list(configs) == ["none", "lsoft = default", "cleanlab", "relabel"]
    assert configs["none"]["train"]["lsoft_beta"] == 1.0  # plain labels: the baseline
    assert configs["relabel"]["clean"] == {"method": "cleanlab", "action": "relabel"}
    assert configs["lsoft = default"] == params
    assert params["clean"]["method"] == "none"  # the base params are not edited
    assert study._keep(tmp_path, "lsoft = default", 2) == tmp_path / "lsoft" / "seed2"


def test_run_command_cpu_is_the_commands_own(monkeypatch, repo_root, tmp_path):
    """Two commands at once (cleaning_study --jobs 2): each one's CPU seconds are its own,
    not the other's that finished meanwhile."""
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    from concurrent.futures import ThreadPoolExecutor

    import pipeline

    done = tmp_path / "burnt"
    burn = ("import time; t = time.process_time()\n"
            "while time.process_time() - t < 0.6: pass\n"
            f"open({str(done)!r}, 'w').close()")
    wait = (f"import os, time\nwhile not os.path.exists({str(done)!r}): time.sleep(0.02)\n"
            "time.sleep(0.2)")
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(pipeline.run_command, [sys.executable, "-c", wait], tmp_path)
        burning = pool.submit(pipeline.run_command, [sys.executable, "-c", burn], tmp_path)
        assert burning.result()[1] >= 0.6
        assert waiting.result()[1] < 0.3  # its own start-up and polling only
