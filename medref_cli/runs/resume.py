"""The resume checkpoint: everything a killed training loop needs to continue bit for bit.

`results/runs/<id>/last.pt` is written every `runtime.checkpoint_every` steps and at the end of
every epoch. It holds the model (and the EMA teacher), the optimiser and scheduler, the random
states (python `random`, numpy, torch CPU and CUDA, and the loop's own generators), the position
in the data order (epoch, step, the epoch's batch order and how far into it; the cycled labeled
stream's pending rows), the running metric sums, the best-so-far state and the history. The
loops use no gradient scaler (bf16 autocast needs none), so there is none to save.

Writing never leaves a window without a valid, recorded checkpoint: the new state is written
atomically to `last.next.pt`, the current `last.pt` is moved to `last.prev.pt`, the new file
becomes `last.pt`, its sha256 is recorded in the ledger (artifact role `resume`, one row per run,
replaced), and only then is `last.prev.pt` deleted. Whatever the moment a process dies, one of
these files has the sha256 the ledger records, and `find_resume_file` finds it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medref_cli.errors import MedrefError
from medref_cli.runtime.checkpoint import file_sha256, load_checkpoint, save_checkpoint

RESUME_FORMAT = 1
RESUME_ROLE = "resume"
RESUME_FILE = "last.pt"
NEXT_FILE = "last.next.pt"
PREVIOUS_FILE = "last.prev.pt"

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


class ResumeWriter:
    """Writes `last.pt` in a run folder (see the module doc) and records it through `record`."""

    def __init__(self, folder: Path, every: int, record: Callable[[Path, str], Any], run_id: int, phase: str) -> None:
        self.folder = Path(folder)
        self.every = every
        self.record = record
        self.header = {"format": RESUME_FORMAT, "run_id": run_id, "phase": phase}
        self.saves = 0

    @property
    def path(self) -> Path:
        return self.folder / RESUME_FILE

    def due(self, step: int, epoch_ends_now: bool) -> bool:
        """A mid-epoch checkpoint every `every` steps; the epoch's last step is covered by the
        epoch-end checkpoint that follows its validation."""
        return self.every > 0 and step % self.every == 0 and not epoch_ends_now

    def save(self, state: dict[str, Any]) -> str:
        current, nxt, previous = self.path, self.folder / NEXT_FILE, self.folder / PREVIOUS_FILE
        digest = save_checkpoint(nxt, {**self.header, **state})
        try:
            if current.exists():
                current.replace(previous)
            nxt.replace(current)
        except OSError as exc:
            raise MedrefError(f"cannot move the resume checkpoint into place in {self.folder}: {exc.strerror}") from None
        self.record(current, digest)
        previous.unlink(missing_ok=True)
        self.saves += 1
        return digest


def find_resume_file(recorded: Path, sha256: str) -> Path:
    """The file among last.pt, last.prev.pt and last.next.pt of `recorded`'s folder whose sha256 is
    the recorded one (a crash between the steps of a save leaves it under one of these names)."""
    folder = recorded.parent
    candidates = [recorded, folder / PREVIOUS_FILE, folder / NEXT_FILE]
    present = [p for p in candidates if p.is_file()]
    for path in present:
        if file_sha256(path) == sha256:
            return path
    if not present:
        raise MedrefError(f"resume checkpoint {recorded} is missing; the run cannot continue from it")
    return recorded if recorded.is_file() else present[0]


def load_resume_state(recorded: Path, sha256: str, run_id: int, phase: str) -> dict[str, Any]:
    """Load and check the resume checkpoint a run recorded (sha256 verified, tensors only)."""
    path = find_resume_file(recorded, sha256)
    state = load_checkpoint(path, sha256)
    required = ("format", "phase", "run_id", "model", "optimizer", "scheduler", "rng", "position", "keeper")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise MedrefError(f"{path} is not a medref resume checkpoint")
    if state["format"] != RESUME_FORMAT:
        raise MedrefError(f"{path} has resume format {state['format']}; this medref reads format {RESUME_FORMAT}")
    if state["run_id"] != run_id or state["phase"] != phase:
        raise MedrefError(f"{path} belongs to {state['phase']} run {state['run_id']}, not to {phase} run {run_id}")
    return state
