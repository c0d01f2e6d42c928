"""Loss terms: DiceCE, ITCL and the CLIP loss.

May import: text, ledger, config and the base modules; not models, augment or data (beside it).
"""
