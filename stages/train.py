"""Stage ``train@<model>``: train one registered model on the feature store."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_seed, read_params
from audiotag.core.stage import run_stage
from audiotag.models import parse_model_params
from audiotag.training.config import parse_train
from audiotag.training.distributed import torchrun_args
from audiotag.training.run import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a name listed in train.models")
    parser.add_argument("--features", required=True, help="feature store directory")
    parser.add_argument("--out", required=True, help="model directory, e.g. models/cnn2d")
    parser.add_argument("--live", required=True, help="dvclive directory for per-epoch logs")
    parser.add_argument("--resume-dir", default=None,
                        help="where the resume state of an interrupted run is kept "
                             "(a persist: true out, e.g. checkpoints/cnn2d)")
    parser.add_argument("--labels", default=None,
                        help="labels file of the training clips (label cleaning's "
                             "data/clean/labels.csv); default: the store's labels")
    parser.add_argument("--timings", default=None,
                        help="JSON of the wall-clock times of the run and of each epoch "
                             "(apart from the results: they differ between runs and machines)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    seed = parse_seed(raw, args.params)
    cfg = parse_train(raw, args.params, args.model)
    if args.model not in cfg.models:
        raise ParamsError(f"{args.params}: train.models: {args.model!r} is not listed")
    model_params = parse_model_params(raw, args.model, args.params)
    if cfg.processes * cfg.nodes > 1 and "LOCAL_RANK" not in os.environ:
        # DistributedDataParallel: this script again in `processes` processes (torchrun),
        # on each of `nodes` machines that meet at the rendezvous
        launch = [sys.executable, "-m", "torch.distributed.run",
                  *torchrun_args(cfg, args.model), __file__, *sys.argv[1:]]
        sys.exit(subprocess.run(launch, check=False).returncode)
    train_model(args.model, model_params, args.features, args.out, args.live, cfg, seed,
                resume_dir=args.resume_dir, labels=args.labels, timings=args.timings)


if __name__ == "__main__":
    run_stage(main)
