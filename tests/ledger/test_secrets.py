"""A ledger URL's password (or token) is masked wherever medref shows or records a URL or a command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from medref_cli.config import load_config
from medref_cli.errors import MedrefError
from medref_cli.ledger import open_ledger, record_run
from medref_cli.ledger.recorder import command_line
from medref_cli.ledger.schema import Run
from medref_cli.ledger.secrets import mask_argv, mask_text, mask_url, url_secrets

SECRET = "s3cretpw"


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://alice:s3cretpw@db.lab:5432/medref", "postgresql+psycopg://alice:***@db.lab:5432/medref"),
    # percent-encoded characters in the password: masked whole
    ("postgresql+psycopg://alice:s3cret%40pw%2F@db/medref", "postgresql+psycopg://alice:***@db/medref"),
    # credentials in the query string; other parameters kept
    ("postgresql+psycopg://alice@db/medref?sslmode=require&password=s3cretpw",
     "postgresql+psycopg://alice@db/medref?password=***&sslmode=require"),
    ("sqlite:///ledger.db?token=s3cretpw", "sqlite:///ledger.db?token=***"),
    # nothing to hide: unchanged
    ("postgresql+psycopg://alice@db/medref", "postgresql+psycopg://alice@db/medref"),
    ("sqlite:////tmp/results/ledger.db", "sqlite:////tmp/results/ledger.db"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_url_secrets_lists_the_password_as_written_and_decoded():
    found = url_secrets("postgresql+psycopg://alice:s3cret%40pw@db/m?api_key=k3y")
    assert {"s3cret@pw", "s3cret%40pw", "k3y"} <= set(found)
    assert url_secrets("postgresql+psycopg://alice@db/m") == []
    assert url_secrets(None) == []


def test_mask_text_masks_urls_in_free_text_and_literal_secrets():
    text = ("could not connect to 'postgresql://bob:hunter2@db/x' and mysql://u:pw@h; "
            "the driver said: password s3cretpw rejected")
    masked = mask_text(text, [SECRET])
    assert "hunter2" not in masked and ":pw@" not in masked and SECRET not in masked
    assert "postgresql://bob:***@db/x" in masked and "mysql://u:***@h" in masked
    assert mask_text("no url here, 3 epochs") == "no url here, 3 epochs"
    assert mask_text(None) is None


def test_mask_argv_masks_the_ledger_option_in_both_spellings():
    argv = ["medref", "train", "--ledger", f"postgresql+psycopg://alice:{SECRET}@db/m", "--set", "train.lr=1e-3",
            f"--ledger=postgresql+psycopg://alice:{SECRET}@db/m"]
    masked = mask_argv(argv)
    assert SECRET not in " ".join(masked)
    assert masked[:4] == ["medref", "train", "--ledger", "postgresql+psycopg://alice:***@db/m"]
    assert masked[4:6] == ["--set", "train.lr=1e-3"]
    assert masked[6] == "--ledger=postgresql+psycopg://alice:***@db/m"


def test_the_recorded_command_line_holds_no_password(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.delenv("MEDREF_COMMAND_LINE", raising=False)
    monkeypatch.setenv("MEDREF_LEDGER", f"postgresql+psycopg://alice:{SECRET}@db/m")
    # a secret named elsewhere on the line (the MEDREF_LEDGER password) is masked too
    monkeypatch.setattr(sys, "argv", ["medref", "split", "--ledger", f"postgresql://bob:{SECRET}@h/m",
                                      "--set", f"name={SECRET}"])
    line = command_line()
    assert SECRET not in line and line.startswith("medref split --ledger postgresql://bob:***@h/m")
    ledger = open_ledger(url)
    try:
        with record_run(ledger, "split", load_config()) as run:
            pass
        with ledger.read() as s:
            recorded = s.get(Run, run.id).command
    finally:
        ledger.dispose()
    assert SECRET not in recorded and "***" in recorded


def test_a_failed_runs_error_and_traceback_are_recorded_masked(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    try:
        with pytest.raises(RuntimeError), record_run(ledger, "train", load_config()) as run:
            raise RuntimeError(f"lost the connection to postgresql+psycopg://alice:{SECRET}@db/m")
        with ledger.read() as s:
            row = s.get(Run, run.id)
        assert row.status == "failed"
        assert SECRET not in row.error and SECRET not in row.traceback
        assert "alice:***@db/m" in row.error
    finally:
        ledger.dispose()


def test_runs_show_masks_a_password_that_an_older_medref_recorded(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    try:
        with record_run(ledger, "split", load_config()) as run:
            pass
        with ledger.write() as s:
            s.execute(update(Run).where(Run.id == run.id).values(
                command=f"medref split --ledger postgresql+psycopg://alice:{SECRET}@db/m"))
    finally:
        ledger.dispose()
    for extra in ((), ("--json",)):
        code, out, err = cli("runs", "show", str(run.id), "--ledger", url, *extra)
        assert code == 0, err
        assert SECRET not in out and "alice:***@db/m" in out


@pytest.mark.parametrize("url", [
    f"postgresql+nosuchdriver://alice:{SECRET}@db/medref",  # an unknown driver: SQLAlchemy quotes the URL
    f"nosuchdialect://alice:{SECRET}@db/medref",
])
def test_a_url_that_cannot_be_opened_is_reported_masked(url):
    with pytest.raises(MedrefError) as err:
        open_ledger(url)
    message = str(err.value)
    assert message.startswith("cannot open ledger URL '") and "alice:***@db/medref" in message
    assert SECRET not in message


def test_a_server_that_refuses_is_reported_masked_on_one_line(cli):
    pytest.importorskip("psycopg")
    # port 1 on this host: nothing listens, the connection is refused at once
    code, out, err = cli("runs", "--ledger", f"postgresql+psycopg://alice:{SECRET}@127.0.0.1:1/medref")
    assert code == 2 and out == ""
    assert err.startswith("medref: error: cannot open the ledger at postgresql+psycopg://alice:***@127.0.0.1:1/medref")
    assert SECRET not in err and err.count("\n") == 1


def test_cells_and_workers_get_the_ledger_in_their_environment_not_their_command_line(tmp_path, monkeypatch):
    from medref_cli.runs import launch
    from medref_cli.runs.ablate_run import cell_command, cell_env
    from medref_cli.runs.ablation import build_cells

    url = f"postgresql+psycopg://alice:{SECRET}@db/medref"
    grid = Path(__file__).resolve().parents[2] / "experiments" / "ablations"
    cell = build_cells(2, None, [], {}, [0.01], [0], grid_dir=grid)[0]
    cmd = cell_command(cell, tmp_path / "cell.yaml", "cuda:1")
    assert SECRET not in " ".join(cmd) and "--ledger" not in cmd and cmd[-2:] == ["--set", "runtime.device=cuda:1"]
    assert cell_env(url)["MEDREF_LEDGER"] == url

    monkeypatch.delenv("MEDREF_COMMAND_LINE", raising=False)
    monkeypatch.setattr(sys, "argv", ["medref", "train", "--cpu", "--nproc", "2", "--ledger", url])
    env = launch._worker_env(0, 2, 12345, ["cpu", "cpu"], tmp_path, url)
    assert env["MEDREF_LEDGER"] == url
    assert env["MEDREF_COMMAND_LINE"] == "medref train --cpu --nproc 2 --ledger postgresql+psycopg://alice:***@db/medref"


def test_a_bugs_traceback_on_stderr_is_masked(cli, monkeypatch):
    """An unexpected exception (a bug) still prints its traceback and exits 1, credentials masked."""
    from medref_cli.cli import runs as runs_cli

    def broken(_ledger):
        raise RuntimeError(f"boom while reading postgresql+psycopg://alice:{SECRET}@db/m (pw {SECRET})")

    monkeypatch.setattr(runs_cli, "_open", broken)
    code, out, err = cli("runs", "--ledger", f"postgresql+psycopg://alice:{SECRET}@db/m")
    assert code == 1 and out == ""
    assert "Traceback" in err and "RuntimeError: boom while reading postgresql+psycopg://alice:***@db/m" in err
    assert SECRET not in err


def test_command_secrets_reads_both_ledger_spellings_and_the_environment(monkeypatch):
    from medref_cli.ledger.secrets import command_secrets

    monkeypatch.setenv("MEDREF_LEDGER", "postgresql://a:envpw@h/m")
    found = command_secrets(["medref", "runs", "--ledger", "postgresql://a:argpw@h/m", "--ledger=postgresql://a:eqpw@h/m"])
    assert {"envpw", "argpw", "eqpw"} <= set(found)
    monkeypatch.delenv("MEDREF_LEDGER")
    assert command_secrets(["medref", "runs"]) == []
