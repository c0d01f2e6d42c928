"""The layout of Tables 1-3: which runs make each row, the check-mark columns, the label ratios.

A supervised row (Table 1's backbones, Table 2's Baseline) takes `burnin` runs with
train.step_matched: supervised runs of as many optimizer steps as the semi-supervised runs they
are compared with (a plain burn-in is a phase of a semi-supervised run, not a baseline). A `train` run belongs to the row whose components
equal its recorded `config["ssl"]` components exactly; a run that matches no row is not shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from medref_cli.reports.identity import Components
from medref_cli.reports.paper import ours_label, supervised_label

# (Dice definition, metric) -> the final metric a run records for it
FINAL_NAMES = {
    ("global", "dice"): "test_dice_global",
    ("global", "miou"): "test_iou_global",
    ("per-image", "dice"): "test_dice_per_image_mean",
    ("per-image", "miou"): "test_iou_per_image_mean",
}
TABLE1_RATIOS = (0.01, 0.02, 0.05, 0.15, 1.0)
TABLE2_RATIOS = (0.01, 0.02)
TABLE3_RATIOS = (0.01,)
DEFAULT_METRICS = {"table1": ("dice", "miou"), "table2": ("dice", "miou"), "table3": ("dice",)}

TABLE2_CHECKS = ("T-S EMA", "PosAug", "T-PatchMix", "ITCL")
TABLE3_CHECKS = ("ImgStrong", "TextStrong", "PosAug", "T-PatchMix", "CLIP", "ITCL")


def _ssl(posaug: bool = False, mix: str = "none", contrastive: str = "none", text_strong: bool = False) -> Components:
    """Components of a train run: T-S EMA and ImgStrong always on, the rest as given."""
    return Components(ema=True, img_strong=True, text_strong=text_strong, posaug=posaug, mix=mix,
                      contrastive=contrastive)


FULL_METHOD = _ssl(posaug=True, mix="tpatchmix", contrastive="itcl")


@dataclass(frozen=True)
class RowSpec:
    label: str
    kind: str  # burnin | train
    backbone: str
    components: Components | None = None  # required for train rows
    checks: tuple[bool, ...] = ()
    baseline: str | None = None  # label of the row this one is tested against
    step_matched: bool = False  # burnin rows: only step-matched supervised runs

    def takes(self, kind: str, backbone: str | None, comps: Components | None, step_matched: bool = False) -> bool:
        if kind != self.kind or backbone != self.backbone:
            return False
        if self.kind == "burnin":
            return step_matched == self.step_matched
        return comps == self.components


def ratio_label(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def same_ratio(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-9


def table1_rows(backbones: list[str]) -> list[RowSpec]:
    """Supervised rows first, then the Ours rows, as in the paper."""
    supervised = [RowSpec(supervised_label(b), "burnin", b, step_matched=True) for b in backbones]
    ours = [RowSpec(ours_label(b), "train", b, FULL_METHOD, baseline=supervised_label(b)) for b in backbones]
    return supervised + ours


def _table2_checks(c: Components | None) -> tuple[bool, ...]:
    if c is None:
        return (False, False, False, False)
    return (c.ema, c.posaug, c.mix == "tpatchmix", c.contrastive == "itcl")


def table2_rows(backbone: str) -> list[RowSpec]:
    specs = [
        ("+ T-S EMA", _ssl()),
        ("+ PosAug", _ssl(posaug=True)),
        ("+ T-PatchMix", _ssl(posaug=True, mix="tpatchmix")),
        ("+ ITCL (Ours)", FULL_METHOD),
    ]
    rows = [RowSpec("Baseline", "burnin", backbone, None, _table2_checks(None), step_matched=True)]
    rows += [RowSpec(label, "train", backbone, c, _table2_checks(c), baseline="Baseline") for label, c in specs]
    return rows


def _table3_checks(c: Components) -> tuple[bool, ...]:
    return (c.img_strong, c.text_strong, c.posaug, c.mix == "tpatchmix", c.contrastive == "clip",
            c.contrastive == "itcl")


def table3_rows(backbone: str) -> list[RowSpec]:
    specs = [
        ("Baseline", _ssl()),
        ("TextStrong", _ssl(text_strong=True)),
        ("w/ CutMix", _ssl(mix="cutmix")),
        ("w/ SPC", _ssl(mix="spc")),
        ("Ours-V1", _ssl(posaug=True)),
        ("Ours-V2", _ssl(mix="tpatchmix")),
        ("Ours-V3", _ssl(posaug=True, mix="tpatchmix", contrastive="clip")),
        ("Ours-All", FULL_METHOD),
    ]
    return [
        RowSpec(label, "train", backbone, c, _table3_checks(c), baseline=None if label == "Baseline" else "Baseline")
        for label, c in specs
    ]
