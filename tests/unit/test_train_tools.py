"""Training tools of issue 20 through :func:`train_model` on tiny generated stores and as
pure functions: weight EMA, class-balanced sampling, focal loss and pos_weight, signal
augmentation (gain, time shift, background mixing) and curated fine-tuning."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from helpers import SMALL_CNN1D, TONE_FEATURES, TONE_TRAIN, Killed, killed_after, tone_store

from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_group
from audiotag.training.augment import SignalAugment
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.config import TrainConfig
from audiotag.training.resume import STATE_NAME
from audiotag.training.run import train_model
from audiotag.training.sampling import clip_sampler, rarest_label_weights
from audiotag.training.tasks import TaskSpec, balanced_pos_weight, class_loss, make_loss

FEATURES = TONE_FEATURES
TRAIN = TONE_TRAIN
SMALL = SMALL_CNN1D

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _store(root, features=FEATURES, **kwargs):
    return tone_store(root, features, **kwargs)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("multi"))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("single"), single_label=True)


def _train(store, out, cfg=TRAIN, seed=0, **kwargs):
    return train_model("cnn1d", SMALL, store, out / "model", out / "live", cfg, seed, **kwargs)


def _cfg(**update):
    return TrainConfig.model_validate({**TRAIN.model_dump(), **update})


def _weights(path):
    return load_checkpoint(path)[0].state_dict()


# ---- weight EMA --------------------------------------------------------------------------

def test_ema_validates_picks_and_saves_the_average(multi, tmp_path):
    plain = _train(multi, tmp_path / "plain", _cfg(epochs=2))
    ema = _train(multi, tmp_path / "ema", _cfg(epochs=2, ema_decay=0.9))
    # the raw weights train exactly as without EMA; what validates is the average
    assert [r.train_loss for r in ema] == [r.train_loss for r in plain]
    assert [r.valid_loss for r in ema] != [r.valid_loss for r in plain]
    a, b = _weights(tmp_path / "plain/model/model.pt"), _weights(tmp_path / "ema/model/model.pt")
    convs = [k for k in a if k.endswith("weight") and a[k].dim() == 3]
    assert convs and not any(torch.equal(a[k], b[k]) for k in convs)
    # batch-norm statistics are averaged too (use_buffers): not the raw model's
    stats = [k for k in a if k.endswith("running_var")]
    assert stats and not any(torch.equal(a[k], b[k]) for k in stats)


@pytest.mark.parametrize(("update", "message"), [
    ({"ema_decay": 0.99, "swa_start_epoch": 1}, "ema_decay and swa_start_epoch"),
    ({"finetune_curated_epochs": 2, "swa_start_epoch": 1}, "finetune_curated_epochs after"),
    ({"finetune_curated_epochs": 2, "overfit_batches": 1}, "with overfit_batches"),
    ({"sampler": "balanced", "processes": 2},  # parsed, not run
     "sampler=balanced needs one process"),
])
def test_tools_that_do_not_combine_are_params_errors(update, message):
    with pytest.raises(ParamsError, match=message):
        parse_group({"train": {**TRAIN.model_dump(), **update}}, "train", TrainConfig,
                    "params.yaml")


# ---- class-balanced sampling -------------------------------------------------------------

def test_rarest_label_weights():
    targets = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
    w = rarest_label_weights(targets)  # counts: a 4, b 1, c 1
    assert w.tolist() == pytest.approx([0.25, 0.25, 0.25, 1.0, 1.0, 0.25])


def test_balanced_sampler_balances_and_is_seeded():
    targets = np.eye(2)[[0] * 90 + [1] * 10]  # single-label, 9:1
    draws = [list(clip_sampler("balanced", targets, torch.Generator().manual_seed(3)))
             for _ in range(2)]
    assert draws[0] == draws[1] and len(draws[0]) == 100
    many = [i for _ in range(20) for i in clip_sampler("balanced", targets,
                                                        torch.Generator().manual_seed(_))]
    rare = np.mean(np.array(many) >= 90)
    assert 0.4 < rare < 0.6  # inverse class frequency: both classes drawn equally
    subset = list(clip_sampler("balanced", targets, torch.Generator(), indices=[0, 95]))
    assert set(subset) <= {0, 95}


def test_balanced_sampler_reaches_training(multi, tmp_path):
    plain = _train(multi, tmp_path / "a", _cfg(epochs=1))
    one = _train(multi, tmp_path / "b", _cfg(epochs=1, sampler="balanced"))
    two = _train(multi, tmp_path / "c", _cfg(epochs=1, sampler="balanced"))
    assert one[0].train_loss != plain[0].train_loss
    assert one[0].train_loss == two[0].train_loss  # seeded


# ---- focal loss and pos_weight -----------------------------------------------------------

def test_focal_loss_reduces_to_the_plain_loss_and_takes_soft_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    soft = torch.rand(6, 4, generator=g)
    bce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none").mean(dim=1)
    assert torch.allclose(class_loss(logits, soft, False, focal_gamma=0.0), bce)
    p = torch.sigmoid(logits)
    p_t = p * soft + (1 - p) * (1 - soft)
    focal = (F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
             * (1 - p_t) ** 2).mean(dim=1)
    assert torch.allclose(class_loss(logits, soft, False, focal_gamma=2.0), focal)
    dist = soft / soft.sum(dim=1, keepdim=True)  # mixed one-hots
    ce = F.cross_entropy(logits, dist, label_smoothing=0.1, reduction="none")
    assert torch.allclose(class_loss(logits, dist, True, 0.1, focal_gamma=1e-12), ce, atol=1e-6)
    assert (class_loss(logits, dist, True, 0.1, focal_gamma=2.0) < ce).all()


def test_pos_weight_balanced_counts_and_clips():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert balanced_pos_weight(targets, 2.5) == pytest.approx((1 / 3, 2.5, 2.5))
    spec = TaskSpec("multilabel", 3, pos_weight=(1.0, 3.0, 1.0))
    logits, y = torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]])
    assert make_loss(spec)(logits, y).item() == pytest.approx(
        (math.log(2) + 3 * math.log(2) + math.log(2)) / 3, rel=1e-5)


def test_focal_and_pos_weight_reach_training_with_mixup_and_lsoft(multi, tmp_path):
    plain = _train(multi, tmp_path / "a", _cfg(epochs=1, mixup_alpha=0.4, lsoft_beta=0.7))
    tools = _train(multi, tmp_path / "b", _cfg(epochs=1, mixup_alpha=0.4, lsoft_beta=0.7,
                                               loss="focal", pos_weight="balanced"))
    assert math.isfinite(tools[0].train_loss)
    assert tools[0].train_loss != plain[0].train_loss


def test_pos_weight_on_a_single_label_task_is_a_params_error(single, tmp_path):
    with pytest.raises(ParamsError, match="train.pos_weight=balanced"):
        _train(single, tmp_path, _cfg(pos_weight="balanced"))
    history = _train(single, tmp_path / "ok", _cfg(epochs=1, loss="focal", label_smoothing=0.1))
    assert math.isfinite(history[0].train_loss)


# ---- signal augmentation -----------------------------------------------------------------

def _norm(raw, shift, scale):
    return (raw - shift.view(1, -1, 1)) / scale.view(1, -1, 1)


def test_gain_is_a_db_offset_before_normalisation_and_a_scale_on_waveforms():
    shift, scale = torch.tensor([-40.0, -50.0]), torch.tensor([10.0, 20.0])
    raw = torch.tensor([[[-30.0, -60.0], [-45.0, -55.0]]])  # (1, 2 bands, 2 frames)
    aug = SignalAugment("db", shift, scale, gain_db=6.0)
    out = aug(_norm(raw, shift, scale), torch.Generator().manual_seed(0))
    g = (torch.rand(1, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 6.0
    assert torch.allclose(out, _norm(raw + g, shift, scale), atol=1e-5)
    wave = SignalAugment("waveform", torch.zeros(1), torch.ones(1) * 0.5, gain_db=6.0)
    x = torch.randn(1, 1, 50)
    out = wave(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x * 10 ** (g / 20), atol=1e-5)


def test_background_adds_power_and_shift_rolls():
    shift, scale = torch.zeros(1), torch.ones(1)
    raw = torch.tensor([[[-20.0, -20.0]], [[-30.0, -30.0]]])  # two clips, dB
    aug = SignalAugment("db", shift, scale, background=1.0, background_db=0.0)
    out = aug(raw, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    torch.rand(2, generator=g), torch.randint(1, 2, (2,), generator=g)
    att = 10 * torch.rand(2, generator=g)
    power = 10 ** (raw[:, 0, 0] / 10) + 10 ** ((raw.flip(0)[:, 0, 0] - att) / 10)
    assert torch.allclose(out[:, 0, 0], 10 * torch.log10(power), atol=1e-4)
    x = torch.arange(10.0).view(1, 1, 10)
    rolled = SignalAugment("db", shift, scale, max_shift=0.5)(x, torch.Generator())
    k = int((rolled[0, 0, 0] - x[0, 0, 0]).item()) % 10
    assert torch.equal(rolled, torch.roll(x, -k, dims=2))


def test_signal_augmentation_reaches_training(multi, tmp_path):
    plain = _train(multi, tmp_path / "a", _cfg(epochs=1))
    aug = _train(multi, tmp_path / "b", _cfg(epochs=1, aug_gain_db=6, aug_shift=0.2,
                                             aug_background=0.5))
    assert aug[0].train_loss != plain[0].train_loss
    assert aug[0].valid_loss != plain[0].valid_loss


def test_signal_augmentation_reaches_training_on_waveforms(tmp_path):
    store = _store(tmp_path, FEATURES.model_copy(update={"kind": "waveform"}))
    plain = _train(store, tmp_path / "a", _cfg(epochs=1))
    aug = _train(store, tmp_path / "b", _cfg(epochs=1, aug_gain_db=6, aug_background=0.5))
    assert aug[0].train_loss != plain[0].train_loss


def test_gain_on_mfcc_is_a_params_error(tmp_path):
    store = _store(tmp_path, FEATURES.model_copy(update={"kind": "mfcc", "n_mfcc": 8}))
    with pytest.raises(ParamsError, match="features.kind=mfcc"):
        _train(store, tmp_path / "run", _cfg(aug_gain_db=3))


# ---- noisy-then-curated fine-tuning -------------------------------------------------------

def test_finetune_runs_more_epochs_on_curated_clips(multi, tmp_path):
    history = _train(multi, tmp_path, _cfg(epochs=2, finetune_curated_epochs=2,
                                           finetune_lr=0.003))
    assert [r.phase for r in history] == ["train", "train", "finetune", "finetune"]
    # 28 training clips (16 curated + 12 noisy) in batches of 8: 3 steps; curated: 2
    assert [len(r.lr_steps) for r in history] == [3, 3, 2, 2]
    assert history[2].lr_steps[0] == pytest.approx(0.003)
    saved = json.loads((tmp_path / "model/history.json").read_text())
    assert saved["best_epoch"] in (1, 2, 3, 4)


def test_finetune_follows_early_stopping_and_resumes(multi, tmp_path):
    cfg = _cfg(epochs=4, finetune_curated_epochs=2, mixup_alpha=0.4, ema_decay=0.9,
               aug_gain_db=3, aug_background=0.5, sampler="balanced")
    whole = _train(multi, tmp_path / "whole", cfg, resume_dir=tmp_path / "whole/ckpt")
    killed = tmp_path / "killed"
    with killed_after(5), pytest.raises(Killed):
        _train(multi, killed, cfg, resume_dir=killed / "ckpt")
    assert torch.load(killed / "ckpt" / STATE_NAME, weights_only=True)["complete"] is False
    resumed = _train(multi, killed, cfg, resume_dir=killed / "ckpt")
    assert [r.train_loss for r in resumed] == [r.train_loss for r in whole]
    assert [r.valid_loss for r in resumed] == [r.valid_loss for r in whole]  # the EMA's
    assert [r.phase for r in resumed][-2:] == ["finetune", "finetune"]
    stopped = _train(multi, tmp_path / "stop", _cfg(epochs=30, patience=1, lr=0.05,
                                                    finetune_curated_epochs=1))
    assert len(stopped) < 31 and stopped[-1].phase == "finetune"
