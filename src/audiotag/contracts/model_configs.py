"""Every model's params, as validated config classes (torch-free).

``models.<name>`` in params.yaml validates against these before any model is built, so
check_params and the light stages read them without loading torch; the models in
:mod:`audiotag.models` take them as ``cfg``. Every config inherits :class:`HeadConfig`,
so ``models.<name>.head_layers``, ``head_hidden``, ``dropout``, ``activation`` and ``init``
mean the same thing for every model; params.yaml writes them once, in ``models.defaults``
(under each model unless it sets the key: :func:`audiotag.contracts.models.parse_model_params`),
and the vanishing-gradient study (sigmoid vs ReLU, default vs Kaiming vs Xavier init,
deeper heads) is a params change (``++`` adds the model's own copy)::

    dvc exp run -S ++models.cnn2d.activation=sigmoid -S ++models.cnn2d.init=xavier
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from audiotag.core.params import Strict

# Config field types shared by the model configs.
ChannelList = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
"""Non-empty list of channel counts, each >= 1: one block per entry."""
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""Dropout probability in [0, 1)."""

Activation = Literal["relu", "gelu", "sigmoid", "prelu"]
InitScheme = Literal["default", "kaiming", "xavier"]
HeadNorm = Literal["layer", "batch", "none"]
PoolKind = Literal["max", "avg"]
Pooling = Literal["mean", "max", "last", "attention"]
FreqReduce = Literal["mean", "flatten"]
ClipPool = Literal["maxmean", "attention"]


class HeadConfig(Strict):
    """Params every model has (a mixin for the model configs).

    Attributes:
        head_layers: hidden layers of the classifier head, 0-3; each is dropout -> linear
            -> norm -> activation. 0 is a single linear layer (after dropout).
        head_hidden: units of each hidden head layer, or a list with one width per
            layer (tapered, e.g. ``[1024, 512]``; its length must be ``head_layers``).
        head_norm: the norm of each hidden head layer: ``layer`` (LayerNorm: a clip's
            output never depends on the batch), ``batch`` (BatchNorm over the features:
            the notebooks' Linear-BN-PReLU) or ``none``.
        dropout: dropout before each head layer (and where a model says, inside it).
        activation: nonlinearity of the head's hidden layers and of the model's own
            conv/dense blocks (ImageNet backbones keep theirs; the GLU gates of ``crnn``
            stay sigmoid).
        init: ``default`` keeps torch's init; ``kaiming`` (He normal, fan-in) or
            ``xavier`` (Glorot uniform) re-initialise every conv and linear weight, with
            the gain of ``activation``, and zero their biases.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    head_layers: int = Field(default=0, ge=0, le=3)
    head_hidden: Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=1)]] = 128
    head_norm: HeadNorm = "layer"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    activation: Activation = "relu"
    init: InitScheme = "default"

    @field_validator("head_hidden")
    @classmethod
    def _widths(cls, value: int | list[int], info: ValidationInfo) -> int | list[int]:
        layers = info.data.get("head_layers")  # validated first (declared before)
        if isinstance(value, list) and layers is not None and len(value) != layers:
            raise ValueError(f"{len(value)} widths for head_layers={layers}: give one width "
                             "per hidden layer (or one number for all)")
        return value

    @property
    def head_widths(self) -> list[int]:
        """The width of each hidden head layer (``head_layers`` of them)."""
        if isinstance(self.head_hidden, list):
            return list(self.head_hidden)
        return [self.head_hidden] * self.head_layers


class Cnn1dConfig(HeadConfig):
    """Params of ``cnn1d`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        channels: output channels of each conv block (conv1d-BN-act-maxpool 2).
        kernel_size: temporal kernel size, odd so that padding keeps the frame count.
        residual: residual blocks (two convs and a shortcut, :class:`ResBlock1d`).
        dropout: dropout before each head layer.
        block_dropout: dropout after every conv block (0: none; the Italian notebook's
            CNN1D had dropout in every layer).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelList = Field(default_factory=lambda: [64, 64, 128])
    kernel_size: int = Field(default=5, ge=1)
    residual: bool = False
    dropout: DropoutRate = 0.2
    block_dropout: DropoutRate = 0.0

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd")
        return value


class Cnn2dConfig(HeadConfig):
    """Params of ``cnn2d`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        channels: output channels of each conv block; each block halves frequency and time.
        residual: residual blocks (two conv3x3 and a shortcut, :class:`ResBlock2d`).
        convs_per_block: conv3x3-BN-act layers per plain block (PANNs: 2); residual blocks
            always have two.
        pool: the pooling ending each block: ``avg`` (PANNs) or ``max``.
        time_pools: how many blocks (the first ones) halve time as well as frequency;
            the others halve frequency only (None: every block), so the head sees finer
            time steps: pitch trajectories (vibrato, chirps) survive, at more compute.
        freq_reduce: how the last map's frequency bands become one feature vector per
            frame: ``flatten`` keeps each band's channels apart (``C * F'`` features), so
            the head knows *where* in frequency a pattern is; ``mean`` averages them (as
            PANNs, whose receptive field spans the whole spectrum), which makes a shallow
            net blind to pitch: a pattern one octave up gives the same features.
        clip_pool: how frame features become clip logits: ``maxmean`` concatenates the
            max and the mean over time before the head; ``attention`` gives each frame
            logits and a softmax weight over time per class (as ``crnn``).
        dropout: dropout before each head layer.
        block_dropout: dropout after every conv block (0: none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # what a checkpoint saved before these keys existed was built with (load_checkpoint)
    ABSENT_IN_OLD_CHECKPOINTS: ClassVar[dict[str, Any]] = {
        "convs_per_block": 1, "pool": "max", "freq_reduce": "mean", "time_pools": None,
        "clip_pool": "maxmean"}

    channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    residual: bool = False
    convs_per_block: int = Field(default=2, ge=1)
    pool: PoolKind = "avg"
    time_pools: int | None = Field(default=None, ge=0)
    freq_reduce: FreqReduce = "flatten"
    clip_pool: ClipPool = "attention"
    dropout: DropoutRate = 0.2
    block_dropout: DropoutRate = 0.0

    @field_validator("time_pools")
    @classmethod
    def _at_most_every_block(cls, value: int | None, info: ValidationInfo) -> int | None:
        blocks = len(info.data.get("channels") or [])  # channels is validated first
        if value is not None and blocks and value > blocks:
            raise ValueError(f"{value} with {blocks} blocks (channels); at most {blocks}")
        return value

    @field_validator("convs_per_block")
    @classmethod
    def _residual_has_two(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("residual") and value != 2:  # residual is validated first
            raise ValueError(f"{value} with residual: true; a residual block has two "
                             "convolutions (set 2, or residual: false)")
        return value


class CrnnConfig(HeadConfig):
    """Params of ``crnn`` (plus the shared head options of :class:`HeadConfig`; the
    head's hidden layers act per frame, before attention pooling; ``activation`` does not
    touch the GLU gates).

    Attributes:
        channels: output channels of each gated conv block.
        freq_pool: frequency pooling factor of each block (time is never pooled); the
            default 4 takes 64 mels to 16, 4, 1 bands, and keeps the CPU cost down.
        gru_hidden: GRU hidden size per direction.
        gru_layers: stacked bidirectional GRU layers.
        gru_activation: the GRU's candidate-state activation: ``tanh`` (torch's
            ``nn.GRU``) or ``sigmoid`` (the Russian notebook's GCNN: Keras
            ``GRU(activation="sigmoid")``; same weights, run step by step).
        dropout: dropout before the attention head (and between GRU layers).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    freq_pool: int = Field(default=4, ge=1)
    gru_hidden: int = Field(default=64, ge=1)
    gru_layers: int = Field(default=1, ge=1)
    gru_activation: Literal["tanh", "sigmoid"] = "tanh"
    dropout: DropoutRate = 0.2

    @model_serializer(mode="wrap")
    def _omit_default_activation(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # at its default the key is left out of a saved checkpoint's model_params (it loads
        # back as tanh), so checkpoints of the default crnn keep the bytes they had before
        data: dict[str, Any] = handler(self)
        if data.get("gru_activation") == "tanh":
            del data["gru_activation"]
        return data


class RnnConfig(HeadConfig):
    """Params of ``lstm`` / ``gru`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        hidden: hidden units per direction.
        layers: stacked recurrent layers (``dropout`` is also applied between them).
        bidirectional: run a second layer backwards in time and concatenate.
        pooling: frames -> clip: ``mean`` / ``max`` / ``attention`` over valid frames, or
            ``last`` (the final hidden state of each direction).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(default=128, ge=1)
    layers: int = Field(default=1, ge=1, le=8)
    bidirectional: bool = True
    pooling: Pooling = "attention"


class StnConfig(HeadConfig):
    """Params of ``stn`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        channels: output channels of each classifier conv block (each pools 2x2).
        residual: residual classifier conv blocks (two convs + shortcut) instead of plain.
        loc_channels: channels of the localisation net's conv blocks (each pools 2x2).
        loc_hidden: units of the localisation net's hidden linear layer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    loc_channels: ChannelList = Field(default_factory=lambda: [8, 16])
    loc_hidden: int = Field(default=32, ge=1)
    residual: bool = False


class AutoencoderConfig(HeadConfig):
    """Params of ``autoencoder`` (plus the shared head options).

    Attributes:
        channels: output channels of each encoder block (each pools 2x2); the decoder
            mirrors them.
        latent_channels: channels of the latent map ``(B, latent_channels, F/2^n, T/2^n)``.
        pretrain_epochs: phase-1 (reconstruction) epochs before the ``train.epochs`` of
            classification; 0 skips phase 1.
        freeze_encoder: phase 2 trains the classifier head only.
        residual: residual blocks (two convs + shortcut) in the encoder and the decoder.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    latent_channels: int = Field(default=32, ge=1)
    pretrain_epochs: int = Field(default=5, ge=0)
    freeze_encoder: bool = False
    residual: bool = False


class MixNetConfig(HeadConfig):
    """Params of ``mixnet`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        sample_rate: Hz of the input waveform, for the mel filterbank; must equal
            ``features.sample_rate`` (nothing checks this: the model only sees samples).
        n_fft: FFT size (and window length) of the internal log-mel front end; clips
            shorter than ``n_fft`` samples are refused.
        hop_length: samples between log-mel frames (at most ``n_fft``); the default 320
            is 20 ms at 16 kHz (10 ms doubles the spectrogram branch's CPU cost).
        mel_bands: mel bands of the internal front end (independent of
            ``features.n_mels``; not called ``n_mels``, which is ``create_model``'s input
            feature dimension, 1 here).
        wave_channels: waveform branch: channels of the strided stem (``[0]``) and of each
            1-D conv block (conv1d k=5-BN-act-maxpool 2).
        spec_channels: spectrogram branch: output channels of each 2-D conv block
            (conv3x3-BN-act-maxpool 2x2).
        dropout: dropout before each head layer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(default=16000, ge=1000)
    n_fft: int = Field(default=512, ge=16)
    hop_length: int = Field(default=320, ge=1)
    mel_bands: int = Field(default=64, ge=1)
    wave_channels: ChannelList = Field(default_factory=lambda: [32, 64, 128])
    spec_channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    dropout: DropoutRate = 0.2

    @field_validator("hop_length")
    @classmethod
    def _hop_within_window(cls, value: int, info: ValidationInfo) -> int:
        n_fft = info.data.get("n_fft")  # absent when n_fft itself is invalid
        if n_fft is not None and value > n_fft:
            raise ValueError(f"must be at most n_fft ({n_fft}), or samples are skipped")
        return value


class BackboneConfig(HeadConfig):
    """Params of the ImageNet backbones (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        pretrained_weights: local torchvision state_dict file, or None for random init.
        freeze_backbone: train the head only (backbone weights and BN statistics fixed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pretrained_weights: str | None = None
    freeze_backbone: bool = False
