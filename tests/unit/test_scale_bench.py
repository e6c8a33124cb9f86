"""benchmarks/scale.py's growth fit and projection, and benchmarks/pipeline.py's per-stage
memory (the summed RSS of a process tree) and CPU time of orphaned workers."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest


@pytest.fixture
def scale(monkeypatch, repo_root):
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    return importlib.import_module("scale")


@pytest.fixture
def pipeline(monkeypatch, repo_root):
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    return importlib.import_module("pipeline")


def test_fit_growth_recovers_the_exponent(scale):
    audio = [1e4, 4e4, 1.6e5]
    cpu = [7.0 + 0.002 * x**1.3 for x in audio]
    a, k = scale.fit_growth(audio, cpu, fixed=7.0)
    assert k == pytest.approx(1.3, abs=1e-9)
    assert a == pytest.approx(0.002, rel=1e-6)


def test_fit_growth_refuses_sizes_at_or_below_the_fixed_cost(scale):
    with pytest.raises(ValueError, match="fixed"):
        scale.fit_growth([1.0, 2.0], [5.0, 9.0], fixed=5.0)


def test_fit_stage_uses_only_sizes_where_start_up_is_under_10_percent(scale):
    audio = [1e4, 4e4, 1.6e5, 6.4e5]
    # start-up 3 s, fixed part 10 s; the first size (12 s) is mostly fixed cost
    cpu = [12.0, 10.0 + 1e-2 * 4e4, 10.0 + 1e-2 * 1.6e5, 10.0 + 1e-2 * 6.4e5]
    fit = scale.fit_stage(audio, cpu, startup=3.0, fixed=10.0)
    assert fit["sizes"] == [1, 2, 3]
    assert fit["k_high"] == pytest.approx(1.0, abs=1e-9)  # the true fixed part
    assert 0.9 < fit["k_low"] < 1.0  # 3 s taken as fixed: the growth looks slower
    assert (fit["k"], fit["fixed"]) == (fit["k_high"], 10.0)  # what is projected


def test_fit_stage_without_an_upper_fit_where_a_size_is_below_the_small_run(scale):
    fit = scale.fit_stage([1e4, 4e4], [40.0, 160.0], startup=1.0, fixed=50.0)
    assert fit["k_high"] is None and fit["k"] == fit["k_low"] and fit["fixed"] == 1.0


def test_a_start_up_bound_stage_is_not_fitted_and_projected_linearly(scale):
    fit = scale.fit_stage([1e3, 4e3, 1.6e4], [5.0, 6.0, 9.0], startup=3.0, fixed=4.0)
    assert fit["k"] is None and fit["sizes"] == []
    # growing part at the largest size 9 - 4 = 5 s, x 10 the audio, x 12 epochs
    assert scale.project(fit, 1.6e5, 12, 1.6e4, 9.0) == pytest.approx(4.0 + 12 * 50.0)
    flat = scale.fit_stage([1e3, 4e3], [2.0, 1.9], startup=1.5, fixed=2.05)
    assert scale.project(flat, 1e6, 1, 4e3, 1.9) == 2.05  # does not grow: its fixed part


def test_project_repeats_the_growing_part_per_epoch(scale):
    fit = {"a": 0.5, "k": 1.0, "fixed": 10.0}
    assert scale.project(fit, 100.0, 1, 0.0, 0.0) == pytest.approx(60.0)
    assert scale.project(fit, 100.0, 12, 0.0, 0.0) == pytest.approx(610.0)


def test_epochs_of_the_default_run(scale):
    params = {"train": {"epochs": 12}, "clean": {"detector": {"train": {"epochs": 6}}},
              "models": {"cnn2d": {"train": {"epochs": 20}}, "crnn": {"dropout": 0.1}}}
    assert scale._epochs(params, "train@crnn") == 12
    assert scale._epochs(params, "train@cnn2d") == 20
    assert scale._epochs(params, "clean_labels") == 6
    assert scale._epochs(params, "evaluate@crnn") == 1


def test_memory_flags(scale):
    assert scale.memory_flags([800.0, 900.0, 1100.0]) == ""
    assert scale.memory_flags([800.0, 900.0, 1300.0]) == "1.6x"
    assert scale.memory_flags([4000.0, 4200.0]) == "> 4 GiB"


def test_tree_rss_sums_the_processes_below_the_root_only(pipeline):
    # 1 (dvc) -> 2 (sh) -> 3 (stage) -> 4, 5 (workers); 6 is another tree; 1 itself not counted
    parents = {1: 0, 2: 1, 3: 2, 4: 3, 5: 3, 6: 0, 7: 6}
    rss = {1: (1000, 900), 2: (1, 1), 3: (30, 20), 4: (200, 100), 5: (400, 300),
           6: (5000, 5000), 7: (7000, 7000)}
    assert pipeline.tree_rss(1, parents, rss.__getitem__) == (631, 421)
    assert pipeline.tree_rss(3, parents, rss.__getitem__) == (600, 400)
    assert pipeline.tree_rss(5, parents, rss.__getitem__) == (0, 0)


def test_peak_rss_sees_a_grandchild_that_allocates(pipeline):
    """A shell (the root, like dvc) starts a Python that holds 200 MiB for a moment."""
    code = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); " \
           "time.sleep(1.0)"
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{code}"; true'])
    with pipeline.PeakRss(proc.pid, interval=0.05) as peak:
        proc.wait()
    assert 200 * 2**20 <= peak.peak < 400 * 2**20
    assert 200 * 2**20 <= peak.peak_anon <= peak.peak


def test_measure_command_counts_orphaned_forkserver_workers(repo_root, tmp_path):
    """A stage's ``multiprocessing`` forkserver outlives it and is waited for by no one:
    ``os.wait4`` alone misses its workers' CPU time. Run in a child so that only it
    becomes a subreaper."""
    (tmp_path / "burn.py").write_text(textwrap.dedent("""
        import multiprocessing, time
        def burn(_):
            t = time.process_time()
            while time.process_time() - t < 0.5:
                pass
        if __name__ == "__main__":
            pool = multiprocessing.get_context("forkserver").Pool(2)
            pool.map(burn, range(2))
            pool.terminate()
            pool.join()
        """))
    check = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(repo_root / "benchmarks")!r})
        import pipeline
        cmd = [sys.executable, "burn.py"]
        print(pipeline.measure_command(cmd, Path({str(tmp_path)!r})).cpu,
              pipeline.measure_command(cmd, Path({str(tmp_path)!r}), rss=True).cpu)
        """)
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         check=True).stdout.split()
    plain, counted = map(float, out)
    assert plain < 0.5  # the workers' second of CPU is not seen by os.wait4
    assert counted >= 1.0
