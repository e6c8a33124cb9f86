"""``stn``: a spatial transformer (Jaderberg et al. 2015) in front of a CNN.

A small localisation net looks at the whole log-mel image and predicts an affine
transform (6 numbers); the image is resampled through it (``affine_grid`` +
``grid_sample``) before the classifier CNN sees it, so the net can learn to shift, scale
or shear the time-frequency image. The transform starts as the identity (the last layer
of the localisation net is zero with an identity bias), so at init the model is the
plain CNN. ``residual: true`` uses residual conv blocks in the classifier CNN.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiotag.contracts.model_configs import StnConfig
from audiotag.models.heads import init_weights, make_activation
from audiotag.models.layers import MaxMeanHead, check_input, conv_stack_2d
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # affine (2, 3) row-major


class SpatialTransformer(nn.Module):
    """Affine spatial transformer on a 1-channel image: ``(B, 1, F, T) -> (B, 1, F, T)``.

    ``loc`` maps the image to ``theta (B, 2, 3)`` (conv blocks, adaptive average pool to
    4x4, linear, act, linear); the output samples the input bilinearly at
    ``theta @ (x, y, 1)`` in normalised coordinates (zeros outside the image).
    """

    def __init__(self, cfg: StnConfig) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_stack_2d(cfg.loc_channels, cfg.activation, residual=False),
            nn.AdaptiveAvgPool2d((4, 4)),
            nn.Flatten(),
            nn.Linear(cfg.loc_channels[-1] * 16, cfg.loc_hidden),
            make_activation(cfg.activation),
        )
        self.theta = nn.Linear(cfg.loc_hidden, 6)
        self.reset_identity()

    def reset_identity(self) -> None:
        """Make the predicted transform the identity for every input."""
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor(IDENTITY))

    def forward(self, x: Tensor) -> Tensor:
        theta = self.theta(self.features(x)).view(-1, 2, 3)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, F, T, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)  # (B, 1, F, T)


@register_model("stn")
class Stn(Tagger):
    """Spatial transformer -> conv blocks (plain or residual) -> mean over frequency ->
    max+mean head.

    ``(B, n_mels, T) -> (B, num_classes)`` logits; :meth:`transform` gives the resampled
    image ``(B, n_mels, T)``.
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: StnConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        self.stn = SpatialTransformer(cfg)
        self.features = conv_stack_2d(cfg.channels, cfg.activation, cfg.residual)
        self.head = MaxMeanHead(cfg.channels[-1], num_classes, cfg=cfg)
        init_weights(self, cfg.init, cfg.activation)
        self.stn.reset_identity()  # whatever ``init`` did, start from the identity

    def transform(self, x: Tensor) -> Tensor:
        """The spectrogram as the classifier CNN sees it: ``(B, F, T) -> (B, F, T)``."""
        check_input(x, self.n_mels)
        return self.stn(x.unsqueeze(1)).squeeze(1)

    def outputs(self, x: Tensor) -> Outputs:
        h = self.features(self.transform(x).unsqueeze(1))  # (B, C, F', T')
        return Outputs(self.head(h.mean(dim=2)))  # (B, C, T') -> (B, K)

