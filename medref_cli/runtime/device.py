"""Turn `runtime.device` into a torch.device, failing with one line when it does not exist."""

from __future__ import annotations

import torch

from medref_cli.errors import MedrefError


def resolve_device(spec: str) -> torch.device:
    """`auto` -> cuda:0 when available else cpu; `cpu`; `cuda:N` (checked to exist)."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        try:
            index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        except ValueError:
            raise MedrefError(f"unknown device '{spec}'; expected auto, cpu or cuda:N") from None
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise MedrefError(f"--gpu {index}: this machine has {have}; use --cpu or another index")
        return torch.device(f"cuda:{index}")
    raise MedrefError(f"unknown device '{spec}'; expected auto, cpu or cuda:N")
