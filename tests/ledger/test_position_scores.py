"""Ledger schema 2: the per-image scores of position predictors, and the upgrade of a version-1 ledger."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from medref_cli.config import load_config
from medref_cli.ledger import open_ledger, record_run
from medref_cli.ledger.db import migrate, schema_version


def test_a_version_1_ledger_gains_the_position_scores_table_and_keeps_its_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    with record_run(ledger, "burnin", load_config()) as run:
        pass
    ledger.dispose()
    engine = create_engine(url)  # make it a version-1 ledger: no position_scores, stamped 1
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE position_scores"))
        conn.execute(text("UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()

    ledger = open_ledger(url)  # upgrades
    with ledger.engine.connect() as conn:
        assert schema_version(conn) == 2
        assert "position_scores" in inspect(conn).get_table_names()
        assert conn.execute(text("SELECT kind FROM runs WHERE id = :i"), {"i": run.id}).scalar() == "burnin"
    assert migrate(ledger.engine) == 2  # nothing left to do
    with record_run(ledger, "position_eval", load_config()) as ev:
        ev.add_position_scores("test", ["a", "b"], [[1, 0, 0, 0, 0, 1], [0] * 6], [[0.9, 0.1, 0, 0, 0, 0.6], [0.2] * 6],
                               [1.0, 1.0], [True, True])
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT sample_id, label, jaccard, exact FROM position_scores ORDER BY id")).all()
    assert rows == [("a", "100001", 1.0, 1), ("b", "000000", 1.0, 1)]
    ledger.dispose()
