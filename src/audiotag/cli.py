"""``audiotag``: the command-line entry point (console script of the package).

    audiotag predict --checkpoint models/cnn2d/model.pt --out preds.csv clips/ a.wav
    audiotag export --checkpoint models/cnn2d/model.pt --format onnx --out cnn2d.onnx
    audiotag tune --trials 20            # the Optuna search (python -m audiotag.tune)

See docs/using-a-model.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

from audiotag.core.cli import USER_ERRORS

log = logging.getLogger("audiotag")


def _predict(args: argparse.Namespace) -> None:
    from audiotag.predict import run_predict

    run_predict(args.checkpoint, args.paths, args.out, top_k=args.top_k, device=args.device,
                batch_size=args.batch_size, workers=args.workers,
                progress=False if args.no_progress else None)


def _export(args: argparse.Namespace) -> None:
    from audiotag.export import export_model

    out = args.out or f"{args.checkpoint.rsplit('.', 1)[0]}." + (
        "onnx" if args.format == "onnx" else "ts.pt")
    export_model(args.checkpoint, args.format, out)


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
                   "class; unreadable files are listed in <out stem>.skipped.csv")
    p.add_argument("--top-k", type=int, default=3, help="classes listed in the tags column")
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
                   help="file to write (default: beside the checkpoint, .ts.pt or .onnx); "
                        "a <out>.json sidecar holds classes and feature settings")
    e.set_defaults(run=_export)

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
    from audiotag.export import ExportError

    try:
        args.run(args)
    except (*USER_ERRORS, ExportError) as err:
        log.error("error: %s", err)  # one line, no traceback
        sys.exit(2)


if __name__ == "__main__":
    main()
