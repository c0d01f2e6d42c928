"""What training, evaluation, prediction and the benchmarks all use: the device, bf16 autocast,
batches of a device-resident split, checkpoints, the cross-process helpers (distributed,
step_model), the builders of the model and text encoder (build), the metrics, and the scoring of
a model's predictions on a split (scoring).

May import: models, losses, augment, data, text, ledger, config and the base modules.
"""
