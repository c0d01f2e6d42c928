"""Mixed precision: bf16 autocast on CUDA when runtime.amp is on; fp32 on the CPU."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
