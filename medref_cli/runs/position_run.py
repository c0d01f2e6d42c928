"""`medref position train --run RUN`: ISPG's image-only position predictor on a recorded run's encoder.

The parent is a finished `burnin` or `train` run; its checkpoint (checked against its sha256)
gives the visual encoder (`position.weights`: student or teacher), its recorded config gives the
data, split, backbone, image size, laterality and weak zoom, and the data must still hash as it
did. Only `position.*` and `runtime.*` settings may be given: everything else is the parent's.
Everything that can fail on the user's input (unknown run, a run without a visual encoder, data
changed, a key outside those sections) fails before the ledger row is written.

The run (kind `position`, child of the parent) records the resolved config, the fit's metric
history (train loss and its terms per logged step; per epoch the validation mAP, macro-F1, exact
match, both learning rates and the trainable parameter count), the selected checkpoint
(`results/runs/<id>/position.pt`) and the selected epoch's validation scores as final metrics.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from medref_cli.config import ExperimentConfig, from_dict
from medref_cli.config.loader import parse_set
from medref_cli.data.cache import SplitTensors, load_split
from medref_cli.data.split_run import DataIdentity, identify_data, planned_split
from medref_cli.errors import MedrefError
from medref_cli.evaluation.evaluate_run import checkpoint_of_run
from medref_cli.ledger import Ledger, Run, get_run, open_ledger, record_run
from medref_cli.runs.resume_run import check_results_room, run_dir
from medref_cli.runtime.build import read_records, seed_everything, tensor_cache_dir
from medref_cli.runtime.checkpoint import load_checkpoint, save_checkpoint
from medref_cli.runtime.device import resolve_device
from medref_cli.runtime.position import POSITION_KIND, position_checkpoint_state, predictor_from_segmentation
from medref_cli.runtime.position_metrics import defined
from medref_cli.training.position_fit import PositionFit, fit_position

PARENT_KINDS = ("burnin", "train")
FREE_SECTIONS = ("position", "runtime")


@dataclass
class PositionOutcome:
    run_id: int
    parent_id: int
    checkpoint: Path
    fit: PositionFit

    def summary(self) -> dict:
        return {"run_id": self.run_id, "parent": self.parent_id, "checkpoint": str(self.checkpoint),
                "best_epoch": self.fit.best_epoch, "steps": self.fit.steps,
                **{f"val_{k}": v for k, v in defined(self.fit.best_val).items()}}


def check_free_keys(sets: list[str] | None) -> None:
    for key in parse_set(list(sets or ())):
        if key.split(".", 1)[0] not in FREE_SECTIONS:
            raise MedrefError(f"--set {key}: `position train` takes everything but position.* and runtime.* from "
                              "the parent run")


def position_config(parent: Run, given: ExperimentConfig) -> ExperimentConfig:
    """The parent's recorded config with the given position and runtime sections."""
    recorded = from_dict(parent.config)
    return dataclasses.replace(recorded, position=given.position, runtime=given.runtime)


def parent_checkpoint(ledger: Ledger, run_id: int) -> tuple[Run, Path, str]:
    run = get_run(ledger, run_id)
    if run.kind not in PARENT_KINDS:
        raise MedrefError(f"run {run_id} is a {run.kind} run, which holds no visual encoder: `position train` needs a "
                          "burnin or train run")
    if run.status != "finished":
        raise MedrefError(f"run {run_id} ({run.kind}) is {run.status}: its checkpoint is not final")
    try:
        path, sha = checkpoint_of_run(ledger, run_id)
    except MedrefError:
        raise MedrefError(f"run {run_id} ({run.kind}) recorded no checkpoint, so no visual encoder") from None
    return run, path, sha


def training_splits(cfg: ExperimentConfig, parent: Run, data: DataIdentity) -> tuple[SplitTensors, SplitTensors]:
    """(train, valid) images and labels of the parent's data and split, checked to be what it trained on."""
    if parent.data_hash and data.tree.digest != parent.data_hash:
        raise MedrefError(f"the data at {data.ref.root} changed since run {parent.id} trained on it "
                          f"(content hash {data.tree.digest[:12]}... != {parent.data_hash[:12]}...)")
    manifest, _, _ = planned_split(cfg, data)
    if parent.split_hash and manifest.sha256 != parent.split_hash:
        raise MedrefError(f"the split manifest of run {parent.id} is not the one it trained on")
    records = read_records(cfg, data.ref.root)
    by_id = {r.id: r for r in records.get("train", [])}
    ids = list(manifest.labeled) + (list(manifest.unlabeled) if cfg.position.train_split == "train" else [])
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise MedrefError(f"the split of run {parent.id} names {len(missing)} ids not in the data (e.g. {missing[0]})")
    if not records.get("valid"):
        raise MedrefError(f"the data set at {data.ref.root} has no valid split to select the predictor on")
    cache = tensor_cache_dir(cfg)
    return (load_split([by_id[i] for i in ids], cfg.data.image_size, cache_dir=cache),
            load_split(records["valid"], cfg.data.image_size, cache_dir=cache))


def epoch_reporter(cfg: ExperimentConfig, run_id: int):
    """One line on stderr per epoch when runtime.progress is on (stdout stays clean for --json)."""
    if not cfg.runtime.progress:
        return None

    def report(epoch: int, v: dict[str, float]) -> None:
        print(f"position run {run_id} epoch {epoch + 1}/{cfg.position.epochs}: train loss {v['train_loss']:.4f}  "
              f"val mAP {v['val_mAP']:.4f}  macro-F1 {v['val_macro_f1']:.4f}  (best mAP {v['best_mAP']:.4f} at "
              f"epoch {v['best_epoch']})", file=sys.stderr, flush=True)

    return report


def train_position(ledger_url: str, parent_id: int, given: ExperimentConfig, sets: list[str] | None
                   ) -> PositionOutcome:
    """Train, select and record a position predictor on run `parent_id`'s visual encoder."""
    check_free_keys(sets)
    device = resolve_device(given.runtime.device)
    ledger = open_ledger(ledger_url, create=False)
    try:
        parent, path, sha = parent_checkpoint(ledger, parent_id)
        cfg = position_config(parent, given)
        state = load_checkpoint(path, sha, map_location="cpu")
        seed_everything(cfg.train.seed)
        model = predictor_from_segmentation(cfg, state, path)
        data = identify_data(cfg)
        train, valid = training_splits(cfg, parent, data)
        check_results_room(cfg, model)
        model = model.to(device)
        tags = {"parent_checkpoint": str(path.resolve()), "parent_checkpoint_sha256": sha,
                "encoder_weights": cfg.position.weights, "laterality": cfg.data.laterality,
                "n_train": len(train), "n_valid": len(valid)}
        with record_run(ledger, POSITION_KIND, cfg, parent_id=parent.id, **data.ledger_facts(),
                        split_hash=parent.split_hash, split_path=parent.split_path, tags=tags,
                        weights=(parent.tags or {}).get("weights")) as run:
            fit = fit_position(model, train.to(device), valid.to(device), cfg, run.log_metrics,
                               epoch_reporter(cfg, run.id))
            best = {"best_epoch": fit.best_epoch, "val_mAP": fit.best_val["mAP"], "parent_run": parent.id,
                    "parent_checkpoint_sha256": sha, "pos_weight": fit.pos_weight}
            out = run_dir(cfg, run.id) / "position.pt"
            digest = save_checkpoint(out, position_checkpoint_state(cfg, int(state["text_dim"]), model, best))
            run.add_artifact(out, role="checkpoint", sha256=digest)
            run.merge_tags(pos_weight=fit.pos_weight, trainable_by_epoch=fit.trainable_by_epoch)
            run.set_final({**{f"val_{k}": v for k, v in defined(fit.best_val).items()},
                           "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "steps": fit.steps})
        return PositionOutcome(run.id, parent.id, out, fit)
    finally:
        ledger.dispose()
