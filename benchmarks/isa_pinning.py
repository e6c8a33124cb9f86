"""Which CPU-kernel settings make training give the same bits on every x86-64 machine.

On a machine with AVX-512, trains the default models (``train@`` as the stage runs it, on
the workspace's feature store and cleaned labels) once with every subset of
:data:`audiotag.core.platform.PINNED` set, and prints a hash of each result's weights and
per-epoch losses next to the result with all of them set (what the stages do). A subset
whose row matches the full set's reproduces an AVX2 machine's results here; the unpinned
row shows that the machine differs at all (on an AVX2-only machine every row matches, and
the script says it cannot tell).

    python benchmarks/isa_pinning.py                  # cnn1d (12 epochs) and crnn (2)
    python benchmarks/isa_pinning.py --models cnn1d --epochs 3

Needs `dvc repro clean_labels` first (data/features, data/clean/labels.csv).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from audiotag.core.platform import OPT_OUT, PINNED

ROOT = Path(__file__).resolve().parents[1]


def _train(model: str, work: Path, params: Path, env: dict[str, str]) -> tuple[str, float]:
    """Train ``model`` into ``work`` under ``env``; (hash of weights + losses, seconds)."""
    out = work / model
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "--model", model,
           "--features", str(ROOT / "data/features"),
           "--labels", str(ROOT / "data/clean/labels.csv"), "--out", str(out),
           "--live", str(work / f"live-{model}"), "--params", str(params)]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    import torch  # here, not at the top: this process itself runs no kernels to compare

    state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.md5()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    history = json.loads((out / "history.json").read_text())
    losses = [(e["train_loss"], e["valid_loss"]) for e in history["epochs"]]
    digest.update(json.dumps(losses).encode())
    return digest.hexdigest()[:12], seconds


def _subsets() -> list[tuple[str, ...]]:
    keys = list(PINNED)
    return [combo for size in range(len(keys), -1, -1)
            for combo in itertools.combinations(keys, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn1d", "crnn"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[12, 2],
                        help="epochs per model, in the order of --models")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in PINNED}
    base[OPT_OUT] = "native"  # the package pins nothing itself: the subset decides
    with tempfile.TemporaryDirectory(prefix="isa-") as tmp:
        work = Path(tmp)
        rows = []
        for combo in _subsets():
            env = {**base, **{key: PINNED[key] for key in combo}}
            results = []
            for model, epochs in zip(args.models, args.epochs, strict=True):
                params = yaml.safe_load((ROOT / "params.yaml").read_text())
                params["train"]["epochs"] = epochs
                params["models"].setdefault(model, {}).pop("train", None)
                path = work / f"params-{model}.yaml"
                path.write_text(yaml.safe_dump(params))
                results.append(_train(model, work / "runs", path, env))
            rows.append((combo, results))
            print(f"{' + '.join(combo) or '(none: native kernels)':58s} " +
                  "  ".join(f"{h} {s:5.1f}s" for h, s in results), flush=True)
    full = rows[0][1]
    if rows[-1][1] == full:
        print("the unpinned run matches the pinned one: this machine cannot tell (no AVX-512?)")
        return
    enough = [" + ".join(c) for c, r in rows if [h for h, _ in r] == [h for h, _ in full]]
    print("subsets that reproduce the fully pinned result:", "; ".join(enough))


if __name__ == "__main__":
    main()
