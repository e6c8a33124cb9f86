"""Names of the outputs that code outside the stage writing them must know.

dvc.yaml is the source of truth for every path a stage writes (it passes them to the
stage scripts); what is here is what code needs besides: the templates ``audiotag
compare`` reads at any revision, the names a stage writes inside a folder dvc.yaml
declares, and how a cross-validated model's fold ensemble is named.
"""

from __future__ import annotations

CV_SUFFIX = "_cv"  # metrics/<model>_cv.json: the fold ensemble of <model>

# as dvc.yaml's evaluate@, ensemble@ and cv@ write them ({model}: a model, an ensemble or
# <model>_cv)
DETAILS = "metrics/details/{model}.json"   # every metric, committed to git (cache: false)
PREDICTIONS = "predictions/{model}.csv"   # a model's test scores
ENSEMBLE_PREDICTIONS = "ensembles/{model}.csv"   # an ensemble's or fold ensemble's

# files written inside a plots folder (fixed names: dvc.yaml declares them)
PER_CLASS_CSV = "per_class_lwlrap.csv"
BY_SUBSET_CSV = "lwlrap_by_subset.csv"
CONFUSION_CSV = "confusion.csv"
REPORT_CSV = "per_class_report.csv"
REGRESSION_CSV = "regression.csv"

# inside a cv_fold@<model>-<fold> folder
MODEL_DIR, LIVE_DIR = "model", "live"  # the fold model's dir and dvclive dir
OOF_CSV, TEST_CSV, FOLD_JSON = "oof.csv", "test.csv", "fold.json"


def cv_name(model: str) -> str:
    """A cross-validated model's fold ensemble: its row of the report, its column of
    ``audiotag compare``, its metrics/<name>.json and ensembles/<name>.csv."""
    return f"{model}{CV_SUFFIX}"
