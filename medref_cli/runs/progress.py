"""A rich progress bar with loss, Dice and ETA; silent when progress is off."""

from __future__ import annotations

from typing import Any


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._fields: dict[str, str] = {"loss": "-", "dice": "-", "epoch": "-"}

    def start(self, description: str, total: int) -> None:
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]}  loss {task.fields[loss]}  val Dice {task.fields[dice]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, **self._fields)

    def update(self, completed: int, loss: float | None = None, dice: float | None = None,
               epoch: int | None = None) -> None:
        if self._bar is None:
            return
        if loss is not None:
            self._fields["loss"] = f"{loss:.4f}"
        if dice is not None:
            self._fields["dice"] = f"{dice:.4f}"
        if epoch is not None:
            self._fields["epoch"] = str(epoch)
        self._bar.update(self._task, completed=completed, **self._fields)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
