"""Wall and CPU time of a cold default `dvc repro`, stage by stage, and of a no-op repro.

Copies the tracked pipeline (dvc.yaml, params.yaml, src/, stages/) into a fresh temporary
git + DVC repo with an empty cache, so "cold" means: generate the data, extract features,
clean the labels, train every model, evaluate, analyse and report, as on a fresh clone
after installation. The stages run one at a time (`dvc repro --single-item`, in the order
of `dvc dag`) so that each one's wall time and CPU time (user + sys of its
processes) can be told apart; CPU time / cores is the figure to judge on a busy machine.

    python benchmarks/pipeline.py            # default params (the README's `make pipeline`)
    python benchmarks/pipeline.py --keep     # keep the temporary repo to look at
    python benchmarks/pipeline.py --pinning  # the cold run with the CPU kernels pinned (the
                                             # default) and with AUDIOTAG_CPU_ISA=native

Prints one row per stage, the total, and the no-op repro; with ``--pinning`` both runs'
CPU seconds per stage side by side, their ratio, and how many outputs differ between them
(docs/reproducibility.md).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from graphlib import TopologicalSorter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPY = ["dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", "src", "stages"]


def _env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), "PYTHONPATH": str(cwd / "src"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def run_command(cmd: list[str], cwd: Path,
                env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + sys of the command and every process it waited
    for), stdout. The CPU time is that one command's (``os.wait4``), so it stays right when
    other threads run commands at the same time (``benchmarks/cleaning_study.py --jobs``).
    ``env``: variables over this process's environment."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(cwd, env), stdout=out, stderr=err,
                                text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, stdout


def _stage_order(dot: str) -> list[str]:
    """Stages of ``dvc dag --dot`` output, each after every stage it depends on."""
    graph: dict[str, set[str]] = {}
    for line in dot.splitlines():
        names = re.findall(r'"([^"]+)"', line)
        if "->" in line and len(names) == 2:
            graph.setdefault(names[1], set()).add(names[0])
        for name in names:
            graph.setdefault(name, set())
    return list(TopologicalSorter(graph).static_order())


def make_project(work: Path, params: str | None = None) -> None:
    """Copy the pipeline into ``work`` as a fresh git + DVC repo (``params``: the text of
    another params.yaml)."""
    for name in COPY:
        src = ROOT / name
        copy = shutil.copytree if src.is_dir() else shutil.copy2
        copy(src, work / name)
    if params is not None:
        (work / "params.yaml").write_text(params)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "bench"]):
        run_command(cmd, work)


def stage_times(work: Path, echo: bool = True,
                env: dict[str, str] | None = None) -> dict[str, tuple[float, float, float]]:
    """Each stage of ``work`` run alone in DAG order: wall s, CPU s, peak RSS (MiB, the
    largest of the stage's processes so far: a lower bound per stage)."""
    out = {}
    for stage in _stage_order(run_command(["dvc", "dag", "--dot"], work)[2]):
        wall, cpu, _ = run_command(["dvc", "repro", "--single-item", stage], work, env)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out[stage] = (wall, cpu, rss)
        if echo:
            print(f"{stage:28s} {wall:8.1f} {cpu:8.1f}", flush=True)
    return out


def _outputs(work: Path) -> dict[str, str]:
    """Every output's md5 in ``work``'s dvc.lock."""
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values()
            for out in stage.get("outs", [])}


def compare_pinning() -> None:
    """The cold default run twice in fresh projects: the CPU kernels pinned (the default)
    and ``AUDIOTAG_CPU_ISA=native``; CPU seconds per stage and outputs that differ."""
    from audiotag.core.platform import OPT_OUT, PINNED

    runs = {"pinned": {OPT_OUT: "avx2"}, "native": {OPT_OUT: "native"}}
    base = {key: value for key, value in os.environ.items() if key not in PINNED}
    os.environ.clear()
    os.environ.update(base)  # a value exported by hand would decide for both runs
    times, outputs = {}, {}
    for label, env in runs.items():
        work = Path(tempfile.mkdtemp(prefix=f"audiotag-bench-{label}-"))
        try:
            make_project(work)
            print(f"# {label}", flush=True)
            times[label] = stage_times(work, echo=False, env=env)
            outputs[label] = _outputs(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'stage':28s} {'pinned cpu s':>12s} {'native cpu s':>12s} {'ratio':>6s}")
    for stage in times["pinned"]:
        pinned, native = times["pinned"][stage][1], times["native"][stage][1]
        print(f"{stage:28s} {pinned:12.1f} {native:12.1f} {pinned / max(native, 1e-9):6.2f}")
    total = {label: sum(t[1] for t in stages.values()) for label, stages in times.items()}
    print(f"{'total':28s} {total['pinned']:12.1f} {total['native']:12.1f} "
          f"{total['pinned'] / total['native']:6.2f}")
    results = [p for p in outputs["pinned"] if "timings" not in p]
    committed = _outputs(ROOT)
    for label, other in (("native", outputs["native"]), ("this checkout's dvc.lock", committed)):
        differ = [p for p in results if outputs["pinned"][p] != other.get(p)]
        print(f"outputs (timings aside) of the pinned run that differ from {label}: "
              f"{len(differ)} of {len(results)}{': ' + ', '.join(differ) if differ else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")
    parser.add_argument("--pinning", action="store_true",
                        help="compare the pinned CPU kernels with AUDIOTAG_CPU_ISA=native")
    args = parser.parse_args()
    if args.pinning:
        compare_pinning()
        return
    work = Path(tempfile.mkdtemp(prefix="audiotag-bench-"))
    cores = os.cpu_count() or 1
    try:
        make_project(work)
        load = os.getloadavg()[0]
        print(f"{'stage':28s} {'wall s':>8s} {'cpu s':>8s}")
        times = stage_times(work)
        total_wall = sum(t[0] for t in times.values())
        total_cpu = sum(t[1] for t in times.values())
        print(f"{'total (cold)':28s} {total_wall:8.1f} {total_cpu:8.1f}")
        print(f"cpu / {cores} cores: {total_cpu / cores:.1f} s; load average at the start "
              f"{load:.1f}, at the end {os.getloadavg()[0]:.1f}")
        noop = run_command(["dvc", "repro"], work)[0]
        print(f"no-op dvc repro: {noop:.1f} s (cold / no-op {total_wall / noop:.0f}x)")
        for name in sorted((work / "metrics").glob("*.json")):
            if name.stem != "labels":
                text = name.read_text()
                found = re.search(r'"lwlrap": ([0-9.]+)', text)
                print(f"test lwlrap {name.stem}: {found.group(1) if found else '?'}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
