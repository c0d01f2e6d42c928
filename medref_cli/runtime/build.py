"""What a run, an evaluation, a prediction and a benchmark all build first: the process's seeds, the
data set's records, the tensor cache folder, the text encoder with its feature cache, and the model."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medref_cli.config import ExperimentConfig
from medref_cli.data.records import SampleRecord
from medref_cli.models.encoders import TextEncoder
from medref_cli.models.text_cache import TextFeatureCache


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def tensor_cache_dir(cfg: ExperimentConfig) -> Path | None:
    return Path(cfg.runtime.results_dir) / "cache" / "tensors" if cfg.data.cache else None


def read_records(cfg: ExperimentConfig, root: Path) -> dict[str, list[SampleRecord]]:
    from medref_cli.data.readers import read_dataset

    return read_dataset(root, cfg.data.format)


def build_text(cfg: ExperimentConfig, device: torch.device, recorded: dict | None = None
               ) -> tuple[TextEncoder, TextFeatureCache]:
    """The checked text encoder (the preflight's, when one ran) and its cache; `recorded`: the weights
    identity a checkpoint was trained with, which the loaded encoder must match."""
    from medref_cli.models.preflight import check_recorded_text, take_text_encoder

    encoder = take_text_encoder(cfg.model, device)
    if recorded is not None:
        check_recorded_text(recorded, encoder, "the checkpoint")
    return encoder, TextFeatureCache(encoder, device)


def build_model(cfg: ExperimentConfig, text_dim: int, device: torch.device) -> nn.Module:
    from medref_cli.models.registry import create_model

    torch.manual_seed(cfg.train.seed)
    model = create_model(cfg.model, text_dim).to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
