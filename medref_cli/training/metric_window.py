"""Loss terms of the training steps, summed on the device and read back every `log_every` steps.

Reading a device scalar forces a host-device sync on a GPU, so a loop adds each step's detached
terms here and only every `every` steps (and at the last step) turns the sums into means, averaged
over the processes of a multi-process run, logs them and shows them. The sums are part of a
resume checkpoint, so a resumed run logs the same means as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from medref_cli.runtime import distributed
from medref_cli.training.loop_state import ProgressDisplay, cpu_tensors

MetricSink = Callable[[dict[str, float], int], None]


class MetricWindow:
    def __init__(self, every: int, device: torch.device) -> None:
        self.every = every
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in terms.items():
            value = value.detach()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()

    def close_step(self, step: int, total: int, log: MetricSink, progress: ProgressDisplay, loss_key: str,
                   extra: Callable[[], dict[str, float]] = dict) -> None:
        """After step `step` of `total`: log the window's means (with `extra()`) when it is due."""
        if step % self.every and step != total:
            progress.update(step)
            return
        steps = (step - 1) % self.every + 1
        values = {key: float(value) / steps for key, value in distributed.mean_over_ranks(self.sums).items()}
        self.sums.clear()
        values.update(extra())
        log(values, step)
        progress.update(step, loss=values[loss_key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return cpu_tensors(self.sums)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {key: value.to(self.device) for key, value in state.items()}
