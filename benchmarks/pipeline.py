"""Wall and CPU time of a cold default `dvc repro`, stage by stage, and of a no-op repro.

Copies the tracked pipeline (dvc.yaml, params.yaml, src/, stages/) into a fresh temporary
git + DVC repo with an empty cache, so "cold" means: generate the data, extract features,
clean the labels, train every model, evaluate, analyse and report, as on a fresh clone
after installation. The stages run one at a time (`dvc repro --single-item`, in the order
of `dvc dag`) so that each one's wall time, CPU time (user + sys of its processes), peak
memory (the summed RSS of the processes under `dvc repro`, dvc's own excluded, sampled every
0.15 s) and the disk it adds to data/ and models/ can be told apart; CPU time / cores is
the figure to judge on a busy machine.

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
import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from graphlib import TopologicalSorter
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPY = ["dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", "src", "stages"]


def _env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), "PYTHONPATH": str(cwd / "src"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


class Measured(NamedTuple):
    """One command: wall s, CPU s (user + sys of it and every process it waited for),
    stdout, and the peak of the summed RSS of the processes under it, itself excluded
    (MiB; ``peak_anon_mib``: the same less file-backed pages such as a memory-mapped
    store; both 0 unless sampled)."""

    wall: float
    cpu: float
    stdout: str
    peak_mib: float = 0.0
    peak_anon_mib: float = 0.0


def tree_rss(root: int, parent_of: Mapping[int, int],
             rss_of: Callable[[int], tuple[int, int]]) -> tuple[int, int]:
    """Summed ``(rss, anonymous rss)`` bytes of every process below ``root``, ``root``
    excluded (``parent_of``: pid -> parent pid; ``rss_of(pid)``: that process's two
    figures, ``(0, 0)`` once it has gone)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    total = anon = 0
    todo, seen = list(children.get(root, [])), {root}
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        rss, private = rss_of(pid)
        total, anon = total + rss, anon + private
        todo.extend(children.get(pid, []))
    return total, anon


def _rss_of(pid: int) -> tuple[int, int]:
    import psutil

    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0, 0
    return info.rss, info.rss - info.shared  # shared: file-backed + shmem pages


class PeakRss:
    """In a thread, every ``interval`` s, the summed RSS of the processes under ``root``
    (``tree_rss``: dvc's stage command and its workers, not dvc itself); ``peak`` and
    ``peak_anon`` in bytes once the ``with`` block has ended."""

    def __init__(self, root: int, interval: float = 0.15) -> None:
        self.root, self.interval = root, interval
        self.peak = self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def sample(self) -> tuple[int, int]:
        import psutil

        parents = {p.pid: p.info["ppid"] for p in psutil.process_iter(["ppid"])}
        total, anon = tree_rss(self.root, parents, _rss_of)
        self.peak, self.peak_anon = max(self.peak, total), max(self.peak_anon, anon)
        return total, anon

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _become_subreaper() -> None:
    """Orphaned descendants become this process's children instead of init's, so that
    their CPU time can be collected (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # 36: PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _reap_orphans(timeout: float = 10.0) -> float:
    """CPU s of this process's remaining children once they exit (waiting up to
    ``timeout`` s): the orphans of a command just waited for, such as the
    ``multiprocessing`` forkserver (with every worker's time) that outlives the stage
    process which started it by a moment and is waited for by no one else."""
    import psutil

    pending = {child.pid for child in psutil.Process().children()}
    cpu, deadline = 0.0, time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            done, _, usage = os.wait4(pid, os.WNOHANG)
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                pending.discard(pid)
        time.sleep(0.02)
    if pending:
        print(f"warning: {len(pending)} orphaned processes still running, their CPU time "
              "not counted", file=sys.stderr)
    return cpu


def measure_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
                    rss: bool = False) -> Measured:
    """Run ``cmd`` in ``cwd`` (``env``: variables over this process's environment); exit
    naming it if it fails. The CPU time is that one command's (``os.wait4``), so it stays
    right when other threads run commands at the same time
    (``benchmarks/cleaning_study.py --jobs``). ``rss`` (one command at a time only): sample
    its process tree's memory (``PeakRss``) while it runs, and add the CPU time of the
    processes it orphaned (``_reap_orphans``), which ``os.wait4`` does not see."""
    if rss:
        _become_subreaper()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(cwd, env), stdout=out, stderr=err,
                                text=True)
        sampler = PeakRss(proc.pid) if rss else contextlib.nullcontext()
        with sampler:
            _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        orphans = _reap_orphans() if rss else 0.0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit status {proc.returncode}) in {cwd}:\n"
                 f"{stdout[-2000:]}\n{stderr[-2000:]}")
    peak = (sampler.peak, sampler.peak_anon) if rss else (0, 0)
    return Measured(elapsed, usage.ru_utime + usage.ru_stime + orphans, stdout,
                    peak[0] / 2**20, peak[1] / 2**20)


def run_command(cmd: list[str], cwd: Path,
                env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and stdout of ``cmd`` (``measure_command``)."""
    wall, cpu, stdout, *_ = measure_command(cmd, cwd, env)
    return wall, cpu, stdout


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


def disk_mib(path: Path) -> float:
    """MiB of the files under ``path`` (0 if it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


class StageRun(NamedTuple):
    """One stage run alone: wall s, CPU s, the peak summed RSS of its processes (dvc's
    excluded) and of their anonymous pages (MiB), and the MiB it added to data/ and
    models/."""

    wall: float
    cpu: float
    peak_mib: float
    peak_anon_mib: float
    disk_mib: float


def stage_times(work: Path, echo: bool = True,
                env: dict[str, str] | None = None) -> dict[str, StageRun]:
    """Each stage of ``work`` run alone (``dvc repro --single-item``) in DAG order."""
    out = {}
    disk = disk_mib(work / "data") + disk_mib(work / "models")
    for stage in _stage_order(run_command(["dvc", "dag", "--dot"], work)[2]):
        run = measure_command(["dvc", "repro", "--single-item", stage], work, env, rss=True)
        after = disk_mib(work / "data") + disk_mib(work / "models")
        out[stage] = StageRun(run.wall, run.cpu, run.peak_mib, run.peak_anon_mib, after - disk)
        disk = after
        if echo:
            print(f"{stage:28s} {run.wall:8.1f} {run.cpu:8.1f} {run.peak_mib:10.0f} "
                  f"{out[stage].disk_mib:9.1f}", flush=True)
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
        print(f"{'stage':28s} {'wall s':>8s} {'cpu s':>8s} {'peak MiB':>10s} {'disk MiB':>9s}")
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
