"""Decode a split once into uint8 tensors, so that no epoch ever decodes a PNG again.

`load_split(records, image_size)` -> `SplitTensors` (images (N,1,S,S) uint8, masks (N,1,S,S)
uint8 in {0,1}, labels (N,6) uint8, ids and captions). Images are resized bilinearly and masks
by nearest neighbour when their size differs from S. With `cache_dir`, the tensors are also kept
in a `.pt` file keyed by a hash of the records, the size and each file's size and mtime: a
second run loads that file instead of decoding (5,716 x 224 x 224 is about 287 MB per tensor).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from medref_cli.data.decode import DecodeError, binarize_mask, decode_gray, resize_image, resize_mask
from medref_cli.data.records import SampleRecord
from medref_cli.errors import MedrefError
from medref_cli.files import new_folders
from medref_cli.text.positions import CaptionParseError, parse_caption

CACHE_VERSION = 1


@dataclass
class SplitTensors:
    ids: list[str]
    images: torch.Tensor  # (N, 1, S, S) uint8
    masks: torch.Tensor  # (N, 1, S, S) uint8 in {0, 1}
    captions: list[str]
    labels: torch.Tensor  # (N, 6) uint8, from metadata, else parsed from the caption

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device, non_blocking: bool = False) -> SplitTensors:
        """The same split with its tensors on `device` (a new object; lists are shared)."""
        return replace(
            self,
            images=self.images.to(device, non_blocking=non_blocking),
            masks=self.masks.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
        )

    def subset(self, indices: Sequence[int]) -> SplitTensors:
        """The samples at `indices`, in that order."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return SplitTensors(
            ids=[self.ids[i] for i in index.tolist()],
            images=self.images[index.to(self.device)],
            masks=self.masks[index.to(self.device)],
            captions=[self.captions[i] for i in index.tolist()],
            labels=self.labels[index.to(self.device)],
        )


def record_label(record: SampleRecord) -> tuple[int, ...]:
    """The record's metadata label, else the label parsed from its caption (MedrefError if neither)."""
    if record.label is not None:
        return tuple(record.label)
    try:
        return tuple(parse_caption(record.caption).label)
    except CaptionParseError as exc:
        raise MedrefError(f"{record.id}: no position label in the metadata and {exc}") from None


def decode_record(record: SampleRecord, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask) of one record as (S, S) uint8 arrays; raises MedrefError naming the file."""
    try:
        image = decode_gray(record.image_path)
        mask = binarize_mask(decode_gray(record.mask_path))
    except DecodeError as exc:
        raise MedrefError(f"{exc}; run `medref data check` on the data folder") from None
    return resize_image(image, image_size), resize_mask(mask, image_size)


def decode_split(
    records: Sequence[SampleRecord], image_size: int, workers: int | None = None
) -> SplitTensors:
    """Decode every record once (a thread pool: PIL's decoder releases the GIL)."""
    if image_size < 1:
        raise MedrefError(f"image size must be positive, got {image_size}")
    labels = torch.tensor([record_label(r) for r in records], dtype=torch.uint8).reshape(len(records), 6)
    images = torch.empty((len(records), 1, image_size, image_size), dtype=torch.uint8)
    masks = torch.empty_like(images)
    image_view, mask_view = images.numpy(), masks.numpy()

    def fill(index: int) -> None:
        image_view[index, 0], mask_view[index, 0] = decode_record(records[index], image_size)

    with ThreadPoolExecutor(max_workers=workers or max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(fill, range(len(records))))
    return SplitTensors([r.id for r in records], images, masks, [r.caption for r in records], labels)


def cache_key(records: Sequence[SampleRecord], image_size: int) -> str:
    """Hash of everything the tensors depend on: records, size, and each file's size and mtime."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{image_size}".encode())
    for record in records:
        stats = [os.stat(p) for p in (record.image_path, record.mask_path)]
        entry = [record.id, str(record.image_path), str(record.mask_path), record.caption, record.label]
        entry += [[s.st_size, s.st_mtime_ns] for s in stats]
        digest.update(json.dumps(entry, default=list).encode())
    return digest.hexdigest()[:24]


def _save_atomic(split: SplitTensors, path: Path) -> None:
    """Write the cache file atomically; a failure (full disk, read-only folder) is one line and leaves
    neither a temporary file nor a new folder behind."""
    tmp = None
    try:
        with new_folders(path.parent):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            payload = {"ids": split.ids, "captions": split.captions, "images": split.images,
                       "masks": split.masks, "labels": split.labels}  # fmt: skip
            torch.save(payload, tmp)
            os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise MedrefError(f"cannot write the tensor cache {path}: {reason} (data.cache=false skips it)") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _load_cached(path: Path) -> SplitTensors | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return SplitTensors(
            payload["ids"], payload["images"], payload["masks"], payload["captions"], payload["labels"]
        )
    except (OSError, RuntimeError, KeyError, EOFError, ValueError):
        return None  # a damaged cache file is rebuilt


def cache_path(records: Sequence[SampleRecord], image_size: int, cache_dir: str | Path) -> Path:
    try:
        key = cache_key(records, image_size)
    except OSError as exc:
        raise MedrefError(f"cannot read {exc.filename}: {exc.strerror}; run `medref data check`") from None
    return Path(cache_dir) / f"split-{image_size}-{len(records)}-{key}.pt"


def save_split_cache(split: SplitTensors, records: Sequence[SampleRecord], image_size: int,
                     cache_dir: str | Path) -> None:
    """Write (or replace) the cache file of a split that `cached_split` did not find."""
    _save_atomic(split, cache_path(list(records), image_size, cache_dir))


def cached_split(records: Sequence[SampleRecord], image_size: int, cache_dir: str | Path) -> SplitTensors | None:
    """The split from its cache file, or None when there is none (or it is damaged or stale). Writes nothing."""
    records = list(records)
    path = cache_path(records, image_size, cache_dir)
    if path.is_file():
        cached = _load_cached(path)
        if cached is not None and cached.ids == [r.id for r in records]:
            return cached
    return None


def load_split(
    records: Sequence[SampleRecord],
    image_size: int,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> SplitTensors:
    """The split as uint8 tensors on the CPU (call `.to(device)` to move it)."""
    records = list(records)
    if cache_dir is None:
        return decode_split(records, image_size, workers)
    cached = cached_split(records, image_size, cache_dir)
    if cached is not None:
        return cached
    split = decode_split(records, image_size, workers)
    save_split_cache(split, records, image_size, cache_dir)
    return split
