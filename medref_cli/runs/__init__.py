"""The recorded run's life: preparing a run (setup), the burn-in and train runs, resuming a run, the
ablation grid and its runner, the progress bar, and launching a run over several processes.

May import: training, evaluation, runtime and the rooms under them; never cli, reports or bench.
"""
