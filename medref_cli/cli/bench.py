"""`medref bench`: seconds per training step, the data path, text caching and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.burnin import BackboneOpt, CompileOpt, CpuOpt, GpuOpt
from medref_cli.cli.common import ConfigOpt, JsonOpt, SetOpt, build_config, device_override

NAIVE_HELP = (
    "naive: alternate every step with a naive port of the same step: PNG decode and per-sample CPU views "
    "every step (Dataset items collated as a DataLoader without workers does), the text encoder re-run on "
    "every caption list (no cache), fp32 without channels_last, and per SSL step 3 student passes (labeled; "
    "unlabeled mixed; unlabeled weak view for ITCL), 2 teacher passes (the unlabeled weak view; the T-PatchMix partners' "
    "weak view) and 5 text-encoder runs, the call pattern DESIGN.md records for the public reference. "
    "Same augmentations and loss terms as the fast step."
)


def bench(
    config: ConfigOpt = None,
    backbone: BackboneOpt = None,
    size: Annotated[int | None, typer.Option("--size", help="Image side in pixels (data.image_size).")] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="Labeled batch = unlabeled batch (default train.batch_size).", show_default=False),
    ] = None,
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    steps: Annotated[int, typer.Option("--steps", help="Timed steps per path (the median is reported).")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed steps first.")] = 2,
    compare: Annotated[str | None, typer.Option("--compare", help=NAIVE_HELP, show_default=False)] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Data folder to read (default: synthetic data in a temp folder).",
                     show_default=False),
    ] = None,
    threads: Annotated[
        int, typer.Option("--threads", help="torch CPU threads (0 = torch's default); 1 is steadier on a busy machine.")
    ] = 0,
    compile_: CompileOpt = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
) -> None:
    """Time the supervised and semi-supervised steps at equal batch (synchronised, warm-up dropped,
    median), the teacher forward, the data path, text caching and peak memory; --compare naive
    interleaves a naive port of the same steps and prints the ratios."""
    import json

    from medref_cli.bench.bench import BenchSettings, run_bench

    cfg = build_config(
        config,
        set_,
        **{"model.backbone": backbone, "data.image_size": size, "runtime.device": device_override(gpu, cpu),
           "runtime.compile": compile_},
    )
    settings = BenchSettings(batch=cfg.train.batch_size if batch is None else batch, steps=steps,
                             warmup=warmup, compare=compare, data_root=data, threads=threads)
    report = run_bench(cfg, settings).to_dict()
    if json_:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(render_text(report))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _passes(passes: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in passes.items())


def _cpu_time(r: dict, step_key: str, ratio: str) -> str:
    if r[step_key] is None:
        return ""
    return f"; CPU time {r[step_key]:.3f} s, ratio {r[ratio]:.2f}"


def render_text(r: dict) -> str:
    head = (f"{r['backbone']} at {r['image_size']} px, batch {r['batch']} labeled + {r['batch']} unlabeled, "
            f"{r['steps']} timed steps (+{r['warmup']} warm-up), {r['device']} ({r['device_name']}), "
            f"{r['threads']} CPU thread(s); ratios are medians of per-iteration ratios")
    ssl = (f"{r['ssl_step_s']:8.3f} s  ({r['ssl_unlabeled_images_per_s']:.1f} unlabeled images/s), "
           f"x{r['ssl_over_sup']:.2f} the supervised step{_cpu_time(r, 'ssl_step_cpu_s', 'ssl_over_sup_cpu')}")
    text = (f"{r['text_cached_ms']:8.2f} ms cached vs {r['text_uncached_ms']:.2f} ms encoded "
            f"(x{_fmt(r['text_cache_speedup'], '.1f')}; cache hit rate {100 * r['text_cache_hit_rate']:.1f} % "
            "during the steps)")
    data = (f"{r['loader_samples_per_s']:8.0f} samples/s cached vs {r['naive_loader_samples_per_s']:.0f} "
            f"uncached (x{_fmt(r['loader_speedup'], '.1f')})")
    faults = f"{r['sup_step_minor_faults']:8.0f} per supervised step, {r['ssl_step_minor_faults']:.0f} per SSL step"
    memory = f"{r['peak_mem_mb']:8.0f} MB ({'CUDA allocated' if r['peak_cuda_mb'] is not None else 'RSS'})"
    rows = [
        ("supervised step", f"{r['sup_step_s']:8.3f} s  ({r['sup_images_per_s']:.1f} images/s)"),
        ("semi-supervised step", ssl),
        ("teacher forward", f"{r['teacher_forward_s']:8.3f} s"),
        ("data wait", f"{100 * r['data_wait_share']:7.1f} % of the SSL step"),
        ("text features", text),
        ("data path", data),
        ("peak memory", memory),
        ("minor page faults", faults),
        ("passes per SSL step", _passes(r["passes_per_ssl_step"])),
    ]
    if r["naive_ssl_step_s"] is not None:
        naive_ssl = (f"{r['naive_ssl_step_s']:8.3f} s  -> fast is x{r['speedup_vs_naive']:.2f}"
                     f"{_cpu_time(r, 'naive_ssl_step_cpu_s', 'speedup_vs_naive_cpu')}")
        rows += [
            ("naive supervised", f"{r['naive_sup_step_s']:8.3f} s  -> fast is x{r['sup_speedup_vs_naive']:.2f}"),
            ("naive semi-sup.", naive_ssl),
            ("naive data wait", f"{100 * r['naive_data_wait_share']:7.1f} % of the SSL step"),
            ("naive passes", _passes(r["naive_passes_per_ssl_step"])),
        ]
    lines = [head] + [f"  {label:<21}{value}" for label, value in rows]
    if r["device"] == "cpu" and r["threads"] > 1 and r["load_avg_1min"] >= r["cpu_count"]:
        lines.append(f"note: the machine was busy (load {r['load_avg_1min']:.1f} on {r['cpu_count']} cores); "
                     "torch's threads spin-wait for each other then, --threads 1 gives steadier figures")
    return "\n".join(lines)
