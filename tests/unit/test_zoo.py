"""The model zoo: shared head options, variable lengths, STN, autoencoders, ImageNet backbones."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from audiotag.models import (
    BACKBONES,
    MODEL_TRAIN,
    MODELS,
    create_model,
    list_models,
    registry,
    validate_model_params,
)
from audiotag.models.outputs import Outputs
from audiotag.models.phases import TASK_PHASE, training_phases

K = 5  # classes
WAVE_SAMPLES = 4000  # a quarter second at 16 kHz, for the models that take waveforms only


def _needs_waveform(name: str) -> bool:
    return MODELS.get(name).input == "waveform"


def _inputs(name: str, batch: int, n_mels: int, frames: int) -> tuple[int, torch.Tensor]:
    """``(n_mels, x)`` for model ``name``: ``(batch, n_mels, frames)`` random features, or
    ``(batch, 1, WAVE_SAMPLES)`` for a model that takes raw waveforms only."""
    if _needs_waveform(name):
        return 1, torch.randn(batch, 1, WAVE_SAMPLES)
    return n_mels, torch.randn(batch, n_mels, frames)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny inputs run faster on one thread (and much faster when the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _first_param(model: nn.Module) -> nn.Parameter:
    # a spatial transformer at its identity init passes no gradient to its localisation
    # net (the last layer is zero), so look at the classifier CNN's first layer
    trunk = model.features if hasattr(model, "stn") else model
    return next(p for p in trunk.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name: str) -> None:
    """Logits of the right shape, finite, and gradients reaching the first layer."""
    n_mels, x = _inputs(name, 3, *((16, 24) if name in BACKBONES else (32, 40)))
    model = create_model(name, K, n_mels)
    out = model(x)
    assert out.shape == (3, K)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grad = _first_param(model).grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


FRAMEWISE = {"crnn", "cnn2d"}  # attention pooling of frame logits (cnn2d's default)
EMBEDDING = {"lstm", "gru", *BACKBONES}  # a clip vector before the classifier head


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_one_outputs_record(name: str) -> None:
    """``outputs(x)`` is an :class:`Outputs` whose clip logits are ``model(x)``; frame
    logits pooled by attention weights (summing to 1 over frames) give the clip logits;
    the embedding is one vector per clip. Fields a model has not are None."""
    n_mels, x = _inputs(name, 3, *((16, 24) if name in BACKBONES else (32, 40)))
    model = create_model(name, K, n_mels).eval()
    with torch.no_grad():
        out = model.outputs(x)
        assert isinstance(out, Outputs) and torch.equal(out.clipwise, model(x))
    assert (out.framewise is not None) == (out.attention is not None) == (name in FRAMEWISE)
    if out.framewise is not None and out.attention is not None:
        assert out.framewise.shape == out.attention.shape and out.framewise.shape[::2] == (3, K)
        assert torch.allclose(out.attention.sum(dim=1), torch.ones(3, K))
        assert torch.allclose((out.attention * out.framewise).sum(dim=1), out.clipwise)
    assert (out.embedding is not None) == (name in EMBEDDING)
    if out.embedding is not None:
        assert out.embedding.dim() == 2 and out.embedding.shape[0] == 3


def test_a_factory_that_is_not_a_tagger_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    linear = replace(MODELS.get("cnn1d"), factory=lambda k, n_mels, cfg: nn.Linear(n_mels, k))
    monkeypatch.setattr(MODELS, "get", lambda name: linear)
    with pytest.raises(TypeError, match="models.cnn1d: Linear is not a Tagger"):
        create_model("cnn1d", K, 8)


@pytest.mark.parametrize("name", [m for m in list_models()
                                  if m not in BACKBONES and not _needs_waveform(m)])
def test_small_feature_dims(name: str) -> None:
    """chroma (12 bands) and single-band inputs pool down without errors."""
    for dim, frames in ((12, 30), (1, 64)):
        out = create_model(name, K, dim)(torch.randn(2, dim, frames))
        assert out.shape == (2, K) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [m for m in list_models() if m not in BACKBONES])
@pytest.mark.parametrize(("head_layers", "activation", "init"),
                         [(2, "gelu", "kaiming"), (3, "sigmoid", "xavier"),
                          (1, "prelu", "default")])
def test_head_options_on_every_small_model(name: str, head_layers: int, activation: str,
                                           init: str) -> None:
    n_mels, x = _inputs(name, 2, 16, 20)
    model = create_model(name, K, n_mels, head_layers=head_layers, head_hidden=8,
                         activation=activation, init=init, dropout=0.1)
    hidden = [m for m in model.head.hidden if isinstance(m, nn.Linear)]
    assert len(hidden) == head_layers and hidden[-1].out_features == 8
    out = model(x)
    assert out.shape == (2, K) and torch.isfinite(out).all()


def test_head_layers_zero_keeps_a_single_linear_layer() -> None:
    def head(**params) -> set[str]:
        keys = create_model("cnn2d", K, 16, **params).state_dict()
        return {k for k in keys if k.startswith("head.")}

    assert head(clip_pool="maxmean") == {"head.fc.weight", "head.fc.bias"}
    assert head() == {"head.frame.weight", "head.frame.bias",  # attention pooling
                      "head.attention.weight", "head.attention.bias"}


def _conv_weight_std(init: str, activation: str = "relu") -> float:
    model = create_model("cnn2d", K, 32, channels=[32, 64], init=init, activation=activation)
    return model.features[1][0].weight.std().item()  # conv3x3 32 -> 64


def test_init_changes_weight_statistics() -> None:
    fan_in, fan_out = 32 * 9, 64 * 9
    kaiming, xavier, default = (_conv_weight_std(s) for s in ("kaiming", "xavier", "default"))
    assert kaiming == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert xavier == pytest.approx((2 / (fan_in + fan_out)) ** 0.5 * 2**0.5, rel=0.05)
    assert default == pytest.approx((1 / (3 * fan_in)) ** 0.5, rel=0.05)  # torch's a=sqrt(5)
    assert _conv_weight_std("kaiming", "sigmoid") == pytest.approx((1 / fan_in) ** 0.5, rel=0.05)
    biases = create_model("cnn2d", K, 32, init="xavier").head.frame.bias
    assert torch.equal(biases, torch.zeros_like(biases))


def test_activation_reaches_the_conv_blocks() -> None:
    model = create_model("cnn2d", K, 16, activation="sigmoid")
    assert isinstance(model.features[0][2], nn.Sigmoid)
    assert any(isinstance(m, nn.PReLU) for m in create_model("stn", K, 16,
                                                             activation="prelu").modules())


# --- lstm / gru: variable lengths -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pooling", "bidirectional"),
    [*((cell, pooling, True) for cell in ("lstm", "gru")
       for pooling in ("mean", "max", "last", "attention")),
     ("lstm", "last", False), ("gru", "attention", False)],
)
def test_padding_does_not_change_a_shorter_sequence(name: str, pooling: str,
                                                    bidirectional: bool) -> None:
    model = create_model(name, K, 8, hidden=12, layers=2, pooling=pooling,
                         bidirectional=bidirectional).eval()
    short, long = torch.randn(1, 8, 9), torch.randn(1, 8, 15)
    batch = torch.cat([nn.functional.pad(short, (0, 6), value=3.0), long])  # (2, 8, 15)
    with torch.no_grad():
        out = model(batch, lengths=torch.tensor([9, 15]))
        torch.testing.assert_close(out[0], model(short)[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[1], model(long)[0], rtol=1e-5, atol=1e-5)
        # without lengths the padding counts as frames
        assert not torch.allclose(model(batch)[0], out[0], atol=1e-4)


def test_lengths_gradients_and_flag() -> None:
    model = create_model("lstm", K, 8)
    assert model.accepts_lengths and not getattr(create_model("cnn2d", K, 8),
                                                 "accepts_lengths", False)
    out = model(torch.randn(3, 8, 10), lengths=torch.tensor([10, 4, 1]))
    out.sum().backward()
    assert torch.isfinite(out).all() and model.rnn.weight_ih_l0.grad is not None


# --- residual: one setting, not twin registry entries (issue 22) ----------------------------


@pytest.mark.parametrize("name", ["stn", "autoencoder"])
def test_residual_is_a_setting_of_stn_and_autoencoder(name: str) -> None:
    from audiotag.models.layers import ResBlock2d

    def res_blocks(model) -> int:
        return sum(isinstance(m, ResBlock2d) for m in model.modules())

    plain = create_model(name, K, 16, channels=[8, 16])
    residual = create_model(name, K, 16, channels=[8, 16], residual=True)
    assert res_blocks(plain) == 0 and res_blocks(residual) > 0
    assert f"res{name}" not in list_models()  # no twin entry that differs by one attribute


# --- spatial transformers ----------------------------------------------------------------


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("init", ["default", "kaiming"])
def test_stn_starts_as_the_identity(residual: bool, init: str) -> None:
    model = create_model("stn", K, 16, init=init, residual=residual)
    x = torch.randn(2, 16, 30)
    torch.testing.assert_close(model.transform(x), x, rtol=1e-5, atol=1e-5)
    model.stn.theta.bias.data[2] = 0.5  # shift in time: no longer the identity
    assert not torch.allclose(model.transform(x), x, atol=1e-3)


def test_stn_learns_its_transform() -> None:
    model = create_model("stn", K, 16)
    model(torch.randn(4, 16, 30)).sum().backward()
    assert model.stn.theta.bias.grad is not None and model.stn.theta.bias.grad.abs().sum() > 0


# --- autoencoders ------------------------------------------------------------------------


@pytest.mark.parametrize("residual", [False, True])
def test_autoencoder_reconstructs_and_two_phases(residual: bool) -> None:
    model = create_model("autoencoder", K, 20, channels=[8, 16], residual=residual)
    phases = training_phases(model)  # declared by the model: reconstruct, then the task
    assert [(p.name, p.epochs) for p in phases] == [("reconstruct", 5), (TASK_PHASE, None)]
    assert phases[0].loss == model.reconstruction_loss and phases[1].loss is None
    assert [p.name for p in training_phases(create_model("cnn1d", K, 20))] == [TASK_PHASE]
    alone = create_model("autoencoder", K, 20, channels=[8, 16], pretrain_epochs=0)
    assert [p.name for p in training_phases(alone)] == [TASK_PHASE]
    frozen = create_model("autoencoder", K, 20, channels=[8, 16], freeze_encoder=True)
    task = training_phases(frozen)[1]
    assert {id(p) for p in task.parameters()} == {id(p) for p in frozen.classifier_parameters()}
    assert {id(p) for p in task.frozen()} == {id(p) for p in frozen.autoencoder_parameters()}
    x = torch.randn(6, 20, 37)  # sizes that do not divide by 4: decoder output is cropped
    assert model.reconstruct(x).shape == x.shape
    assert model.encode(x).shape == (6, model.cfg.latent_channels, 5, 10)
    # phase 1: reconstruction over encoder + decoder
    optimizer = torch.optim.Adam(model.autoencoder_parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = model.reconstruction_loss(x)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(p.grad is None for p in model.classifier_parameters())
    # phase 2: classification from the latent space
    head = {id(p) for p in model.classifier_parameters()}
    assert head and head.isdisjoint(id(p) for p in model.autoencoder_parameters())
    assert model(x).shape == (6, K)


# --- mixnet: waveform + log-mel branches ----------------------------------------------------


def test_mixnet_forward_on_waveforms() -> None:
    model = create_model("mixnet", K, 1)
    assert MODELS.get("mixnet").input == "waveform"
    for samples in (16000, 7777):
        out = model(torch.randn(4, 1, samples))
        assert out.shape == (4, K) and torch.isfinite(out).all()
    wave, spec = model.branches(torch.randn(2, 1, 16000))
    assert wave.shape[1] == 128 and spec.shape[1] == 64  # default branch widths
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 1, 512))).all()  # one window: shortest clip
        batch = torch.randn(3, 1, 6000)  # eval: a clip's logits do not depend on the batch
        torch.testing.assert_close(model(batch)[1:2], model(batch[1:2]), rtol=1e-4, atol=1e-4)


def test_mixnet_backward_reaches_both_branches() -> None:
    model = create_model("mixnet", K, 1)
    model(torch.randn(3, 1, 8000)).square().mean().backward()
    for param in (model.wave_stem[0].weight, model.spec_blocks[0][0].weight,
                  model.mel_norm.weight):
        assert param.grad is not None and torch.isfinite(param.grad).all()
        assert param.grad.abs().sum() > 0


def test_mixnet_learns_a_few_steps() -> None:
    x = torch.randn(8, 1, 4000)
    y = (torch.rand(8, K) < 0.3).float()
    model = create_model("mixnet", K, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("n_mels", [64, 12, 2])
def test_mixnet_refuses_band_features(n_mels: int) -> None:
    with pytest.raises(ValueError, match=r"models\.mixnet: takes the raw waveform .*"
                                         r"features\.kind=waveform"):
        create_model("mixnet", K, n_mels)


def test_mixnet_refuses_wrong_inputs() -> None:
    model = create_model("mixnet", K, 1)
    with pytest.raises(ValueError, match=r"at least n_fft=512 samples \(32 ms at 16000 Hz\)"):
        model(torch.randn(2, 1, 511))
    with pytest.raises(ValueError, match=r"\(batch, 1, frames\)"):
        model(torch.randn(2, 2, 4000))


def test_mixnet_params() -> None:
    model = create_model("mixnet", K, 1, wave_channels=[8, 16], spec_channels=[8],
                         mel_bands=32, hop_length=160, sample_rate=8000)
    assert model.melspec.mel_scale.fb.shape[1] == 32 and len(model.wave_blocks) == 2
    assert model(torch.randn(2, 1, 4000)).shape == (2, K)
    assert 50_000 < sum(p.numel() for p in create_model("mixnet", 12, 1).parameters()) < 300_000
    with pytest.raises(ValueError, match=r"^models\.mixnet\.hop_length: .*at most n_fft \(512\)"):
        validate_model_params("mixnet", {"hop_length": 600})


# --- ImageNet backbones ------------------------------------------------------------------


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    """A state_dict laid out as torchvision's ImageNet checkpoint (3-channel stem, 1000-way
    classifier), with random weights."""
    return BACKBONES[name].builder(weights=None).state_dict()


@pytest.mark.parametrize("name", ["resnet18", "regnet_y_800mf"])
def test_backbone_loads_pretrained_weights(name: str, tmp_path: Path) -> None:
    state = _imagenet_state(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = create_model(name, K, 16, pretrained_weights=str(path), freeze_backbone=True)
    conv = BACKBONES[name].first_conv + ".weight"
    torch.testing.assert_close(model.backbone.state_dict()[conv],
                               state[conv].sum(dim=1, keepdim=True))
    some_key = next(k for k in state if k.endswith("running_mean"))
    torch.testing.assert_close(model.backbone.state_dict()[some_key], state[some_key])
    # frozen: only the head trains, and batch-norm statistics stay as loaded
    model.train()
    out = model(torch.randn(2, 16, 24))
    out.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    assert model.head.fc.weight.grad is not None
    torch.testing.assert_close(model.backbone.state_dict()[some_key], state[some_key])


def test_backbone_accepts_wrapped_state_dicts(tmp_path: Path) -> None:
    state = _imagenet_state("resnet18")
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = create_model("resnet18", K, 16, pretrained_weights=str(path))
    torch.testing.assert_close(model.backbone.layer1[0].conv1.weight,
                               state["layer1.0.conv1.weight"])
    assert all(p.requires_grad for p in model.parameters())


def test_missing_pretrained_file_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"models\.resnet18\.pretrained_weights: .*"
                                                r"nope\.pth.*offline"):
        create_model("resnet18", K, 16, pretrained_weights=str(missing))


def test_wrong_pretrained_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "regnet.pth"
    torch.save(_imagenet_state("regnet_y_800mf"), path)
    with pytest.raises(ValueError, match=r"models\.resnet18\.pretrained_weights: .*does not fit"):
        create_model("resnet18", K, 16, pretrained_weights=str(path))


def test_parameter_cap_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MAX_PARAMETERS", 10_000)
    with pytest.raises(ValueError, match=r"models\.cnn2d: \d+,\d{3} parameters exceed the cap"):
        create_model("cnn2d", K, 64)
    create_model("cnn2d", K, 64, channels=[8, 8])  # under the cap


@pytest.mark.parametrize(
    ("name", "params", "where"),
    [
        ("lstm", {"pooling": "median"}, "models.lstm.pooling"),
        ("gru", {"hidden": 0}, "models.gru.hidden"),
        ("gru", {"bidirectional": "sometimes"}, "models.gru.bidirectional"),
        ("stn", {"loc_channels": []}, "models.stn.loc_channels"),
        ("autoencoder", {"latent_channels": 0}, "models.autoencoder.latent_channels"),
        ("stn", {"residual": "maybe"}, "models.stn.residual"),
        ("resnet50", {"freeze_backone": True}, "models.resnet50.freeze_backone"),
        ("cnn2d", {"head_layers": 4}, "models.cnn2d.head_layers"),
        ("cnn1d", {"activation": "tanh"}, "models.cnn1d.activation"),
        ("crnn", {"init": "orthogonal"}, "models.crnn.init"),
        ("efficientnet_v2_s", {"dropout": 1.5}, "models.efficientnet_v2_s.dropout"),
    ],
)
def test_bad_zoo_params_name_the_key(name: str, params: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(where)}: "):
        validate_model_params(name, params)


def test_params_yaml_configures_every_model(repo_root: Path) -> None:
    """Each model has a ``models.<name>`` block; with ``models.defaults`` (the options every
    model shares, written once) it lists every key, so ``-S`` can set any of them."""
    models = dict(yaml.safe_load((repo_root / "params.yaml").read_text())["models"])
    shared = models.pop("defaults")
    assert set(models) == set(list_models())
    for name, block in models.items():
        block = {k: v for k, v in block.items() if k != MODEL_TRAIN}  # its train.* settings
        cfg = validate_model_params(name, {**shared, **block})
        assert set(block) | set(shared) == set(type(cfg).model_fields), name
        assert not set(block) & set(shared), f"models.{name} repeats models.defaults"


@pytest.mark.parametrize("old, new", [("resstn", "stn"), ("resautoencoder", "autoencoder")])
def test_a_checkpoint_of_a_former_twin_entry_still_loads(tmp_path, old, new) -> None:
    """Checkpoints written before issue 22 name ``resstn``/``resautoencoder``: they load as
    the model with ``residual: true`` (same layers, same weights)."""
    from audiotag.training.checkpoint import load_checkpoint, save_torch

    model = create_model(new, K, 16, channels=[8, 16], residual=True)
    params = model.cfg.model_dump()
    del params["residual"]
    save_torch({"state_dict": model.state_dict(), "model_name": old, "model_params": params,
                "num_classes": K, "n_mels": 16}, tmp_path / "model.pt")  # a file of that time
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    assert type(loaded) is type(model) and loaded.cfg.residual
    x = torch.randn(2, 16, 24)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_a_cnn2d_checkpoint_from_before_its_block_keys_still_loads(tmp_path) -> None:
    """cnn2d checkpoints saved before ``convs_per_block``, ``pool`` and ``freq_reduce``
    existed hold none of them: they load as the network they were trained as (one conv per
    block, max pooling, mean over frequency), not as today's defaults."""
    from audiotag.training.checkpoint import load_checkpoint, save_torch

    model = create_model("cnn2d", K, 16, channels=[8, 16], convs_per_block=1, pool="max",
                         freq_reduce="mean")
    params = model.cfg.model_dump()
    for key in ("convs_per_block", "pool", "freq_reduce"):
        del params[key]
    save_torch({"state_dict": model.state_dict(), "model_name": "cnn2d", "model_params": params,
                "num_classes": K, "n_mels": 16}, tmp_path / "model.pt")  # a file of that time
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert (loaded.cfg.convs_per_block, loaded.cfg.pool, loaded.cfg.freq_reduce) == \
        (1, "max", "mean")
    x = torch.randn(2, 16, 24)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_a_checkpoint_saved_with_partial_params_holds_every_config_key(tmp_path) -> None:
    """A checkpoint saved with only the overridden keys records the defaults it was built
    with, so it still loads after a default changes (the old-checkpoint rule above only
    fills keys that a file of that time could not hold)."""
    from audiotag.training.checkpoint import load_checkpoint, save_checkpoint

    model = create_model("cnn2d", K, 16, channels=[4, 8])
    save_checkpoint(tmp_path / "model.pt", model, {"model_name": "cnn2d",
                                                   "model_params": {"channels": [4, 8]},
                                                   "num_classes": K, "n_mels": 16})
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta.model_params == model.cfg.model_dump(mode="json")
    x = torch.randn(2, 16, 24)
    torch.testing.assert_close(loaded(x), model.eval()(x))


# --- crnn's recurrent activation -----------------------------------------------------------


def test_gru_with_activation_tanh_is_torchs_gru() -> None:
    """The step-by-step GRU with tanh reproduces ``nn.GRU`` (two bidirectional layers), so
    ``sigmoid`` changes the candidate activation and nothing else."""
    from audiotag.models.crnn import gru_with_activation

    gru = nn.GRU(6, 5, num_layers=2, batch_first=True, bidirectional=True).eval()
    x = torch.randn(3, 7, 6)
    torch.testing.assert_close(gru_with_activation(gru, x, torch.tanh), gru(x)[0])
    assert not torch.allclose(gru_with_activation(gru, x, torch.sigmoid), gru(x)[0])


def test_crnn_sigmoid_gru_same_weights_other_outputs(tmp_path: Path) -> None:
    from audiotag.training.checkpoint import load_checkpoint, save_checkpoint

    x = torch.randn(2, 16, 24)
    tanh = create_model("crnn", K, 16, channels=[4, 8]).eval()
    sigmoid = create_model("crnn", K, 16, channels=[4, 8], gru_activation="sigmoid").eval()
    sigmoid.load_state_dict(tanh.state_dict())  # same layers: one state_dict fits both
    out = sigmoid(x)
    assert out.shape == (2, K) and torch.isfinite(out).all()
    assert not torch.allclose(out, tanh(x))
    # the default is left out of a checkpoint (its bytes stay as before), sigmoid is kept
    assert "gru_activation" not in tanh.cfg.model_dump(mode="json")
    for model in (tanh, sigmoid):
        save_checkpoint(tmp_path / "model.pt", model, {
            "model_name": "crnn", "model_params": model.cfg.model_dump(mode="json"),
            "num_classes": K, "n_mels": 16})
        loaded, _ = load_checkpoint(tmp_path / "model.pt")
        assert loaded.cfg.gru_activation == model.cfg.gru_activation
        torch.testing.assert_close(loaded(x), model(x))


def test_crnn_bad_gru_activation_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"^models\.crnn\.gru_activation: "):
        validate_model_params("crnn", {"gru_activation": "relu"})


# --- timm's EVA-02 -------------------------------------------------------------------------


def test_eva02_tiny_takes_any_spectrogram_size() -> None:
    """Patch 14 on 64 mels x 100 frames (neither a multiple of 14) and on a 12-band
    chroma: padded to whole patches, position embeddings resampled to the grid."""
    model = create_model("eva02_tiny", K, 64).eval()
    assert sum(p.numel() for p in model.parameters()) < 6_000_000
    for n_mels, frames in ((64, 100), (64, 37)):
        out = create_model("eva02_tiny", K, n_mels).eval()(torch.randn(2, n_mels, frames))
        assert out.shape == (2, K) and torch.isfinite(out).all()
    out = create_model("eva02_tiny", K, 12)(torch.randn(2, 12, 30))
    assert out.shape == (2, K) and torch.isfinite(out).all()


def test_eva02_loads_a_local_timm_state_dict(tmp_path: Path) -> None:
    """A timm checkpoint as distributed (3-channel patch embedding, 1000-way head) loads
    from a local file: patch weights summed over RGB, head dropped; random init otherwise."""
    import timm

    state = timm.create_model("eva02_tiny_patch14_224", pretrained=False,
                              num_classes=1000).state_dict()
    assert state["patch_embed.proj.weight"].shape[1] == 3 and "head.weight" in state
    path = tmp_path / "eva02_tiny.pth"
    torch.save(state, path)
    model = create_model("eva02_tiny", K, 16, pretrained_weights=str(path),
                         freeze_backbone=True)
    loaded = model.backbone.state_dict()
    torch.testing.assert_close(loaded["patch_embed.proj.weight"],
                               state["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(loaded["blocks.3.attn.proj.weight"],
                               state["blocks.3.attn.proj.weight"])
    assert not any(p.requires_grad for p in model.backbone.parameters())
    fresh = create_model("eva02_tiny", K, 16).backbone.state_dict()
    assert not torch.allclose(fresh["blocks.3.attn.proj.weight"],
                              state["blocks.3.attn.proj.weight"])
