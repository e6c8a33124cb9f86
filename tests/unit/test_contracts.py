"""The torch-free formats that cross stage boundaries (audiotag.contracts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.predictions import (
    ClipPredictions,
    predictions_table,
    read_predictions,
    write_predictions_table,
)
from audiotag.contracts.store import index_columns
from audiotag.core.params import did_you_mean, get_dotted, has_dotted, set_dotted

# what train@ saves beside the weights: build settings, then the kept epoch's record
SAVED = {"model_name": "cnn1d", "model_params": {"channels": [4]}, "num_classes": 2,
         "n_mels": 8, "task": "multilabel", "single_label": False, "classes": ["a", "b"],
         "targets": [], "features": {"kind": "logmel"}, "stats": {"shift": [0.0]},
         "n_parameters": 10, "platform": {"device": "cpu"}, "init_from": "x/model.pt",
         "epoch": 3, "valid_lwlrap": 0.5, "valid_loss": 0.2}


def test_checkpoint_meta_writes_the_dict_it_read_key_for_key_in_order():
    meta = CheckpointMeta.from_dict({"state_dict": {}, **SAVED})
    assert list(meta.to_dict().items()) == list(SAVED.items())  # same pickle, same bytes
    assert meta.epoch == 3 and meta.init_from == "x/model.pt" and meta.processes is None
    plain = {k: v for k, v in SAVED.items() if k != "init_from"}
    assert list(CheckpointMeta.from_dict(plain).to_dict()) == list(plain)


def test_checkpoint_meta_names_outputs_by_task():
    meta = CheckpointMeta.from_dict({**SAVED, "task": "multitask",
                                     "targets": ["targets_valence"]})
    assert meta.outputs == ["a", "b", "targets_valence"]
    assert meta.target_names == ["valence"]
    regression = CheckpointMeta.from_dict({**SAVED, "task": "regression",
                                           "targets": ["targets_valence"]})
    assert regression.outputs == ["targets_valence"] and regression.n_class_outputs == 0
    old = {k: v for k, v in SAVED.items() if k not in ("task", "targets", "single_label")}
    assert CheckpointMeta.from_dict(old).task == "multilabel"  # before tasks existed


def _pred(ids, labels, scores):
    index = pd.DataFrame({"clip_id": ids, "labels": labels})
    return ClipPredictions(["a", "b"], index, np.asarray(scores, dtype=float),
                           np.zeros((len(ids), 2)), 0.0)


def test_predictions_table_round_trip_keeps_ids_and_labels_as_text(tmp_path):
    pred = _pred(["007", "NA"], ["a;b", ""], [[0.25, 0.5], [1.0, 0.125]])
    write_predictions_table(pred, ["a", "b"], tmp_path / "p.csv")
    back = read_predictions(tmp_path / "p.csv")
    assert back.clip_ids == ["007", "NA"] and back.index["labels"].tolist() == ["a;b", ""]
    np.testing.assert_array_equal(back.scores, pred.scores)
    np.testing.assert_array_equal(back.targets, [[1, 1], [0, 0]])
    assert predictions_table(None, ["a"]).columns.tolist() == ["clip_id", "labels", "a"]


def test_predictions_table_refuses_a_clashing_name_and_an_unknown_label(tmp_path):
    with pytest.raises(ValueError, match="named 'labels'"):
        predictions_table(_pred(["x"], ["a"], [[0.1, 0.2]]), ["a", "labels"])
    pd.DataFrame({"clip_id": ["x"], "labels": ["c"], "a": [0.1]}).to_csv(tmp_path / "q.csv",
                                                                          index=False)
    with pytest.raises(ValueError, match="label 'c' is not a class column"):
        read_predictions(tmp_path / "q.csv")


def test_store_index_keeps_label_weight_and_target_columns():
    columns = ["clip_id", "path", "subset", "row", "offset", "length", "role", "fold",
               "labels", "weight", "targets_x", "duration_s"]
    assert index_columns(columns)[-2:] == ["weight", "targets_x"]
    assert "path" not in index_columns(columns)


def test_dotted_keys_and_suggestions():
    tree: dict = {"train": {"lr": 0.1}}
    set_dotted(tree, "models.cnn1d.channels", [4])
    assert get_dotted(tree, "models.cnn1d.channels") == [4]
    assert get_dotted(tree, "train.lr.x") is None and not has_dotted(tree, "train.epochs")
    assert did_you_mean("epochz", ["epochs", "lr"], "train.") == "did you mean train.epochs?"
    assert did_you_mean("zzz", ["lr", "epochs"]) == "known: epochs, lr"
