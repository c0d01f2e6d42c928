"""A content hash over every file of a data set, cached by (path, size, mtime).

The digest covers each file's relative path and the sha256 of its full content, in sorted
order, so a renamed, added, removed or edited file anywhere in the tree changes it. The
per-file digests are cached in a small JSON file keyed by the tree's root; an unchanged tree
is re-hashed from stat() calls alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.files import sha256_file

CACHE_VERSION = 1


@dataclass(frozen=True)
class TreeHash:
    digest: str
    files: int
    bytes: int
    from_cache: int  # files whose digest came from the cache


def default_cache_dir() -> Path:
    env = os.environ.get("MEDREF_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medref"


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _cache_file(cache_dir: Path, root: Path) -> Path:
    key = hashlib.sha256(str(root).encode()).hexdigest()[:24]
    return cache_dir / "tree-hashes" / f"{key}.json"


def _load_cache(path: Path, root: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != CACHE_VERSION or data.get("root") != str(root):
        return {}
    return data.get("files", {})


def _save_cache(path: Path, root: Path, files: dict[str, list]) -> None:
    """Best effort: an unwritable cache only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": CACHE_VERSION, "root": str(root), "files": files}, fh)
        os.replace(tmp, path)
    except OSError:
        pass


def hash_tree(root: str | Path, cache_dir: Path | None = None) -> TreeHash:
    """Content hash of every (non-hidden) file under `root`."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise MedrefError(f"data folder not found: {root}")
    cache_path = _cache_file(cache_dir or default_cache_dir(), root)
    cached = _load_cache(cache_path, root)
    fresh: dict[str, list] = {}
    digest = hashlib.sha256()
    total = hits = 0
    files = _walk(root)
    if not files:
        raise MedrefError(f"data folder is empty: {root}")
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            st = path.stat()
        except OSError as exc:
            raise MedrefError(f"cannot read {path}: {exc.strerror}") from None
        entry = cached.get(rel)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            file_digest = entry[2]
            hits += 1
        else:
            try:
                file_digest = sha256_file(path)
            except OSError as exc:
                raise MedrefError(f"cannot read {path}: {exc.strerror}") from None
        fresh[rel] = [st.st_size, st.st_mtime_ns, file_digest]
        digest.update(f"{rel}\0{file_digest}\n".encode())
        total += st.st_size
    if hits != len(files) or len(cached) != len(files):
        _save_cache(cache_path, root, fresh)
    return TreeHash(digest.hexdigest(), len(files), total, hits)
