"""The train stage's techniques through :func:`train_model` on tiny generated stores: every
task, overfit mode, resume after a simulated kill, SWA, transfer learning, autoencoder
phases, and what each writes into the checkpoint and the dvclive logs."""

import json
import math
import runpy
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from helpers import SMALL_CNN1D, TONE_FEATURES, TONE_TRAIN, Killed, killed_after, tone_store

from audiotag.core.errors import ParamsError
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.evaluate import evaluate_model
from audiotag.features.crops import SeededIndex
from audiotag.models import MODELS, Autoencoder
from audiotag.models.phases import TASK_PHASE, Phase
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.config import InitFrom, TrainConfig
from audiotag.training.loop import Loaders, Rules, Trainer
from audiotag.training.recipe import Recipe, _datasets, check_model_accepts
from audiotag.training.resume import STATE_NAME
from audiotag.training.run import train_model
from audiotag.training.tasks import TaskSpec, soft_bootstrap

FEATURES = TONE_FEATURES
TRAIN = TONE_TRAIN
SMALL = SMALL_CNN1D

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _store(root, features=FEATURES, **kwargs):
    return tone_store(root, features, **kwargs)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):  # multi-label tones with regression targets
    return _store(tmp_path_factory.mktemp("multi"), targets=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory):  # one tone per clip
    return _store(tmp_path_factory.mktemp("single"), single_label=True, targets=True)


def _train(store, out, cfg=TRAIN, name="cnn1d", params=SMALL, seed=0, **kwargs):
    return train_model(name, params, store, out / "model", out / "live", cfg, seed, **kwargs)


def _cfg(**update):
    """TRAIN with ``update``, validated as params.yaml would be."""
    return TrainConfig.model_validate({**TRAIN.model_dump(), **update})


def _evaluate(out, store):
    return evaluate_model(out / "model/model.pt", store, out / "m.json", out / "plots",
                          EvaluateConfig(score_train=False))


# ---- tasks -------------------------------------------------------------------------------

def test_auto_task_is_singlelabel_on_single_label_data(single, tmp_path):
    history = _train(single, tmp_path, _cfg(epochs=6))
    _, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.task == "singlelabel" and meta.num_classes == 3
    assert all(math.isfinite(r.valid_accuracy) for r in history)
    metrics = _evaluate(tmp_path, single)
    assert metrics["task"] == "singlelabel" and metrics["accuracy"] > 0.6  # chance: 1/3
    live = json.loads((tmp_path / "live/metrics.json").read_text())
    assert live["task"] == "singlelabel" and "accuracy" in live["valid"]


def test_auto_task_is_multilabel_on_multi_label_data(multi, tmp_path):
    _train(multi, tmp_path, _cfg(epochs=1))
    assert load_checkpoint(tmp_path / "model/model.pt")[1].task == "multilabel"


def test_regression_task_learns_the_targets(multi, tmp_path):
    history = _train(multi, tmp_path, _cfg(task="regression", epochs=8))
    assert all(math.isnan(r.valid_lwlrap) for r in history)  # no classes to rank
    assert history[-1].train_loss < history[0].train_loss / 2
    model, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.targets == ["targets_n_tones", "targets_seconds"]
    assert meta.num_classes == 2  # outputs: one per target, no class logits
    metrics = _evaluate(tmp_path, multi)
    assert "lwlrap" not in metrics and set(metrics["regression"]) >= {"n_tones", "seconds"}
    assert metrics["regression"]["n_tones"]["spearman"] > 0.5  # louder mixes, more tones


def test_multitask_has_both_heads(multi, tmp_path):
    _train(multi, tmp_path, _cfg(task="multitask", epochs=2, regression_weight=0.5))
    _, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.num_classes == 3 + 2 and meta.task == "multitask"
    metrics = _evaluate(tmp_path, multi)
    assert 0 < metrics["lwlrap"] <= 1 and "n_tones" in metrics["regression"]


def test_regression_without_targets_is_a_params_error(tmp_path):
    store = _store(tmp_path)  # no targets_* columns
    with pytest.raises(ParamsError, match="targets_"):
        _train(store, tmp_path / "run", _cfg(task="regression"))


# ---- overfit, SWA, transfer, autoencoder -------------------------------------------------

def test_overfit_batches_drive_the_loss_near_zero(multi, tmp_path):
    cfg = _cfg(overfit_batches=1, epochs=30, scheduler="constant", lr=0.03, patience=1)
    history = _train(multi, tmp_path, cfg)
    assert len(history) == 30  # no early stopping in overfit mode
    assert history[-1].train_loss < 0.05 < history[0].train_loss
    live = json.loads((tmp_path / "live/metrics.json").read_text())
    assert live["overfit_final_loss"] == pytest.approx(history[-1].train_loss)


def test_swa_yields_an_averaged_model_with_fresh_batch_norm(multi, tmp_path):
    history = _train(multi, tmp_path, _cfg(epochs=4, swa_start_epoch=2, swa_lr=0.005,
                                           patience=1))
    assert len(history) == 4  # SWA runs every epoch, whatever the patience
    assert [r.lr for r in history[1:]] == [0.005] * 3  # constant SWA learning rate
    model, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.record["swa"] is True and meta.epoch == 4
    saved = json.loads((tmp_path / "model/history.json").read_text())["swa"]
    assert saved["phase"] == "swa" and 0 < saved["valid_lwlrap"] <= 1
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert int(bn.num_batches_tracked) > 0 and not torch.allclose(bn.running_var,
                                                                  torch.ones_like(bn.running_var))


@pytest.mark.parametrize("swa", [False, True])
def test_init_from_loads_matching_layers_and_freezes_them(multi, tmp_path, swa):
    _train(multi, tmp_path / "a", _cfg(epochs=1))
    source, _ = load_checkpoint(tmp_path / "a/model/model.pt")
    cfg = _cfg(epochs=2, task="regression", init_from=str(tmp_path / "a/model/model.pt"),
               freeze_init=True, swa_start_epoch=1 if swa else 0)
    _train(multi, tmp_path / "b", cfg)
    target, meta = load_checkpoint(tmp_path / "b/model/model.pt")
    assert meta.init_from.endswith("model.pt")
    src, dst = source.state_dict(), target.state_dict()
    convs = [k for k in dst if k.endswith("weight") and dst[k].dim() == 3]
    assert convs and all(torch.equal(src[k], dst[k]) for k in convs)  # loaded, frozen
    # frozen batch norms stay in eval mode: their running statistics do not drift either,
    # and SWA's batch-norm update recomputes the statistics of the trained layers only
    stats = [k for k in dst if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(src[k], dst[k]) for k in stats)
    heads = [k for k in dst if src.get(k) is not None and src[k].shape != dst[k].shape]
    assert heads  # 3 classes -> 2 regression outputs: the head is new


def test_init_from_parses_to_one_type_and_dumps_its_spelling():
    """params.yaml spells init_from as a path or a mapping; the parsed config holds an
    InitFrom either way (an empty one: nothing), and dumps back to the spelling (which
    checkpoints and the resume fingerprint record)."""
    one = _cfg(init_from="a/model.pt").init_from
    two = _cfg(init_from={"wave": "w.pt", "spec": "s.pt"}).init_from
    assert isinstance(one, InitFrom) and one.path == "a/model.pt" and one.branches is None
    assert isinstance(two, InitFrom) and two.path is None and two.branches == {"wave": "w.pt",
                                                                               "spec": "s.pt"}
    assert _cfg(init_from="a/model.pt").model_dump()["init_from"] == "a/model.pt"
    assert _cfg(init_from={"wave": "w.pt"}).model_dump()["init_from"] == {"wave": "w.pt"}
    assert _cfg(init_from="").init_from is None and _cfg(init_from={}).init_from is None
    with pytest.raises(ValueError, match="init_from: a checkpoint path, or a mapping"):
        _cfg(init_from=3)


def test_init_from_a_missing_file_names_the_param(multi, tmp_path):
    with pytest.raises(FileNotFoundError, match="train.init_from"):
        _train(multi, tmp_path, _cfg(init_from=str(tmp_path / "nope.pt")))


def test_autoencoder_reconstructs_then_classifies(multi, tmp_path):
    params = {"channels": [8, 8], "latent_channels": 8, "pretrain_epochs": 3}
    history = _train(multi, tmp_path, _cfg(epochs=2), name="autoencoder", params=params)
    assert [r.phase for r in history] == ["reconstruct"] * 3 + ["train"] * 2
    assert history[2].train_loss < history[0].train_loss  # reconstruction improves
    _, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.epoch in (4, 5)  # the best is picked among classification epochs
    tsv = tmp_path / "live/plots/metrics/reconstruct/train/loss.tsv"
    assert len(tsv.read_text().splitlines()) == 1 + 3


def test_training_follows_the_phases_the_model_declares(multi, tmp_path, monkeypatch):
    # the model declares how it trains (models.phases): declare one phase away and the
    # loop follows; a declaration whose last phase does not learn the task is refused
    one = [Phase(TASK_PHASE, None, lambda: [])]
    monkeypatch.setattr(Autoencoder, "training_phases",
                        lambda self: [Phase(TASK_PHASE, None, self.parameters)])
    params = {"channels": [8, 8], "latent_channels": 8, "pretrain_epochs": 3}
    history = _train(multi, tmp_path, _cfg(epochs=2), name="autoencoder", params=params)
    assert [r.phase for r in history] == ["train"] * 2
    monkeypatch.setattr(Autoencoder, "training_phases",
                        lambda self: [*one, Phase("extra", 1, self.parameters, loss=sum)])
    with pytest.raises(TypeError, match="the last phase, and only it, must learn the task"):
        _train(multi, tmp_path / "x", _cfg(epochs=2), name="autoencoder", params=params)
    monkeypatch.setattr(Autoencoder, "training_phases", lambda self: one)
    with pytest.raises(ValueError, match="no trainable parameters"):
        _train(multi, tmp_path / "y", _cfg(epochs=2), name="autoencoder", params=params)
    assert MODELS.get("mixnet").input == "waveform"  # what a model takes: its registry entry
    with pytest.raises(ParamsError, match="features.kind=waveform: model 'cnn2d'"):
        check_model_accepts("cnn2d", "waveform")
    cnn2d = MODELS.get("cnn2d")
    monkeypatch.setitem(MODELS._entries, "cnn2d",
                        replace(cnn2d, card=replace(cnn2d.card, input="any")))
    check_model_accepts("cnn2d", "waveform")
    with pytest.raises(ParamsError, match="train.init_from: cnn2d has no branches"):
        _train(multi, tmp_path / "b", _cfg(init_from={"spec": "x.pt"}), name="cnn2d",
               params={"channels": [8]})


def test_a_cyclic_schedule_is_logged_per_step(multi, tmp_path):
    # 28 training clips in batches of 7: 4 steps per epoch, one triangle per epoch. The lr
    # at each epoch's start is the floor (1 % of train.lr): only per-step values show it
    cfg = _cfg(epochs=2, batch_size=7, scheduler="cyclic", cycle_epochs=1.0, lr=0.01)
    history = _train(multi, tmp_path, cfg)
    assert [len(r.lr_steps) for r in history] == [4, 4]
    rows = (tmp_path / "live/plots/metrics/lr_per_step.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "lr"]
    steps, lrs = zip(*((int(a), float(b)) for a, b in (r.split("\t") for r in rows[1:])),
                     strict=True)
    assert list(steps) == list(range(1, 9))
    assert lrs == pytest.approx(history[0].lr_steps + history[1].lr_steps)
    first, second = lrs[:4], lrs[4:]
    assert min(first) == pytest.approx(1e-4) and max(first) == pytest.approx(0.01)  # floor, peak
    assert max(second) == pytest.approx(1e-4 + (0.01 - 1e-4) / 2)  # triangular2: peak halves
    saved = json.loads((tmp_path / "model/history.json").read_text())["epochs"]
    assert saved[0]["lr_steps"] == pytest.approx(list(first))


# ---- params that must reach training -----------------------------------------------------

def test_lsoft_beta_and_noisy_weight_reach_the_loss(multi, tmp_path):
    runs = iter(range(100))

    def first_loss(**update):
        out = tmp_path / str(next(runs))
        return _train(multi, out, _cfg(epochs=1, **update))[0].train_loss

    plain = first_loss()
    assert first_loss(lsoft_beta=0.3) != plain  # L_soft targets on the noisy clips
    assert first_loss(noisy_weight=0.2) != plain
    # noisy clips weighted 0 count for nothing, so L_soft (which changes only their
    # targets) changes nothing either: bit for bit
    assert first_loss(noisy_weight=0.0, lsoft_beta=0.3) == first_loss(noisy_weight=0.0)


def test_noisy_weight_scales_the_noisy_clips_loss_weights(multi):
    base = _datasets(Recipe("cnn1d", SMALL, multi, _cfg(), 0))[0]
    data = _datasets(Recipe("cnn1d", SMALL, multi, _cfg(noisy_weight=0.25), 0))[0]
    noisy = data.is_noisy > 0
    assert noisy.any() and (~noisy).any()
    assert np.array_equal(data.loss_weights[noisy], 0.25 * base.loss_weights[noisy])
    assert np.array_equal(data.loss_weights[~noisy], base.loss_weights[~noisy])
    i = int(np.flatnonzero(noisy)[0])
    item = data[i]  # what the training loader yields
    assert float(item.w) == 0.25 * float(base.loss_weights[i]) and float(item.noisy) == 1.0


def test_center_train_crop_takes_the_centre_window(tmp_path):
    store = _store(tmp_path, features=FEATURES.model_copy(update={"train_crop": "center"}))
    # the training set, as train_model builds it
    data = _datasets(Recipe("cnn1d", SMALL, store, _cfg(), 0))[0]
    arrays = {s: np.load(store / f"{s}.npy") for s in ("curated", "noisy")}
    long = [i for i in range(len(data)) if data.index["length"][i] > data.window]
    assert long  # clips longer than the window, where a random crop would move
    for i in long:
        row = data.index.iloc[i]
        start = row["offset"] + (row["length"] - data.window) // 2
        frames = arrays[row["subset"]][start:start + data.window].astype(np.float32)
        expected = torch.from_numpy(((frames - data.shift) / data.scale).T.copy())
        for seed in range(4):  # whatever the crop seed (and without one)
            assert torch.equal(data[SeededIndex(i, seed)].x, expected)
        assert torch.equal(data[i].x, expected)


def test_num_workers_load_in_worker_processes_with_the_same_result(multi, tmp_path,
                                                                   monkeypatch):
    from audiotag.training import recipe

    iterators = []

    class Recording(recipe.DataLoader):
        def __iter__(self):
            iterator = super().__iter__()
            iterators.append((self.num_workers, type(iterator).__name__))
            return iterator

    monkeypatch.setattr(recipe, "DataLoader", Recording)
    cfg = _cfg(epochs=2)  # random crops (clips up to 1.5 s, windows of 1 s), shuffling
    main = _train(multi, tmp_path / "w0", cfg)
    workers = _train(multi, tmp_path / "w2", _cfg(epochs=2, num_workers=2))
    assert {name for n, name in iterators if n == 2} == {"_MultiProcessingDataLoaderIter"}
    assert {name for n, name in iterators if n == 0} == {"_SingleProcessDataLoaderIter"}
    assert [r.train_loss for r in workers] == [r.train_loss for r in main]
    assert [r.valid_lwlrap for r in workers] == [r.valid_lwlrap for r in main]
    model_pt = [tmp_path / name / "model/model.pt" for name in ("w0", "w2")]
    assert model_pt[0].read_bytes() == model_pt[1].read_bytes()


# ---- resume ------------------------------------------------------------------------------

def test_a_killed_run_resumes_to_the_same_result(multi, tmp_path):
    # every random stream in play: shuffling, random crops, mixup, SpecAugment, SWA
    cfg = _cfg(epochs=5, mixup_alpha=0.4, specaug_freq_masks=1, specaug_time_masks=1,
               specaug_time_width=4, swa_start_epoch=4, warmup_epochs=1)
    whole = _train(multi, tmp_path / "whole", cfg, resume_dir=tmp_path / "whole/ckpt")
    killed = tmp_path / "killed"
    with killed_after(3), pytest.raises(Killed):
        _train(multi, killed, cfg, resume_dir=killed / "ckpt")
    assert not (killed / "model").exists()  # no output looks complete
    saved = torch.load(killed / "ckpt" / STATE_NAME, weights_only=True)
    assert saved["complete"] is False and len(saved["state"]["history"]) == 3
    resumed = _train(multi, killed, cfg, resume_dir=killed / "ckpt")
    assert [r.train_loss for r in resumed] == [r.train_loss for r in whole]
    assert [r.valid_lwlrap for r in resumed] == [r.valid_lwlrap for r in whole]
    a = load_checkpoint(tmp_path / "whole/model/model.pt")[0].state_dict()
    b = load_checkpoint(killed / "model/model.pt")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    live = json.loads((killed / "live/metrics.json").read_text())
    assert live["step"] == 5 and live["epochs_run"] == 5
    rows = (killed / "live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 5  # the epochs before the kill are logged again
    # a finished run leaves a weightless marker; changed params start from scratch
    marker = torch.load(killed / "ckpt" / STATE_NAME, weights_only=True)
    assert marker["complete"] is True and "model" not in marker["state"]
    with killed_after(1), pytest.raises(Killed):
        _train(multi, killed, _cfg(epochs=2), resume_dir=killed / "ckpt")
    other = torch.load(killed / "ckpt" / STATE_NAME, weights_only=True)
    assert other["complete"] is False and len(other["state"]["history"]) == 1


def test_a_state_saved_by_other_code_is_not_resumed(multi, tmp_path, monkeypatch, caplog):
    from audiotag.training import resume

    cfg = _cfg(epochs=3)
    with killed_after(1), pytest.raises(Killed):
        _train(multi, tmp_path, cfg, resume_dir=tmp_path / "ckpt")
    monkeypatch.setattr(resume, "code_digest", lambda root=None: "edited source")
    with caplog.at_level("INFO", logger="audiotag.training.resume"):
        history = _train(multi, tmp_path, cfg, resume_dir=tmp_path / "ckpt")
    assert "code changed" in caplog.text and "resuming" not in caplog.text
    assert [r.epoch for r in history] == [1, 2, 3]


def test_code_digest_follows_every_source_file(tmp_path):
    from audiotag.training.resume import code_digest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = code_digest(tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert code_digest(tmp_path) != before
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    assert code_digest(tmp_path) == before
    (tmp_path / "b.py").write_text("")
    assert code_digest(tmp_path) != before


# ---- small pieces ------------------------------------------------------------------------

def test_soft_bootstrap_blends_noisy_targets_only():
    spec = TaskSpec("multilabel", n_classes=2)
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # p = 0.5 everywhere
    out = soft_bootstrap(y, logits, torch.tensor([0.0, 1.0]), beta=0.6, spec=spec)
    assert torch.equal(out[0], y[0])
    assert torch.allclose(out[1], torch.tensor([0.8, 0.2]))  # 0.6*y + 0.4*0.5


def test_gradient_clipping_bounds_each_sgd_step(multi):
    from audiotag.features.store import FeatureSet, collate_clips

    data = FeatureSet(multi, ("train",), train=True)
    loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=collate_clips)
    from audiotag.models import create_model

    model = create_model("cnn1d", num_classes=3, n_mels=16, **SMALL)
    cfg = _cfg(optimizer="sgd", momentum=0.0, lr=1.0, grad_clip_norm=1e-3,
               scheduler="constant", weight_decay=0.0)
    trainer = Trainer(model, TaskSpec("multilabel", 3), cfg, torch.device("cpu"),
                      Loaders(loader, loader), Rules(), 0, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    trainer._train_epoch(trainer.phases[-1])
    steps = len(loader)
    pairs = zip(model.parameters(), before, strict=True)
    moved = sum(float((p.detach() - b).pow(2).sum()) for p, b in pairs) ** 0.5
    assert 0 < moved <= steps * 1.0 * 1e-3 * (1 + 1e-4)  # lr * clip per step at most


def test_amp_without_cuda_falls_back_to_float32(multi, tmp_path, caplog):
    history = _train(multi, tmp_path, _cfg(epochs=1, amp=True))
    assert np.isfinite(history[0].train_loss) and "needs CUDA" in caplog.text


def test_bad_train_params_name_the_key():
    with pytest.raises(ValueError, match="swa_start_epoch"):
        TrainConfig(models=["cnn1d"], epochs=3, swa_start_epoch=4)
    with pytest.raises(ValueError, match="freeze_init needs init_from"):
        TrainConfig(models=["cnn1d"], freeze_init=True)


def test_the_train_stage_trains_a_model_for_its_own_epochs(multi, tmp_path, monkeypatch,
                                                           repo_root):
    """``models.<name>.train`` reaches training: ``train.epochs`` is 3, cnn1d's own 1."""
    params = {"seed": 0, "train": {"models": ["cnn1d"], "epochs": 3, "batch_size": 8,
                                   "device": "cpu"},
              "models": {"cnn1d": {**SMALL, "train": {"epochs": 1}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage = runpy.run_path(str(repo_root / "stages/train.py"), run_name="stage")
    monkeypatch.setattr(sys, "argv", [
        "train.py", "--model", "cnn1d", "--features", str(multi), "--out",
        str(tmp_path / "model"), "--live", str(tmp_path / "live"),
        "--params", str(tmp_path / "params.yaml")])
    stage["main"]()
    history = json.loads((tmp_path / "model/history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1]
