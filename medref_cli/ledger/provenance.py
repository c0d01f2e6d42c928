"""Where a run came from: code version, package versions, host. Standard library only.

Nothing here imports torch: a command that never loaded it (e.g. `medref split`) records the
installed version from package metadata, and GPU names only when torch is already loaded.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGES = ("medref", "torch", "torchvision", "monai", "transformers", "timm", "numpy", "sqlalchemy", "pillow")
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CodeVersion:
    commit: str | None
    dirty: bool | None
    diff_hash: str | None
    version: str

    @property
    def label(self) -> str:
        """One string that changes whenever the code that ran changes."""
        if self.commit is None:
            return f"medref-{self.version}"
        return self.commit + (f"+dirty.{self.diff_hash[:12]}" if self.dirty and self.diff_hash else "")


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version(root: Path = SOURCE_ROOT) -> CodeVersion:
    """Commit, dirty flag and a hash of the uncommitted changes (tracked diff + untracked files)."""
    from medref_cli import __version__

    commit = _git(["rev-parse", "HEAD"], root)
    if commit is None:
        return CodeVersion(None, None, None, __version__)
    digest = hashlib.sha256()
    diff = _git(["diff", "HEAD", "--binary", "--", "medref_cli", "pyproject.toml", "experiments"], root) or b""
    digest.update(diff)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z", "--", "medref_cli", "experiments"], root)
    names = sorted(n for n in (untracked or b"").split(b"\0") if n)
    for name in names:
        digest.update(b"\0untracked\0" + name + b"\0")
        try:
            digest.update((root / name.decode()).read_bytes())
        except OSError:
            pass
    dirty = bool(diff) or bool(names)
    return CodeVersion(commit.decode().strip(), dirty, digest.hexdigest() if dirty else None, __version__)


def weights_label(identity: dict | None) -> str | None:
    """One line naming an encoder's weights as a run recorded them (tags["weights"]["text"|"visual"]):
    name, revision or commit, where they came from, and the sha256 of the files loaded."""
    if not identity:
        return None
    parts = [str(identity.get("name"))]
    if identity.get("revision") or identity.get("commit"):
        parts.append(f"@{identity.get('revision') or ''}" + (f" ({identity['commit'][:12]})" if identity.get("commit") else ""))
    source = identity.get("source") or identity.get("kind")
    if source:
        parts.append(f"[{source}]")
    digests = identity.get("weights_sha256") or ({"file": identity["sha256"]} if identity.get("sha256") else {})
    if digests:
        parts.append("sha256 " + ", ".join(f"{v[:16]}" for v in digests.values()))
    elif source in ("random", "generated"):
        parts.append("no weight file")
    return " ".join(parts)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scheduler_info(env: dict[str, str] | None = None) -> dict | None:
    """The batch job this process runs in (Slurm's job id, node, array index), from its environment."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        array_task = env.get("SLURM_ARRAY_TASK_ID")
        return {
            "name": "slurm",
            "job_id": env["SLURM_JOB_ID"],
            "node": env.get("SLURMD_NODENAME") or socket.gethostname(),
            "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
            "array_task_id": int(array_task) if array_task and array_task.isdigit() else None,
        }
    if env.get("SUBMITIT_LOCAL_JOB_ID"):
        return {"name": "submitit-local", "job_id": env["SUBMITIT_LOCAL_JOB_ID"], "node": socket.gethostname(),
                "array_job_id": None, "array_task_id": None}
    return None


def host_info() -> dict:
    info: dict = {
        "scheduler": scheduler_info(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
        "cuda": None,
        "torch": None,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info
