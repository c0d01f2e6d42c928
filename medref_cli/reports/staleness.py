"""The stale rule: a number made by other code, another config schema or other data than today's.

"Current" is: the code version of this checkout (`provenance.code_version().label`), the config
schema of this checkout (`config.schema_hash()`), and per dataset the data hash of the newest run
in the ledger that recorded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medref_cli.ledger.db import Ledger
from medref_cli.ledger.report_queries import RunRecord


@dataclass(frozen=True)
class CurrentVersions:
    code_version: str
    config_schema: str
    data_hashes: dict[str, str] = field(default_factory=dict)  # dataset -> newest data hash


def current_versions(ledger: Ledger) -> CurrentVersions:
    """Today's code and config schema, and the newest data hash per dataset in `ledger`."""
    from medref_cli.config import schema_hash
    from medref_cli.ledger.provenance import code_version
    from medref_cli.ledger.report_queries import newest_data_hashes

    return CurrentVersions(code_version().label, schema_hash(), newest_data_hashes(ledger))


def stale_reasons(run: RunRecord, current: CurrentVersions) -> list[str]:
    """Why `run` is stale (empty when it is current)."""
    reasons = []
    if run.code_version != current.code_version:
        reasons.append("other code version")
    if run.config_schema != current.config_schema:
        reasons.append("other config schema")
    newest = current.data_hashes.get(run.dataset or "")
    if newest is not None and run.data_hash != newest:
        reasons.append("older data hash" if run.data_hash else "no data hash recorded")
    return reasons


def as_of_versions(ledger: Ledger, code: str, option: str = "--as-of") -> CurrentVersions:
    """"Current" as of an earlier code version recorded in `ledger` (a full label or a prefix of at
    least 7 characters): that code version, the config schema its newest run recorded, and the
    newest data hash per dataset, so that a document made from that code's runs reads the same
    whichever checkout rebuilds it. `option` names the flag in the error messages."""
    from sqlalchemy import select

    from medref_cli.errors import MedrefError
    from medref_cli.ledger.report_queries import newest_data_hashes
    from medref_cli.ledger.schema import Run

    if len(code) < 7:
        raise MedrefError(f"{option} needs a code version of at least 7 characters, got '{code}'")
    with ledger.read() as session:
        rows = session.execute(select(Run.code_version, Run.config_schema).where(
            Run.code_version.startswith(code, autoescape=True)).order_by(Run.id)).all()
    labels = sorted({label for label, _ in rows})
    if not labels:
        raise MedrefError(f"{option}: no run in the ledger was made by code version '{code}'")
    if len(labels) > 1:
        raise MedrefError(f"{option}: code version '{code}' is ambiguous: {', '.join(labels)}")
    return CurrentVersions(labels[0], rows[-1][1], newest_data_hashes(ledger))
