"""`medref bench`: how fast the training steps run, and (with --compare naive) against a naive port.

One process, on synthetic data written to a temporary folder (or a given data folder). Measured:

- supervised step and semi-supervised step at equal batch (labeled batch = unlabeled batch);
- the teacher's forward pass alone;
- the data path in samples/s, cached and uncached (`medref_cli.bench.loader_bench`);
- text features for one SSL batch of captions with and without the TextFeatureCache;
- peak memory: the process's peak RSS, and on a GPU torch.cuda.max_memory_allocated; minor page
  faults per step (many means the C allocator maps fresh pages for every step's activations);
- on the CPU, the process's CPU time per step next to the wall time: with --threads 1 it is steadier
  than wall time on a shared machine; with more threads it includes OpenMP's spin-waiting, which
  grows when the machine is oversubscribed;
- the share of the SSL step spent getting its batch ready (data wait);
- forward passes per SSL step of the student, the teacher and the text encoder.

Steps are timed with the device synchronised, warm-up steps dropped, the median taken. Every
iteration runs each step once on the same batch indices (the order rotates every iteration), so
the steps see the same machine noise; ratios (ssl_over_sup, speedup_vs_naive) are the medians of
the per-iteration ratios. The cache is primed with every caption of the data and its two
PosAug variants before timing: the state a training run reaches within its first epoch.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from medref_cli.bench.bench_naive import check_naive_supported
from medref_cli.bench.bench_steps import (
    FastPath,
    NaivePath,
    PassCounter,
    contiguous_copy,
    interleaved_steps,
    synchronise,
    timed,
)
from medref_cli.bench.loader_bench import time_cached, time_naive
from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors, load_split
from medref_cli.data.records import SampleRecord
from medref_cli.data.views import normalise, to_unit
from medref_cli.errors import MedrefError
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.build import build_model, build_text, seed_everything
from medref_cli.runtime.device import resolve_device
from medref_cli.text.augment import posaug_variants
from medref_cli.training.ssl_step import teacher_probs

COMPARE_CHOICES = ("naive",)


@dataclass(frozen=True)
class BenchSettings:
    batch: int
    steps: int = 10
    warmup: int = 2
    compare: str | None = None  # None | "naive"
    data_root: Path | None = None
    threads: int = 0  # torch CPU threads during the run (0: leave torch's setting)


@dataclass
class BenchReport:
    device: str
    device_name: str
    backbone: str
    image_size: int
    batch: int
    steps: int
    warmup: int
    threads: int
    compiled: bool  # runtime.compile: the fast path's student under torch.compile
    cpu_count: int
    load_avg_1min: float  # the machine's load average when the bench started
    sup_step_s: float
    ssl_step_s: float
    ssl_over_sup: float
    teacher_forward_s: float
    data_wait_share: float
    text_cached_ms: float
    text_uncached_ms: float
    text_cache_hit_rate: float
    loader_samples_per_s: float
    naive_loader_samples_per_s: float
    peak_rss_mb: float
    peak_cuda_mb: float | None
    passes_per_ssl_step: dict[str, float]
    # CPU time of the process per step (CPU runs only; see the module docstring)
    sup_step_cpu_s: float | None
    ssl_step_cpu_s: float | None
    ssl_over_sup_cpu: float | None
    # minor page faults per step: high counts mean the allocator maps fresh memory every step
    sup_step_minor_faults: float
    ssl_step_minor_faults: float
    naive_sup_step_s: float | None = None
    naive_ssl_step_s: float | None = None
    speedup_vs_naive: float | None = None
    sup_speedup_vs_naive: float | None = None
    naive_data_wait_share: float | None = None
    naive_passes_per_ssl_step: dict[str, float] | None = None
    naive_ssl_step_cpu_s: float | None = None
    speedup_vs_naive_cpu: float | None = None

    def to_dict(self) -> dict:
        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        return {
            **asdict(self),
            "sup_images_per_s": self.batch / self.sup_step_s,
            "ssl_unlabeled_images_per_s": self.batch / self.ssl_step_s,
            "text_cache_speedup": ratio(self.text_uncached_ms, self.text_cached_ms),
            "loader_speedup": ratio(self.loader_samples_per_s, self.naive_loader_samples_per_s),
            "peak_mem_mb": self.peak_cuda_mb if self.peak_cuda_mb is not None else self.peak_rss_mb,
        }


# ----------------------------------------------------------------------------- data


def bench_records(cfg: ExperimentConfig, settings: BenchSettings, tmp: Path) -> list[SampleRecord]:
    """Train records of the given data folder, else of a synthetic set written under `tmp`."""
    from medref_cli.data.readers import read_dataset

    if settings.data_root is not None:
        return read_dataset(settings.data_root, cfg.data.format).get("train", [])
    from medref_cli.data.synthetic import split_sizes, write_synthetic_dataset

    wanted = 2 * max(2 * settings.batch, 16)
    n = wanted
    while split_sizes(n)["train"] < wanted:
        n += 1
    root = write_synthetic_dataset(tmp / "synthetic", n=n, seed=cfg.data.synthetic_seed,
                                   image_size=max(cfg.data.image_size, 32))
    return read_dataset(root, "qata")["train"]


def halves(records: list[SampleRecord], batch: int) -> tuple[list[SampleRecord], list[SampleRecord]]:
    """Disjoint labeled and unlabeled parts of max(4 x batch, 32) samples each (fewer if the data is
    smaller, but at least one batch)."""
    if len(records) < 2 * batch:
        raise MedrefError(f"the data has {len(records)} train samples; the bench needs 2 x --batch = {2 * batch}")
    half = min(len(records) // 2, max(4 * batch, 32))
    return records[:half], records[half: 2 * half]


def prime_cache(cache: TextFeatureCache, captions: list[str], cfg: ExperimentConfig) -> None:
    """Encode every caption and, with PosAug on, every text PosAug can make of it."""
    texts = list(dict.fromkeys(captions))
    if cfg.ssl.posaug:
        texts = [v for c in texts for v in posaug_variants(c, cfg.ssl.posaug_phrase)]
    cache.encode(list(dict.fromkeys(texts)))


# ----------------------------------------------------------------------------- single measurements


def median_time(device: torch.device, func: Callable[[], object], reps: int) -> float:
    func()  # warm-up
    return statistics.median(timed(device, func) for _ in range(reps))


def text_times(cache: TextFeatureCache, captions: list[str], device: torch.device, reps: int) -> tuple[float, float]:
    """(cached, uncached) milliseconds to get the text features of `captions`."""
    cached = median_time(device, lambda: cache.encode(captions), reps)
    uncached = median_time(device, lambda: cache.encoder.encode(captions), reps)
    return 1000 * cached, 1000 * uncached


def teacher_time(fast: FastPath, unlabeled: SplitTensors, index: torch.Tensor, reps: int) -> float:
    batch = fast.cache.encode([unlabeled.captions[i] for i in index.tolist()])
    images = normalise(to_unit(unlabeled.images[index.to(unlabeled.device)]))
    return median_time(fast.device, lambda: teacher_probs(fast.teacher, images, batch, fast.cfg), reps)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


# ----------------------------------------------------------------------------- the whole bench


def check_settings(settings: BenchSettings) -> None:
    if settings.batch < 2:
        raise MedrefError(f"--batch must be at least 2 (T-PatchMix pairs samples), got {settings.batch}")
    if settings.steps < 1 or settings.warmup < 0:
        raise MedrefError(f"--steps must be >= 1 and --warmup >= 0, got {settings.steps} and {settings.warmup}")
    if settings.threads < 0:
        raise MedrefError(f"--threads must be 0 (torch's default) or positive, got {settings.threads}")
    if settings.compare is not None and settings.compare not in COMPARE_CHOICES:
        raise MedrefError(f"--compare takes {', '.join(COMPARE_CHOICES)}, got {settings.compare!r}")


def run_bench(cfg: ExperimentConfig, settings: BenchSettings) -> BenchReport:
    """Everything in the module docstring, with torch limited to `settings.threads` (restored after)."""
    check_settings(settings)
    if settings.compare == "naive":
        check_naive_supported(cfg)
    device = resolve_device(cfg.runtime.device)
    from medref_cli.models.preflight import preflight

    preflight(cfg, device)  # both encoders loaded and run once before any image is made or decoded
    threads_before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="medref-bench-") as tmp:
            return _measure(cfg, settings, device, Path(tmp))
    finally:
        torch.set_num_threads(threads_before)


def _watch_passes(counter: PassCounter, encoder_model: torch.nn.Module, paths: list) -> None:
    counter.watch("text_encoder", encoder_model)
    for path in paths:
        counter.watch("student", path.student)
        if path.teacher is not path.student:
            counter.watch("teacher", path.teacher)


def _measure(cfg: ExperimentConfig, settings: BenchSettings, device: torch.device, tmp: Path) -> BenchReport:
    load = os.getloadavg()[0]
    seed = cfg.train.seed
    seed_everything(seed)
    records = bench_records(cfg, settings, tmp)
    lab_records, unl_records = halves(records, settings.batch)
    encoder, cache = build_text(cfg, device)
    labeled = load_split(lab_records, cfg.data.image_size).to(device)
    unlabeled = load_split(unl_records, cfg.data.image_size).to(device)
    prime_cache(cache, labeled.captions + unlabeled.captions, cfg)
    student = build_model(cfg, encoder.dim, device)
    naive_student = contiguous_copy(student) if settings.compare == "naive" else None
    fast = FastPath(student, cache, labeled, unlabeled, cfg, device, seed)
    tasks = {"sup": lambda li, ui: fast.sup_step(li), "ssl": fast.ssl_step}
    paths = [fast]
    if naive_student is not None:
        naive = NaivePath(naive_student, encoder, lab_records, unl_records, cfg, device, seed)
        tasks.update({"naive_sup": lambda li, ui: naive.sup_step(li), "naive_ssl": naive.ssl_step})
        paths.append(naive)
    counter = PassCounter()
    _watch_passes(counter, encoder.model, paths)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hits, misses = cache.hits, cache.misses
    steps = interleaved_steps(tasks, counter, len(labeled), len(unlabeled), settings.batch, settings.warmup,
                              settings.steps, seed)
    new_hits, new_misses = cache.hits - hits, cache.misses - misses
    counter.close()
    synchronise(device)
    peak_cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    reps = max(3, settings.steps)
    ssl_captions = labeled.captions[: settings.batch] + unlabeled.captions[: settings.batch]
    text_cached, text_uncached = text_times(cache, ssl_captions, device, reps)
    teacher_s = teacher_time(fast, unlabeled, torch.arange(settings.batch), reps)
    loader_cached = time_cached(unlabeled, settings.batch, settings.steps, seed)
    loader_naive = time_naive(lab_records + unl_records, cfg.data.image_size, settings.batch, settings.steps, seed)
    on_cpu = device.type == "cpu"
    report = BenchReport(
        device=str(device), device_name=device_name(device), backbone=cfg.model.backbone,
        image_size=cfg.data.image_size, batch=settings.batch, steps=settings.steps, warmup=settings.warmup,
        threads=torch.get_num_threads(), compiled=cfg.runtime.compile, cpu_count=os.cpu_count() or 1,
        load_avg_1min=load, sup_step_s=steps.median("sup"), ssl_step_s=steps.median("ssl"),
        ssl_over_sup=steps.paired_ratio("ssl", "sup"), teacher_forward_s=teacher_s,
        data_wait_share=steps.data_share("ssl"), text_cached_ms=text_cached, text_uncached_ms=text_uncached,
        text_cache_hit_rate=new_hits / max(1, new_hits + new_misses), loader_samples_per_s=loader_cached,
        naive_loader_samples_per_s=loader_naive, peak_rss_mb=peak_rss_mb(), peak_cuda_mb=peak_cuda,
        passes_per_ssl_step=steps.passes_per_step("ssl"),
        sup_step_cpu_s=steps.median("sup", "cpu_s") if on_cpu else None,
        ssl_step_cpu_s=steps.median("ssl", "cpu_s") if on_cpu else None,
        ssl_over_sup_cpu=steps.paired_ratio("ssl", "sup", "cpu_s") if on_cpu else None,
        sup_step_minor_faults=steps.median("sup", "minor_faults"),
        ssl_step_minor_faults=steps.median("ssl", "minor_faults"),
    )  # fmt: skip
    if naive_student is not None:
        report.naive_sup_step_s = steps.median("naive_sup")
        report.naive_ssl_step_s = steps.median("naive_ssl")
        report.speedup_vs_naive = steps.paired_ratio("naive_ssl", "ssl")
        report.sup_speedup_vs_naive = steps.paired_ratio("naive_sup", "sup")
        report.naive_data_wait_share = steps.data_share("naive_ssl")
        report.naive_passes_per_ssl_step = steps.passes_per_step("naive_ssl")
        if on_cpu:
            report.naive_ssl_step_cpu_s = steps.median("naive_ssl", "cpu_s")
            report.speedup_vs_naive_cpu = steps.paired_ratio("naive_ssl", "ssl", "cpu_s")
    return report
