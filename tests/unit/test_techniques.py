"""Tasks (losses), mixup, SpecAugment and learning-rate schedules, each on hand-made data."""

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from audiotag.training.augment import mixup, spec_augment
from audiotag.training.optim import lr_multiplier, make_optimizer, make_scheduler
from audiotag.training.tasks import TaskSpec, class_scores, make_loss, masked_mse


def test_multilabel_and_singlelabel_losses_match_torch():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]])
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected = F.binary_cross_entropy_with_logits(logits, multi, reduction="none").mean(1)
    assert torch.allclose(make_loss(TaskSpec("multilabel", 3))(logits, multi), expected)

    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    ce = F.cross_entropy(logits, torch.tensor([0, 2]), reduction="none")
    assert torch.allclose(make_loss(TaskSpec("singlelabel", 3))(logits, one_hot), ce)
    smooth = F.cross_entropy(logits, torch.tensor([0, 2]), reduction="none",
                             label_smoothing=0.1)
    spec = TaskSpec("singlelabel", 3, label_smoothing=0.1)
    assert torch.allclose(make_loss(spec)(logits, one_hot), smooth)
    assert torch.allclose(class_scores(logits, spec).sum(1), torch.ones(2))


def test_regression_ignores_unknown_targets_and_multitask_adds_weighted_mse():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[2.0, float("nan")], [float("nan"), float("nan")]])
    assert masked_mse(pred, target).tolist() == [1.0, 0.0]
    assert make_loss(TaskSpec("regression", 0, n_targets=2))(pred, target).tolist() == [1.0, 0.0]

    spec = TaskSpec("multitask", 2, n_targets=1, regression_weight=0.5)
    out = torch.tensor([[3.0, -3.0, 1.0]])
    y = torch.tensor([[1.0, 0.0, 3.0]])
    bce = F.binary_cross_entropy_with_logits(out[:, :2], y[:, :2], reduction="none").mean(1)
    assert torch.allclose(make_loss(spec)(out, y), bce + 0.5 * 4.0)


def test_task_specs_reject_impossible_layouts():
    with pytest.raises(ValueError, match="needs targets_\\* columns"):
        TaskSpec("regression", 0, n_targets=0)
    with pytest.raises(ValueError, match="unknown task"):
        TaskSpec("ranking", 3)
    with pytest.raises(ValueError, match=r"must both be \(batch, 3\)"):
        make_loss(TaskSpec("multilabel", 3))(torch.zeros(2, 4), torch.zeros(2, 4))


def test_mixup_mixes_inputs_targets_and_weights_with_one_coefficient():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(4.0).view(4, 1, 1).expand(4, 2, 3).clone()
    y = torch.eye(4)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0])
    mx, my, mw, lam = mixup(x, y, w, alpha=0.4, generator=g)
    assert 0.0 <= lam <= 1.0 and lam != 1.0
    # each row of y was one-hot: the mixed row holds lam on itself and 1-lam on its partner
    partner = [int(torch.argmax(my[i] - lam * y[i])) if lam < 1 else i for i in range(4)]
    for i, j in enumerate(partner):
        assert torch.allclose(mx[i], lam * x[i] + (1 - lam) * x[j])
        assert mw[i] == pytest.approx(lam * float(w[i]) + (1 - lam) * float(w[j]))
    again = mixup(x, y, w, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], mx), "seeded: the same mix twice"
    assert mixup(x, y, w, alpha=0.0)[3] == 1.0


def test_spec_augment_masks_whole_bands_and_spans():
    x = torch.randn(8, 16, 40)
    g = torch.Generator().manual_seed(1)
    out = spec_augment(x, freq_masks=1, freq_width=4, time_masks=1, time_width=10, generator=g)
    changed = out != x
    assert changed.any() and out.shape == x.shape
    for i in range(8):
        rows = changed[i].all(dim=1).nonzero().flatten().tolist()  # fully masked bands
        if rows:
            assert rows == list(range(rows[0], rows[0] + len(rows))) and len(rows) <= 4
        fill = x[i].mean()
        assert torch.allclose(out[i][changed[i]], fill.expand(int(changed[i].sum())))
    assert torch.equal(spec_augment(x, 0, 0, 0, 0), x)


def test_schedules_have_their_shapes():
    cos = lr_multiplier("cosine", 100, warmup_steps=10)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(99) < 0.01 and cos(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    one = lr_multiplier("onecycle", 100)
    peak = max(range(100), key=one)
    assert peak == 30 and one(0) < 0.05 and one(99) < 1e-3
    cyc = lr_multiplier("cyclic", 100, cycle_steps=20)
    assert cyc(10) == pytest.approx(1.0) and cyc(30) == pytest.approx(0.01 + 0.99 / 2)
    assert cyc(0) == pytest.approx(0.01) and lr_multiplier("constant", 10)(5) == 1.0
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_multiplier("step", 10)


def test_optimizers_and_per_step_scheduler_drive_the_lr():
    model = torch.nn.Linear(2, 1)
    for name in ("adam", "adamw", "sgd"):
        opt = make_optimizer(model.parameters(), name, lr=0.1, weight_decay=0.01)
        sched = make_scheduler(opt, "cosine", epochs=2, steps_per_epoch=5)
        lrs = []
        for _ in range(10):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lrs[0] == pytest.approx(0.1) and lrs == sorted(lrs, reverse=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model.parameters(), "lion", lr=0.1)
