"""What a recorded model is given under `medref evaluate --text-mode MODE`: the captions, the soft
position input of a model with one (ISPG), and the tags that record the mode.

The captions come from `medref_cli.text.modes`; the options a mode does not use are refused, so a
recorded run says exactly what was done. All checks run before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from medref_cli.data.records import SampleRecord
from medref_cli.errors import MedrefError
from medref_cli.text.modes import (
    DEFAULT_REMOVAL_RATE,
    DEFAULT_SEED,
    RATE_MODES,
    SEEDED_MODES,
    SOFT_MODES,
    check_mode,
    check_rate,
    constant_caption,
    mode_captions,
    mode_positions,
    removal_chosen,
)
from medref_cli.text.positions import CaptionParseError, parse_caption


@dataclass(frozen=True)
class TextModeRequest:
    """A checked `--text-mode` request: the mode, its rate and seed (None where the mode uses none)."""

    mode: str = "full"
    removal_rate: float | None = None
    seed: int | None = None
    position_run: int | None = None

    def tags(self) -> dict:
        return {"text_mode": self.mode, "removal_rate": self.removal_rate, "text_seed": self.seed,
                "position_run": self.position_run}


def check_request(mode: str = "full", removal_rate: float | None = None, seed: int | None = None,
                  position_run: int | None = None) -> TextModeRequest:
    """The request with each mode's defaults filled in; a MedrefError for an option the mode does not use."""
    check_mode(mode)
    if removal_rate is not None and mode not in RATE_MODES:
        raise MedrefError(f"--removal-rate applies to --text-mode {', '.join(RATE_MODES)}, not {mode}")
    if seed is not None and mode not in SEEDED_MODES:
        raise MedrefError(f"--seed applies to --text-mode {', '.join(SEEDED_MODES)}, not {mode}")
    if seed is not None and seed < 0:
        raise MedrefError(f"--seed must be >= 0, got {seed}")
    if (position_run is not None) != (mode == "soft_image"):
        raise MedrefError("--text-mode soft_image needs --position-run RUN (and only it takes one)")
    if mode in RATE_MODES:
        removal_rate = check_rate(DEFAULT_REMOVAL_RATE if removal_rate is None else removal_rate)
    if mode in SEEDED_MODES and seed is None:
        seed = DEFAULT_SEED
    return TextModeRequest(mode, removal_rate, seed, position_run)


def check_model_takes(request: TextModeRequest, takes_positions: bool, source: str) -> None:
    if request.mode in SOFT_MODES and not takes_positions:
        raise MedrefError(f"--text-mode {request.mode} needs a model with a soft position input "
                          f"(model.soft_position=true); {source} has none")


@dataclass
class ModeInputs:
    captions: list[str]
    positions: torch.Tensor | None  # (N, 6) float32 for a model with a soft position input, else None
    tags: dict = field(default_factory=dict)


def mode_inputs(request: TextModeRequest, ids: Sequence[str], captions: Sequence[str], labels: torch.Tensor,
                pool: tuple[str, Sequence[str]], takes_positions: bool, predicted: torch.Tensor | None = None
                ) -> ModeInputs:
    """Captions (and positions) under the request. `pool`: (split, captions) the constant one is the
    most frequent of (`constant_pool`); `predicted`: soft_image's (N, 6) probabilities."""
    mode, rate, seed = request.mode, request.removal_rate, request.seed
    constant = constant_caption(pool[1]) if mode == "constant" else None
    out = mode_captions(mode, ids, captions, rate=rate if rate is not None else 0.0,
                        seed=seed if seed is not None else DEFAULT_SEED, constant=constant)
    tags = request.tags()
    tags["captions_changed_share"] = sum(a != b for a, b in zip(out, captions)) / max(1, len(captions))
    if mode in RATE_MODES:
        tags["removed_images"] = sum(removal_chosen(ids, rate, seed))
    if constant is not None:
        tags["constant_caption"], tags["constant_from"] = constant, pool[0]
    positions = None
    if takes_positions:
        if mode == "soft_image":
            if predicted is None or tuple(predicted.shape) != (len(ids), 6):
                raise MedrefError(f"the position run gave no (N={len(ids)}, 6) probabilities")
            positions = predicted.float().cpu()
        else:
            rows = mode_positions(mode, labels.tolist(), seed=seed if seed is not None else DEFAULT_SEED,
                                  constant_label=_caption_label(constant) if constant is not None else None)
            positions = torch.tensor(rows, dtype=torch.float32).reshape(len(ids), 6)
        tags["soft_input"] = {"full": "labels", "oracle_soft": "labels", "removed": "zeros",
                              "soft_image": "predicted"}.get(mode, "labels of the captions given")
    return ModeInputs(out, positions, tags)


def constant_pool(records_by_split: dict[str, list[SampleRecord]], split: str) -> tuple[str, list[str]]:
    """(which split, its captions): the captions the constant caption is drawn from, the train split's
    (what a model could know without the test captions), else the evaluated split's."""
    source = "train" if records_by_split.get("train") else split
    return source, [r.caption for r in records_by_split.get(source) or []]


def _caption_label(caption: str) -> tuple[int, ...]:
    try:
        return parse_caption(caption).label
    except CaptionParseError as exc:
        raise MedrefError(f"the constant caption has no position label: {exc}") from None
