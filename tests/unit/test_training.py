import json
import time

import pytest
import torch
from dvclive import Live
from helpers import TONE_FEATURES, TONE_TRAIN, write_tone_dataset
from torch.utils.data import DataLoader

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.features.store import FeatureSet, collate_clips, extract_features
from audiotag.training import distributed, resume
from audiotag.training.checkpoint import load_checkpoint, save_state_dict
from audiotag.training.loop import final_model, multilabel_bce, weighted_mean
from audiotag.training.recipe import Recipe, build_run
from audiotag.training.run import RunOutputs, fit, save_outputs, train_model
from audiotag.training.utils import grad_norms, layer_names, update_ratios

FEATURES = TONE_FEATURES
TRAIN = TONE_TRAIN


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tone_dataset(root / "raw", counts=(("curated", 24), ("noisy", 12), ("test", 6)))
    manifest, classes = read_manifest(root / "raw")
    extract_features(manifest, classes, root / "raw", root / "features", FEATURES,
                     SplitConfig(valid_fold=0))
    return root / "features"


def _train(store, out, seed=0, cfg=TRAIN):
    return train_model("cnn1d", {"channels": [16, 16]}, store, out / "model", out / "live",
                       cfg, seed)


def test_same_seed_same_run_and_a_self_describing_checkpoint(store, tmp_path):
    first = _train(store, tmp_path / "a")
    second = _train(store, tmp_path / "b")
    assert [r.valid_lwlrap for r in first] == [r.valid_lwlrap for r in second]
    assert [r.train_loss for r in first] == [r.train_loss for r in second]
    for name in ("model.pt", "first_epoch.pt"):  # byte-identical: dvc.lock stays the same
        a, b = (tmp_path / run / "model" / name for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), name
    other = _train(store, tmp_path / "c", seed=1)
    assert [r.train_loss for r in other] != [r.train_loss for r in first]

    model, meta = load_checkpoint(tmp_path / "a/model/model.pt")
    best = max(first, key=lambda r: r.valid_lwlrap)
    assert meta.epoch == best.epoch and meta.classes == ["low", "mid", "high"]
    # the params given plus every default the network was built with
    assert meta.model_params == model.cfg.model_dump(mode="json")
    assert meta.model_params["channels"] == [16, 16] and len(meta.stats["mean"]) == 16
    assert model(torch.zeros(2, 16, 63)).shape == (2, 3)

    history = json.loads((tmp_path / "a/model/history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    live = json.loads((tmp_path / "a/live/metrics.json").read_text())
    assert live["step"] == 3 and live["best"]["epoch"] == best.epoch
    logged = {p.stem for p in (tmp_path / "a/live/plots/metrics/grad_norm").glob("*.tsv")}
    assert logged == set(history["epochs"][0]["grad_norms"]) and "grad_norm" not in live
    assert (tmp_path / "a/live/plots/metrics/valid/lwlrap.tsv").exists()


def test_a_run_is_built_fitted_and_saved_in_typed_steps(store, tmp_path):
    # the steps train_model composes, one by one: the same run as train_model's
    cfg = TRAIN.model_copy(update={"epochs": 2})
    expected = _train(store, tmp_path / "whole", cfg=cfg)
    run = Recipe("cnn1d", {"channels": [16, 16]}, store, cfg, seed=0)
    out = RunOutputs(tmp_path / "model", tmp_path / "live")
    built = build_run(run, distributed.Context(), torch.device("cpu"))
    assert built.spec.task == "multilabel" and built.resumed_seconds == 0.0
    assert built.meta.model_name == "cnn1d" and built.trainer.total_epochs == 2
    with Live(str(out.live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        history = fit(run, built, live, time.perf_counter())
    assert [r.train_loss for r in history] == [r.train_loss for r in expected]
    final = final_model(built.trainer, history)
    assert final.swa is None and final.record["epoch"] == final.best.epoch
    save_outputs(run, out, built, history, final)
    _, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.epoch == final.record["epoch"] and meta.classes == built.meta.classes
    assert meta.platform["device"] == "cpu" and meta.platform["cpu_kernels"]
    saved = json.loads((tmp_path / "model/history.json").read_text())
    assert len(saved["epochs"]) == 2
    assert "train_seconds" not in saved and "seconds" not in saved["epochs"][0]


def test_wall_clock_times_go_to_the_timings_file_only(store, tmp_path):
    """Two runs of the same params: the model directory and the curves are the same bits,
    the times (which differ between runs and machines) are in the timings file alone."""
    cfg = TRAIN.model_copy(update={"epochs": 2})
    for name in ("a", "b"):
        train_model("cnn1d", {"channels": [16, 16]}, store, tmp_path / name / "model",
                    tmp_path / name / "live", cfg, seed=0,
                    timings=tmp_path / name / "timings.json")
    for rel in ("model/model.pt", "model/history.json", "live/metrics.json",
                "live/plots/metrics/train/loss.tsv"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert not list((tmp_path / "a/live").rglob("*seconds*"))
    timings = json.loads((tmp_path / "a/timings.json").read_text())
    assert timings["train_seconds"] >= sum(timings["epoch_seconds"]) - 0.01 > 0
    assert len(timings["epoch_seconds"]) == 2
    assert timings["device"] == "cpu"


def test_the_tone_task_is_learnt(store, tmp_path):
    cfg = TRAIN.model_copy(update={"epochs": 8})
    history = _train(store, tmp_path, cfg=cfg)
    assert max(r.valid_lwlrap for r in history) > 0.9
    assert history[-1].train_loss < history[0].train_loss


def test_early_stopping(store, tmp_path):
    # an lr so small that validation lwlrap stalls: training stops `patience` epochs later
    cfg = TRAIN.model_copy(update={"epochs": 10, "patience": 1, "lr": 1e-9})
    history = _train(store, tmp_path, cfg=cfg)
    assert len(history) < 10
    best = max(history, key=lambda r: r.valid_lwlrap)  # first of equals wins
    assert history[-1].epoch - best.epoch == cfg.patience


def test_saved_checkpoints_and_resume_states_are_byte_reproducible(tmp_path):
    # the real save paths write through a temporary file; nothing of its (random) name,
    # nor anything else but the content, may end up in the file
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3)}
    meta = CheckpointMeta("cnn1d", {"channels": [4]}, 2, 4, record={"epoch": 2})
    saved = []
    for _ in range(2):
        save_state_dict(tmp_path / "model.pt", state, meta)
        saved.append((tmp_path / "model.pt").read_bytes())
        resume.save_state(tmp_path, "fp", {"history": [{"epoch": 1}]}, complete=True)
        saved.append((tmp_path / resume.STATE_NAME).read_bytes())
    assert saved[0] == saved[2] and saved[1] == saved[3]
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]["w"],
                       state["w"])


def test_grad_norms_cover_every_layer():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    model(torch.randn(5, 4)).sum().backward()
    norms = grad_norms(model)
    assert list(norms) == layer_names(model) == ["0", "2"]
    expected = (model[0].weight.grad.pow(2).sum() + model[0].bias.grad.pow(2).sum()).sqrt()
    assert norms["0"] == pytest.approx(float(expected))


def test_update_ratios_measure_the_step():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model[1].weight.mul_(1.1)  # a 10% step on layer 1's weight, nothing else moves
    ratios = update_ratios(model, before)
    w, b = before["1.weight"], before["1.bias"]
    expected = float((0.1 * w).norm() / torch.cat([w.flatten(), b]).norm())
    assert ratios["0"] == 0.0 and ratios["1"] == pytest.approx(expected, rel=1e-5)


def test_a_zero_weight_clip_counts_as_dropped():
    losses = torch.tensor([1.0, 5.0, 3.0])
    assert float(weighted_mean(losses, torch.tensor([1.0, 0.0, 1.0]))) == pytest.approx(2.0)
    assert float(weighted_mean(losses, torch.ones(3))) == pytest.approx(3.0)


def test_manifest_weights_reach_the_training_loss(tmp_path):
    # noisy clips get weight 0: training must equal training without them
    root = tmp_path
    write_tone_dataset(root / "raw", counts=(("curated", 24), ("noisy", 12), ("test", 6)))
    manifest, classes = read_manifest(root / "raw")
    weighted = manifest.assign(weight=(manifest["subset"] != "noisy").astype(float))
    extract_features(weighted, classes, root / "raw", root / "weighted", FEATURES,
                     SplitConfig(valid_fold=0))
    data = FeatureSet(root / "weighted", ("train",))
    assert set(data.loss_weights[data.index["subset"] == "noisy"]) == {0.0}
    assert float(data[0].w) == float(data.loss_weights[0])

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 63, 3))
    loader = DataLoader(data, batch_size=len(data), collate_fn=collate_clips)
    batch = next(iter(loader))
    x, y, w = batch.x, batch.y, batch.w
    keep = w > 0
    model.zero_grad()
    weighted_mean(multilabel_bce(model(x), y), w).backward()
    grad_weighted = model[1].weight.grad.clone()
    model.zero_grad()
    multilabel_bce(model(x[keep]), y[keep]).mean().backward()
    assert torch.allclose(grad_weighted, model[1].weight.grad, atol=1e-6)


def test_first_epoch_and_update_ratios_are_saved(store, tmp_path):
    _train(store, tmp_path, cfg=TRAIN.model_copy(update={"epochs": 2}))
    _, first = load_checkpoint(tmp_path / "model/first_epoch.pt")
    assert first.epoch == 1
    history = json.loads((tmp_path / "model/history.json").read_text())
    ratios = history["epochs"][0]["update_ratios"]
    assert set(ratios) == set(history["epochs"][0]["grad_norms"])
    assert all(0 < r < 1 for r in ratios.values())
