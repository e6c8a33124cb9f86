import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from audiotag.metrics import lwlrap, per_class_lwlrap


def test_hand_computed_case():
    truth = np.array([[1, 0, 0, 0], [1, 0, 0, 1]])
    scores = np.array([[0.3, 0.4, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    # clip 0: class 0 ranked 2nd -> 1/2. clip 1: class 3 ranked 1st -> 1, class 0 ranked
    # 4th with 2 true labels at or above -> 2/4. Mean over the 3 labels: (0.5+1+0.5)/3.
    assert lwlrap(truth, scores) == pytest.approx(2 / 3, abs=1e-12)
    result = per_class_lwlrap(truth, scores)
    assert result.per_class[0] == pytest.approx(0.5)
    assert result.per_class[3] == pytest.approx(1.0)
    assert np.isnan(result.per_class[1]) and np.isnan(result.per_class[2])
    assert result.weights.tolist() == pytest.approx([2 / 3, 0, 0, 1 / 3])


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_lrap_weighted_by_labels(seed):
    rng = np.random.default_rng(seed)
    truth = (rng.random((200, 12)) < 0.2).astype(int)
    truth[truth.sum(axis=1) == 0, rng.integers(0, 12)] = 1
    scores = rng.random((200, 12))  # continuous: no ties
    expected = label_ranking_average_precision_score(
        truth, scores, sample_weight=truth.sum(axis=1))
    assert lwlrap(truth, scores) == pytest.approx(expected, abs=1e-12)


def test_per_class_values_recombine_to_overall():
    rng = np.random.default_rng(7)
    truth = (rng.random((300, 8)) < 0.3).astype(int)
    scores = rng.random((300, 8)) + truth * 0.5
    result = per_class_lwlrap(truth, scores)
    assert result.weights.sum() == pytest.approx(1.0)
    assert np.nansum(result.per_class * result.weights) == pytest.approx(result.overall)
    assert 0.5 < result.overall < 1.0
    assert (result.per_class >= 0).all() and (result.per_class <= 1).all()


def test_clips_without_labels_are_skipped():
    truth = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    scores = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.2, 0.8, 0.1]])
    result = per_class_lwlrap(truth, scores)
    assert result.n_clips == 2
    assert result.overall == pytest.approx(1.0)
    assert lwlrap(truth[[0, 2]], scores[[0, 2]]) == result.overall


def test_ties_count_as_ranked_above():
    # all scores equal: each true label's rank is C, with all true labels at or above
    truth = np.array([[1, 0, 0, 0], [1, 1, 0, 0]])
    scores = np.zeros((2, 4))
    assert lwlrap(truth, scores) == pytest.approx((1 / 4 + 2 / 4 + 2 / 4) / 3)
    # ... which is what scikit-learn does with ties too
    expected = label_ranking_average_precision_score(truth, scores, sample_weight=[1, 2])
    assert lwlrap(truth, scores) == pytest.approx(expected)


def test_large_input_is_chunked_consistently():
    rng = np.random.default_rng(3)
    truth = (rng.random((1500, 6)) < 0.3).astype(int)
    scores = rng.random((1500, 6))
    whole = per_class_lwlrap(truth, scores)
    labelled = truth.sum(axis=1) > 0
    expected = label_ranking_average_precision_score(
        truth[labelled], scores[labelled], sample_weight=truth[labelled].sum(axis=1))
    assert whole.overall == pytest.approx(expected, abs=1e-12)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="must be equal"):
        lwlrap(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        lwlrap(np.ones((1, 2)), np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="no clip"):
        lwlrap(np.zeros((2, 2)), np.ones((2, 2)))
