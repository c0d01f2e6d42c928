"""`medref evaluate`: re-evaluate a recorded model (or a checkpoint file) on a split, recorded.

The model comes from a run's recorded checkpoint (verified against its sha256) or from a file;
its own recorded config rebuilds the network and the text encoder. `--data` evaluates it on
another data folder (any supported layout), e.g. a model trained elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medref_cli.config import ExperimentConfig, from_dict
from medref_cli.errors import MedrefError
from medref_cli.evaluation.evaluate import EvalResult, evaluate_split
from medref_cli.evaluation.text_inputs import TextModeRequest, check_model_takes, constant_pool, mode_inputs
from medref_cli.ledger import Ledger, open_ledger, record_run
from medref_cli.runtime.checkpoint import load_checkpoint


@dataclass
class LoadedModel:
    cfg: ExperimentConfig
    model: nn.Module
    source_run: int | None
    checkpoint: Path
    weights: dict | None = None  # the encoders' identity recorded at training (None: an older checkpoint)
    # which model's weights: student | teacher (what the selection kept, when "selected" was asked for)
    evaluated: str = "student"


def checkpoint_of_run(ledger: Ledger, run_id: int) -> tuple[Path, str]:
    """The checkpoint artifact a run recorded (the last one) and its sha256."""
    from medref_cli.ledger import run_detail

    detail = run_detail(ledger, run_id)
    checkpoints = [a for a in detail["artifacts"] if a["role"] == "checkpoint"]
    if not checkpoints:
        raise MedrefError(f"run {run_id} ({detail['kind']}, {detail['status']}) recorded no checkpoint")
    return Path(checkpoints[-1]["path"]), checkpoints[-1]["sha256"]


WEIGHTS = ("selected", "student", "teacher")


def chosen_weights(state: dict, weights: str, path: Path) -> tuple[dict, str]:
    """The model state `weights` names in a checkpoint, and what it is: "selected" = the weights the
    run's selection rule kept (ssl.select; the student by default, which is what the reference
    evaluates), "student" / "teacher" = that model at the selected validation (train runs keep both)."""
    if weights not in WEIGHTS:
        raise MedrefError(f"--weights must be one of {', '.join(WEIGHTS)}, got '{weights}'")
    if weights == "selected":
        return state["model"], str(state.get("selected", "student"))
    kept = state.get("student_teacher") or {}
    if weights not in kept:
        has = ", ".join(sorted(kept)) or "only its selected weights"
        raise MedrefError(f"{path} keeps no {weights} weights (it has {has}); a train run keeps both")
    return kept[weights], weights


def load_model(path: Path, sha256: str | None, device: torch.device, source_run: int | None,
               weights: str = "selected") -> LoadedModel:
    from medref_cli.models.preflight import without_visual_download
    from medref_cli.models.registry import create_model

    state = load_checkpoint(path, sha256, map_location="cpu")
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise MedrefError(f"{path} is not a medref checkpoint (no model state and config in it)")
    cfg = from_dict(state["config"])
    model_state, which = chosen_weights(state, weights, path)
    model = create_model(without_visual_download(cfg.model), int(state["text_dim"]))  # every weight is in `state`
    model.load_state_dict(model_state)
    return LoadedModel(cfg, model.to(device).eval(), source_run, path, state.get("weights"), which)


def with_data(cfg: ExperimentConfig, data_root: Path | None, dataset: str | None, results_dir: str,
              device: str) -> ExperimentConfig:
    """The recorded config, pointed at another data folder and this machine's runtime."""
    data = cfg.data
    if data_root is not None:
        data = dataclasses.replace(data, root=str(data_root), dataset=dataset or "custom", format="auto")
    elif dataset is not None:
        data = dataclasses.replace(data, dataset=dataset, root="")
    runtime = dataclasses.replace(cfg.runtime, results_dir=results_dir, device=device)
    return dataclasses.replace(cfg, data=data, runtime=runtime)


def evaluate_recorded(
    ledger_url: str,
    run_id: int | None,
    checkpoint: Path | None,
    split: str,
    data_root: Path | None,
    dataset: str | None,
    results_dir: str,
    device_spec: str,
    batch_size: int | None = None,
    weights: str = "selected",
    text: TextModeRequest | None = None,
) -> tuple[int, EvalResult]:
    """Evaluate and record an `evaluate` run (child of the source run). Returns (run id, result).

    `text`: the captions the model is given (`medref evaluate --text-mode`; default: the recorded ones),
    recorded in the run's tags (text_mode, removal_rate, text_seed, position_run)."""
    from medref_cli.data.cache import load_split
    from medref_cli.data.split_run import identify_data
    from medref_cli.runtime.build import build_text, read_records, tensor_cache_dir
    from medref_cli.runtime.device import resolve_device

    text = text or TextModeRequest()
    if (run_id is None) == (checkpoint is None):
        raise MedrefError("give either a RUN_ID or --checkpoint PATH")
    if weights not in WEIGHTS:
        raise MedrefError(f"--weights must be one of {', '.join(WEIGHTS)}, got '{weights}'")
    device = resolve_device(device_spec)
    ledger = open_ledger(ledger_url, create=run_id is None)
    try:
        path, sha = checkpoint_of_run(ledger, run_id) if run_id is not None else (checkpoint, None)
        loaded = load_model(Path(path), sha, device, run_id, weights)
        takes_positions = bool(getattr(loaded.model, "takes_positions", False))
        check_model_takes(text, takes_positions, f"run {run_id}" if run_id is not None else str(path))
        cfg = with_data(loaded.cfg, data_root, dataset, results_dir, device_spec)
        if split not in ("train", "valid", "test"):
            raise MedrefError(f"--split must be train, valid or test, got '{split}'")
        encoder, cache = build_text(cfg, device, loaded.weights or {})
        if encoder.dim != loaded.model.text_dim:
            raise MedrefError(f"text encoder {cfg.model.text_encoder} is {encoder.dim} wide, the model expects "
                              f"{loaded.model.text_dim}")
        data = identify_data(cfg)
        by_split = read_records(cfg, data.ref.root)
        records = by_split.get(split) or []
        if not records:
            raise MedrefError(f"no {split} samples in {data.ref.root}")
        predicted = None
        if text.mode == "soft_image":
            from medref_cli.evaluation.position_probs import predict_position_probs

            predicted = predict_position_probs(text.position_run, records, ledger_url=ledger_url, device=device_spec)
        tensors = load_split(records, cfg.data.image_size, cache_dir=tensor_cache_dir(cfg))
        inputs = mode_inputs(text, tensors.ids, tensors.captions, tensors.labels, constant_pool(by_split, split),
                             takes_positions, predicted)
        tensors = dataclasses.replace(tensors, captions=inputs.captions).to(device)
        batch = batch_size or cfg.train.batch_size
        with record_run(ledger, "evaluate", cfg, parent_id=run_id, **data.ledger_facts(),
                        tags={"split": split, "checkpoint": str(Path(path).resolve()),
                              "evaluated_weights": loaded.evaluated, "weights_asked": weights, **inputs.tags},
                        weights={**(loaded.weights or {}), "text": encoder.identity}) as run:
            result = evaluate_split(loaded.model, tensors, cache, cfg.eval.threshold, batch, cfg.runtime.amp,
                                    channels_last=False, positions=inputs.positions)
            run.add_image_scores(split, result.ids, result.dice, result.iou)
            run.set_final(result.prefixed(split))
        return run.id, result
    finally:
        ledger.dispose()
