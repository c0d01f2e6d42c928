"""Slurm for `medref ablate --executor slurm`: the tools on PATH, partitions, job states, scancel.

Talks to the scheduler through its own commands (sinfo, squeue, sacct, scancel), so it works on any
Slurm that answers them; submission itself goes through submitit (`ablate_submit.py`). Every
failure a user can cause is one line (MedrefError), raised before anything is submitted or written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from medref_cli.errors import MedrefError

TOOLS = ("sbatch", "squeue", "scancel", "sinfo")
# job states in which a job may still run (squeue's long names)
LIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
               "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT")
# a pending job whose dependency failed never starts (unless slurm.conf sets kill_invalid_depend)
NEVER_STARTS = ("DependencyNeverSatisfied",)
TIMEOUT_S = 60


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ..., or UNKNOWN (the scheduler forgot it)
    reason: str = ""
    node: str = ""

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES and self.reason not in NEVER_STARTS


def require_submitit():
    """The submitit module, or one line saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise MedrefError("the slurm and submitit-local executors need submitit, which is not installed: "
                          "pip install 'medref[slurm]'") from None
    return submitit


def require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise MedrefError(f"--executor slurm needs Slurm's {', '.join(TOOLS)} on PATH; not found: "
                          f"{', '.join(missing)} (run medref ablate on a node of the cluster)")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise MedrefError(f"{args[0]} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise MedrefError(f"{args[0]} did not answer within {TIMEOUT_S} s (is slurmctld up?)") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def partitions() -> list[str]:
    done = _run(["sinfo", "-h", "-o", "%R"])
    if done.returncode != 0:
        raise MedrefError(f"cannot reach the Slurm controller: sinfo: {_first_line(done.stderr)}")
    return sorted({line.strip() for line in done.stdout.splitlines() if line.strip()})


def check_partition(name: str) -> None:
    """An empty name is the cluster's default partition; any other must exist."""
    known = partitions()
    if name and name not in known:
        raise MedrefError(f"unknown Slurm partition '{name}'; this cluster has: {', '.join(known) or 'none'}")


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def time_minutes(text: str) -> int:
    """Slurm's time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) -> whole minutes, rounded up."""
    match = _TIME.match(text.strip())
    if not match:
        raise MedrefError(f"--slurm-time expects minutes or [D-]HH:MM[:SS], got '{text}'")
    days, a, b, c = match.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # H:M:S
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # M:S
        seconds = int(a) * 60 + int(b)
    else:  # M
        seconds = int(a) * 60
    if seconds <= 0:
        raise MedrefError(f"--slurm-time must be more than zero, got '{text}'")
    return -(-seconds // 60)


_MEM = re.compile(r"^\d+(?:[KMGT]B?)?$", re.IGNORECASE)


def check_mem(text: str) -> str:
    if text and not _MEM.match(text.strip()):
        raise MedrefError(f"--slurm-mem expects a size such as 16G or 16000M, got '{text}'")
    return text.strip()


# options that medref itself sets on each job; --slurm-extra may not change them
RESERVED = {"dependency", "output", "error", "array", "job-name", "signal", "open-mode", "wrap"}


def parse_extra(items: list[str]) -> dict[str, str]:
    """KEY=VALUE sbatch options (without the leading --) -> {key: value}; KEY alone is a flag."""
    out: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise MedrefError(f"--slurm-extra expects KEY=VALUE with an sbatch option name, got '{item}'")
        if key in RESERVED:
            raise MedrefError(f"--slurm-extra cannot set '{key}': medref sets it on every job")
        out[key] = value.strip() if value else True
    return out


def job_states(ids: list[str]) -> dict[str, JobState]:
    """The scheduler's view of these jobs: squeue for those it still holds, then sacct (when accounting
    is on); a job neither knows is UNKNOWN."""
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    states: dict[str, JobState] = {}
    done = _run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%N"])
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise MedrefError(f"cannot read the Slurm queue: squeue: {_first_line(done.stderr)}")
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0] in ids:
            states[parts[0]] = JobState(parts[0], parts[1], parts[2], parts[3])
    rest = [i for i in ids if i not in states]
    if rest and shutil.which("sacct"):
        acct = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(rest), "-o", "JobID,State,NodeList"])
        if acct.returncode == 0:
            for line in acct.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3 and parts[0] in rest:
                    states[parts[0]] = JobState(parts[0], parts[1].split()[0], "", parts[2])
    for i in ids:
        states.setdefault(i, JobState(i, "UNKNOWN"))
    return states


def cancel(ids: list[str]) -> None:
    if not ids:
        return
    done = _run(["scancel", *sorted(set(ids))])
    if done.returncode != 0:
        raise MedrefError(f"scancel failed: {_first_line(done.stderr)}")
