"""Tests for the model registry and the audio-tagging models (CPU, fast)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from audiotag.contracts.models import CARDS, ModelCard, current_name
from audiotag.core.registry import Registry
from audiotag.models import (
    BACKBONES,
    MODELS,
    Cnn2d,
    Cnn2dConfig,
    ModelSpec,
    create_model,
    list_models,
    model_config_class,
    register_model,
    validate_model_params,
)

NUM_CLASSES = 7
N_MELS = 64
# The ImageNet backbones (millions of parameters) and the models that take raw waveforms
# only (mixnet) get their own tests in test_zoo.py.
SMALL_MODELS = [name for name in list_models() if name not in BACKBONES
                and MODELS.get(name).input != "waveform"]


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny inputs: one thread is faster, and far faster on a busy CPU
    yield
    torch.set_num_threads(threads)


def test_registry_has_the_zoo() -> None:
    assert {"cnn2d", "cnn1d", "crnn", "lstm", "gru", "stn", "autoencoder", "resnet18",
            "resnet50", "regnet_y_800mf", "efficientnet_v2_s"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_forward_shape_and_variable_frames(name: str) -> None:
    model = create_model(name, NUM_CLASSES, N_MELS)
    for frames in (120, 57):
        out = model(torch.randn(4, N_MELS, frames))
        assert out.shape == (4, NUM_CLASSES)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_eval_batch_of_one_and_short_clips(name: str) -> None:
    model = create_model(name, NUM_CLASSES, N_MELS).eval()
    with torch.no_grad():
        for frames in (200, 7, 1):
            out = model(torch.randn(1, N_MELS, frames))
            assert out.shape == (1, NUM_CLASSES)
            assert torch.isfinite(out).all()
        batch = torch.randn(3, N_MELS, 50)
        # eval mode: each clip's logits do not depend on the rest of the batch
        torch.testing.assert_close(model(batch)[1:2], model(batch[1:2]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_wrong_input_shape_raises(name: str) -> None:
    model = create_model(name, NUM_CLASSES, N_MELS)
    with pytest.raises(ValueError, match=r"\(batch, 64, frames\)"):
        model(torch.randn(2, 40, 100))


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_a_few_steps_lower_the_loss(name: str) -> None:
    x = torch.randn(8, N_MELS, 48)
    y = (torch.rand(8, NUM_CLASSES) < 0.3).float()
    model = create_model(name, NUM_CLASSES, N_MELS)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_defaults_validate_and_stay_small(name: str) -> None:
    cfg = validate_model_params(name, {})
    assert isinstance(cfg, model_config_class(name))
    model = create_model(name, 20, N_MELS)
    assert model.cfg == cfg  # type: ignore[attr-defined]
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_params_reach_the_model() -> None:
    model = create_model("cnn2d", 3, 32, channels=[4, 8], dropout=0.0)
    assert isinstance(model, Cnn2d)
    assert model.cfg == Cnn2dConfig(channels=[4, 8], dropout=0.0)
    assert len(model.features) == 2
    assert create_model("cnn1d", 3, 32, kernel_size=3).cfg.kernel_size == 3
    assert create_model("crnn", 3, 32, gru_layers=2, gru_hidden=8).gru.num_layers == 2


def _blob(band: int, frame: int, n_mels: int = N_MELS, frames: int = 48) -> torch.Tensor:
    """One ``(1, n_mels, frames)`` clip: zeros but a 4x4 bump at ``band``, ``frame``."""
    x = torch.zeros(1, n_mels, frames)
    x[0, band:band + 4, frame:frame + 4] = torch.tensor([1.0, 2.0, 2.0, 1.0])[:, None]
    return x


def test_cnn2d_default_tells_a_pattern_from_the_same_pattern_higher_up() -> None:
    """A pitch-blind net (shallow convs, then the mean over frequency) gives the same
    clip features for a pattern and the pattern shifted up by a multiple of its pooling
    grid; the default cnn2d must not (a tone's pitch is what tells many classes apart)."""
    model = create_model("cnn2d", NUM_CLASSES, N_MELS).eval()
    seen: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    with torch.no_grad():
        for x in (_blob(16, 20), _blob(40, 20), torch.zeros(1, N_MELS, 48)):
            model(x)
    low, high, empty = seen  # the head's inputs (1, D)
    # moving the bump changes what the head sees about as much as the bump itself does
    assert (low - high).norm() > 0.5 * (low - empty).norm() > 0


def test_cnn2d_default_learns_pitch_in_a_few_steps() -> None:
    """Two classes that differ only in the frequency of one bump (its time varies):
    the default cnn2d separates them after 30 steps."""
    gen = torch.Generator().manual_seed(0)
    bands, labels = [12, 36], torch.arange(64) % 2
    x = torch.cat([_blob(bands[int(y)], int(torch.randint(0, 40, (1,), generator=gen)))
                   for y in labels])
    x = x + 0.1 * torch.randn(x.shape, generator=gen)
    model = create_model("cnn2d", 2, N_MELS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model.eval()(x).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95


def test_cnn2d_block_layout_follows_the_params() -> None:
    """PANNs-style blocks: ``convs_per_block`` conv-BN-act layers, then 2x2 average
    pooling; ``pool: max`` and one conv per block give the plain blocks."""
    blocks = create_model("cnn2d", 3, 32, channels=[4, 8]).features
    assert [type(m) for m in blocks[0]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2 + [nn.AvgPool2d]
    single = create_model("cnn2d", 3, 32, channels=[4, 8], convs_per_block=3, pool="max")
    assert [type(m) for m in single.features[1]] == ([nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3
                                                     + [nn.MaxPool2d])
    # a ceil-mode window over the edge averages the real cells only: a flat map stays flat
    ones = torch.ones(1, 1, 5, 7)
    assert torch.equal(blocks[0][-1](ones), torch.ones(1, 1, 3, 4))


def test_cnn2d_freq_reduce_sets_the_head_width() -> None:
    """``flatten``: channels x pooled bands per frame (64 mels, 4 blocks -> 4 bands);
    ``mean``: channels only; ``maxmean`` pooling doubles them (max and mean)."""
    flat = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8])
    mean = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8], freq_reduce="mean")
    assert flat.head.frame.in_features == 8 * 4 and mean.head.frame.in_features == 8
    odd = create_model("cnn2d", 3, 40, channels=[4, 4, 8])  # 40 -> 20 -> 10 -> 5 bands
    assert odd(torch.randn(2, 40, 33)).shape == (2, 3) and odd.head.frame.in_features == 8 * 5
    maxmean = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8], clip_pool="maxmean")
    assert maxmean.head.fc.in_features == 2 * 8 * 4


@pytest.mark.parametrize("residual", [False, True])
def test_cnn2d_time_pools_keeps_the_later_blocks_time_steps(residual: bool) -> None:
    """The first ``time_pools`` blocks halve frequency and time, the others frequency only:
    100 frames -> 50 -> 25 -> 25 -> 25 with 2 of 4; the head pools the frames it gets."""
    x = torch.randn(2, 64, 100)
    every = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8], residual=residual)
    two = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8], residual=residual, time_pools=2)
    assert every.features(x.unsqueeze(1)).shape == (2, 8, 4, 7)
    assert two.features(x.unsqueeze(1)).shape == (2, 8, 4, 25)
    assert two(x).shape == (2, 3)
    # the same weights: only the pooling windows differ
    assert [p.shape for p in every.parameters()] == [p.shape for p in two.parameters()]


def test_cnn2d_attention_pooling_weights_its_frames_logits() -> None:
    """``clip_pool: attention``: per class, softmax weights over the pooled frames (100
    frames -> 7) and the clip logit is their weighted mean of the frame logits, so it lies
    between the smallest and the largest frame logit; ``maxmean`` has no frame outputs."""
    torch.manual_seed(0)
    model = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8], clip_pool="attention").eval()
    x = torch.randn(2, 64, 100)
    clip, frames, weights, embedding = model.outputs(x)
    assert embedding is None
    assert frames.shape == weights.shape == (2, 7, 3)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2, 3))
    assert torch.allclose(clip, (weights * frames).sum(dim=1)) and torch.equal(clip, model(x))
    assert (frames.amin(dim=1) <= clip + 1e-6).all() and (clip <= frames.amax(dim=1) + 1e-6).all()
    assert not torch.allclose(weights, torch.full_like(weights, 1 / 7))  # learnt, not uniform
    maxmean = create_model("cnn2d", 3, 64, channels=[4, 4, 4, 8], clip_pool="maxmean").eval()
    out = maxmean.outputs(x)
    assert out.framewise is None and out.attention is None and torch.equal(out.clipwise, maxmean(x))


def test_duplicate_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn2d")(Cnn2d)
    assert model_config_class("cnn2d") is Cnn2dConfig

    fresh: Registry[ModelSpec] = Registry("model")
    tiny = ModelCard("tiny", Cnn2dConfig)
    register_model("tiny", registry=fresh, card=tiny)(Cnn2d)
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_model("tiny", registry=fresh, card=tiny)(Cnn2d)
    assert fresh.names() == ["tiny"]
    assert "tiny" not in list_models()


def test_a_model_needs_a_catalogue_card() -> None:
    with pytest.raises(KeyError, match="unknown model 'tiny'"):
        register_model("tiny", registry=Registry("model"))(Cnn2d)


def test_every_card_has_a_registered_module_and_back() -> None:
    assert MODELS.names() == list_models() == sorted(CARDS)
    for name in list_models():
        assert MODELS.get(name).card is CARDS[name]


def test_an_old_model_name_maps_to_its_successor() -> None:
    assert current_name("resstn", {"channels": [8]}) == ("stn", {"channels": [8],
                                                                 "residual": True})
    assert current_name("cnn2d", {"residual": False}) == ("cnn2d", {"residual": False})


def test_config_must_forbid_extra_keys() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(frozen=True)

    with pytest.raises(TypeError, match="extra='forbid'"):
        ModelCard("loose", Loose)


def test_unknown_model_raises_key_error_listing_known_names() -> None:
    with pytest.raises(KeyError, match="unknown model 'resnet'; known: autoencoder, cnn1d, "
                       "cnn2d, crnn, efficientnet_v2_s"):
        create_model("resnet", 5, 64)
    with pytest.raises(KeyError, match="unknown model"):
        validate_model_params("resnet", {})
    with pytest.raises(KeyError, match="unknown model"):
        model_config_class("resnet")


def test_misspelt_param_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"models\.cnn2d\.chanels: unknown parameter") as err:
        create_model("cnn2d", 5, 64, chanels=[8])
    assert "did you mean 'channels'" in str(err.value)


@pytest.mark.parametrize(
    ("name", "params", "where"),
    [
        ("cnn2d", {"dropout": -0.1}, "models.cnn2d.dropout"),
        ("cnn2d", {"dropout": 1.0}, "models.cnn2d.dropout"),
        ("cnn2d", {"channels": []}, "models.cnn2d.channels"),
        ("cnn2d", {"channels": "abc"}, "models.cnn2d.channels"),
        ("cnn2d", {"channels": [8, 0]}, "models.cnn2d.channels[1]"),
        ("cnn2d", {"convs_per_block": 0}, "models.cnn2d.convs_per_block"),
        ("cnn2d", {"residual": True, "convs_per_block": 3}, "models.cnn2d.convs_per_block"),
        ("cnn2d", {"pool": "median"}, "models.cnn2d.pool"),
        ("cnn2d", {"freq_reduce": "sum"}, "models.cnn2d.freq_reduce"),
        ("cnn2d", {"time_pools": -1}, "models.cnn2d.time_pools"),
        ("cnn2d", {"channels": [8, 16], "time_pools": 3}, "models.cnn2d.time_pools"),
        ("cnn1d", {"kernel_size": 4}, "models.cnn1d.kernel_size"),
        ("cnn1d", {"kernel_size": 0}, "models.cnn1d.kernel_size"),
        ("crnn", {"gru_hidden": 0}, "models.crnn.gru_hidden"),
        ("crnn", {"gru_layers": "two"}, "models.crnn.gru_layers"),
    ],
)
def test_bad_params_raise_value_error_naming_the_key(
    name: str, params: dict[str, object], where: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(where)}: ") as err:
        validate_model_params(name, params)
    assert type(err.value) is ValueError  # not a raw pydantic ValidationError
    with pytest.raises(ValueError, match=f"^{re.escape(where)}: "):
        create_model(name, 5, 64, **params)


def test_negative_dropout_message() -> None:
    with pytest.raises(ValueError, match=r"models\.cnn2d\.dropout: .*greater than or equal to 0"):
        create_model("cnn2d", 5, 64, dropout=-0.5)


def test_every_bad_key_is_reported() -> None:
    with pytest.raises(ValueError) as err:
        validate_model_params("crnn", {"dropout": 2, "gru_hiden": 3})
    assert "models.crnn.dropout" in str(err.value)
    assert "models.crnn.gru_hiden" in str(err.value)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_bad_sizes_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        create_model("cnn1d", bad, 64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_mels must be a positive int"):
        create_model("cnn1d", 5, bad)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    cfg = validate_model_params("cnn2d", {"dropout": 0.1})
    with pytest.raises(ValueError):
        cfg.dropout = 0.3  # type: ignore[misc]


def test_stage_imports_leave_torchvision_sklearn_and_scipy_stats_unloaded() -> None:
    """Every stage imports the model registry; torchvision (and the torch._dynamo it pulls
    in, seconds of CPU per process) loads only when an ImageNet backbone is built, and
    scikit-learn and scipy.stats (two more seconds) only when a metric needs them."""
    import subprocess
    import sys

    code = ("import sys, audiotag.models, audiotag.training.run\n"
            "loaded = {'torchvision', 'sklearn', 'scipy.stats'} & set(sys.modules)\n"
            "assert not loaded, loaded\n")  # the backbones still build: tests/unit/test_zoo.py
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_models_defaults_sit_under_every_model_setting():
    """Issue 22: ``models.defaults`` (the options every model shares) goes under each
    ``models.<name>``; the model's own key wins, and a detector's overrides win over both."""
    from audiotag.models import parse_model_params

    raw = {"models": {"defaults": {"dropout": 0.4, "head_layers": 2, "activation": "gelu"},
                      "cnn2d": {"dropout": 0.1}, "crnn": {}}}
    cnn2d = parse_model_params(raw, "cnn2d")
    assert (cnn2d["dropout"], cnn2d["head_layers"], cnn2d["activation"]) == (0.1, 2, "gelu")
    assert parse_model_params(raw, "crnn")["dropout"] == 0.4
    assert parse_model_params(raw, "crnn", overrides={"head_layers": 1})["head_layers"] == 1


def test_a_bad_models_default_names_its_key():
    from audiotag.core.errors import ParamsError
    from audiotag.models import parse_model_params

    for defaults, key in [({"head_layerz": 1}, "models.defaults.head_layerz"),
                          ({"head_layers": 9}, "models.defaults.head_layers")]:
        raw = {"models": {"defaults": defaults, "cnn1d": {}}}
        with pytest.raises(ParamsError, match=re.escape(f"params.yaml: {key}: ")):
            parse_model_params(raw, "cnn1d")


def test_defaults_is_not_a_model_name():
    class Cfg(BaseModel):
        model_config = ConfigDict(extra="forbid")

    with pytest.raises(ValueError, match="models.defaults"):
        ModelCard("defaults", Cfg)
