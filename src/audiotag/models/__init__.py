"""Audio-tagging models and their registry.

Every model is a :class:`~audiotag.models.outputs.Tagger`: ``outputs(x)`` maps a
normalised log-mel batch ``(batch, n_mels, frames)`` to one
:class:`~audiotag.models.outputs.Outputs` record (clip logits ``(batch, num_classes)``,
and frame logits, attention weights or an embedding where the model has them), and
``forward(x)`` to its clip logits; build one by name with :func:`create_model`. Importing this
package registers ``cnn1d``, ``cnn2d``, ``crnn``, ``lstm``, ``gru``, ``stn``,
``autoencoder`` (both with a ``residual`` setting), ``mixnet`` (waveform + log-mel
branches, on raw waveforms only) and the ImageNet backbones ``resnet18``, ``resnet50``,
``regnet_y_800mf``, ``efficientnet_v2_s``, ``swin_v2_t`` (torchvision), ``eva02_tiny`` and
``eva02_base`` (timm).

Every model has a card in the torch-free catalogue :mod:`audiotag.contracts.models` (its
name, config class and capabilities; its config class in
:mod:`audiotag.contracts.model_configs`); this package registers the module that builds
it. Capabilities that training relies on are declared on the card (``ModelCard``, also
the registry entry's :class:`ModelSpec`): ``input`` (``spectrogram``, ``waveform``:
``(B, 1, samples)`` only, see :mod:`audiotag.models.mixnet`, or ``any``) and
``init_branches``; how a model trains (one phase, or reconstruct then classify as
:mod:`audiotag.models.autoencoder`) the model declares itself
(:mod:`audiotag.models.phases`). The class attribute ``accepts_lengths`` marks a
``forward(x, lengths)`` for padded variable-length batches (see :mod:`audiotag.models.rnn`).
"""

from audiotag.contracts.models import (
    MODEL_TRAIN,
    list_models,
    model_config_class,
    parse_model_params,
    validate_model_params,
)
from audiotag.models.autoencoder import Autoencoder, AutoencoderConfig
from audiotag.models.backbones import BACKBONES, BackboneConfig, ImageNetBackbone
from audiotag.models.cnn1d import Cnn1d, Cnn1dConfig
from audiotag.models.cnn2d import Cnn2d, Cnn2dConfig
from audiotag.models.crnn import Crnn, CrnnConfig
from audiotag.models.heads import ClassifierHead, HeadConfig, init_weights
from audiotag.models.mixnet import MixNet, MixNetConfig
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import MAX_PARAMETERS, MODELS, ModelSpec, create_model, register_model
from audiotag.models.rnn import Gru, Lstm, RnnConfig
from audiotag.models.stn import Stn, StnConfig

__all__ = [
    "BACKBONES",
    "MAX_PARAMETERS",
    "MODEL_TRAIN",
    "MODELS",
    "Autoencoder",
    "AutoencoderConfig",
    "BackboneConfig",
    "ClassifierHead",
    "Gru",
    "HeadConfig",
    "ImageNetBackbone",
    "Lstm",
    "MixNet",
    "MixNetConfig",
    "Outputs",
    "RnnConfig",
    "Stn",
    "StnConfig",
    "Tagger",
    "Cnn1d",
    "Cnn1dConfig",
    "Cnn2d",
    "Cnn2dConfig",
    "Crnn",
    "CrnnConfig",
    "ModelSpec",
    "create_model",
    "init_weights",
    "list_models",
    "model_config_class",
    "parse_model_params",
    "register_model",
    "validate_model_params",
]
