"""Display names, and the paper's reference numbers for a block of a report table.

The paper's numbers apply only to the real data sets and full-size backbones it used
(`qata`, `mosmed`; `mmi-unet`, `guidedecoder`): a tiny test backbone or the synthetic data set
gets no reference rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from medref_cli.reports import paper_numbers

DATASET_TITLES = {"qata": "QaTa-COV19", "mosmed": "MosMedData+", "synthetic": "Synthetic"}
BACKBONE_TITLES = {"mmi-unet": "MMI-UNet", "guidedecoder": "GuideDecoder"}
# our supervised-row backbone -> the paper's row label
PAPER_BACKBONE_ROWS = {"mmi-unet": "MMI-UNet (MICCAI '24)", "guidedecoder": "GuideDecoder (MICCAI '23)"}
# Tables 2 and 3 were run on one data set with one backbone
ABLATION_SETTING = ("qata", "mmi-unet")
# Table 1 has no 1% column; Table 2 gives 1% for MMI-UNet on QaTa-COV19 (its Baseline at 2%
# equals supervised MMI-UNet at 2% in Table 1, and its full model equals Ours(MMI-UNet))
TABLE1_ONE_PERCENT_FROM_TABLE2 = {"MMI-UNet (MICCAI '24)": "Baseline", "Ours(MMI-UNet)": "+ ITCL (Ours)"}


def dataset_title(name: str) -> str:
    return DATASET_TITLES.get(name, name)


def backbone_title(name: str) -> str:
    return BACKBONE_TITLES.get(name, name)


def supervised_label(backbone: str) -> str:
    return backbone_title(backbone)


def ours_label(backbone: str) -> str:
    return f"Ours({backbone_title(backbone)})"


@dataclass(frozen=True)
class PaperReference:
    label: str  # as printed in the paper
    compared_with: str | None  # label of our row measuring the same thing
    values: dict[tuple[str, str], float]  # (ratio label, metric) -> percent


def _pairs(by_ratio: dict[str, tuple[float, float] | None]) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], float] = {}
    for ratio, pair in by_ratio.items():
        if pair is not None:
            values[(ratio, "dice")], values[(ratio, "miou")] = pair
    return values


def table1_references(dataset: str, backbones: list[str]) -> list[PaperReference]:
    """Every Table 1 row of the paper for `dataset`; those of our backbones carry a comparison."""
    title = DATASET_TITLES.get(dataset)
    if title not in paper_numbers.TABLE1:
        return []
    ours_for = {}
    for backbone in backbones:
        if backbone in PAPER_BACKBONE_ROWS:
            ours_for[PAPER_BACKBONE_ROWS[backbone]] = supervised_label(backbone)
            ours_for[ours_label(backbone)] = ours_label(backbone)
    refs = []
    for label, by_ratio in paper_numbers.TABLE1[title].items():
        values = _pairs(by_ratio)
        source = TABLE1_ONE_PERCENT_FROM_TABLE2.get(label)
        if dataset == ABLATION_SETTING[0] and source is not None:
            dice, miou = paper_numbers.TABLE2[source]["1%"]
            values[("1%", "dice")], values[("1%", "miou")] = dice, miou
        refs.append(PaperReference(label, ours_for.get(label), values))
    return refs


def table2_references(dataset: str, backbone: str) -> list[PaperReference]:
    if (dataset, backbone) != ABLATION_SETTING:
        return []
    return [PaperReference(label, label, _pairs(by_ratio)) for label, by_ratio in paper_numbers.TABLE2.items()]


def table3_references(dataset: str, backbone: str) -> list[PaperReference]:
    if (dataset, backbone) != ABLATION_SETTING:
        return []
    return [PaperReference(label, label, {("1%", "dice"): dice}) for label, dice in paper_numbers.TABLE3.items()]
