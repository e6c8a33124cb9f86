"""The cross-model report: one markdown page (``reports/summary.md``) and one comparison
plot (``plots/leaderboard.png``), read from the metrics every model's stages wrote."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from audiotag.core.io import atomic_path, read_json, write_text
from audiotag.plots import save_figure

N_WORST = 10  # classes listed as the worst
N_KNOWN_ISSUES = 50  # known-issue clips listed (the rest are counted)


@dataclass(frozen=True)
class Column:
    title: str
    get: Callable[[dict], Any]  # per-model record -> value (KeyError: not available)
    fmt: str
    # per-model record -> (low, high): the value's 95 % CI. Only a column with a CI marks a
    # best model, and only when its CI lies above every other model's (a difference inside
    # the noise of one run is not a finding); gaps and sizes are never "best"
    ci: Callable[[dict], tuple[float, float]] | None = None
    doc: str = ""  # the one-line explanation under the table


def _lwlrap_ci(r: dict) -> tuple[float, float]:
    return r["eval"]["lwlrap_ci_low"], r["eval"]["lwlrap_ci_high"]


WIDTH = 120  # the summary fits a terminal this wide (tests/unit/test_analysis.py)

SCORE_COLUMNS = [
    Column("test lwlrap", lambda r: r["eval"]["lwlrap"], "{:.4f}", _lwlrap_ci,
           "label-weighted label-ranking average precision on the test clips (0-1, higher is "
           "better)"),
    Column("95 % CI", lambda r: _lwlrap_ci(r) if None not in _lwlrap_ci(r) else None,
           "[{0:.3f}, {1:.3f}]", doc="of test lwlrap: 2.5 and 97.5 percentiles of a bootstrap "
           "over the test clips (evaluate.bootstrap_*)"),
    Column("test mAP", lambda r: r["eval"]["mAP"], "{:.4f}",
           doc="mean over classes of the average precision of their test scores (0-1)"),
    Column("test F1 (micro)", lambda r: r["eval"]["f1_micro"], "{:.4f}",
           doc="F1 of every test clip-class decision pooled, a score of 0.5 and above "
           "meaning yes (0-1)"),
    Column("accuracy", lambda r: r["eval"]["singlelabel"]["accuracy"], "{:.4f}",
           doc="share of the single-label test clips whose top class is their label (0-1)"),
    Column("regression MSE", lambda r: r["eval"]["regression"]["mse"], "{:.4g}",
           doc="mean squared error of the regression targets on the test clips, averaged "
           "over targets (lower is better)"),
    Column("best valid lwlrap", lambda r: r["eval"]["valid_lwlrap"], "{:.4f}",
           doc="validation lwlrap of the epoch kept (the best one: early stopping)"),
]
TRAINING_COLUMNS = [
    Column("train−valid lwlrap", lambda r: r["eval"]["overfit"]["lwlrap_gap"], "{:+.3f}",
           doc="lwlrap on the training clips minus on the validation clips (best epoch): above "
           "0, the model overfits; below 0, the training clips score lower, as when their "
           "labels are noisier than the validation clips' (split.train_subsets vs "
           "split.valid_subsets): not underfitting by itself"),
    Column("best epoch", lambda r: r["eval"]["best_epoch"], "{}",
           doc="the epoch whose weights were kept (highest validation lwlrap)"),
    Column("epochs run", lambda r: r["train"]["epochs_run"], "{}",
           doc="epochs trained (fewer than train.epochs: stopped early, train.patience)"),
    Column("parameters", lambda r: r["eval"]["n_parameters"], "{:,}",
           doc="trainable and fixed weights of the model"),
    Column("grad ratio first/last",
           lambda r: r["weights"]["summary"]["grad_ratio_first_last"], "{:.3g}",
           doc="median over epochs of the first layer's gradient norm / the last layer's: "
           "near 1, input and output layers learn alike"),
    Column("gradients", lambda r: r["weights"]["summary"]["verdict"], "{}",
           doc="that ratio judged (weights.*_ratio): vanishing (input layers barely learn), "
           "exploding, or healthy"),
]
COLUMNS = SCORE_COLUMNS + TRAINING_COLUMNS
def wrap(text: str, indent: str = "") -> str:
    """``text`` broken at spaces into lines of at most :data:`WIDTH` characters, lines after
    the first indented by ``indent`` (a markdown list item's continuation)."""
    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def collect(models: list[str], metrics_dir: str | os.PathLike[str],
            ensembles: list[str] = ()) -> dict[str, dict[str, Any]]:
    """Every model's evaluation (every metric: ``details/<model>.json``), training summary
    and weight summary, read from metrics/, and its wall-clock times where they are
    (``timings/{train,evaluate}/<model>.json``); then every ensemble's evaluation (it has
    no training or weights: those columns show "–")."""
    root = Path(metrics_dir)
    records = {}
    for name in [*models, *ensembles]:
        paths = {"eval": root / "details" / f"{name}.json"}
        if name not in ensembles:
            paths.update(train=root / "train" / name / "metrics.json",
                         weights=root / "weights" / f"{name}.json")
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"report: missing metrics for model {name!r}: {missing[0]}")
        timings = {stage: root / "timings" / stage / f"{name}.json"
                   for stage in ("train", "evaluate")}
        records[name] = {"train": {}, "weights": {},
                         **{key: read_json(path) for key, path in paths.items()},
                         "timings": {stage: read_json(path) for stage, path in timings.items()
                                     if path.exists()}}
    return records


# reports/timings.md: wall-clock times, apart from the summary (whose bits are the same on
# every machine); facts of one run on one machine, never rankings
TIMING_COLUMNS = [
    Column("train s", lambda r: r["timings"]["train"]["train_seconds"], "{:.0f}"),
    Column("median s / epoch",
           lambda r: float(np.median([s for s in r["timings"]["train"]["epoch_seconds"]
                                      if s is not None])), "{:.2f}"),
    Column("ms / test clip", lambda r: r["timings"]["evaluate"]["inference_ms_per_clip"],
           "{:.2f}"),
    Column("device", lambda r: r["timings"]["train"]["device"], "{}"),
]


def timings_markdown(records: dict[str, dict[str, Any]]) -> str:
    """The models' wall-clock times (``reports/timings.md``): training, per epoch and
    inference, and the device they ran on."""
    lines = ["# Wall-clock times", "",
             "Times of the last run of each stage on the machine that ran it; they differ "
             "between identical runs and machines, so they live apart from the results "
             "(docs/reproducibility.md). `dvc metrics show metrics/timings` lists every "
             "figure; `dvc metrics diff --targets metrics/timings -- <rev>` compares runs.", "",
             "| model | " + " | ".join(c.title for c in TIMING_COLUMNS) + " |",
             "|---|" + "---:|" * len(TIMING_COLUMNS)]
    for name, record in records.items():
        if not record["timings"]:
            continue
        cells = [_value(record, c) for c in TIMING_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(
            "–" if v is None else c.fmt.format(v) for c, v in zip(TIMING_COLUMNS, cells,
                                                                  strict=True)) + " |")
    return "\n".join(lines) + "\n"


def _value(record: dict, column: Column) -> Any:
    try:
        return column.get(record)
    except (KeyError, TypeError):
        return None


def _best(records: dict[str, dict[str, Any]], columns: list[Column]) -> dict[str, set[str]]:
    """Per column with a CI: the model whose CI lies above every other model's (if any)."""
    best: dict[str, set[str]] = {}
    for c in columns:
        if c.ci is None or len(records) < 2:
            continue
        cis = {m: _value(r, Column(c.title, c.ci, "")) for m, r in records.items()}
        if any(ci is None or None in ci for ci in cis.values()):
            continue
        best[c.title] = {m for m, (low, _) in cis.items()
                         if all(low > high for o, (_, high) in cis.items() if o != m)}
    return best


def _table(records: dict[str, dict[str, Any]], columns: list[Column],
           notes: dict[str, str]) -> list[str]:
    """Models as rows; the columns no model has (e.g. accuracy of a multi-label dataset) left
    out; then one line per column saying what it is."""
    values = {c.title: {m: _value(r, c) for m, r in records.items()} for c in columns}
    columns = [c for c in columns if any(v is not None for v in values[c.title].values())]
    if not columns:
        return []
    best = _best(records, columns)
    lines = ["| model | " + " | ".join(c.title for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name in records:
        if all(values[c.title][name] is None for c in columns):
            continue  # e.g. an ensemble in the training table
        cells = []
        for c in columns:
            value = values[c.title][name]
            cell = ("–" if value is None else c.fmt.format(*value) if isinstance(value, tuple)
                    else c.fmt.format(value))
            if c.title == "95 % CI" and value is not None and name in notes:
                cell += " †"
            cells.append(f"**{cell}**" if name in best.get(c.title, ()) else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""] + [wrap(f"- `{c.title}`: {c.doc}", "  ") for c in columns]


def markdown_table(records: dict[str, dict[str, Any]]) -> str:
    """Two tables, models as rows: the test scores, then training and gradients (each under
    :data:`WIDTH` characters, each column explained in a line). A model's test lwlrap is
    bold only when its 95 % CI lies entirely above every other model's (:class:`Column`); a
    CI from too few test clips (the details' ``ci_note``) is marked † and the note follows
    the table."""
    notes = {m: r["eval"]["ci_note"] for m, r in records.items() if r["eval"].get("ci_note")}
    scores = _table(records, SCORE_COLUMNS, notes)
    training = _table(records, TRAINING_COLUMNS, notes)
    bold = wrap("Bold: a test lwlrap whose 95 % CI lies above every other model's; overlapping "
                "CIs mean the difference is within one run's noise (compare seeds with "
                "`audiotag compare`, docs/experiments.md). Gaps and sizes are facts, not "
                "rankings.")
    parts = ["\n".join(scores), bold, *(wrap(f"† `{m}`: {note}") for m, note in notes.items())]
    if training:
        parts += ["### Training and gradients", "\n".join(training)]
    return "\n\n".join(parts)


def worst_classes(records: dict[str, dict[str, Any]], n: int = N_WORST) -> pd.DataFrame:
    """The ``n`` classes with the lowest test lwlrap averaged over models; one column per
    model, then ``mean``."""
    columns = {}
    for name, record in records.items():
        per_class = record["eval"].get("per_class") or []
        columns[name] = pd.Series({c["class"]: c["lwlrap"] for c in per_class}, dtype=float)
    table = pd.DataFrame(columns)
    if table.empty:
        return table
    table["mean"] = table.mean(axis=1)
    return table.dropna(subset=["mean"]).nsmallest(n, "mean")


def _worst_markdown(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    lines = [f"## The {len(table)} worst classes (test lwlrap)", "",
             "| class | " + " | ".join(table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for cls, row in table.iterrows():
        cells = ["–" if pd.isna(v) else f"{v:.3f}" for v in row]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    return lines + [""]


def noisy_label_suspects(per_class: list[dict[str, Any]], spread: float
                         ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """``(suspects, cut)``: the classes (``class, curated, noisy, gap``, largest gap first)
    whose curated - noisy lwlrap gap exceeds ``cut["cutoff"]``, the median class's gap plus
    ``spread`` robust standard deviations of the gaps (1.4826 x their median absolute
    deviation). Every noisy label costs some lwlrap; a class is suspect only when its
    noisy clips score far lower than the other classes' do."""
    rows = [{**c, "gap": c["curated"] - c["noisy"]} for c in per_class
            if c.get("curated") is not None and c.get("noisy") is not None]
    if not rows:
        return [], {}
    gaps = np.array([r["gap"] for r in rows])
    median = float(np.median(gaps))
    sd = 1.4826 * float(np.median(np.abs(gaps - median)))
    cut = {"median": median, "sd": sd, "cutoff": median + spread * sd, "classes": len(rows)}
    suspects = sorted((r for r in rows if r["gap"] > cut["cutoff"]), key=lambda r: -r["gap"])
    return suspects, cut


def _suspects_markdown(records: dict[str, dict[str, Any]], best: str,
                       spread: float) -> list[str]:
    suspects, cut = noisy_label_suspects(
        records[best]["eval"].get("lwlrap_by_subset_per_class") or [], spread)
    if not cut:
        return []
    lines = ["## Classes whose noisy labels look wrong", "",
             wrap(f"Per-class lwlrap of `{best}` on the training clips, curated vs noisy "
                  "subset: a class scoring far lower on its noisy clips than on its curated "
                  "ones has noisy labels the model does not believe. Every class loses some "
                  f"(median gap {cut['median']:.3f}); listed are those whose gap exceeds "
                  f"{cut['cutoff']:.3f}, the median plus {spread:g} robust SDs "
                  f"({cut['sd']:.3f}, 1.4826 x the median absolute deviation; "
                  "report.suspect_spread): "
                  f"{len(suspects)} of {cut['classes']} classes."), ""]
    if not suspects:
        return lines + ["No class stands out.", ""]
    lines += ["| class | curated | noisy | gap |", "|---|---:|---:|---:|"]
    lines += [f"| {s['class']} | {s['curated']:.3f} | {s['noisy']:.3f} | {s['gap']:.3f} |"
              for s in suspects]
    return lines + [""]


def _known_issues_markdown(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    issues = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"clip_id", "issue"} - set(issues.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    lines = [f"## Known dataset issues ({len(issues)} clips, from `{path.name}`)", ""]
    if issues.empty:
        return lines + ["None listed.", ""]
    lines += ["| clip_id | issue |", "|---|---|"]
    lines += [f"| {r.clip_id} | {r.issue} |" for r in issues.head(N_KNOWN_ISSUES).itertuples()]
    if len(issues) > N_KNOWN_ISSUES:
        lines.append(f"\n… and {len(issues) - N_KNOWN_ISSUES} more in `{path}`.")
    return lines + [""]


PLOT_FILES = {  # per model: (link text, path under the plots directory)
    "per-class lwlrap": "{m}/per_class_lwlrap.csv",
    "curated vs noisy": "{m}/lwlrap_by_subset.csv",
    "confusion": "{m}/confusion.csv",
    "weights": "weights/{m}/histograms.png",
    "gradient norms": "weights/{m}/grad_norms.png",
    "update ratios": "weights/{m}/update_ratios.png",
    "first conv filters": "weights/{m}/first_conv_filters.png",
}


def _links_markdown(models: list[str], plots_dir: Path, summary_dir: Path,
                    ensembles: list[str] = ()) -> list[str]:
    lines = ["## Plots", "", wrap("`dvc plots show` renders all of them into one page; "
                                  "`dvc plots diff <exp-a> <exp-b>` puts two experiments side "
                                  "by side."), ""]
    for m in [*models, *ensembles]:
        files = PLOT_FILES if m not in ensembles else {"per-class lwlrap":
                                                       PLOT_FILES["per-class lwlrap"]}
        links = [f"[{text}]({os.path.relpath(plots_dir / p.format(m=m), summary_dir)})"
                 for text, p in files.items()]
        lines += _join_wrapped(f"- `{m}`: ", links, " · ", "  ")
    return lines + [""]


def _join_wrapped(head: str, items: list[str], sep: str, indent: str) -> list[str]:
    """``head`` then ``items`` joined by ``sep``, a new line (indented) before an item that
    would pass :data:`WIDTH`; an item is never broken."""
    lines = [head + items[0]] if items else [head.rstrip()]
    for item in items[1:]:
        if len(lines[-1]) + len(sep) + len(item) > WIDTH:
            lines[-1] += sep.rstrip()
            lines.append(indent + item)
        else:
            lines[-1] += sep + item
    return lines


def _ensembles_markdown(records: dict[str, dict[str, Any]], ensembles: list[str]) -> list[str]:
    """One line per ensemble: how its row was made."""
    if not ensembles:
        return []
    lines = [wrap("Ensembles (rows without training or weights): the test scores of their "
                  "members averaged, per clip and class (docs/evaluation.md):"), ""]
    for name in ensembles:
        e = records[name]["eval"]
        if "cv_folds" in e:  # k-fold CV's fold ensemble (audiotag.evaluation.cv)
            folds = e.get("folds") or [{}]
            lines.append(wrap(f"- `{name}`: {e.get('method')} of the {e['cv_folds']} fold "
                              f"models of `{folds[0].get('model')}` (k={folds[0].get('k')}); "
                              f"CV lwlrap {_fmt(e.get('cv_lwlrap_mean'))} ± "
                              f"{_fmt(e.get('cv_lwlrap_sd'))} over the folds, out-of-fold "
                              f"{_fmt(e.get('oof_lwlrap'))}", "  "))
            continue
        lines.append(wrap(f"- `{name}`: {e.get('method')} of "
                          + ", ".join(f"`{m}`" for m in e.get("members") or []), "  "))
    return lines + [""]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def plot_leaderboard(records: dict[str, dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Grouped bars per model: every score of the table that some model has; test lwlrap
    with its 95 % CI as whiskers (the table's CI column)."""
    scores = [c for c in SCORE_COLUMNS[:6] if c.title != "95 % CI"
              if any(_value(r, c) is not None for r in records.values())]
    names = list(records)
    x = np.arange(len(names))
    width = 0.8 / max(len(scores), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) * max(len(scores), 1) / 2 + 3.5, 3.8))
    for i, column in enumerate(scores):
        values = [_value(records[n], column) for n in names]
        cis = [_value(records[n], Column("", column.ci, "")) if column.ci else None
               for n in names]
        heights = np.array([np.nan if v is None else v for v in values], dtype=float)
        pairs = list(zip(heights, cis, strict=True))
        low = [h - ci[0] if ci and None not in ci else np.nan for h, ci in pairs]
        high = [ci[1] - h if ci and None not in ci else np.nan for h, ci in pairs]
        has_ci = not np.all(np.isnan(low))
        bars = ax.bar(x - 0.4 + width * (i + 0.5), heights, width=width,
                      label=column.title + (" (whiskers: 95 % CI)" if has_ci else ""),
                      yerr=np.array([low, high]) if has_ci else None, capsize=3,
                      error_kw={"elinewidth": 1, "ecolor": "black"})
        ax.bar_label(bars, labels=["" if np.isnan(h) else f"{h:.3f}" for h in heights],
                     fontsize=6, padding=2, label_type="center", rotation=90, color="white")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("model")
    ax.set_ylabel("score (0-1)")
    ax.set_title("Models compared on the test clips (higher is better)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=min(len(scores), 3),
              fontsize=7)
    save_figure(fig, path)


def _data_markdown(metrics_dir: Path) -> list[str]:
    labels_path = metrics_dir / "details" / "labels.json"  # clip counts: not a headline
    if not labels_path.exists():
        return []
    labels = read_json(labels_path)
    parts = ["## Data", "", "| subset | clips |", "|---|---:|"]
    parts += [f"| {k} | {v} |" for k, v in labels.get("clips", {}).items()]
    if "measured_noise_rate" in labels:
        parts += ["", f"Label noise in the noisy subset: {labels['measured_noise_rate']:.3f}"]
    pairs = labels.get("cooccurrence_noisy_excess") or []
    if pairs:  # clean_labels: pairs labelled together more often in noisy than in curated
        parts += ["", wrap("Label pairs given together more often in the noisy subset than "
                           "in the curated one (share of each subset's clips; all in "
                           "`data/clean/cooccurrence_pairs.csv`, heatmaps in "
                           "`plots/labels/cooccurrence.png`):"), "",
                  "| pair | curated | noisy |", "|---|---:|---:|"]
        parts += [f"| {p['pair']} | {p['curated']:.3f} | {p['noisy']:.3f} |" for p in pairs]
    return parts + [""]


# the files of the top-level plots of dvc.yaml that overlay the models (report --models-plots)
CURVES = {  # file -> [(dvclive curve under metrics/train/<model>/plots/metrics, curve name)]
    "valid_lwlrap.csv": [("valid/lwlrap.tsv", "validation lwlrap")],
    "loss.csv": [("train/loss.tsv", "train loss"), ("valid/loss.tsv", "validation loss")],
}


def _curve_rows(metrics_dir: Path, model: str, tsv: str, curve: str) -> pd.DataFrame:
    path = metrics_dir / "train" / model / "plots" / "metrics" / tsv
    if not path.exists():  # e.g. no lwlrap of a regression task
        return pd.DataFrame(columns=["epoch", "model", "curve", "value"])
    table = pd.read_csv(path, sep="\t")
    value = [c for c in table.columns if c not in ("step", "timestamp")]
    if "step" not in table.columns or len(value) != 1:
        raise ValueError(f"{path}: expected columns step and one value, got {list(table)}")
    return pd.DataFrame({"epoch": table["step"], "model": model, "curve": curve,
                         "value": table[value[0]]})


def write_model_plots(records: dict[str, dict[str, Any]], metrics_dir: str | os.PathLike[str],
                      out_dir: str | os.PathLike[str]) -> None:
    """The CSVs the top-level plots of dvc.yaml draw, every model in one chart:
    ``valid_lwlrap.csv`` and ``loss.csv`` (``epoch, model, curve, value``: training's
    curves), ``per_class_lwlrap.csv`` (``class, model, lwlrap``: test) and
    ``curated_vs_noisy.csv`` (``class, model, curated, noisy``: training clips)."""
    root, out = Path(metrics_dir), Path(out_dir)
    tables = {name: pd.concat([_curve_rows(root, m, tsv, curve) for m in records
                               for tsv, curve in curves], ignore_index=True)
              for name, curves in CURVES.items()}
    tables["per_class_lwlrap.csv"] = pd.DataFrame(
        [{"class": c["class"], "model": m, "lwlrap": c["lwlrap"]}
         for m, r in records.items() for c in r["eval"].get("per_class") or []],
        columns=["class", "model", "lwlrap"])
    tables["curated_vs_noisy.csv"] = pd.DataFrame(
        [{"class": c["class"], "model": m, "curated": c["curated"], "noisy": c["noisy"]}
         for m, r in records.items()
         for c in r["eval"].get("lwlrap_by_subset_per_class") or []
         if None not in (c["curated"], c["noisy"])],
        columns=["class", "model", "curated", "noisy"])
    for name, table in tables.items():
        with atomic_path(out / name) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")


def write_report(models: list[str], metrics_dir: str | os.PathLike[str],
                 summary_path: str | os.PathLike[str],
                 leaderboard_path: str | os.PathLike[str],
                 plots_dir: str | os.PathLike[str] | None = None,
                 known_issues: str | os.PathLike[str] | None = None,
                 models_plots: str | os.PathLike[str] | None = None,
                 ensembles: list[str] = (),
                 timings_path: str | os.PathLike[str] | None = None,
                 suspect_spread: float = 2.0) -> str:
    """Write the markdown summary and the leaderboard plot (and, given ``models_plots``,
    the CSVs of :func:`write_model_plots` there; given ``timings_path``, the models'
    wall-clock times there: :func:`timings_markdown`), the ``ensembles`` in rows after the
    models, the noisy-label suspects cut at ``suspect_spread`` (:func:`noisy_label_suspects`);
    returns the summary's markdown."""
    records = collect(models, metrics_dir, list(ensembles))
    # an ensemble skipped (fewer than two models trained) has no metrics: no row
    ensembles = [e for e in ensembles if "lwlrap" in records[e]["eval"]]
    records = {k: r for k, r in records.items() if k in models or k in ensembles}
    plot_leaderboard(records, leaderboard_path)
    if models_plots is not None:
        write_model_plots(records, metrics_dir, models_plots)
    summary_dir = Path(summary_path).parent
    plots = Path(plots_dir) if plots_dir is not None else Path(leaderboard_path).parent
    rel = os.path.relpath(leaderboard_path, summary_dir)
    # the model whose training clips are analysed (an ensemble scored only the test clips)
    best = max(models, key=lambda m: records[m]["eval"].get("lwlrap") or -1.0)
    parts = ["# Experiment summary", "", markdown_table(records), ""]
    parts += _ensembles_markdown(records, ensembles)
    parts += [f"![leaderboard]({rel})", ""]
    parts += _worst_markdown(worst_classes(records))
    parts += _suspects_markdown(records, best, suspect_spread)
    vanishing = [m for m, r in records.items()
                 if r["weights"].get("summary", {}).get("verdict") not in (None, "healthy")]
    if vanishing:
        parts += ["## Gradient warnings", ""]
        parts += [wrap(f"- `{m}`: {records[m]['weights']['summary']['verdict']} — "
                       + "; ".join(records[m]["weights"].get("verdict_reasons", [])), "  ")
                  for m in vanishing]
        parts.append("")
    parts += _links_markdown(models, plots, summary_dir, ensembles)
    if timings_path is not None:
        write_text(timings_path, timings_markdown(records))
        parts += [wrap(f"Wall-clock times (training, per epoch, inference): "
                       f"[{Path(timings_path).name}]"
                       f"({os.path.relpath(timings_path, summary_dir)})"), ""]
    parts += _data_markdown(Path(metrics_dir))
    parts += _known_issues_markdown(Path(known_issues) if known_issues else None)
    text = "\n".join(parts)
    write_text(summary_path, text)
    return text
