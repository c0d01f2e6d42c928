"""What a training loop saves and restores of itself, and what it asks of the run around it.

Its position in the data order (`LoopPosition`), the cycled labeled stream (`CycledBatches`), the
process-wide and the loop's own random states, and CPU copies of tensors: the pieces a resume
checkpoint (`medref_cli.runs.resume`) is made of. The loops report through `ProgressDisplay` and hand
their state to a `CheckpointWriter`; the run that calls them provides both (a progress bar, the
resume checkpoint writer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from medref_cli.errors import MedrefError


class ProgressDisplay(Protocol):
    def start(self, description: str, total: int) -> None: ...

    def update(self, completed: int, loss: float | None = None, dice: float | None = None,
               epoch: int | None = None) -> None: ...

    def stop(self) -> None: ...


class CheckpointWriter(Protocol):
    def due(self, step: int, epoch_ends_now: bool) -> bool: ...

    def save(self, state: dict[str, Any]) -> str: ...


RandomSource = torch.Generator | random.Random


@dataclass
class LoopPosition:
    """Where a training loop is: the epoch in progress (1-based), optimiser steps done, the epoch's
    batch order once drawn and how many of its batches are done, and whether the loop has ended."""

    epoch: int = 1
    step: int = 0
    batches: list[torch.Tensor] | None = None
    batch_pos: int = 0
    done: bool = False

    @property
    def epochs_run(self) -> int:
        return self.epoch - 1

    def end_epoch(self, last: bool) -> None:
        self.epoch += 1
        self.batches, self.batch_pos, self.done = None, 0, last

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "batch_pos": self.batch_pos, "done": self.done,
                "batches": None if self.batches is None else [b.cpu() for b in self.batches]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LoopPosition:
        batches = state["batches"]
        return cls(int(state["epoch"]), int(state["step"]), None if batches is None else list(batches),
                   int(state["batch_pos"]), bool(state["done"]))


class CycledBatches:
    """Endless shuffled passes over range(n), `batch_size` rows at a time, with a savable state.

    The same sequence as `batches.cycled_batches` for the same generator (a test keeps the two
    equal); the rows drawn but not yet served are state, so a resumed stream continues exactly.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.pending = torch.empty(0, dtype=torch.long)

    def __iter__(self) -> CycledBatches:
        return self

    def __next__(self) -> torch.Tensor:
        while self.pending.numel() < self.batch_size:
            self.pending = torch.cat([self.pending, torch.randperm(self.n, generator=self.generator)])
        batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size:]
        return batch

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pending": self.pending.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pending = state["pending"].clone().to(torch.long)


def _numpy_state() -> dict[str, Any]:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    key = state["key"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], key, state["pos"], state["has_gauss"], state["gauss"]))


def rng_state(sources: dict[str, RandomSource]) -> dict[str, Any]:
    """The process-wide random states and those of the loop's own generators."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    state["sources"] = {name: src.getstate() if isinstance(src, random.Random) else src.get_state()
                        for name, src in sources.items()}
    return state


def _python_state(value: Any) -> Any:
    """random.setstate needs tuples where a round trip may have produced lists."""
    return tuple(_python_state(v) for v in value) if isinstance(value, (list, tuple)) else value


def restore_rng(state: dict[str, Any], sources: dict[str, RandomSource]) -> None:
    random.setstate(_python_state(state["python"]))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    missing = set(sources) - set(state["sources"])
    if missing:
        raise MedrefError(f"the resume checkpoint lacks the random state of {', '.join(sorted(missing))}")
    for name, src in sources.items():
        saved = state["sources"][name]
        if isinstance(src, random.Random):
            src.setstate(_python_state(saved))
            continue
        try:
            src.set_state(saved)
        except RuntimeError:  # a CUDA generator's state does not fit a CPU one, and the other way round
            raise MedrefError(f"the resume checkpoint's '{name}' generator is from another kind of device than "
                              f"{src.device}; resume on the kind of device the run trained on") from None


def cpu_tensors(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in values.items()}
