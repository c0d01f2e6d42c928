"""`medref ablate --executor slurm|submitit-local`: a tiny Table 2 grid through a real single-node Slurm
(scripts/ci/slurm.sh sets one up; skipped with a reason when none answers) and through submitit's local
executor (always), the scheduler helpers, and the inputs that must be refused before anything is
submitted or written.

The ledger is SQLite (with --allow-sqlite) unless MEDREF_TEST_POSTGRES_URL names a PostgreSQL test
database, which then starts empty.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medref_cli.errors import MedrefError
from medref_cli.ledger.provenance import scheduler_info
from medref_cli.runs import slurm
from medref_cli.runs.ablate_submit import plan
from medref_cli.runs.ablation import Cell

PROJECT = Path(__file__).resolve().parents[2]
GRID = ["ablate", "--table", "2", "--ratio", "0.1", "--grid-dir", str(PROJECT / "experiments" / "ablations")]
TINY = [
    "--backbone", "mmi-unet-tiny",
    "--set", "data.image_size=64", "--set", "model.visual_pretrained=false",
    "--set", "model.text_encoder=tiny-random-bert", "--set", "train.batch_size=4",
    "--set", "train.max_steps_per_epoch=2", "--set", "train.burnin_epochs=1", "--set", "train.epochs=1",
    "--set", "runtime.device=cpu", "--set", "runtime.progress=false", "--set", "runtime.results_dir=results",
]


# --- the scheduler helpers ------------------------------------------------------------------------

@pytest.mark.parametrize("text, minutes", [
    ("90", 90), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440), ("1-2:30", 1590), ("0-0:0:59", 1), ("00:10:00", 10),
])
def test_slurm_time_formats(text, minutes):
    assert slurm.time_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "ten", "1:2:3:4", "0", "-5"])
def test_slurm_time_refuses_what_slurm_would_not_read(text):
    with pytest.raises(MedrefError, match="--slurm-time"):
        slurm.time_minutes(text)


def test_slurm_extra_keys_values_and_flags():
    assert slurm.parse_extra(["qos=high", "--constraint=a100|h100", "exclusive", "mail_type=END,FAIL", ""]) == {
        "qos": "high", "constraint": "a100|h100", "exclusive": True, "mail-type": "END,FAIL"}
    with pytest.raises(MedrefError, match="cannot set 'dependency'"):
        slurm.parse_extra(["dependency=afterok:1"])
    with pytest.raises(MedrefError, match="KEY=VALUE"):
        slurm.parse_extra(["=x"])


def test_scheduler_info_from_the_job_environment():
    env = {"SLURM_JOB_ID": "42_3", "SLURMD_NODENAME": "gpu07", "SLURM_ARRAY_TASK_ID": "3",
           "SLURM_ARRAY_JOB_ID": "42"}
    assert scheduler_info(env) == {"name": "slurm", "job_id": "42_3", "node": "gpu07", "array_job_id": "42",
                                   "array_task_id": 3}
    assert scheduler_info({"SLURM_JOB_ID": "7", "SLURMD_NODENAME": "n1"})["array_task_id"] is None
    assert scheduler_info({}) is None


def _cell(row: str, state: str) -> Cell:
    return Cell(row, "train", 0.1, 0, cfg=None, config_hash=row, split_hash="s", data_hash="d", state=state)


def test_plan_submits_only_what_is_missing():
    cells = [_cell("done", "done"), _cell("queued", "pending"), _cell("stuck", "pending"),
             _cell("failed", "failed"), _cell("cancelled", "pending"), _cell("never", "pending")]
    jobs = {f"train:{name}:s:d": {"job_id": jid} for name, jid in
            (("queued", "1"), ("stuck", "2"), ("failed", "3"), ("cancelled", "4"))}
    states = {"1": slurm.JobState("1", "PENDING", "Dependency"),
              "2": slurm.JobState("2", "PENDING", "DependencyNeverSatisfied"),
              "3": slurm.JobState("3", "FAILED"), "4": slurm.JobState("4", "CANCELLED")}
    todo, waiting, stuck = plan(cells, jobs, states)
    assert [c.row for c in todo] == ["stuck", "failed", "cancelled", "never"]
    assert [c.row for c in waiting] == ["queued"]
    assert stuck == ["2"]


# --- bad input: one line, exit 2, nothing submitted, nothing written --------------------------------

def _queue_size() -> int:
    if shutil.which("squeue") is None:
        return 0
    return len(subprocess.run(["squeue", "-h", "-o", "%i"], check=False, capture_output=True, text=True).stdout.split())


@pytest.mark.parametrize("args, message", [
    (["--executor", "slurm", "--ledger", "sqlite:///x/ledger.db"], "refuses a SQLite ledger"),
    (["--executor", "slurm", "--allow-sqlite", "--slurm-time", "soon"], "--slurm-time expects"),
    (["--executor", "slurm", "--allow-sqlite", "--slurm-extra", "output=/tmp/x"], "cannot set 'output'"),
    (["--executor", "slurm", "--allow-sqlite", "--slurm-mem", "lots"], "--slurm-mem expects"),
    (["--executor", "pbs"], "--executor must be one of local, slurm, submitit-local"),
    (["--executor", "slurm", "--allow-sqlite", "--gpus", "0"], "--gpus is for --executor local"),
    (["--executor", "slurm", "--allow-sqlite", "--jobs", "2"], "--jobs is for --executor local; with slurm every"),
    (["--executor", "submitit-local", "--jobs", "2"], "--jobs is for --executor local; with submitit-local every"),
    (["--rows", "itcl,ours"], "--rows: table 2 has no row 'ours' (rows: baseline, ema, posaug, tpatchmix, itcl)"),
])
def test_refused_before_anything_happens(cli, tmp_path, args, message):
    before = _queue_size()
    code, out, err = cli(*GRID, "--seeds", "0", "--dataset", "synthetic", "--data", str(tmp_path / "data"),
                         *TINY, *args)
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
    assert _queue_size() == before


def test_no_scheduler_on_path(cli, tmp_path, monkeypatch):
    empty = tmp_path.parent / f"{tmp_path.name}-nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = cli(*GRID, "--executor", "slurm", "--allow-sqlite", *TINY)
    assert code == 2
    assert "needs Slurm's sbatch, squeue, scancel, sinfo on PATH; not found: sbatch, squeue, scancel, sinfo" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("executor", ["slurm", "submitit-local"])
def test_missing_submitit(cli, tmp_path, monkeypatch, executor):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    code, _, err = cli(*GRID, "--executor", executor, "--allow-sqlite", *TINY)
    assert code == 2
    assert "need submitit, which is not installed: pip install 'medref[slurm]'" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def slurm_up() -> str | None:
    """None when a Slurm node answers idle here, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no Slurm on PATH (scripts/ci/slurm.sh installs a single-node one)"
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], check=False, capture_output=True, text=True)
    if done.returncode != 0 or not any(s.startswith(("idle", "mixed", "alloc")) for s in done.stdout.split()):
        return f"the Slurm cluster is not up: {(done.stderr or done.stdout).strip() or 'no node'}"
    return None


needs_slurm = pytest.mark.skipif(slurm_up() is not None, reason=str(slurm_up()))


@needs_slurm
def test_unknown_partition(cli, tmp_path):
    before = _queue_size()
    code, _, err = cli(*GRID, "--executor", "slurm", "--allow-sqlite", "--slurm-partition", "nosuch", *TINY)
    assert code == 2
    assert "unknown Slurm partition 'nosuch'; this cluster has: " in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    assert _queue_size() == before


# --- real grids ----------------------------------------------------------------------------------------

def _ledger_url(tmp_path: Path) -> tuple[str, list[str]]:
    url = os.environ.get("MEDREF_TEST_POSTGRES_URL")
    if url:
        from sqlalchemy import create_engine

        from medref_cli.ledger.schema import Base

        engine = create_engine(url)
        Base.metadata.drop_all(engine)
        engine.dispose()
        return url, []
    return f"sqlite:///{tmp_path / 'results' / 'ledger.db'}", ["--allow-sqlite"]


def _medref(tmp_path: Path, url: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MEDREF_LEDGER": url}
    done = subprocess.run([sys.executable, "-m", "medref_cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell_runs(url: str) -> list:
    from sqlalchemy import select

    from medref_cli.ledger import open_ledger
    from medref_cli.ledger.schema import Run

    ledger = open_ledger(url, create=False)
    try:
        with ledger.read() as s:
            return [r for r in s.scalars(select(Run).order_by(Run.id)) if r.kind in ("burnin", "train")]
    finally:
        ledger.dispose()


def _each_finished_once(runs: list, n_cells: int) -> None:
    finished = [r for r in runs if r.status == "finished"]
    identities = [(r.kind, r.config_hash, r.split_hash) for r in finished]
    assert len(finished) == n_cells and len(set(identities)) == n_cells, identities


def _url_in_no_job_file(tmp_path: Path, url: str) -> None:
    """The jobs get the ledger URL from their environment: no job script, pickle or cell file holds it."""
    files = [p for p in (tmp_path / "results" / "ablate").rglob("*") if p.is_file() and "logs" not in p.parts]
    assert any(p.name.endswith("_submitted.pkl") for p in files)
    assert [p for p in files if url.encode() in p.read_bytes()] == []


def _wait_for(job_ids: list[str], limit_s: float = 1500) -> None:
    end = time.monotonic() + limit_s
    while any(s.live for s in slurm.job_states(job_ids).values()):
        assert time.monotonic() < end, slurm.job_states(job_ids)
        time.sleep(3)


@pytest.mark.slow
def test_grid_through_submitit_local_executor(tmp_path):
    from medref_cli.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n=40, seed=0)
    url, allow = _ledger_url(tmp_path)
    grid = [*GRID, "--seeds", "0", "--dataset", "synthetic", "--data", str(tmp_path / "data"), *TINY]
    args = [*grid, "--executor", "submitit-local", *allow, "--json"]
    first = _medref(tmp_path, url, *args)
    assert len(first["submitted"]) == 6 and set(first["outcomes"].values()) == {"finished"}
    _url_in_no_job_file(tmp_path, url)
    runs = _cell_runs(url)
    _each_finished_once(runs, 6)
    # every cell ran in the job it was submitted as (its record names the submitit job)
    job_of = {j["cell"]: j["job"] for j in first["submitted"]}
    assert {r.host["scheduler"]["name"] for r in runs} == {"submitit-local"}
    assert sorted(r.host["scheduler"]["job_id"] for r in runs) == sorted(job_of.values())
    rows = _medref(tmp_path, url, *grid, "--dry-run", "--json")
    assert {r["state"] for r in rows} == {"done"} and len(rows) == 6
    slugs = {("(burn-in)", "burn-in"), ("Baseline", "baseline"), ("+ T-S EMA", "t-s-ema"), ("+ PosAug", "posaug"),
             ("+ T-PatchMix", "t-patchmix"), ("+ ITCL (Ours)", "itcl--ours")}
    assert {(r["row"], r["job"]) for r in rows} == {(row, job_of[f"{slug}-r0.1-s0"]) for row, slug in slugs}
    assert {r["node"] for r in rows} == {socket.gethostname()}
    again = _medref(tmp_path, url, *args)
    assert again["submitted"] == [] and again["ablate_run"] is None and again["skipped"] == 6
    assert len(_cell_runs(url)) == 6


@pytest.mark.slow
@needs_slurm
def test_grid_through_real_slurm_resumes_after_scancel(tmp_path):
    from medref_cli.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n=40, seed=0)
    url, allow = _ledger_url(tmp_path)
    args = [*GRID, "--seeds", "0,1", "--dataset", "synthetic", "--data", str(tmp_path / "data"), *TINY,
            "--executor", "slurm", "--slurm-cpus-per-job", "1", "--slurm-time", "30", *allow, "--json"]
    first = _medref(tmp_path, url, *args)
    jobs = {j["cell"]: j for j in first["submitted"]}
    assert len(jobs) == 12  # 2 seeds x (shared burn-in + Baseline control + 4 semi-supervised rows)
    # each seed's semi-supervised cells wait for that seed's shared burn-in, the rest for nothing
    for seed in (0, 1):
        burnin = jobs[f"burn-in-r0.1-s{seed}"]["job"]
        assert jobs[f"baseline-r0.1-s{seed}"]["after"] is None and jobs[f"burn-in-r0.1-s{seed}"]["after"] is None
        for row in ("t-s-ema", "posaug", "t-patchmix", "itcl--ours"):
            assert jobs[f"{row}-r0.1-s{seed}"]["after"] == burnin
    _url_in_no_job_file(tmp_path, url)
    assert all(url not in p.read_text() for p in (tmp_path / "results" / "ablate").rglob("*_submission.sh"))
    victim = jobs["itcl--ours-r0.1-s1"]["job"]  # still waiting on its burn-in: it never starts
    subprocess.run(["scancel", victim], check=True)
    status = _medref(tmp_path, url, *args[:-1], "--status", "--json")
    assert {r["job"] for r in status} == {j["job"] for j in jobs.values()}
    _wait_for([j["job"] for j in jobs.values()])

    runs = _cell_runs(url)
    _each_finished_once(runs, 11)
    assert {r.host["scheduler"]["job_id"] for r in runs} == {j["job"] for c, j in jobs.items() if c != "itcl--ours-r0.1-s1"}
    assert all(r.host["scheduler"]["node"] for r in runs)
    status = {(r["row"], r["seed"]): r for r in _medref(tmp_path, url, *args[:-1], "--status", "--json")}
    assert status[("+ ITCL (Ours)", 1)]["state"] == "pending"
    assert status[("+ ITCL (Ours)", 1)]["job_state"] in ("CANCELLED", "UNKNOWN")
    assert sum(r["state"] == "done" for r in status.values()) == 11

    rerun = _medref(tmp_path, url, *args, "--wait")
    assert [j["cell"] for j in rerun["submitted"]] == ["itcl--ours-r0.1-s1"]
    assert rerun["submitted"][0]["after"] is None  # its burn-in is done: nothing to wait for
    assert rerun["outcomes"] == {"itcl--ours-r0.1-s1": "finished"}
    _each_finished_once(_cell_runs(url), 12)
    last = _medref(tmp_path, url, *args)
    assert last["submitted"] == [] and last["skipped"] == 12
    assert len(_cell_runs(url)) == 12
