"""Timed training steps for `medref bench`: the fast path, the naive path, and how they are timed.

Every step is timed with the device synchronised before and after (torch.cuda.synchronize on a
GPU), split into the data part (getting the batch ready on the device) and the whole step
(data + forward + backward + optimiser step + EMA update). Both paths train their own copy of
the same initial weights with their own AdamW and EMA teacher, and both are handed the same
batch indices every iteration.
"""

from __future__ import annotations

import copy
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from medref_cli.bench.bench_naive import NaiveSampleDataset, naive_batch, naive_ssl_loss, naive_sup_loss
from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors
from medref_cli.data.records import SampleRecord
from medref_cli.data.views import StrongViewSettings
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.encoders import TextEncoder
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.batches import take
from medref_cli.runtime.step_model import step_model
from medref_cli.training.ema import EMATeacher
from medref_cli.training.schedules import build_optimizer
from medref_cli.training.ssl_step import StepWeights, ssl_loss
from medref_cli.training.supervised import supervised_loss


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, func: Callable[[], object]) -> float:
    """Wall seconds `func()` takes, the device synchronised on both sides."""
    synchronise(device)
    start = time.perf_counter()
    func()
    synchronise(device)
    return time.perf_counter() - start


@dataclass
class StepTime:
    total_s: float  # wall clock, device synchronised
    data_s: float | None  # wall clock of getting the batch ready (None: not told apart from the rest)
    cpu_s: float  # CPU time of this process over the step (all its threads)
    minor_faults: int  # minor page faults of the process over the step (fresh memory mapped in)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class StepClock:
    """Wall and process CPU time of one step, with an optional lap after the data part."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        synchronise(device)
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.faults = minor_faults()
        self.data_s: float | None = None

    def lap_data(self) -> None:
        synchronise(self.device)
        self.data_s = time.perf_counter() - self.wall

    def stop(self) -> StepTime:
        synchronise(self.device)
        return StepTime(time.perf_counter() - self.wall, self.data_s, time.process_time() - self.cpu,
                        minor_faults() - self.faults)


@dataclass
class PassCounter:
    """Counts forward passes of the student, the teacher and the text encoder (forward pre-hooks)."""

    counts: dict[str, int] = field(default_factory=lambda: {"student": 0, "teacher": 0, "text_encoder": 0})
    handles: list = field(default_factory=list)

    def watch(self, name: str, module: nn.Module) -> None:
        def count(*_args) -> None:
            self.counts[name] += 1

        self.handles.append(module.register_forward_pre_hook(count))

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def full_weights(cfg: ExperimentConfig) -> StepWeights:
    """Loss weights after the ramps (every term of the step active)."""
    lam_u = cfg.ssl.lambda_u
    itc_u = cfg.ssl.lambda_itcl_unsup * (lam_u if cfg.ssl.itcl_unsup_follows_lambda_u else 1.0)
    return StepWeights(lam_u, cfg.ssl.lambda_itcl_sup, itc_u)


class TrainedPath:
    """A student with its optimiser, EMA teacher, loss and seeded generators."""

    def __init__(self, student: nn.Module, cfg: ExperimentConfig, device: torch.device, seed: int) -> None:
        self.student = student
        self.cfg = cfg
        self.device = device
        self.ema = EMATeacher(student) if cfg.ssl.ema else None
        self.teacher = self.ema.model if self.ema is not None else student
        self.optimizer = build_optimizer(student, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.loss_fn = DiceCELoss(cfg.train.dice_weight, cfg.train.ce_weight)
        self.gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.rng = random.Random(seed + 2)
        self.weights = full_weights(cfg)

    def apply(self, loss: torch.Tensor, update_teacher: bool) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if update_teacher and self.ema is not None:
            self.ema.update(self.student, self.cfg.ssl.ema_momentum)


class FastPath(TrainedPath):
    """The training code as `medref train` runs it: device-resident uint8 splits, cached text,
    autocast and channels_last per the config, one student and one teacher pass per SSL step."""

    def __init__(self, student: nn.Module, cache: TextFeatureCache, labeled: SplitTensors,
                 unlabeled: SplitTensors, cfg: ExperimentConfig, device: torch.device, seed: int) -> None:
        super().__init__(student, cfg, device, seed)
        self.cache = cache
        self.labeled = labeled
        self.unlabeled = unlabeled
        # what the training loops step (torch.compile'd with runtime.compile)
        self.stepped = step_model(student, device, uses_embed=cfg.ssl.contrastive != "none",
                                  compile_model=cfg.runtime.compile)

    def sup_step(self, index: torch.Tensor) -> StepTime:
        clock = StepClock(self.device)  # supervised_loss gathers its batch itself: no data lap
        loss = supervised_loss(self.stepped, self.labeled, index, self.cache, self.loss_fn, self.cfg, self.gen)
        self.apply(loss, update_teacher=False)
        return clock.stop()

    def ssl_step(self, lab_index: torch.Tensor, unl_index: torch.Tensor) -> StepTime:
        clock = StepClock(self.device)
        lab, unl = take(self.labeled, lab_index), take(self.unlabeled, unl_index)
        clock.lap_data()
        loss, _ = ssl_loss(self.stepped, self.teacher, lab, unl, self.cache, self.loss_fn, self.cfg, self.weights,
                           self.gen, self.rng)
        self.apply(loss, update_teacher=True)
        return clock.stop()


class NaivePath(TrainedPath):
    """The naive path of `bench_naive`: PNG decode and per-sample views every step, the text encoder
    run every time, fp32 contiguous weights, 3 student and 2 teacher passes per SSL step."""

    def __init__(self, student: nn.Module, encoder: TextEncoder, lab_records: Sequence[SampleRecord],
                 unl_records: Sequence[SampleRecord], cfg: ExperimentConfig, device: torch.device,
                 seed: int) -> None:
        super().__init__(student, cfg, device, seed)
        self.encoder = encoder
        size, zoom = cfg.data.image_size, (cfg.ssl.zoom_min, cfg.ssl.zoom_max)
        views = {"zoom_prob": cfg.ssl.zoom_prob, "zoom_mode": cfg.ssl.zoom_mode, "shift": cfg.ssl.shift,
                 "strong": StrongViewSettings(clip=cfg.ssl.strong_clip)}
        self.lab_data = NaiveSampleDataset(lab_records, size, zoom, with_masks=True, with_strong=False, seed=seed,
                                           **views)
        self.unl_data = NaiveSampleDataset(unl_records, size, zoom, with_masks=False,
                                           with_strong=cfg.ssl.img_strong, seed=seed + 3, **views)

    def sup_step(self, index: torch.Tensor) -> StepTime:
        clock = StepClock(self.device)
        lab = naive_batch(self.lab_data, index.tolist(), self.device)
        clock.lap_data()
        self.apply(naive_sup_loss(self.student, self.encoder, lab, self.loss_fn), update_teacher=False)
        return clock.stop()

    def ssl_step(self, lab_index: torch.Tensor, unl_index: torch.Tensor) -> StepTime:
        clock = StepClock(self.device)
        lab = naive_batch(self.lab_data, lab_index.tolist(), self.device)
        unl = naive_batch(self.unl_data, unl_index.tolist(), self.device)
        clock.lap_data()
        loss, _ = naive_ssl_loss(self.student, self.teacher, self.encoder, lab, unl, self.loss_fn, self.cfg,
                                 self.weights, self.gen, self.rng)
        self.apply(loss, update_teacher=True)
        return clock.stop()


def contiguous_copy(model: nn.Module) -> nn.Module:
    """An independent copy of `model` with its weights in the default (NCHW) memory format."""
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


@dataclass
class StepRecord:
    """The timed iterations: per task one StepTime per iteration (aligned), and passes summed."""

    times: dict[str, list[StepTime]]
    passes: dict[str, dict[str, int]]
    steps: int

    def median(self, task: str, field_name: str = "total_s") -> float:
        return statistics.median(getattr(t, field_name) for t in self.times[task])

    def paired_ratio(self, numerator: str, denominator: str, field_name: str = "total_s") -> float:
        """Median over iterations of numerator / denominator, both timed in the same iteration."""
        pairs = zip(self.times[numerator], self.times[denominator], strict=True)
        return statistics.median(getattr(a, field_name) / getattr(b, field_name) for a, b in pairs)

    def data_share(self, task: str) -> float:
        return statistics.median(t.data_s / t.total_s for t in self.times[task] if t.data_s is not None)

    def passes_per_step(self, task: str) -> dict[str, float]:
        return {k: v / self.steps for k, v in self.passes[task].items()}


Task = Callable[[torch.Tensor, torch.Tensor], StepTime]


def interleaved_steps(tasks: dict[str, Task], counter: PassCounter, n_labeled: int, n_unlabeled: int, batch: int,
                      warmup: int, steps: int, seed: int) -> StepRecord:
    """Run every task once per iteration on the same batch indices, the order rotated each
    iteration; keep the `steps` iterations after `warmup`."""
    order_gen = torch.Generator().manual_seed(seed)
    names = list(tasks)
    record = StepRecord({n: [] for n in names}, {n: dict.fromkeys(counter.counts, 0) for n in names}, steps)
    for iteration in range(warmup + steps):
        lab_index = torch.randperm(n_labeled, generator=order_gen)[:batch]
        unl_index = torch.randperm(n_unlabeled, generator=order_gen)[:batch]
        shift = iteration % len(names)
        for name in names[shift:] + names[:shift]:
            before = counter.snapshot()
            step_time = tasks[name](lab_index, unl_index)
            if iteration >= warmup:
                record.times[name].append(step_time)
                for key, count in counter.snapshot().items():
                    record.passes[name][key] += count - before[key]
    return record
