"""Backbones (MMI-UNet, GuideDecoder and tiny variants), their encoders, and the text-feature cache.

encoder = build_text_encoder(cfg.model)            # frozen, outside the model
cache = TextFeatureCache(encoder.to(device))
model = create_model(cfg.model, encoder.dim)       # every parameter trainable
out = model(images, cache.encode(captions))        # ModelOutput(logits, fused)
v, u = model.embed(out.fused, text)                # ITCL embeddings

May import: text, ledger, config and the base modules; not losses, augment or data (beside it).
"""

from medref_cli.models.base import ModelOutput, SegmentationModel, count_parameters
from medref_cli.models.encoders import (
    BUILTIN_MINILM,
    TINY_RANDOM_BERT,
    TextEncoder,
    TextFeatures,
    VisualEncoder,
    create_visual_encoder,
    load_text_encoder,
)
from medref_cli.models.registry import build_text_encoder, create_model, list_models, register_model
from medref_cli.models.text_cache import TextFeatureCache

__all__ = [
    "BUILTIN_MINILM",
    "TINY_RANDOM_BERT",
    "ModelOutput",
    "SegmentationModel",
    "TextEncoder",
    "TextFeatureCache",
    "TextFeatures",
    "VisualEncoder",
    "build_text_encoder",
    "count_parameters",
    "create_model",
    "create_visual_encoder",
    "list_models",
    "load_text_encoder",
    "register_model",
]
