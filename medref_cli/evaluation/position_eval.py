"""`medref position eval`: a recorded position predictor scored on one split, recorded as a run.

The run (kind `position_eval`, child of the position run) holds the split's mAP, macro- and
micro-F1, exact match, Hamming accuracy, sample Jaccard and per-zone AP / F1 / prevalence as final
metrics named `<split>_<metric>` (a zone without a positive image has no AP, and none is recorded), and per image the label, the six probabilities, the Jaccard and
the exact match (the ledger's `position_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.evaluation.position_probs import POSITION_EVAL_KIND, position_checkpoint
from medref_cli.ledger import open_ledger, record_run
from medref_cli.runtime.position_metrics import defined, multilabel_metrics, per_image_scores

SPLITS = ("train", "valid", "test")


@dataclass
class PositionEval:
    run_id: int
    split: str
    metrics: dict[str, float]


def evaluate_position(ledger_url: str, run_id: int, split: str, results_dir: str, device_spec: str,
                      batch_size: int | None = None) -> PositionEval:
    import dataclasses

    from medref_cli.data.cache import load_split
    from medref_cli.data.split_run import identify_data
    from medref_cli.runtime.build import read_records, tensor_cache_dir
    from medref_cli.runtime.device import resolve_device
    from medref_cli.runtime.position import load_position_model, predict_split

    if split not in SPLITS:
        raise MedrefError(f"--split must be train, valid or test, got '{split}'")
    if batch_size is not None and batch_size < 1:
        raise MedrefError(f"--batch-size must be >= 1, got {batch_size}")
    device = resolve_device(device_spec)
    ledger = open_ledger(ledger_url, create=False)
    try:
        path, sha = position_checkpoint(ledger, run_id)
        cfg, model, _ = load_position_model(path, sha, device)
        cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, results_dir=results_dir,
                                                                   device=device_spec))
        data = identify_data(cfg)
        records = read_records(cfg, data.ref.root).get(split) or []
        if not records:
            raise MedrefError(f"no {split} samples in {data.ref.root}")
        tensors = load_split(records, cfg.data.image_size, cache_dir=tensor_cache_dir(cfg)).to(device)
        threshold = cfg.position.threshold
        with record_run(ledger, POSITION_EVAL_KIND, cfg, parent_id=run_id, **data.ledger_facts(),
                        tags={"split": split, "checkpoint": str(Path(path).resolve()), "threshold": threshold,
                              "laterality": cfg.data.laterality}) as run:
            probs = predict_split(model, tensors, batch_size or cfg.position.batch_size, cfg.runtime.amp).numpy()
            labels = tensors.labels.cpu().numpy()
            metrics = multilabel_metrics(labels, probs, threshold)
            per_image = per_image_scores(labels, probs, threshold)
            run.add_position_scores(split, tensors.ids, labels.tolist(), probs.tolist(), per_image["jaccard"].tolist(),
                                    per_image["exact"].astype(bool).tolist())
            run.set_final({f"{split}_{k}": v for k, v in defined(metrics).items()})
        return PositionEval(run.id, split, metrics)
    finally:
        ledger.dispose()
