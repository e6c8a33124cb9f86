"""Bootstrap over test clips: the 95 % CI of test lwlrap and the paired difference of two
predictions of the same clips (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from audiotag.metrics.lwlrap import bootstrap_lwlrap, clip_precisions, lwlrap, paired_bootstrap


def _data(n: int, seed: int = 0, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 6)) < 0.3).astype(float)
    truth[np.arange(n), rng.integers(0, 6, n)] = 1.0
    return truth, truth + noise * rng.standard_normal((n, 6))


def test_clip_precisions_add_up_to_lwlrap():
    truth, scores = _data(50)
    p, n = clip_precisions(truth, scores)
    assert p.sum() / n.sum() == pytest.approx(lwlrap(truth, scores), abs=1e-12)


def test_bootstrap_ci_is_seeded_holds_the_value_and_narrows_with_more_clips():
    truth, scores = _data(80)
    low, high = bootstrap_lwlrap(truth, scores, 500, seed=3)
    assert bootstrap_lwlrap(truth, scores, 500, seed=3) == (low, high)
    assert bootstrap_lwlrap(truth, scores, 500, seed=4) != (low, high)
    assert low < lwlrap(truth, scores) < high
    big_truth, big_scores = _data(2000)
    big_low, big_high = bootstrap_lwlrap(big_truth, big_scores, 500, seed=3)
    assert big_high - big_low < (high - low) / 3  # about 1/sqrt(25) as wide


def test_paired_bootstrap_finds_a_real_difference_and_not_a_null_one():
    truth, good = _data(200, noise=0.5)
    bad = truth + 2.0 * np.random.default_rng(9).standard_normal(truth.shape)
    diff, low, high, p = paired_bootstrap(clip_precisions(truth, good),
                                          clip_precisions(truth, bad), 1000, seed=0)
    assert diff == pytest.approx(lwlrap(truth, good) - lwlrap(truth, bad))
    assert 0 < low < diff < high and p < 0.01
    same = clip_precisions(truth, good)
    assert paired_bootstrap(same, same, 200)[::3] == (0.0, 1.0)
    with pytest.raises(ValueError, match="same clips"):
        paired_bootstrap(same, clip_precisions(truth[:-1], good[:-1]))
