"""``autoencoder``: a conv autoencoder with a classifier on its latent.

The encoder (conv blocks pooling 2x2, then a 1x1 conv) maps the log-mel image to a
latent map; the decoder (upsample + conv blocks) reconstructs the image from it; the
classifier head reads the latent map. Training runs in two phases (declared by
:meth:`Autoencoder.training_phases`, see :mod:`audiotag.models.phases`):

1. reconstruct: minimise :meth:`Autoencoder.reconstruction_loss` (MSE of
   :meth:`~Autoencoder.reconstruct` against the input) over
   :meth:`~Autoencoder.autoencoder_parameters` (encoder + decoder);
2. classify: the usual tagging loss on ``model(x)`` logits, over all parameters (or
   over :meth:`~Autoencoder.classifier_parameters` only, to keep the encoder fixed).

``residual: true`` uses residual blocks in the encoder and the decoder.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn
from torch.nn import functional as F

from audiotag.contracts.model_configs import AutoencoderConfig
from audiotag.models.heads import Activation, init_weights, make_activation
from audiotag.models.layers import MaxMeanHead, ResBlock2d, check_input, conv_stack_2d
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.phases import TASK_PHASE, Phase
from audiotag.models.registry import register_model


class UpBlock2d(nn.Sequential):
    """Nearest 2x upsampling then a conv block (plain or residual, no pooling):
    ``(B, C_in, F, T) -> (B, C_out, 2F, 2T)``."""

    def __init__(self, in_channels: int, out_channels: int, activation: Activation,
                 residual: bool) -> None:
        block: nn.Module = (
            ResBlock2d(in_channels, out_channels, (1, 1), activation) if residual
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), make_activation(activation)))
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), block)


@register_model("autoencoder")
class Autoencoder(Tagger):
    """Conv encoder -> latent map -> (decoder | classifier head); blocks plain or residual.

    ``forward``: ``(B, n_mels, T) -> (B, num_classes)`` logits from the latent map
    (mean over frequency, then max+mean over time and the shared head).
    """


    def __init__(self, num_classes: int, n_mels: int, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        act, res = cfg.activation, cfg.residual
        self.encoder = nn.Sequential(conv_stack_2d(cfg.channels, act, res),
                                     nn.Conv2d(cfg.channels[-1], cfg.latent_channels, 1))
        widths = [cfg.latent_channels, *reversed(cfg.channels)]  # e.g. 32, 64, 32, 16
        self.decoder = nn.Sequential(
            *(UpBlock2d(widths[i], widths[i + 1], act, res) for i in range(len(cfg.channels))),
            nn.Conv2d(widths[-1], 1, 3, padding=1),  # linear output: inputs are normalised
        )
        self.head = MaxMeanHead(cfg.latent_channels, num_classes, cfg=cfg)
        init_weights(self, cfg.init, cfg.activation)

    def encode(self, x: Tensor) -> Tensor:
        """Latent map: ``(B, F, T) -> (B, latent_channels, ceil(F / 2^n), ceil(T / 2^n))``."""
        check_input(x, self.n_mels)
        return self.encoder(x.unsqueeze(1))

    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoded input, same shape: ``(B, F, T) -> (B, F, T)``."""
        out = self.decoder(self.encode(x))  # (B, 1, >= F, >= T): pooling rounded up
        return out[:, 0, : x.shape[1], : x.shape[2]]

    def reconstruction_loss(self, x: Tensor) -> Tensor:
        """Phase-1 loss: mean squared error of :meth:`reconstruct` against ``x`` (scalar)."""
        return F.mse_loss(self.reconstruct(x), x)

    def outputs(self, x: Tensor) -> Outputs:
        return Outputs(self.head(self.encode(x).mean(dim=2)))  # (B, L, T') -> (B, K)

    def autoencoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained in phase 1 (encoder and decoder)."""
        yield from self.encoder.parameters()
        yield from self.decoder.parameters()

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the classifier head only (phase 2 with a frozen encoder)."""
        yield from self.head.parameters()

    def training_phases(self) -> list[Phase]:
        """``pretrain_epochs`` of reconstruction (encoder and decoder), then the task (all
        parameters, or with ``freeze_encoder`` the head on a fixed encoder); the task
        alone when ``pretrain_epochs`` is 0."""
        if not self.cfg.pretrain_epochs:
            return [Phase(TASK_PHASE, None, self.parameters)]
        freeze = self.cfg.freeze_encoder
        return [Phase("reconstruct", self.cfg.pretrain_epochs, self.autoencoder_parameters,
                      loss=self.reconstruction_loss),
                Phase(TASK_PHASE, None,
                      self.classifier_parameters if freeze else self.parameters,
                      frozen=self.autoencoder_parameters if freeze else None)]
