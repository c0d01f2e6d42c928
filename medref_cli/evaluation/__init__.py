"""Scoring a recorded model: Dice/IoU of a split (evaluate), an evaluation recorded as a run
(evaluate_run), predicted masks and overlays for images (predict, overlay), and a run's
predictions on chosen test images (predict_split).

May import: runtime, models, losses, augment, data, text, ledger, config and the base modules; never training, nor any room above.
"""
