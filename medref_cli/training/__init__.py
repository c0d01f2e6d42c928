"""The training loops and steps: the supervised (burn-in) loop and step, the semi-supervised step
and loop, the EMA teacher, the learning-rate and weight schedules, the logged metric window, and
the loop state a resume checkpoint holds.

May import: runtime, models, losses, augment, data, text, ledger, config and the base modules; never evaluation, nor any room above.
"""
