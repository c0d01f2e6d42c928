"""Data-parallel training over several processes (torch.distributed: NCCL on GPUs, gloo on the CPU).

Conventions, so that N processes compute what one process computes at the same config:

- ``train.batch_size`` (and ``train.unlabeled_batch_size``) is the GLOBAL batch: every rank
  draws the same shuffled order (same seeded generator) and takes its contiguous 1/N slice of
  each batch, so rank 0's rows come first, as in the single-process batch;
- the last batch of an epoch is trimmed to a multiple of N rows (at most N-1 samples of a
  pass are left out, a different few every epoch);
- gradients are averaged by DistributedDataParallel; BatchNorm statistics are summed over all
  ranks (`SyncBatchNorm2d`), and the contrastive terms see the embeddings of all ranks
  (`gather_rows`), so both equal their single-process values on the global batch;
- per-rank augmentation draws come from generators seeded per rank (rank 0 keeps the
  single-process seeds);
- only rank 0 touches the ledger, the artifacts and the terminal; validation is shared out (each
  rank scores every N-th batch, the pixel counts are summed), so every rank gets the same scores
  and the same early-stopping decision; other rank-0 decisions are broadcast (`from_main`).

The process group is set up from the usual torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), so ``torchrun -m medref_cli train ...`` works as well as
``medref train --gpus 0,1``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
from torch import nn

from medref_cli.errors import MedrefError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


_CURRENT = Dist()


def current() -> Dist:
    return _CURRENT


def env_world() -> Dist:
    """The rank layout the environment describes (torchrun's variables); world 1 when unset."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise MedrefError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise MedrefError(f"bad rank layout: RANK={rank}, WORLD_SIZE={world}")
    return Dist(rank, world, local)


def start(device: torch.device) -> Dist:
    """Join the process group the environment describes (a no-op for one process)."""
    global _CURRENT
    layout = env_world()
    if layout.active and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend, rank=layout.rank, world_size=layout.world,
                                             timeout=timedelta(minutes=60),
                                             device_id=device if device.type == "cuda" else None)
    _CURRENT = layout
    return layout


def stop() -> None:
    global _CURRENT
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CURRENT = Dist()


def rank_device(spec: str) -> str:
    """The device of this rank: the launcher's per-rank list; else, under torchrun, cuda:LOCAL_RANK
    for any GPU spec (auto, cuda, cuda:N: one GPU per rank, as torchrun's processes are laid out)."""
    layout = env_world()
    listed = os.environ.get("MEDREF_RANK_DEVICES")
    if listed:
        devices = listed.split(",")
        if len(devices) != layout.world:
            raise MedrefError(f"MEDREF_RANK_DEVICES names {len(devices)} devices for {layout.world} ranks")
        return devices[layout.local_rank]
    gpu_spec = spec.strip().lower() == "auto" or spec.strip().lower().startswith("cuda")
    if layout.active and gpu_spec and torch.cuda.is_available():
        return f"cuda:{layout.local_rank}"
    return spec


def from_main(fn: Callable[[], T]) -> T:
    """Rank 0 computes fn(); every rank returns its value (the others never call fn)."""
    dist = current()
    if not dist.active:
        return fn()
    box = [fn() if dist.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def main_check(fn: Callable[[], None]) -> None:
    """Run a check on rank 0 only (it reads what only rank 0 holds); its one-line error is raised
    on every rank, so no rank is left waiting for the others."""
    def outcome() -> str | None:
        try:
            fn()
        except MedrefError as exc:
            return str(exc)
        return None

    message = from_main(outcome)
    if message is not None:
        raise MedrefError(message)


def check_global_batch(cfg, world: int) -> None:
    """Each global batch of an ExperimentConfig must split evenly over `world` processes."""
    sizes = {"train.batch_size": cfg.train.batch_size, "train.unlabeled_batch_size": cfg.train.unlabeled_batch_size}
    for name, size in sizes.items():
        if size and size % world:
            raise MedrefError(f"{name}={size} (the global batch) does not split over {world} processes")


def reseed_rank(generators: list, seed: int, step: int) -> None:
    """After a resume (whose saved random states are rank 0's), give a rank other than 0 fresh
    per-rank draws: seeded from the seed, the rank and the step, so a resume is repeatable."""
    import random

    from medref_cli.runtime.build import seed_everything

    if current().rank == 0:
        return
    base = seed + seed_offset() + 1_000_003 * step
    seed_everything(base)
    for offset, gen in enumerate(generators, start=1):
        if isinstance(gen, random.Random):
            gen.seed(base + offset)
        else:
            gen.manual_seed(base + offset)


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each scalar averaged over the ranks (one collective for all of them)."""
    if not current().active or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].float() for k in keys])
    torch.distributed.all_reduce(stacked)
    stacked /= current().world
    return dict(zip(keys, stacked.unbind(), strict=True))


def sum_counts(counts: torch.Tensor) -> torch.Tensor:
    """An integer tensor summed over the ranks (a copy; the same tensor's values in one process)."""
    counts = counts.clone()
    if current().active:
        torch.distributed.all_reduce(counts)
    return counts


def trim_batches(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """The last batch cut to a multiple of the world size (dropped when that leaves nothing)."""
    world = current().world
    if world == 1 or not batches:
        return batches
    last = batches[-1][: len(batches[-1]) // world * world]
    return batches[:-1] + ([last] if len(last) else [])


def shard(index: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices."""
    dist = current()
    if not dist.active:
        return index
    if len(index) % dist.world:
        raise MedrefError(f"a batch of {len(index)} rows does not split over {dist.world} processes")
    return index.view(dist.world, -1)[dist.rank]


class _GatherRows(torch.autograd.Function):
    """y = the rows of every rank, in rank order; dx = this rank's rows of the summed dy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(current().world)]
        torch.distributed.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad[current().rank * ctx.rows: (current().rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank (equal row counts), in rank order; gradients flow back to each rank's
    own rows. The identity in one process."""
    return _GatherRows.apply(x) if current().active else x


def fingerprint(module: nn.Module) -> str:
    """sha256 over the bytes of every floating tensor of the module's state (exact identity)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_identical(module: nn.Module, what: str) -> None:
    """Raise when `module` differs between the ranks (compared by fingerprint)."""
    if not current().active:
        return
    prints: list[str | None] = [None] * current().world
    torch.distributed.all_gather_object(prints, fingerprint(module))
    if len(set(prints)) != 1:
        differing = [r for r, p in enumerate(prints) if p != prints[0]]
        raise MedrefError(f"the {what} differs between ranks (rank(s) {differing} differ from rank 0)")


def seed_offset() -> int:
    """Added to the seeds of per-sample random draws, so ranks augment differently (0 on rank 0)."""
    return 7919 * current().rank
