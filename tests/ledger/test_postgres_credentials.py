"""A password kept out of the URL altogether: libpq's PGPASSWORD and password file (~/.pgpass, or
PGPASSFILE) reach the server through medref unchanged. Needs the local PostgreSQL server (a role
with a password; Debian asks for it over TCP), else skipped with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

PROJECT = Path(__file__).resolve().parents[2]


def _runs(url: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE", "MEDREF_LEDGER")}
    return subprocess.run([sys.executable, "-m", "medref_cli", "runs", "--json", "--ledger", url], cwd=cwd,
                          env={**base, "PYTHONPATH": str(PROJECT), "HOME": str(cwd), **env},
                          capture_output=True, text=True, timeout=120, check=False)


def _without_password(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    assert parsed.password, "the test server's URL carries the role's password"
    return parsed._replace(password=None).render_as_string(hide_password=False), str(parsed.password)


def test_pgpassword_and_a_password_file_replace_the_password_in_the_url(postgres_url, tmp_path):
    url, password = _without_password(postgres_url)
    assert ":" not in url.split("://", 1)[1].split("@", 1)[0]

    # no password anywhere: the server refuses, in one masked line
    done = _runs(url, tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("medref: error: cannot open the ledger at ") and done.stderr.count("\n") == 1

    done = _runs(url, tmp_path, PGPASSWORD=password)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []

    parsed = make_url(postgres_url)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{parsed.host}:{parsed.port or 5432}:{parsed.database}:{parsed.username}:{password}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file others can read
    done = _runs(url, tmp_path, PGPASSFILE=str(pgpass))
    assert done.returncode == 0, done.stderr

    # ~/.pgpass, the default place
    (tmp_path / ".pgpass").write_text(pgpass.read_text())
    (tmp_path / ".pgpass").chmod(0o600)
    done = _runs(url, tmp_path)
    assert done.returncode == 0, done.stderr

    # the URL through MEDREF_LEDGER instead of --ledger (no option on the command line at all)
    base = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    done = subprocess.run([sys.executable, "-m", "medref_cli", "runs", "--json"], cwd=tmp_path,
                          env={**base, "PYTHONPATH": str(PROJECT), "MEDREF_LEDGER": postgres_url},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
