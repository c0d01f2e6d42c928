"""One rank of a 2-process gloo run of ONE training step (run by test_distributed.py).

argv: WORKDIR. Reads WORKDIR/spec.pt (config sets, model state, batch indices, data root),
joins the process group from the torchrun variables, computes its shard of the step through
the training code (DDP-wrapped student), and writes WORKDIR/out.RANK.pt: the loss parts averaged
over the ranks and the student's gradients after backward.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

from medref_cli.bench.bench_steps import full_weights
from medref_cli.config import load_config
from medref_cli.data.cache import load_split
from medref_cli.data.readers import read_dataset
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.runtime import distributed
from medref_cli.runtime.batches import take
from medref_cli.runtime.build import build_model, build_text
from medref_cli.runtime.step_model import step_model
from medref_cli.training.ema import EMATeacher
from medref_cli.training.ssl_step import ssl_loss
from medref_cli.training.supervised import supervised_loss, validation_scores


def one_step(spec: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(loss parts, gradients) of one step on the global batch of `spec`, this rank's share."""
    cfg = load_config(None, sets=spec["sets"])
    device = torch.device("cpu")
    records = read_dataset(Path(spec["data"]))["train"]
    labeled = load_split(records[:8], cfg.data.image_size)
    unlabeled = load_split(records[8:16], cfg.data.image_size)
    _, cache = build_text(cfg, device)
    student = build_model(cfg, cache.encoder.dim, device)
    student.load_state_dict(spec["state"])
    student.train()
    teacher = EMATeacher(student).model
    stepped = step_model(student, device, uses_embed=spec["kind"] == "ssl" and cfg.ssl.contrastive != "none",
                         compile_model=False)
    gen = torch.Generator().manual_seed(5)
    if spec["kind"] == "val":  # validation scores, each rank scoring its share of a 16-image split
        dice, iou = validation_scores(student, load_split(records[:16], cfg.data.image_size), cache, cfg)
        return {"dice": torch.tensor(dice, dtype=torch.float64), "iou": torch.tensor(iou, dtype=torch.float64)}, {}
    if spec["kind"] == "ssl":
        lab = take(labeled, distributed.shard(spec["labeled"]))
        unl = take(unlabeled, distributed.shard(spec["unlabeled"]))
        loss, parts = ssl_loss(stepped, teacher, lab, unl, cache, DiceCELoss(), cfg, full_weights(cfg), gen,
                               random.Random(9))
    else:
        loss = supervised_loss(stepped, labeled, spec["labeled"], cache, DiceCELoss(), cfg, gen)
        parts = {"loss": loss.detach()}
    loss.backward()
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    return distributed.mean_over_ranks(parts), grads


def main(workdir: Path) -> None:
    spec = torch.load(workdir / "spec.pt", weights_only=False)
    dist = distributed.start(torch.device("cpu"))
    try:
        parts, grads = one_step(spec)
        torch.save({"parts": parts, "grads": grads}, workdir / f"out.{dist.rank}.pt")
    finally:
        distributed.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
