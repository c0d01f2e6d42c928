"""The model registry: `@register_model(name)` builders, `create_model`, `list_models`.

A builder takes (ModelConfig, text_dim) and returns a SegmentationModel. The full backbones
and their tiny test variants live in the same registry; `medref models` lists them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from medref_cli.errors import MedrefError

if TYPE_CHECKING:
    from torch import nn

    from medref_cli.config.schema import ModelConfig
    from medref_cli.models.encoders import TextEncoder

ModelBuilder = Callable[["ModelConfig", int], "nn.Module"]
Builder = TypeVar("Builder", bound=ModelBuilder)

_BUILDERS: dict[str, ModelBuilder] = {}
# modules whose import registers the built-in models
_BUILTIN_MODULES = ("medref_cli.models.mmi_unet", "medref_cli.models.guidedecoder")


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(model_cfg, text_dim) -> nn.Module` under `name`."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model '{name}' is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorate


def _load_builtin_models() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    _load_builtin_models()
    return sorted(_BUILDERS)


def model_description(name: str) -> str:
    """First line of the builder's docstring."""
    _load_builtin_models()
    doc = (_BUILDERS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def create_model(model_cfg: ModelConfig, text_dim: int) -> nn.Module:
    """Build `model_cfg.backbone` for text features `text_dim` wide; unknown names fail loudly."""
    known = list_models()
    if model_cfg.backbone not in _BUILDERS:
        raise MedrefError(
            f"unknown model '{model_cfg.backbone}' (model.backbone); known models: {', '.join(known)}"
        )
    if text_dim < 1:
        raise ValueError(f"text_dim must be >= 1, got {text_dim}")
    return _BUILDERS[model_cfg.backbone](model_cfg, text_dim)


def build_text_encoder(model_cfg: ModelConfig) -> TextEncoder:
    """The frozen text encoder named by model.text_encoder (on the CPU; move it with `.to`), pooling
    its ITCL text feature as model.text_pool says, with dropout in student passes if model.text_dropout."""
    from medref_cli.models.encoders import load_text_encoder

    if not model_cfg.freeze_text:
        raise MedrefError("model.freeze_text=false is not supported: the text encoder is frozen and cached")
    encoder = load_text_encoder(model_cfg.text_encoder, model_cfg.text_max_length, model_cfg.text_revision)
    encoder.pool = model_cfg.text_pool  # how `encode` pools the ITCL text feature
    encoder.student_dropout = model_cfg.text_dropout  # TextFeatureCache.encode_student
    return encoder
