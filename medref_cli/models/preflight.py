"""Preflight: both encoders resolved, loaded and run once before any data or ledger row.

`burnin`, `train`, `ablate` and `bench` call `preflight` first: the text encoder is loaded (a
download shows the hub's progress bar) and encodes one caption on the run's device, and the
backbone is built once with its visual weights (loaded strictly, so "pretrained" never ends up
random). Every failure there is one MedrefError line, before a single image is decoded. The
loaded text encoder is handed to the run (`take_text_encoder`) instead of being loaded twice.

`evaluate` and `predict` rebuild the network from the checkpoint (which holds every weight) and
load only the frozen text encoder, checked against the identity recorded at training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from medref_cli.errors import MedrefError

if TYPE_CHECKING:
    import torch

    from medref_cli.config.schema import ExperimentConfig, ModelConfig
    from medref_cli.models.encoders import TextEncoder

PREFLIGHT_CAPTION = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."

# text encoders loaded by a preflight and not yet taken by the run, by the settings that shape one
_PENDING: dict[tuple, TextEncoder] = {}


@dataclass
class Preflight:
    text: TextEncoder
    weights: dict[str, Any]  # {"text": identity, "visual": identity}: what the run records
    seconds: float


def _key(model_cfg: ModelConfig) -> tuple:
    return (model_cfg.text_encoder, model_cfg.text_revision, model_cfg.text_max_length, model_cfg.text_pool,
            model_cfg.text_dropout)


def checked_text_encoder(model_cfg: ModelConfig, device: torch.device) -> TextEncoder:
    """The text encoder on `device`, after one caption went through it."""
    from medref_cli.models.registry import build_text_encoder

    encoder = build_text_encoder(model_cfg).to(device)
    try:
        features = encoder.encode([PREFLIGHT_CAPTION])
    except Exception as exc:  # noqa: BLE001 - whatever the forward raises, the run cannot use it
        text = str(exc).strip().splitlines()
        raise MedrefError(f"text encoder '{model_cfg.text_encoder}' failed on a test caption "
                          f"({type(exc).__name__}: {text[0] if text else ''})") from None
    if features.tokens.shape[-1] != encoder.dim:
        raise MedrefError(f"text encoder '{model_cfg.text_encoder}' returned {features.tokens.shape[-1]}-wide "
                          f"features, its config says {encoder.dim}")
    return encoder


def visual_identity(model_cfg: ModelConfig, text_dim: int) -> dict[str, Any]:
    """Build the backbone once (its visual weights loaded strictly) and say what they started from."""
    import torch

    from medref_cli.models.encoders import VisualEncoder
    from medref_cli.models.registry import create_model

    with torch.random.fork_rng(devices=[]):  # the run builds its own model from its seed
        model = create_model(model_cfg, text_dim)
    encoders = [m for m in model.modules() if isinstance(m, VisualEncoder)]
    if not encoders:
        return {"name": None, "pretrained": False, "source": "none"}
    weights = dict(encoders[0].weights)
    if (model_cfg.visual_pretrained or model_cfg.visual_checkpoint) and not weights.get("sha256"):
        raise MedrefError(f"backbone '{model_cfg.backbone}' asked for pretrained visual weights but its encoder "
                          f"'{weights.get('name')}' holds random ones")
    return weights


def preflight(cfg: ExperimentConfig, device: torch.device) -> Preflight:
    """Load and check both encoders of `cfg` (see the module docstring)."""
    started = time.perf_counter()
    encoder = checked_text_encoder(cfg.model, device)
    visual = visual_identity(cfg.model, encoder.dim)
    _PENDING.clear()
    _PENDING[_key(cfg.model)] = encoder
    seconds = time.perf_counter() - started
    return Preflight(encoder, {"text": dict(encoder.identity), "visual": visual,
                               "preflight_s": round(seconds, 3)}, seconds)


def take_text_encoder(model_cfg: ModelConfig, device: torch.device) -> TextEncoder:
    """The encoder a preflight of the same config loaded (handed over once), else a newly checked one."""
    encoder = _PENDING.pop(_key(model_cfg), None)
    return encoder.to(device) if encoder is not None else checked_text_encoder(model_cfg, device)


def check_recorded_text(recorded: dict[str, Any] | None, encoder: TextEncoder, what: str) -> None:
    """Refuse a text encoder whose weight files differ from the ones `what` was trained with (the
    encoder is frozen and not in the checkpoint: other weights give other features). Checkpoints that
    recorded no identity, and the seeded random encoders, are not checked."""
    expected = ((recorded or {}).get("text") or {}).get("weights_sha256")
    if not expected:
        return
    found = encoder.identity.get("weights_sha256") or {}
    if sorted(expected.values()) != sorted(found.values()):
        want = ", ".join(f"{k} {v[:12]}" for k, v in expected.items())
        have = ", ".join(f"{k} {v[:12]}" for k, v in found.items()) or "none"
        raise MedrefError(f"text encoder '{encoder.name}': the weights loaded ({have}) are not the ones {what} "
                          f"was trained with ({want}); point model.text_encoder at those files")


def without_visual_download(model_cfg: ModelConfig) -> ModelConfig:
    """The model config for rebuilding a network whose checkpoint holds every weight."""
    return replace(model_cfg, visual_pretrained=False, visual_checkpoint="")


def preflight_cells(cfgs: list[ExperimentConfig]) -> None:
    """Preflight every distinct model config of a grid once, on the CPU (each cell later runs in its own
    process on its own device)."""
    import torch

    seen: set[ModelConfig] = set()
    for cfg in cfgs:
        if cfg.model not in seen:
            seen.add(cfg.model)
            preflight(cfg, torch.device("cpu"))
    _PENDING.clear()
