"""``audiotag``: the command-line entry point (console script of the package).

    audiotag predict --checkpoint models/cnn2d/model.pt --out preds.csv clips/ a.wav
    audiotag export --checkpoint models/cnn2d/model.pt --format onnx --out cnn2d.onnx
    audiotag tune --trials 20            # the Optuna search (python -m audiotag.tune)
    audiotag compare --md                # experiments as rows, seeds grouped, significance

See docs/using-a-model.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

from audiotag.core.stage import USER_ERRORS

log = logging.getLogger("audiotag")


def _predict(args: argparse.Namespace) -> None:
    from audiotag.predict import run_predict

    run_predict(args.checkpoint, args.paths, args.out, top_k=args.top_k, device=args.device,
                batch_size=args.batch_size, workers=args.workers,
                progress=False if args.no_progress else None, threshold=args.threshold,
                hop=args.hop, min_seconds=args.min_seconds, timeline=args.timeline)


def _export(args: argparse.Namespace) -> None:
    from audiotag.export import export_model

    export_model(args.checkpoint, args.format, args.out)


def _compare(args: argparse.Namespace) -> None:
    from audiotag.compare import run_compare

    print(run_compare(args.repo, args.json, args.md, args.ref, args.resamples, args.seed,
                      args.alpha))


def _tune(rest: list[str]) -> None:
    try:
        from audiotag import tune
    except ModuleNotFoundError as err:  # Optuna is the optional `tune` extra
        if err.name != "optuna":
            raise
        sys.exit("audiotag tune needs Optuna: pip install 'audiotag[tune]'")

    sys.argv = ["audiotag tune", *rest]  # tune parses its own options
    tune.main()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="audiotag", description="audio tagging: use a "
                                  "trained model (see docs/using-a-model.md)")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="score audio files with a trained checkpoint (CSV)")
    p.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="models/<model>/model.pt")
    p.add_argument("--out", required=True, help="CSV to write: path, tags, one column per "
                   "class; files not scored (unreadable, silent, too short, non-finite) are "
                   "listed in <out stem>.skipped.csv")
    tags = p.add_mutually_exclusive_group()
    tags.add_argument("--threshold", type=float, default=None,
                      help="tag every class scoring at least this (default: the threshold "
                           "evaluate@<model> tuned, from metrics/details/<model>.json)")
    tags.add_argument("--top-k", type=int, default=None,
                      help="tag the k best classes instead of a threshold")
    p.add_argument("--hop", type=float, default=None, help="seconds between the windows of "
                   "a file longer than the evaluation windows (default: half a window)")
    p.add_argument("--timeline", default=None,
                   help="CSV of every window: path, start_s, end_s, one column per class")
    p.add_argument("--min-seconds", type=float, default=0.1,
                   help="shorter files are not scored (the pipeline's data.min_seconds)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")
    p.add_argument("--workers", type=int, default=0,
                   help="processes decoding audio while the model runs (0 = this one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_predict)

    e = sub.add_parser("export", help="a spectrogram model as TorchScript or ONNX")
    e.add_argument("--checkpoint", required=True, help="models/<model>/model.pt")
    e.add_argument("--format", choices=("torchscript", "onnx"), required=True)
    e.add_argument("--out", default=None,
                   help="file to write (default: exports/<model>.ts.pt or .onnx here, "
                        "outside the DVC outputs); a <out>.json sidecar holds classes and "
                        "feature settings")
    e.set_defaults(run=_export)

    c = sub.add_parser("compare", help="experiments of `dvc exp show` as one table: differing "
                       "params, test lwlrap ± CI per model, seeds grouped, paired bootstrap "
                       "significance (docs/experiments.md)")
    c.add_argument("--md", action="store_true", help="a Markdown table")
    c.add_argument("--repo", default=".", help="the DVC project (default: here)")
    c.add_argument("--json", default=None,
                   help="a saved `dvc exp show --json` instead of running it")
    c.add_argument("--ref", default=None, help="experiment whose row the others are compared "
                   "with (default: the baseline commit's row)")
    c.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    c.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    c.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the * mark (two-sided)")
    c.set_defaults(run=_compare)

    # handled before parsing (main): every argument after `tune` is tune's own
    sub.add_parser("tune", help="hyperparameter search (audiotag tune -h for its options)")
    return top


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tune"]:
        _tune(argv[1:])
        return
    args = parser().parse_args(argv)
    from audiotag.compare import CompareError
    from audiotag.export import ExportError
    from audiotag.model_file import CheckpointError

    try:
        args.run(args)
    except (*USER_ERRORS, ExportError, CompareError, CheckpointError) as err:
        log.error("error: %s", err)  # one line, no traceback
        sys.exit(2)


if __name__ == "__main__":
    main()
