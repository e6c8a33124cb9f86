"""dvc.yaml and params.yaml stay consistent with each other and with the code."""

import re

import yaml

from audiotag.training.config import TrainConfig


def _load(repo_root, name):
    return yaml.safe_load((repo_root / name).read_text())


def _declared(entries):
    """The keys of a stage's ``params`` list: plain keys and ``params.yaml: [keys]``."""
    keys = set()
    for entry in entries:
        keys |= {entry} if isinstance(entry, str) else set().union(*entry.values())
    return keys


def test_train_stage_declares_every_train_key_but_models(repo_root):
    params = _load(repo_root, "params.yaml")
    declared = _declared(_load(repo_root, "dvc.yaml")["stages"]["train"]["do"]["params"])
    wanted = {f"train.{key}" for key in params["train"] if key != "models"}
    assert wanted <= declared, f"add to dvc.yaml train params: {sorted(wanted - declared)}"
    assert "train" not in declared  # the whole group would retrain every model on a new one
    # and params.yaml spells out every TrainConfig field, so nothing hides behind a default
    assert set(params["train"]) == set(TrainConfig.model_fields)


def test_every_param_has_a_comment(repo_root):
    for number, line in enumerate((repo_root / "params.yaml").read_text().splitlines(), 1):
        if re.match(r"^\s*[A-Za-z_]\w*:", line):
            assert "#" in line, f"params.yaml line {number} has no comment: {line.strip()}"


def test_stage_scripts_and_deps_exist(repo_root):
    for name, stage in _load(repo_root, "dvc.yaml")["stages"].items():
        body = stage.get("do", stage)
        script = re.search(r"python (stages/\w+\.py)", body["cmd"]).group(1)
        assert (repo_root / script).exists(), name
        assert script in body["deps"], f"{name}: its script is not a dep"
        for dep in body["deps"]:
            if dep.startswith(("src/", "stages/")):
                assert (repo_root / dep.replace("${item}", "x")).exists(), f"{name}: {dep}"


def test_default_models_are_registered_as_artifacts(repo_root):
    # `dvc artifacts get <repo> <model>` fetches each default model's checkpoint
    artifacts = _load(repo_root, "dvc.yaml").get("artifacts") or {}
    defaults = _load(repo_root, "params.yaml")["train"]["models"]
    # and only those: a registered model no default run trains cannot be fetched
    assert sorted(artifacts) == sorted(defaults), "dvc.yaml artifacts: the default models only"
    for name in defaults:
        assert name in artifacts, f"add models/{name}/model.pt to dvc.yaml artifacts"
        entry = artifacts[name]
        assert entry["path"] == f"models/{name}/model.pt" and entry["type"] == "model"
        assert entry["desc"] and name in entry["labels"]


def test_model_stages_depend_on_the_shared_model_defaults(repo_root, tmp_path):
    """Issue 22: ``models.defaults`` holds the options every model shares, so editing it must
    re-run train@<model> and clean_labels (the detector is a model) for any model and
    detector; evaluate@ and weights@ read the trained model (models/<name>), not params.
    Checked on the stages DVC renders (foreach over train.models), with every registered
    model in train.models."""
    from dvc.repo import Repo

    from audiotag.models import list_models

    params = _load(repo_root, "params.yaml")
    params["train"]["models"] = list_models()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text((repo_root / "dvc.yaml").read_text())
    repo = Repo.init(tmp_path, no_scm=True)
    stages = {stage.name: stage for stage in repo.index.stages}
    readers = ["clean_labels", *(f"train@{name}" for name in list_models())]
    for address in readers:
        keys = {key for dep in stages[address].params for key in dep.params}
        assert "models.defaults" in keys, f"{address} does not depend on models.defaults"
    for name in list_models():
        for address in (f"evaluate@{name}", f"weights@{name}"):
            deps = {str(dep.def_path) for dep in stages[address].deps}
            assert f"models/{name}" in deps, address


def test_cv_fold_stage_declares_train_stages_keys_from_their_one_list(repo_root):
    """cv_fold@ reads train@'s list of train.* keys (a YAML alias of its anchor), so the
    two cannot drift apart; the text holds the list once."""
    text = (repo_root / "dvc.yaml").read_text()
    assert text.count("- train.epochs") == 1 and "params.yaml: *train_keys" in text
    stages = _load(repo_root, "dvc.yaml")["stages"]
    train_keys = _declared(stages["train"]["do"]["params"]) - {"seed", "models.defaults",
                                                               "models.${item}"}
    declared = _declared(stages["cv_fold"]["params"])
    assert train_keys <= declared and all(k.startswith("train.") for k in train_keys)
    assert not {"train", "cv", "cv.folds", "cv.models"} & declared  # another fold: not this one


def test_cv_stages_exist_only_for_the_models_and_folds_listed(repo_root, tmp_path):
    """k-fold CV: the default (cv.models: []) renders no cv stage (an empty matrix and
    foreach are allowed); each listed model x fold is a stage of its own, whose params
    leave out cv.folds and cv.models (adding a fold or a model leaves it unchanged)."""
    from dvc.repo import Repo

    params = _load(repo_root, "params.yaml")
    (tmp_path / "dvc.yaml").write_text((repo_root / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    repo = Repo.init(tmp_path, no_scm=True)
    names = {stage.name for stage in repo.index.stages}
    assert "train@cnn1d" in names and not {n for n in names if n.startswith("cv")}

    params["cv"].update(models=["cnn1d"], k=3, folds=[0, 2])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stages = {stage.name: stage for stage in Repo(tmp_path).index.stages}
    assert {n for n in stages if n.startswith("cv")} == {"cv_fold@cnn1d-0", "cv_fold@cnn1d-2",
                                                         "cv@cnn1d"}
    keys = {key for dep in stages["cv_fold@cnn1d-2"].params for key in dep.params}
    assert {"cv.k", "seed", "models.cnn1d", "train.lr"} <= keys
    train_keys = {key for dep in stages["train@cnn1d"].params for key in dep.params}
    assert {k for k in keys if k.startswith("train.")} == {k for k in train_keys
                                                           if k.startswith("train.")}
    assert len([k for k in train_keys if k.startswith("train.")]) > 40  # the alias rendered
    outs = {str(out.def_path) for out in stages["cv_fold@cnn1d-2"].outs}
    assert outs == {"cv/cnn1d/folds/2", "metrics/timings/cv/cnn1d-2.json"}
    deps = {str(dep.def_path) for dep in stages["cv@cnn1d"].deps}
    assert "cv/cnn1d/folds" in deps


def test_the_run_cache_restores_download_and_features_only(repo_root):
    """DVC saves no run-cache entry for a stage with a `persist: true` out (stage/cache.py,
    _can_hash) or a `cache: false` out that is neither a metric nor a plot (Stage.run):
    docs/team.md names the stages a clone on a shared cache restores and the ones it re-runs
    (tests/e2e/test_team_machines.py shows the three kinds with two clones)."""
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        stages = repo.index.stages
        skipped = {st.addressing.split("@")[0] for st in stages if any(
            out.persist or not out.use_cache and not (out.is_metric or out.is_plot)
            for out in st.outs)}
        restored = {st.addressing.split("@")[0] for st in stages} - skipped
    assert restored == {"download", "features"}
    assert {"train", "evaluate", "weights", "report"} <= skipped
    team = " ".join((repo_root / "docs/team.md").read_text().split())
    assert "restores only `download` and `features`" in team


def test_regression_charts_are_declared_only_for_the_regression_models(repo_root, tmp_path):
    """A tagging dataset (report.regression_plots: []) has no regression stage and no
    regression plot: `dvc plots show` draws no chart that does not apply; a model listed
    there gets regression@<model>, whose scatter is a declared plot."""
    from dvc.repo import Repo

    params = _load(repo_root, "params.yaml")
    (tmp_path / "dvc.yaml").write_text((repo_root / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    repo = Repo.init(tmp_path, no_scm=True)
    stages = list(repo.index.stages)
    declared = {str(o.def_path) for s in stages for o in s.outs}
    assert not [n for n in (s.name for s in stages) if n.startswith("regression")]
    assert not [p for p in declared if "regression" in p]

    params["train"]["task"] = "multitask"
    params["report"]["regression_plots"] = ["crnn"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stages = {s.name: s for s in Repo(tmp_path).index.stages}
    plots = {str(o.def_path) for o in stages["regression@crnn"].outs if o.plot}
    assert plots == {"plots/crnn/regression.csv"}
    assert not [n for n in stages if n.startswith("regression@") and n != "regression@crnn"]
