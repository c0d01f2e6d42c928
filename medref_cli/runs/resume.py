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

The loop's own pieces of that state (position, cycled stream, random states) are in
`medref_cli.training.loop_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medref_cli.errors import MedrefError
from medref_cli.runtime.checkpoint import file_sha256, load_checkpoint, save_checkpoint

RESUME_FORMAT = 1
RESUME_ROLE = "resume"
RESUME_FILE = "last.pt"
NEXT_FILE = "last.next.pt"
PREVIOUS_FILE = "last.prev.pt"

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
