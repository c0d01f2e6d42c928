"""Data sets: readers of each public layout, checks, splits, the synthetic set, decoded-tensor caches,
the weak and strong views.

May import: text, ledger, config and the base modules; not models, losses or augment (beside it).
"""
