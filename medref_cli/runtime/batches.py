"""Batches drawn from device-resident uint8 splits, and the inputs a model step needs.

A split lives on the device as uint8 tensors (`SplitTensors`); a batch is an index gather
plus the captions of those samples. Nothing is decoded or copied from the host per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from medref_cli.data.cache import SplitTensors
from medref_cli.transfer import to_device


@dataclass
class Batch:
    index: torch.Tensor  # (B,) long, rows of the split
    images: torch.Tensor  # (B, 1, H, W) uint8
    masks: torch.Tensor  # (B, 1, H, W) uint8 in {0, 1}
    labels: torch.Tensor  # (B, 6) uint8 position labels
    captions: list[str]

    def __len__(self) -> int:
        return int(self.index.numel())


def take(split: SplitTensors, index: torch.Tensor) -> Batch:
    """Rows `index` (a CPU tensor, as the batch samplers make them) of a device-resident split."""
    rows = index.tolist()
    dev_index = to_device(index, split.images.device)
    return Batch(
        index=dev_index,
        images=split.images[dev_index],
        masks=split.masks[dev_index],
        labels=split.labels[dev_index],
        captions=[split.captions[i] for i in rows],
    )


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, drop_last: bool = False) -> list[torch.Tensor]:
    """One shuffled pass over range(n) in batches (the last short batch kept unless drop_last)."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def cycled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled passes over range(n): labeled batches cycled to match the unlabeled steps.

    Batches never straddle two passes' duplicates: a pass shorter than a batch is topped up from
    the next shuffled pass, so every batch has `batch_size` rows even when n < batch_size.
    """
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while pending.numel() < batch_size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def sequential_batches(n: int, batch_size: int) -> list[torch.Tensor]:
    return list(torch.arange(n).split(batch_size))


def model_input(unit_images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """[0,1] float images -> the normalised model input, in channels_last memory format if asked."""
    from medref_cli.data.views import normalise

    x = normalise(unit_images)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
