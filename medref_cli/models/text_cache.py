"""Run a frozen text encoder once per distinct caption.

QaTa-COV19 has 63 distinct captions and the augmented variants (PosAug, span mixing) add a
few hundred more, so after the first epoch the text encoder never needs to run again. The
cache keeps one row per string in three growing tensors (tokens, mask, pooled) on its device
and answers a batch with a single gather. The pooled feature is pooled as the encoder's `pool`
(model.text_pool) says.

`encode_student` is what a training student's pass asks for: the cached features, or, under
model.text_dropout (the reference's quirk: its student holds the text encoder in train mode),
a fresh pass with the encoder's dropout active, which no cache can answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from medref_cli.models.encoders import TextEncoder, TextFeatures
from medref_cli.transfer import to_device


class TextFeatureCache:
    """`encode(texts)` computes only the strings it has not seen (batched) and reuses the rest."""

    def __init__(
        self, encoder: TextEncoder, device: torch.device | str | None = None, batch_size: int = 64
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encoder = encoder
        self.device = torch.device(device) if device is not None else encoder.device
        self.batch_size = batch_size
        self._rows: dict[str, int] = {}
        self._tokens: Tensor | None = None
        self._mask: Tensor | None = None
        self._pooled: Tensor | None = None
        self.encoder_calls = 0  # batched forward passes of the encoder
        self.hits = 0  # strings answered from the cache
        self.misses = 0  # strings that had to be encoded

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: object) -> bool:
        return text in self._rows

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        """TextFeatures for `texts` in order, on the cache's device."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not one string")
        if not texts:
            raise ValueError("encode() needs at least one string")
        new = list(dict.fromkeys(t for t in texts if t not in self._rows))
        self.misses += len(new)
        self.hits += len(texts) - len(new)
        for start in range(0, len(new), self.batch_size):
            self._add(new[start : start + self.batch_size])
        index = to_device(torch.tensor([self._rows[t] for t in texts], dtype=torch.long), self.device)
        assert self._tokens is not None and self._mask is not None and self._pooled is not None
        return TextFeatures(self._tokens[index], self._mask[index], self._pooled[index])

    def encode_student(self, texts: Sequence[str]) -> TextFeatures:
        """TextFeatures for a training student's pass: `encode(texts)`, or, when the encoder's
        `student_dropout` is set (model.text_dropout), a fresh uncached pass with its dropout active."""
        if not self.encoder.student_dropout:
            return self.encode(texts)
        if isinstance(texts, str):
            raise TypeError("encode_student() takes a list of strings, not one string")
        if not texts:
            raise ValueError("encode_student() needs at least one string")
        self.encoder_calls += 1
        return self.encoder.encode(list(texts), dropout=True).to(self.device)

    def to(self, device: torch.device | str) -> TextFeatureCache:
        """Move the stored features (not the encoder) to `device`."""
        self.device = torch.device(device)
        if self._tokens is not None:
            self._tokens = self._tokens.to(self.device)
            self._mask = self._mask.to(self.device)
            self._pooled = self._pooled.to(self.device)
        return self

    def _add(self, texts: list[str]) -> None:
        features = self.encoder.encode(texts).to(self.device)
        self.encoder_calls += 1
        first = len(self._rows)
        if self._tokens is None:
            self._tokens, self._mask, self._pooled = features.tokens, features.mask, features.pooled
        else:
            self._tokens = torch.cat([self._tokens, features.tokens])
            self._mask = torch.cat([self._mask, features.mask])
            self._pooled = torch.cat([self._pooled, features.pooled])
        for offset, text in enumerate(texts):
            self._rows[text] = first + offset
