"""`medref ablate --status | --dry-run | --cancel`: each cell's state from the ledger, and from the
scheduler for the jobs that were submitted for it (queued, running, or how they ended)."""

from __future__ import annotations

from medref_cli.runs import slurm
from medref_cli.runs.ablate_submit import key_of, live_states, recorded_jobs
from medref_cli.runs.ablation import Cell

COLUMNS = ("row", "kind", "ratio", "seed", "state", "run", "job", "job_state", "node")


def _run_hosts(ledger_url: str, run_ids: list[int]) -> dict[int, dict]:
    from sqlalchemy import select

    from medref_cli.ledger import open_ledger
    from medref_cli.ledger.schema import Run

    if not run_ids:
        return {}
    ledger = open_ledger(ledger_url, create=False)
    try:
        with ledger.read() as session:
            return {rid: host or {} for rid, host in session.execute(
                select(Run.id, Run.host).where(Run.id.in_(run_ids)))}
    finally:
        ledger.dispose()


def grid_rows(ledger_url: str, cells: list[Cell]) -> list[dict]:
    """One row per cell: ledger state and run, the newest job submitted for it, its scheduler state and
    the node it ran on (the run's own record first, else the scheduler's)."""
    jobs = recorded_jobs(ledger_url)
    states = live_states(jobs)
    hosts = _run_hosts(ledger_url, [c.run_id for c in cells if c.run_id is not None])
    rows = []
    for cell in cells:
        job = jobs.get(key_of(cell))
        state = states.get(job["job_id"]) if job else None
        scheduler = (hosts.get(cell.run_id) or {}).get("scheduler") or {}
        job_state = None
        if state is not None:
            job_state = state.state if state.live or state.state not in slurm.LIVE_STATES else "STUCK"
            if state.reason and state.state == "PENDING":
                job_state += f" ({state.reason})"
        elif job is not None:
            job_state = "untracked" if job.get("scheduler") != "slurm" else "UNKNOWN"
        rows.append({
            "row": cell.row, "kind": cell.kind, "ratio": cell.ratio, "seed": cell.seed, "state": cell.state,
            "run": cell.run_id, "job": job["job_id"] if job else None, "job_state": job_state,
            "node": scheduler.get("node") or (state.node if state is not None and state.node else None),
            "array_task": scheduler.get("array_task_id"),
        })
    return rows


def cancel_grid(ledger_url: str, cells: list[Cell]) -> list[str]:
    """scancel every live job of the grid's cells; returns the job ids cancelled."""
    jobs = recorded_jobs(ledger_url)
    mine = {key_of(c) for c in cells}
    grid_jobs = {k: j for k, j in jobs.items() if k in mine}
    if any(j.get("scheduler") == "slurm" for j in grid_jobs.values()):
        slurm.require_tools()
    states = live_states(grid_jobs)
    ids = sorted(i for i, s in states.items() if s.state in slurm.LIVE_STATES)
    slurm.cancel(ids)
    return ids
