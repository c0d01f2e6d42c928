"""`medref train|burnin --gpus 0,1` (or `--cpu --nproc 2`): one worker process per rank.

The launcher writes the resolved config to a private folder and starts N copies of
``python -m medref_cli.runs.launch SPEC`` with torchrun's variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), the device of each rank and the ledger URL in
MEDREF_LEDGER (the environment, not the command line: a password in it stays out of `ps`). Rank 0 trains, records the
run and writes the command's summary; the other ranks train in step and stay silent. When a
worker fails, the others are stopped (SIGTERM: rank 0 marks its run killed) and the launcher
reports the failing rank's error as one line. The same workers run under torchrun itself:
``torchrun --nproc-per-node 2 -m medref_cli train ...``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from medref_cli.config import ExperimentConfig, from_dict, to_dict
from medref_cli.errors import MedrefError

COMMANDS = ("burnin", "train")
STOP_GRACE_S = 20.0


def rank_devices(gpus: list[int] | None, nproc: int | None, device: str) -> list[str] | None:
    """The device of every rank, or None for a single-process run."""
    if gpus is not None:
        if not gpus:
            raise MedrefError("--gpus names no GPU")
        if nproc is not None and nproc != len(gpus):
            raise MedrefError(f"--nproc {nproc} disagrees with --gpus (one process per GPU: {len(gpus)})")
        if len(set(gpus)) != len(gpus):
            raise MedrefError("--gpus names a GPU twice")
        devices = [f"cuda:{g}" for g in gpus]
    elif nproc is not None:
        if nproc < 1:
            raise MedrefError(f"--nproc must be >= 1, got {nproc}")
        if device.startswith("cuda"):
            raise MedrefError("--nproc runs CPU processes; give GPUs with --gpus 0,1,...")
        devices = ["cpu"] * nproc
    else:
        return None
    return devices if len(devices) > 1 else None


def check_layout(cfg: ExperimentConfig | None, devices: list[str]) -> None:
    """Every device exists and (given a config) its global batch splits over them."""
    from medref_cli.runtime.device import resolve_device
    from medref_cli.runtime.distributed import check_global_batch

    if cfg is not None:
        check_global_batch(cfg, len(devices))
    for device in devices:
        resolve_device(device)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_env(rank: int, world: int, port: int, devices: list[str], folder: Path,
                ledger_url: str) -> dict[str, str]:
    """The worker's environment: torchrun's variables, and the ledger URL (never on the command
    line, where every user of the node sees it) with the user's command line, masked."""
    from medref_cli.ledger.recorder import command_line
    from medref_cli.ledger.secrets import LEDGER_ENV, url_secrets

    env = dict(os.environ)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MEDREF_RANK_DEVICES=",".join(devices),
               MEDREF_RESULT_DIR=str(folder), MEDREF_COMMAND_LINE=command_line(url_secrets(ledger_url)))
    env[LEDGER_ENV] = ledger_url
    return env


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM rank 0 first and let it close its ledger run as killed (the others, still alive, let
    its current collective finish), then the other ranks; SIGKILL whatever outlives the grace time."""
    deadline = time.monotonic() + STOP_GRACE_S
    for group in (procs[:1], procs[1:]):
        for p in group:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in group:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _error_of(folder: Path, rank: int, proc: subprocess.Popen) -> str:
    """A failed rank's one-line error: what it wrote, else the last line of its stderr."""
    error_file = folder / f"error.{rank}"
    if error_file.exists():
        return error_file.read_text().strip()
    log = folder / f"stderr.{rank}"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    return f"rank {rank} exited with code {proc.returncode}" + (f": {tail[0]}" if tail else "")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _wait_first_failure(procs: list[subprocess.Popen]) -> int | None:
    """Wait until every worker has ended (None) or one has failed (its rank)."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code is not None for code in codes):
            return None
        time.sleep(0.2)


def launch(command: str, cfg: ExperimentConfig, ledger_url: str, devices: list[str], resume: int | None = None,
           keys: Sequence[str] = ()) -> dict:
    """Run `command` over len(devices) processes; rank 0's summary (what the command prints).
    `resume`: the run to continue (`keys`: the options the user gave; the workers check the
    recorded config's batch against the number of processes)."""
    check_layout(cfg if resume is None else None, devices)
    world = len(devices)
    with tempfile.TemporaryDirectory(prefix="medref-launch-") as tmp:
        folder = Path(tmp)
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"command": command, "config": to_dict(cfg), "resume": resume,
                                    "keys": sorted(keys)}))
        port = _free_port()
        procs: list[subprocess.Popen] = []
        in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
        try:
            for rank in range(world):
                quiet = rank != 0
                with open(folder / f"stderr.{rank}", "wb") as log:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "medref_cli.runs.launch", str(spec)],
                        env=_worker_env(rank, world, port, devices, folder, ledger_url),
                        stdout=subprocess.DEVNULL if quiet else None, stderr=log if quiet else None))
            failed = _wait_first_failure(procs)
            if failed is not None:
                _stop(procs)
                raise MedrefError(_error_of(folder, failed, procs[failed]))
        except KeyboardInterrupt:
            _stop(procs)
            raise
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        return json.loads((folder / "result.json").read_text())


def run_rank(command: str, cfg: ExperimentConfig, ledger_url: str, resume: int | None = None,
             keys: Sequence[str] = ()) -> dict | None:
    """This process's share of a (possibly multi-process) run, or of the resumed run `resume`; the
    summary on rank 0, else None."""
    from medref_cli.runtime import distributed
    from medref_cli.runtime.device import resolve_device

    if command not in COMMANDS:
        raise MedrefError(f"cannot run '{command}' over several processes; one of: {', '.join(COMMANDS)}")
    distributed.start(resolve_device(distributed.rank_device(cfg.runtime.device)))
    try:
        return run_command(command, cfg, ledger_url, resume, keys)
    finally:
        distributed.stop()


def run_command(command: str, cfg: ExperimentConfig, ledger_url: str, resume: int | None = None,
                keys: Sequence[str] = ()) -> dict | None:
    """Run (or, given `resume`, continue) `burnin` or `train` in this process; what the command
    prints, on rank 0 (None on the other ranks of a multi-process run)."""
    from medref_cli.runtime import distributed

    main = distributed.current().is_main
    if command == "train":
        from medref_cli.runs.train_run import resume_train, run_train, train_summary

        result = run_train(cfg, ledger_url) if resume is None else resume_train(ledger_url, resume, cfg, set(keys))
        return train_summary(*result) if main else None
    from medref_cli.runs.burnin_run import burnin_summary, resume_burnin, run_burnin

    outcome = run_burnin(cfg, ledger_url) if resume is None else resume_burnin(ledger_url, resume, cfg, set(keys))
    return burnin_summary(outcome) if main else None


def _atomic_write(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.replace(path)


def worker_main(spec_path: str) -> int:
    """Entry of one worker process (rank from the environment)."""
    folder = Path(os.environ["MEDREF_RESULT_DIR"])
    rank = int(os.environ.get("RANK", "0"))
    spec = json.loads(Path(spec_path).read_text())
    try:
        summary = run_rank(spec["command"], from_dict(spec["config"]), os.environ["MEDREF_LEDGER"], spec["resume"],
                           spec["keys"])
    except MedrefError as exc:
        _atomic_write(folder / f"error.{rank}", str(exc) if rank == 0 else f"rank {rank}: {exc}")
        return exc.exit_code
    except BaseException as exc:  # noqa: BLE001 - reported as one line; a bug's traceback goes to stderr
        if not isinstance(exc, KeyboardInterrupt):  # SIGTERM from the launcher, or Ctrl-C
            traceback.print_exc()
        _atomic_write(folder / f"error.{rank}", f"rank {rank}: {type(exc).__name__}: {exc}")
        return 1
    if summary is not None:
        _atomic_write(folder / "result.json", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
