"""A child process for the ledger tests: `python ledger_worker.py MODE URL [N]`.

MODE metrics: record a run and log N metric rows, one transaction each.
MODE sleep:   record a run (heartbeat 0.2 s), print READY, then sleep until signalled.
"""

from __future__ import annotations

import sys
import time

from medref_cli.config import load_config
from medref_cli.ledger import open_ledger, record_run


def main() -> int:
    mode, url = sys.argv[1], sys.argv[2]
    ledger = open_ledger(url)
    cfg = load_config(sets=["runtime.heartbeat_s=0.2"])
    with record_run(ledger, "train", cfg, dataset="synthetic") as run:
        if mode == "metrics":
            n = int(sys.argv[3])
            for step in range(n):
                run.log_metric("loss", 1.0 / (step + 1), step)
        else:
            print(f"READY {run.id}", flush=True)
            time.sleep(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
