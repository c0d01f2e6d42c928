"""The module a training loop steps: the model, with synchronised BatchNorm and DistributedDataParallel
when several processes train, and torch.compile when runtime.compile is on.

The loops keep the plain model for everything else (EMA teacher, validation, checkpoints): its
state dict has the plain keys whatever the wrapping.
"""

from __future__ import annotations

import torch
from torch import nn

from medref_cli.runtime import distributed


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are taken over the batch of every rank.

    One differentiable all-gather of (mean, squared deviations, count) per call, on any backend
    (torch's SyncBatchNorm runs on GPUs only); a plain BatchNorm2d in eval mode or in one
    process. Same parameters and buffers as BatchNorm2d, so checkpoints load either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed.current().active):
            return super().forward(x)
        channels = x.shape[1]
        xf = x.float()
        # each rank's mean and sum of squared deviations, combined over the ranks (Chan et al.): stable
        # where a channel's mean is large against its spread, unlike sum(x^2)/n - mean^2
        local_n = xf.numel() / channels
        local_mean = xf.mean(dim=(0, 2, 3))
        local_m2 = ((xf - local_mean.view(1, channels, 1, 1)) ** 2).sum(dim=(0, 2, 3))
        rows = distributed.gather_rows(torch.cat([local_mean, local_m2, local_mean.new_full((1,), local_n)])[None])
        means, m2s, counts = rows[:, :channels], rows[:, channels: 2 * channels], rows[:, -1:]
        n = counts.sum()
        mean = (counts * means).sum(dim=0) / n
        var = ((m2s.sum(dim=0) + (counts * (means - mean) ** 2).sum(dim=0)) / n).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1.0)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        shape = (1, channels, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Make every BatchNorm2d of `module` a SyncBatchNorm2d, in place. The class is swapped on the
    existing module, so its parameters stay the very tensors an optimizer already holds."""
    for child in module.modules():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = SyncBatchNorm2d
    return module


def core(module: nn.Module) -> nn.Module:
    """The plain model inside any torch.compile / DistributedDataParallel wrapping."""
    while True:
        inner = getattr(module, "_orig_mod", None) or (
            module.module if isinstance(module, nn.parallel.DistributedDataParallel) else None)
        if inner is None:
            return module
        module = inner


def step_model(model: nn.Module, device: torch.device, uses_embed: bool, compile_model: bool) -> nn.Module:
    """What the loop calls forward on. `uses_embed`: the loss calls the model's contrastive head
    (outside forward); otherwise that head gets no gradient, which DDP must be told."""
    stepped: nn.Module = model
    if distributed.current().active:
        sync_batchnorm(model)
        stepped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=not uses_embed, gradient_as_bucket_view=True)
    if compile_model:
        stepped = torch.compile(stepped)
    return stepped

