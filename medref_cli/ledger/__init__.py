"""The reproducibility ledger: every run, its provenance, metrics and artifacts.

Imports only the config package, the standard library and SQLAlchemy.

May import: config and the base modules; not text (beside it).
"""

from medref_cli.ledger.db import Ledger, default_ledger_url, migrate, open_ledger
from medref_cli.ledger.queries import (
    RunFilter,
    diff_runs,
    effective_status,
    finished_runs,
    get_run,
    list_runs,
    run_detail,
)
from medref_cli.ledger.recorder import RunKilled, RunRecorder, record_run, sha256_file
from medref_cli.ledger.reopen import check_resumable, reopen_run, resume_status
from medref_cli.ledger.schema import SCHEMA_VERSION, Run

__all__ = [
    "SCHEMA_VERSION",
    "Ledger",
    "Run",
    "RunFilter",
    "RunKilled",
    "RunRecorder",
    "check_resumable",
    "default_ledger_url",
    "diff_runs",
    "effective_status",
    "finished_runs",
    "get_run",
    "list_runs",
    "migrate",
    "open_ledger",
    "record_run",
    "reopen_run",
    "resume_status",
    "run_detail",
    "sha256_file",
]
