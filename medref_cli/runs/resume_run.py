"""`medref burnin|train --resume RUN_ID`: what a resumed run starts from, checked before it starts.

A resumed run is the same ledger run: its config is the recorded one (options given with
--resume must agree with it, except the few that only say how to run: device, progress bar,
heartbeat and checkpoint interval), its data and split must hash as recorded, and its resume
checkpoint must match the sha256 the ledger recorded. Everything here only reads; the ledger
row is reopened by `reopen_run` once all checks have passed, so a refused resume leaves no trace.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medref_cli.config import ExperimentConfig, config_hash, from_dict, to_flat
from medref_cli.config.loader import parse_set, read_yaml
from medref_cli.errors import MedrefError
from medref_cli.ledger import RunRecorder, check_resumable, get_run, open_ledger, run_detail
from medref_cli.ledger.provenance import code_version
from medref_cli.ledger.schema import Run
from medref_cli.runs.resume import RESUME_ROLE, ResumeWriter, load_resume_state
from medref_cli.runs.setup import RunInputs

# options that may differ from the recorded config: they say how to run, not what to compute
FREE_KEYS = ("runtime.device", "runtime.progress", "runtime.heartbeat_s", "runtime.checkpoint_every")
# model state copies a run may hold on disk at once: last.pt (model, best, 2 optimiser moments,
# teacher), its replacement while it is written, and best.pt
CHECKPOINT_COPIES = 12
DISK_MARGIN_BYTES = 1 << 20


def given_keys(config_file: Path | None, sets: list[str] | None, overrides: dict[str, Any]) -> set[str]:
    """The config keys the user set explicitly: in the config file, the typed options and --set."""
    keys = {k for k, v in overrides.items() if v is not None} | set(parse_set(sets or ()))
    if config_file is not None:
        keys |= set(read_yaml(Path(config_file)))
    return keys


def _same(key: str, given: Any, recorded: Any) -> bool:
    if key in ("data.root", "runtime.results_dir") and given and recorded:
        return Path(str(given)).resolve() == Path(str(recorded)).resolve()
    return given == recorded


def resumed_config(run: Run, given: ExperimentConfig, keys: set[str],
                   view: Callable[[ExperimentConfig], ExperimentConfig]) -> ExperimentConfig:
    """The recorded config with the free options applied; a conflicting option is refused.

    `view` maps the given config to what the run records (the burn-in resets SSL-only keys)."""
    recorded = from_dict(run.config)
    rec_flat, given_flat = to_flat(recorded), to_flat(view(given))
    for key in sorted(keys - set(FREE_KEYS)):
        if key in rec_flat and not _same(key, given_flat[key], rec_flat[key]):
            raise MedrefError(
                f"--resume {run.id}: {key}={given_flat[key]!r} conflicts with the recorded run ({rec_flat[key]!r}); "
                "a resumed run keeps its recorded config, drop the option"
            )
    free = {key.split(".", 1)[1]: given_flat[key] for key in FREE_KEYS if key in keys}
    return dataclasses.replace(recorded, runtime=dataclasses.replace(recorded.runtime, **free))


def run_dir(cfg: ExperimentConfig, run_id: int) -> Path:
    return Path(cfg.runtime.results_dir) / "runs" / str(run_id)


@dataclass
class ResumeSource:
    run: Run
    cfg: ExperimentConfig
    state: dict[str, Any] | None  # None: no resume checkpoint yet, the phase restarts from its start

    @property
    def keep_step(self) -> int:
        return int(self.state["position"]["step"]) if self.state is not None else 0

    def note(self) -> dict[str, Any]:
        from medref_cli.ledger.recorder import command_line

        return {"from_step": self.keep_step, "command": command_line(), "code_version": code_version().label}


def _resume_artifact(ledger, run: Run) -> tuple[Path, str] | None:
    rows = [a for a in run_detail(ledger, run.id)["artifacts"] if a["role"] == RESUME_ROLE]
    return (Path(rows[-1]["path"]), rows[-1]["sha256"]) if rows else None


def load_resume_source(ledger_url: str, run_id: int, command: str, given: ExperimentConfig, keys: set[str],
                       view: Callable[[ExperimentConfig], ExperimentConfig]) -> ResumeSource:
    """Find the run, check it may resume with these options, load its verified resume state."""
    ledger = open_ledger(ledger_url, create=False)
    try:
        run = get_run(ledger, run_id)
        check_resumable(run, command)
        cfg = resumed_config(run, given, keys, view)
        if config_hash(cfg) != run.config_hash:
            raise MedrefError(f"run {run_id}'s recorded config no longer hashes to its recorded config_hash; "
                              "it was recorded by another config schema and cannot be resumed")
        artifact = _resume_artifact(ledger, run)
    finally:
        ledger.dispose()
    if artifact is None:
        return ResumeSource(run, cfg, None)
    path, sha = artifact
    expected = run_dir(cfg, run_id).resolve()
    if path.parent != expected:
        raise MedrefError(f"run {run_id} keeps its files in {path.parent}, not {expected}; resume it from the "
                          "working folder it ran in")
    return ResumeSource(run, cfg, load_resume_state(path, sha, run_id, command))


def check_same_data(run: Run, inputs: RunInputs) -> None:
    """The data and the split must be exactly those the run was trained on."""
    facts = inputs.split.ledger_facts()
    if facts["data_hash"] != run.data_hash:
        raise MedrefError(f"the data at {facts['data_root']} changed since run {run.id} was recorded "
                          f"(data hash {facts['data_hash'][:12]} != {str(run.data_hash)[:12]}); it cannot be resumed")
    if facts["split_hash"] != run.split_hash:
        raise MedrefError(f"the split of run {run.id} changed (split hash {facts['split_hash'][:12]} != "
                          f"{str(run.split_hash)[:12]}); it cannot be resumed")


def state_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))


def check_results_room(cfg: ExperimentConfig, model: nn.Module) -> None:
    """Fail before a run is recorded when its checkpoints cannot be written: a results folder that is
    not writable, or a disk without room for the checkpoints this run will hold."""
    results = Path(cfg.runtime.results_dir)
    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=results):
            pass
        free = shutil.disk_usage(results).free
    except OSError as exc:
        raise MedrefError(f"cannot write in the results folder {results}: {exc.strerror}") from None
    need = CHECKPOINT_COPIES * state_bytes(model) + DISK_MARGIN_BYTES
    if free < need:
        raise MedrefError(f"not enough space left on device for the checkpoints in {results}: "
                          f"{free / 2**20:.1f} MiB free, about {need / 2**20:.1f} MiB needed")


def resume_writer(run: RunRecorder, cfg: ExperimentConfig, phase: str) -> ResumeWriter:
    """The writer of `results/runs/<id>/last.pt`, recording each new file as the run's resume artifact."""
    return ResumeWriter(run_dir(cfg, run.id), cfg.runtime.checkpoint_every,
                        lambda path, sha: run.set_artifact(path, RESUME_ROLE, sha), run.id, phase)
