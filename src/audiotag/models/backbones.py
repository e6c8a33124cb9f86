"""ImageNet backbones from torchvision and timm on 1-channel spectrograms.

``resnet18``, ``resnet50``, ``regnet_y_800mf``, ``efficientnet_v2_s`` and ``swin_v2_t``: the
torchvision network with its first conv replaced by a 1-input-channel conv and its classifier
replaced by the shared :class:`~audiotag.models.heads.ClassifierHead` on the pooled
features. ``eva02_tiny`` and ``eva02_base``: timm's EVA-02 ViTs (patch 14, built with one
input channel and no classifier; ``dynamic_img_size`` resamples the position embedding to
the image's patch grid, ``dynamic_img_pad`` pads the image to whole patches, so any
``n_mels`` x frames fits). The log-mel image ``(B, n_mels, T)`` is fed as
``(B, 1, n_mels, T)``.

Pretrained weights are read only from a local file (``pretrained_weights``, a path
relative to the project root, or null for random init): nothing is downloaded, since
these machines are offline. The file holds a torchvision ``state_dict`` (for example
``resnet18-f37072fd.pth`` fetched elsewhere from download.pytorch.org); the first conv's
3-channel weights are summed over the input channels (a grey image repeated over RGB gives
the same activations) and the ImageNet classifier is dropped. timm's EVA-02 take a timm
``state_dict`` (e.g. the ``model.safetensors`` of ``timm/eva02_tiny_patch14_224.mim_in22k``
converted with ``torch.save``; timm is never asked for ``pretrained=True``).
``freeze_backbone`` trains the head only, with the backbone's batch-norm statistics frozen
too.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from audiotag.contracts.model_configs import BackboneConfig
from audiotag.models.heads import ClassifierHead, init_weights
from audiotag.models.layers import check_input, eval_frozen
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    """A torchvision builder and the dotted paths of its first conv and its classifier."""

    builder: Callable[..., nn.Module]
    first_conv: str
    classifier: str
    adapted: bool = False  # built with one input channel and no classifier (timm)


def _torchvision(name: str) -> Callable[..., nn.Module]:
    """torchvision.models.<name>, imported on the first build: torchvision pulls in
    torch._dynamo, seconds of CPU in every stage process that never builds a backbone."""
    def build(**kwargs: Any) -> nn.Module:
        return getattr(importlib.import_module("torchvision.models"), name)(**kwargs)
    return build


def _timm(name: str) -> Callable[..., nn.Module]:
    """timm.create_model(<name>) with random weights (``pretrained=False``: timm never
    downloads), one input channel, no classifier, and any image size (see the module doc);
    timm is imported on the first build, like torchvision."""
    def build(**_: Any) -> nn.Module:
        try:
            timm = importlib.import_module("timm")
        except ModuleNotFoundError:
            raise ImportError(f"{name}: needs timm (pip install -e '.[timm]', or make "
                              "install)") from None
        return timm.create_model(name, pretrained=False, in_chans=1, num_classes=0,
                                 dynamic_img_size=True, dynamic_img_pad=True)
    return build


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(_torchvision("resnet18"), "conv1", "fc"),
    "resnet50": BackboneSpec(_torchvision("resnet50"), "conv1", "fc"),
    "regnet_y_800mf": BackboneSpec(_torchvision("regnet_y_800mf"), "stem.0", "fc"),
    "efficientnet_v2_s": BackboneSpec(_torchvision("efficientnet_v2_s"), "features.0.0",
                                      "classifier"),
    # Swin Transformer V2-T: a 4x4 patch-embedding conv, shifted-window attention with
    # log-spaced continuous position bias (any input size: windows and merges pad)
    "swin_v2_t": BackboneSpec(_torchvision("swin_v2_t"), "features.0.0", "head"),
    # EVA-02 (Fang et al. 2023): ViT with rotary position embeddings and SwiGLU MLPs
    "eva02_tiny": BackboneSpec(_timm("eva02_tiny_patch14_224"), "patch_embed.proj", "head",
                               adapted=True),
    "eva02_base": BackboneSpec(_timm("eva02_base_patch14_224"), "patch_embed.proj", "head",
                               adapted=True),
}


def _replace(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Swap the submodule at dotted ``path`` for ``new``; returns the old one."""
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    old = root.get_submodule(path)
    setattr(parent, attr, new)
    return old


def _one_channel(conv: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


class ImageNetBackbone(Tagger):
    """torchvision backbone (1-channel stem) -> pooled features ``(B, D)`` -> head.

    ``(B, n_mels, T) -> (B, num_classes)`` logits.
    """

    arch: ClassVar[str]

    def __init__(self, num_classes: int, n_mels: int, cfg: BackboneConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        spec = BACKBONES[self.arch]
        net = spec.builder(weights=None)  # never a hub download
        if spec.adapted:
            width = net.num_features
        else:
            _replace(net, spec.first_conv, _one_channel(net.get_submodule(spec.first_conv)))
            old_head = _replace(net, spec.classifier, nn.Identity())
            width = [m for m in old_head.modules() if isinstance(m, nn.Linear)][-1].in_features
        self.backbone = net
        self.head = ClassifierHead(width, num_classes, cfg)
        init_weights(self, cfg.init, cfg.activation)
        if cfg.pretrained_weights is not None:
            self._load_pretrained(Path(cfg.pretrained_weights), spec)
        elif cfg.freeze_backbone:
            log.warning("models.%s: freeze_backbone without pretrained_weights freezes a "
                        "randomly initialised backbone", self.arch)
        if cfg.freeze_backbone:
            self.backbone.requires_grad_(False)

    def _load_pretrained(self, path: Path, spec: BackboneSpec) -> None:
        where = f"models.{self.arch}.pretrained_weights"
        if not path.is_file():
            raise FileNotFoundError(
                f"{where}: no file {str(path)!r}. Nothing is downloaded (these machines are "
                f"offline): copy a torchvision or timm {self.arch} state_dict there, or set "
                f"it to null for random init")
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{where}: {str(path)!r} holds no state_dict")
        state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith(spec.classifier + ".")}
        key = f"{spec.first_conv}.weight"
        if key in state and state[key].dim() == 4 and state[key].shape[1] != 1:
            state[key] = state[key].sum(dim=1, keepdim=True)  # (C, 3, k, k) -> (C, 1, k, k)
        try:
            self.backbone.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{where}: {str(path)!r} does not fit {self.arch}: {err}") from None
        log.info("%s: loaded pretrained backbone weights from %s", self.arch, path)

    def train(self, mode: bool = True) -> ImageNetBackbone:
        super().train(mode)
        return eval_frozen(self)  # frozen: batch-norm statistics stay as loaded

    def outputs(self, x: Tensor) -> Outputs:
        check_input(x, self.n_mels)
        embedding = self.backbone(x.unsqueeze(1))  # (B, 1, F, T) -> (B, D)
        return Outputs(self.head(embedding), embedding=embedding)  # (B, K)


@register_model("resnet18")
class Resnet18(ImageNetBackbone):
    """ResNet-18 (11M parameters)."""

    arch = "resnet18"


@register_model("resnet50")
class Resnet50(ImageNetBackbone):
    """ResNet-50 (24M parameters)."""

    arch = "resnet50"


@register_model("regnet_y_800mf")
class RegnetY800mf(ImageNetBackbone):
    """RegNetY-800MF (6M parameters)."""

    arch = "regnet_y_800mf"


@register_model("efficientnet_v2_s")
class EfficientnetV2S(ImageNetBackbone):
    """EfficientNetV2-S (20M parameters)."""

    arch = "efficientnet_v2_s"


@register_model("swin_v2_t")
class SwinV2T(ImageNetBackbone):
    """Swin Transformer V2-T (28M parameters; Liu et al. 2022)."""

    arch = "swin_v2_t"


@register_model("eva02_tiny")
class Eva02Tiny(ImageNetBackbone):
    """EVA-02 tiny, patch 14 (5M parameters; timm ``eva02_tiny_patch14_224``)."""

    arch = "eva02_tiny"


@register_model("eva02_base")
class Eva02Base(ImageNetBackbone):
    """EVA-02 base, patch 14 (85M parameters; timm ``eva02_base_patch14_224``)."""

    arch = "eva02_base"
