"""Image-side mixing: T-PatchMix (regions, blocks, masks, mixed pseudo-masks), CutMix, SPC flips, label unions.

May import: text, ledger, config and the base modules; not models, losses or data (beside it).
"""
