"""Probability maps of recorded runs on chosen samples of a split (for the qualitative figure).

Every run's model comes from its recorded checkpoint (sha256-verified); the samples come from
the data folder the first run was trained on, decoded at its image size. Nothing is recorded
and nothing is written (no tensor cache either).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medref_cli.data.cache import SplitTensors, load_split
from medref_cli.data.records import SampleRecord
from medref_cli.errors import MedrefError
from medref_cli.evaluation.evaluate_run import LoadedModel, checkpoint_of_run, load_model
from medref_cli.ledger import Ledger
from medref_cli.runtime.batches import sequential_batches
from medref_cli.runtime.scoring import predict_probs

PREDICT_BATCH = 8


@dataclass
class RunProbabilities:
    run_id: int
    threshold: float  # the run's eval.threshold
    probs: np.ndarray  # (N, S, S) float32, in the order of SplitPredictions.ids

    def masks(self) -> np.ndarray:
        """(N, S, S) bool: the probabilities cut at the run's threshold."""
        return self.probs > self.threshold


@dataclass
class SplitPredictions:
    ids: list[str]
    captions: list[str]
    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool, the ground truth
    runs: list[RunProbabilities]  # in the order of the run ids asked for


def load_recorded_model(ledger: Ledger, run_id: int, device: torch.device) -> LoadedModel:
    path, sha = checkpoint_of_run(ledger, run_id)
    return load_model(path, sha, device, run_id)


def split_records(loaded: LoadedModel, split: str) -> list[SampleRecord]:
    """The samples of `split` in the data folder the model's recorded config names."""
    from medref_cli.data.registry import resolve_dataset
    from medref_cli.runtime.build import read_records

    cfg = loaded.cfg
    ref = resolve_dataset(cfg.data, cfg.runtime.results_dir, create=False)
    records = read_records(cfg, ref.root).get(split) or []
    if not records:
        raise MedrefError(f"no {split} samples in {ref.root} (the data run {loaded.source_run} was trained on)")
    return records


def run_probabilities(loaded: LoadedModel, tensors: SplitTensors, device: torch.device) -> RunProbabilities:
    from medref_cli.runtime.build import build_text

    cfg = loaded.cfg
    encoder, cache = build_text(cfg, device, loaded.weights or {})
    if encoder.dim != loaded.model.text_dim:
        raise MedrefError(f"run {loaded.source_run}: text encoder {cfg.model.text_encoder} is {encoder.dim} wide, "
                          f"the model expects {loaded.model.text_dim}")
    on_device = tensors.to(device)
    parts = [predict_probs(loaded.model, on_device, index, cache, cfg.runtime.amp)[:, 0].cpu()
             for index in sequential_batches(len(tensors), PREDICT_BATCH)]
    return RunProbabilities(int(loaded.source_run), float(cfg.eval.threshold), torch.cat(parts).numpy())


def predict_split(
    ledger: Ledger,
    run_ids: Sequence[int],
    choose: Callable[[list[str]], list[str]],
    split: str = "test",
    device: torch.device | None = None,
) -> SplitPredictions:
    """Probabilities of each run on the samples `choose(sorted ids of the split)` picks."""
    if not run_ids:
        raise MedrefError("no runs to predict with")
    device = device or torch.device("cpu")
    first = load_recorded_model(ledger, run_ids[0], device)
    size = first.cfg.data.image_size
    by_id = {r.id: r for r in split_records(first, split)}
    chosen = choose(sorted(by_id))
    unknown = [i for i in chosen if i not in by_id]
    if unknown or not chosen:
        raise MedrefError(f"samples not in the {split} split: {', '.join(unknown) or 'none chosen'}")
    tensors = load_split([by_id[i] for i in chosen], size, cache_dir=None)
    runs = [run_probabilities(first, tensors, device)]
    del first
    for run_id in run_ids[1:]:
        loaded = load_recorded_model(ledger, run_id, device)  # one model in memory at a time
        if loaded.cfg.data.image_size != size:
            raise MedrefError(f"run {run_id} works at {loaded.cfg.data.image_size} px, run {run_ids[0]} at {size} px; "
                              "a qualitative figure needs one image size")
        runs.append(run_probabilities(loaded, tensors, device))
    return SplitPredictions(list(tensors.ids), list(tensors.captions), tensors.images[:, 0].numpy(),
                            tensors.masks[:, 0].numpy() > 0, runs)
