"""The recorded run's life: prepare, burn-in run, train run, resume, the ablation grid, process launching."""
