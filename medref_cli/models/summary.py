"""`medref models`: parameter counts from the configs alone, with no weight loaded or downloaded.

Every backbone is built on the meta device (shapes, no storage, no weights); the text encoder's
size comes from its config.json (a local folder, the packaged MiniLM, or the Hugging Face cache:
nothing is fetched). Each row says which weights the backbone would start from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medref_cli.errors import MedrefError

if TYPE_CHECKING:
    from medref_cli.config.schema import ModelConfig

# the width of a BERT-base encoder (CXR-BERT's): assumed when the text config is not on this machine
BERT_BASE_WIDTH = 768


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    visual_encoder: str
    visual_weights: str  # what the visual encoder starts from
    parameters: int
    trainable: int
    text_encoder: str
    text_weights: str  # what the text encoder is (name, revision) or why its size is unknown
    text_parameters: int | None  # frozen, outside the model; None: its config is not on this machine


def _text_config(model_cfg: ModelConfig) -> dict[str, Any] | None:
    """The text encoder's config.json as a dict, without any download (None when not on this machine)."""
    from medref_cli.models.encoders import BUILTIN_MINILM, RANDOM_BERTS, builtin_minilm_path

    name = model_cfg.text_encoder
    if name in RANDOM_BERTS:
        hidden, layers, heads, ffn = RANDOM_BERTS[name]
        return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
                "intermediate_size": ffn, "max_position_embeddings": max(64, model_cfg.text_max_length),
                "add_pooling_layer": False}
    if name == BUILTIN_MINILM:
        path: Path | None = builtin_minilm_path() / "config.json"
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        from medref_cli.models.text_weights import hub_cache

        try:
            found = try_to_load_from_cache(name, "config.json", revision=model_cfg.text_revision or None,
                                           cache_dir=hub_cache())
        except ValueError:  # not a valid hub name
            found = None
        path = Path(found) if isinstance(found, str) else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MedrefError(f"text encoder {name}: {path} unreadable ({exc})") from None


def _text_parameters(config: dict[str, Any]) -> int:
    """Parameters of a BertModel of this config, counted on the meta device."""
    import torch
    from transformers import BertConfig, BertModel

    from medref_cli.models.text_weights import CONFIG_KEYS_DROPPED

    pooler = bool(config.pop("add_pooling_layer", False))
    kept = {k: v for k, v in config.items() if k not in CONFIG_KEYS_DROPPED}
    with torch.device("meta"):
        model = BertModel(BertConfig(**kept), add_pooling_layer=pooler)
    return sum(p.numel() for p in model.parameters())


def _shapes_only(build):
    """`build()` on the meta device (no storage); on the CPU where an older library's initialisation
    copies tensors, which meta tensors refuse (the caller's random state kept)."""
    import torch

    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:
        with torch.random.fork_rng(devices=[]):
            return build()


def visual_weights_label(name: str, model_cfg: ModelConfig) -> str:
    """What a visual encoder named `name` starts from under `model_cfg`."""
    if model_cfg.visual_checkpoint:
        return f"file {model_cfg.visual_checkpoint}"
    if not model_cfg.visual_pretrained:
        return "random init"
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return "no timm weights (fails: set model.visual_checkpoint or visual_pretrained=false)"
    tag = cfg.tag or ""
    data = ("ImageNet-22k, fine-tuned on ImageNet-1k" if "in22k_ft_in1k" in tag else
            "ImageNet-22k" if "in22k" in tag else "ImageNet-1k" if "in1k" in tag else tag)
    full = name if "." in name else f"{name}.{tag}"
    return f"timm {full} ({data})"


def summarize_models(model_cfg: ModelConfig) -> list[ModelSummary]:
    """Every registered model on the meta device, counted; no weight is read or fetched."""
    from medref_cli.models.base import count_parameters
    from medref_cli.models.registry import create_model, list_models, model_description

    config = _text_config(model_cfg)
    if config is None:
        text_dim, text_params = BERT_BASE_WIDTH, None
        text_label = (f"{model_cfg.text_encoder}@{model_cfg.text_revision} (not downloaded: width "
                      f"{BERT_BASE_WIDTH} assumed)")
    else:
        text_dim, text_params = int(config.get("hidden_size", BERT_BASE_WIDTH)), _text_parameters(dict(config))
        text_label = model_cfg.text_encoder + (f"@{model_cfg.text_revision}" if "/" in model_cfg.text_encoder
                                               and not Path(model_cfg.text_encoder).expanduser().is_dir() else "")
    random_init = replace(model_cfg, visual_pretrained=False, visual_checkpoint="")
    summaries = []
    for name in list_models():
        model = _shapes_only(lambda n=name: create_model(replace(random_init, backbone=n), text_dim))
        total, trainable = count_parameters(model)
        visual = getattr(model, "visual_encoder_name", "?")
        summaries.append(
            ModelSummary(
                name=name,
                description=model_description(name),
                visual_encoder=visual,
                visual_weights=visual_weights_label(visual, model_cfg) if visual != "?" else "?",
                parameters=total,
                trainable=trainable,
                text_encoder=model_cfg.text_encoder,
                text_weights=text_label,
                text_parameters=text_params,
            )
        )
    return summaries
