"""`medref data bench`: samples per second of a naive PyTorch loader vs the in-memory cache.

- naive: a map-style Dataset that decodes the PNGs, resizes and applies the weak and strong
  views to each sample on every access, batched by a DataLoader (no workers), as a plain
  PyTorch loader would;
- cached: the split decoded once into uint8 tensors (`load_split`); each step indexes a batch
  and applies the same views batched, on the chosen device.
Both produce the same thing per step: a normalised float image batch and the zoomed masks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from medref_cli.data.cache import SplitTensors, decode_record, load_split
from medref_cli.data.records import SampleRecord
from medref_cli.data.views import normalise, strong_view, to_unit, weak_view
from medref_cli.errors import MedrefError


@dataclass(frozen=True)
class BenchResult:
    split: str
    samples: int
    image_size: int
    batch: int
    steps: int
    device: str
    naive_samples_per_s: float
    cached_samples_per_s: float
    cache_build_s: float
    threads: int  # torch's CPU threads during the run

    @property
    def speedup(self) -> float:
        return (
            self.cached_samples_per_s / self.naive_samples_per_s if self.naive_samples_per_s else float("inf")
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}


class NaiveDataset(torch.utils.data.Dataset):
    """Decodes and transforms one sample per access: the baseline the cache is measured against."""

    def __init__(self, records: Sequence[SampleRecord], image_size: int, seed: int):
        self.records = list(records)
        self.image_size = image_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = decode_record(self.records[index], self.image_size)
        image_t = to_unit(torch.from_numpy(image)[None, None])
        mask_t = torch.from_numpy(mask)[None, None]
        weak = weak_view(image_t, mask_t, self.generator)
        strong = strong_view(normalise(weak.images), self.generator)
        return strong[0], weak.masks[0]


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_naive(records: Sequence[SampleRecord], image_size: int, batch: int, steps: int, seed: int) -> float:
    """Samples per second of the naive loader over `steps` batches (after one warm-up batch)."""
    loader = torch.utils.data.DataLoader(
        NaiveDataset(records, image_size, seed),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    batches = iter(loader)
    next(batches)  # warm-up
    start = time.perf_counter()
    done = 0
    for _ in range(steps):
        try:
            images, _masks = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, _masks = next(batches)
        done += images.shape[0]
    return done / (time.perf_counter() - start)


def cached_step(
    split: SplitTensors, batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch from the cache: index, weak view (zoom), strong view, normalise."""
    index = torch.randint(len(split), (batch,), generator=generator, device=generator.device).to(split.device)
    weak = weak_view(to_unit(split.images[index]), split.masks[index], generator)
    return strong_view(normalise(weak.images), generator), weak.masks


def time_cached(split: SplitTensors, batch: int, steps: int, seed: int) -> float:
    """Samples per second of the cached loader over `steps` batches (after one warm-up batch)."""
    generator = torch.Generator(device=split.device).manual_seed(seed)
    cached_step(split, batch, generator)
    _synchronise(split.device)
    start = time.perf_counter()
    for _ in range(steps):
        cached_step(split, batch, generator)
    _synchronise(split.device)
    return steps * batch / (time.perf_counter() - start)


def run_bench(
    records: Sequence[SampleRecord],
    split_name: str,
    image_size: int = 224,
    batch: int = 32,
    steps: int = 20,
    device: str = "cpu",
    seed: int = 0,
) -> BenchResult:
    if batch < 1 or steps < 1:
        raise MedrefError(f"--batch and --steps must be at least 1, got {batch} and {steps}")
    if len(records) < batch:
        raise MedrefError(f"split {split_name!r} has {len(records)} samples, fewer than one batch of {batch}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MedrefError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    start = time.perf_counter()
    split = load_split(records, image_size).to(device)
    _synchronise(split.device)
    build_s = time.perf_counter() - start
    cached = time_cached(split, batch, steps, seed)
    naive = time_naive(records, image_size, batch, steps, seed)
    return BenchResult(
        split_name,
        len(records),
        image_size,
        batch,
        steps,
        str(split.device),
        naive,
        cached,
        build_s,
        torch.get_num_threads(),
    )
