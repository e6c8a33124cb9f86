"""Audio-tagging models and their registry.

Every model maps a normalised log-mel batch ``(batch, n_mels, frames)`` to logits
``(batch, num_classes)``; build one by name with :func:`create_model`. Importing this
package registers ``cnn1d``, ``cnn2d`` and ``crnn``.
"""

from audiotag.models.cnn1d import Cnn1d, Cnn1dConfig
from audiotag.models.cnn2d import Cnn2d, Cnn2dConfig
from audiotag.models.crnn import Crnn, CrnnConfig
from audiotag.models.registry import (
    MODELS,
    ModelSpec,
    create_model,
    list_models,
    model_config_class,
    register_model,
    validate_model_params,
)

__all__ = [
    "MODELS",
    "Cnn1d",
    "Cnn1dConfig",
    "Cnn2d",
    "Cnn2dConfig",
    "Crnn",
    "CrnnConfig",
    "ModelSpec",
    "create_model",
    "list_models",
    "model_config_class",
    "register_model",
    "validate_model_params",
]
