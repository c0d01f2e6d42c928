"""The benchmarks: supervised and semi-supervised step times (and a naive port of the same step to
compare with), and the data loader's samples/s with and without the in-memory cache.

May import: training, evaluation, runtime and the rooms under them; never cli, reports or runs.
"""
