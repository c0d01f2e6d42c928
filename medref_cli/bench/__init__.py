"""The benchmarks: training step times and the data loader."""
