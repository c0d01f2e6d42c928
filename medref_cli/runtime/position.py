"""The position predictor as training and evaluation share it: built from a recorded segmentation
checkpoint's visual encoder, saved and restored, and run over a device-resident split.

A position checkpoint holds the position run's config (the parent run's, with its `position.*`),
the parent model's text width (to rebuild the backbone whose encoder it copies), the predictor's
state and what the selection kept (epoch, validation mAP).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medref_cli.config import ExperimentConfig, from_dict, to_dict
from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import to_unit
from medref_cli.errors import MedrefError
from medref_cli.models.position_predictor import PositionPredictor, build_position_predictor, encoder_state
from medref_cli.runtime.batches import model_input, sequential_batches
from medref_cli.runtime.checkpoint import load_checkpoint
from medref_cli.runtime.precision import autocast

POSITION_CHECKPOINT_FORMAT = 1
POSITION_KIND = "position"


def segmentation_weights(state: dict, which: str, path: Path) -> dict:
    """The `which` (student | teacher) model state of a burn-in or train checkpoint."""
    kept = state.get("student_teacher") or {}
    if which in kept:
        return kept[which]
    if str(state.get("selected", "student")) == which:
        return state["model"]
    has = ", ".join(sorted(kept)) or str(state.get("selected", "student"))
    raise MedrefError(f"{path} keeps no {which} weights (it has {has}); set position.weights")


def empty_predictor(cfg: ExperimentConfig, text_dim: int) -> PositionPredictor:
    """The predictor of cfg on a freshly built (seeded, not downloaded) copy of the backbone's encoder."""
    from medref_cli.models.preflight import without_visual_download
    from medref_cli.models.registry import create_model

    torch.manual_seed(cfg.train.seed)
    backbone = create_model(without_visual_download(cfg.model), text_dim)
    return build_position_predictor(cfg.position, backbone.encoder, cfg.data.laterality)


def predictor_from_segmentation(cfg: ExperimentConfig, state: dict, path: Path) -> PositionPredictor:
    """A new predictor whose encoder is the visual encoder of a segmentation checkpoint's `state`
    (`position.weights` picks student or teacher), loaded strictly; the head is freshly initialised."""
    if not isinstance(state, dict) or "model" not in state or "text_dim" not in state:
        raise MedrefError(f"{path} is not a segmentation checkpoint: it holds no visual encoder")
    visual = encoder_state(segmentation_weights(state, cfg.position.weights, path))
    if not visual:
        raise MedrefError(f"{path} holds no visual encoder weights (no encoder.* tensors)")
    predictor = empty_predictor(cfg, int(state["text_dim"]))
    try:
        predictor.encoder.load_state_dict(visual, strict=True)
    except RuntimeError as exc:
        raise MedrefError(f"the visual encoder in {path} does not fit {cfg.model.backbone}: "
                          f"{str(exc).splitlines()[0]}") from None
    return predictor


def position_checkpoint_state(cfg: ExperimentConfig, text_dim: int, model: nn.Module, best: dict) -> dict:
    return {"format": POSITION_CHECKPOINT_FORMAT, "kind": POSITION_KIND, "config": to_dict(cfg),
            "text_dim": text_dim, "model": model.state_dict(), **best}


def load_position_model(path: Path, sha256: str | None, device: torch.device
                        ) -> tuple[ExperimentConfig, PositionPredictor, dict]:
    """(config, predictor in eval mode on `device`, the checkpoint's other facts) of a position checkpoint."""
    state = load_checkpoint(path, sha256, map_location="cpu")
    if not isinstance(state, dict) or state.get("kind") != POSITION_KIND:
        raise MedrefError(f"{path} is not a position predictor checkpoint")
    cfg = from_dict(state["config"])
    model = empty_predictor(cfg, int(state["text_dim"]))
    model.load_state_dict(state["model"])
    facts = {k: v for k, v in state.items() if k not in ("model", "config")}
    return cfg, model.to(device).eval(), facts


def position_inputs(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 1, H, W) -> the normalised input the segmentation model sees."""
    return model_input(to_unit(images_uint8), channels_last=False)


@torch.inference_mode()
def predict_split(model: nn.Module, split: SplitTensors, batch_size: int, amp: bool = False) -> torch.Tensor:
    """(N, 6) float32 zone probabilities on the CPU, in the split's order, in eval mode (mode restored)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for index in sequential_batches(len(split), batch_size):
            images = split.images[index.to(split.images.device)]
            with autocast(split.images.device, amp):
                logits = model(position_inputs(images))
            out.append(torch.sigmoid(logits.float()).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 6)
