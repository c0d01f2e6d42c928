"""The views figure (`medref report --figure views --runs RUN`): what one semi-supervised step of a
recorded run feeds its student, to look at what T-PatchMix (or CutMix, SPC) and PosAug did.

One unlabeled-size batch is taken: the first B ids of the train split in sorted order, B = the run's
unlabeled batch size (`train.unlabeled_batch_size`, else `train.batch_size`). The run's recorded
model plays the teacher, its config's switches make the views (`medref_cli.training.ssl_step`:
weak view, teacher pseudo-mask, strong view, student text and pseudo-mask), and every random draw
comes from generators seeded with the run's seed, so one run always gives the same figure. Rows:
the samples the mixing changed first, then those whose text changed, then the rest, each group in
batch order, up to N; the title gives the batch's shares (as the run logs them: `mixed`, `text
changed`). Nothing is recorded and nothing but the figure is written.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.reports.figure_request import FigureRequest, image_format
from medref_cli.reports.qualitative import draw_grid, wrapped_caption

if TYPE_CHECKING:
    import torch

COLUMNS = ("weak view (teacher)", "teacher pseudo-mask", "strong view (student)", "student pseudo-mask")


@dataclass
class StepViews:
    ids: list[str]
    captions: list[str]  # the recorded captions (the teacher's text)
    weak: torch.Tensor  # (B, 1, S, S) float, the standardised weak view
    teacher_pseudo: torch.Tensor  # (B, 1, S, S) float 0/1: the teacher's probabilities cut at ssl.threshold
    strong: torch.Tensor  # (B, 1, S, S) float, the student's input
    student_pseudo: torch.Tensor  # (B, 1, S, S) float 0/1, the student's target
    student_captions: list[str]
    mixed: list[bool]  # the mixing changed the sample (T-PatchMix kept a block, CutMix pasted, SPC flipped)

    @property
    def text_changed(self) -> list[bool]:
        return [a != b for a, b in zip(self.student_captions, self.captions, strict=True)]


def step_views(loaded, tensors, seed: int) -> StepViews:
    """One step's views of every sample of `tensors` (a SplitTensors on the CPU) under `loaded`'s config."""
    import torch

    from medref_cli.runtime.batches import take
    from medref_cli.runtime.build import build_text
    from medref_cli.training.ssl_step import student_view, teacher_probs, weak_views

    cfg = loaded.cfg
    _encoder, cache = build_text(cfg, torch.device("cpu"), loaded.weights or {})
    batch = take(tensors, torch.arange(len(tensors)))
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    _, _, weak = weak_views(None, batch, cfg, gen)
    text = cache.encode(batch.captions)
    if cfg.model.soft_position:
        text = text.with_positions(batch.labels.float())
    probs = teacher_probs(loaded.model, weak, text, cfg).clone()
    view = student_view(batch, weak, probs, cfg, gen, rng)
    return StepViews(list(tensors.ids), list(batch.captions), weak, (probs >= cfg.ssl.threshold).float(),
                     view.images, view.pseudo, view.captions, [bool(m) for m in view.mixed.tolist()])


def row_order(mixed: Sequence[bool], changed: Sequence[bool], n: int) -> list[int]:
    """Up to `n` batch positions: mixed first, then text changed, then the rest, each in batch order."""
    rank = [0 if m else 1 if c else 2 for m, c in zip(mixed, changed, strict=True)]
    return sorted(range(len(rank)), key=lambda i: (rank[i], i))[:n]


def _display(image: torch.Tensor):
    """A standardised (1, S, S) view scaled to 0..1 by its own min and max, as a numpy array."""
    x = image[0].float()
    low, high = float(x.min()), float(x.max())
    return ((x - low) / (high - low) if high > low else x * 0.0).numpy()


def _caption(views: StepViews, i: int) -> str:
    marks = [m for m, on in (("mixed", views.mixed[i]), ("text changed", views.text_changed[i])) if on]
    teacher = wrapped_caption(f"{views.ids[i]} teacher", views.captions[i], len(COLUMNS))
    student = wrapped_caption(f"student{' (' + ', '.join(marks) + ')' if marks else ''}", views.student_captions[i],
                              len(COLUMNS))
    return f"{teacher}\n{student}"


def plot_views(ledger: Ledger, request: FigureRequest) -> Path:
    import torch

    from medref_cli.data.cache import load_split
    from medref_cli.evaluation.predict_split import load_recorded_model, split_records

    if len(request.run_ids) != 1:
        raise MedrefError("--figure views takes one run, e.g. --runs 3")
    if request.n < 1:
        raise MedrefError(f"--n must be at least 1, got {request.n}")
    fmt = image_format(request.out)
    (run_id,) = request.run_ids
    loaded = load_recorded_model(ledger, run_id, torch.device("cpu"))
    cfg = loaded.cfg
    records = sorted(split_records(loaded, "train"), key=lambda r: r.id)
    size = cfg.train.unlabeled_batch_size or cfg.train.batch_size
    tensors = load_split(records[:size], cfg.data.image_size, cache_dir=None)
    views = step_views(loaded, tensors, cfg.train.seed)
    order = row_order(views.mixed, views.text_changed, request.n)
    rows = [[_display(views.weak[i]), views.teacher_pseudo[i, 0].numpy(), _display(views.strong[i]),
             views.student_pseudo[i, 0].numpy()] for i in order]
    b = len(views.ids)
    title = (f"run {run_id}: one SSL step's views of {b} train images (seed {cfg.train.seed}, mix {cfg.ssl.mix}, "
             f"PosAug {'on' if cfg.ssl.posaug else 'off'}): mixed {sum(views.mixed)}/{b}, "
             f"text changed {sum(views.text_changed)}/{b}")
    draw_grid(rows, COLUMNS, [_caption(views, i) for i in order], [1.0] * len(COLUMNS), request.out, fmt,
              caption_lines=2, title=title)
    return request.out
