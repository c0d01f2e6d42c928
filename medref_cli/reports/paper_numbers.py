"""The numbers of the Semi-MedRef paper (arXiv 2605.15720), Tables 1-3, as printed (percent).

Transcribed from `shared/paper/tables.json`; a test keeps the two equal. Reference rows only:
reports show them in their own block and never mix them into measured cells. None = blank in
the paper (Textmatch was not reproduced at 2% and 100%).
"""

from __future__ import annotations

SOURCE = "Semi-MedRef, arXiv 2605.15720"

# dataset -> method -> ratio -> (dice, miou); Table 1 has no 1% column
TABLE1: dict[str, dict[str, dict[str, tuple[float, float] | None]]] = {
    "QaTa-COV19": {
        "LAVT (CVPR '22)": {
            "2%": (69.25, 57.56),
            "5%": (73.93, 63.24),
            "15%": (76.61, 66.49),
            "100%": (79.28, 69.89),
        },
        "SemiRES (ICML '24)": {
            "2%": (75.33, 64.82),
            "5%": (77.4, 67.45),
            "15%": (77.52, 67.59),
            "100%": (80.16, 70.2),
        },
        "LViT (TMI '23)": {
            "2%": (75.23, 64.51),
            "5%": (77.24, 66.31),
            "15%": (79.98, 70.04),
            "100%": (83.66, 75.11),
        },
        "Textmatch (MICCAI '24)": {
            "2%": None,
            "5%": (83.56, 71.67),
            "15%": (86.21, 75.64),
            "100%": None,
        },
        "GuideDecoder (MICCAI '23)": {
            "2%": (80.44, 67.28),
            "5%": (84.23, 72.76),
            "15%": (85.03, 73.95),
            "100%": (89.78, 81.45),
        },
        "MMI-UNet (MICCAI '24)": {
            "2%": (84.63, 73.36),
            "5%": (87.35, 77.55),
            "15%": (88.72, 79.73),
            "100%": (90.88, 83.28),
        },
        "Ours(GuideDecoder)": {
            "2%": (86.07, 75.54),
            "5%": (87.12, 77.18),
            "15%": (89.13, 80.39),
            "100%": (90.91, 83.34),
        },
        "Ours(MMI-UNet)": {
            "2%": (87.25, 77.38),
            "5%": (88.31, 78.98),
            "15%": (89.84, 81.56),
            "100%": (91.39, 84.14),
        },
    },
    "MosMedData+": {
        "LAVT (CVPR '22)": {
            "2%": (58.44, 40.23),
            "5%": (67.54, 55.39),
            "15%": (69.75, 57.64),
            "100%": (73.29, 60.41),
        },
        "SemiRES (ICML '24)": {
            "2%": (61.9, 46.22),
            "5%": (68.64, 55.96),
            "15%": (71.03, 59.07),
            "100%": (74.4, 61.05),
        },
        "LViT (TMI '23)": {
            "2%": (64.19, 52.19),
            "5%": (68.61, 56.49),
            "15%": (71.45, 59.64),
            "100%": (74.57, 61.33),
        },
        "Textmatch (MICCAI '24)": {
            "2%": None,
            "5%": (72.46, 58.12),
            "15%": (75.73, 60.93),
            "100%": None,
        },
        "GuideDecoder (MICCAI '23)": {
            "2%": (66.34, 49.63),
            "5%": (71.21, 55.3),
            "15%": (73.1, 57.95),
            "100%": (77.75, 63.6),
        },
        "MMI-UNet (MICCAI '24)": {
            "2%": (68.23, 51.78),
            "5%": (72.26, 56.57),
            "15%": (74.0, 58.73),
            "100%": (78.42, 64.5),
        },
        "Ours(GuideDecoder)": {
            "2%": (72.87, 57.32),
            "5%": (73.11, 57.62),
            "15%": (74.7, 59.61),
            "100%": (77.94, 63.86),
        },
        "Ours(MMI-UNet)": {
            "2%": (71.16, 55.18),
            "5%": (74.51, 59.38),
            "15%": (76.42, 61.84),
            "100%": (78.7, 64.89),
        },
    },
}

# QaTa-COV19, MMI-UNet: method -> ratio -> (dice, miou)
TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "Baseline": {"1%": (81.02, 68.09), "2%": (84.63, 73.36)},
    "+ T-S EMA": {"1%": (84.58, 73.27), "2%": (85.75, 75.06)},
    "+ PosAug": {"1%": (85.89, 75.27), "2%": (86.59, 76.35)},
    "+ T-PatchMix": {"1%": (86.02, 75.47), "2%": (87.05, 77.07)},
    "+ ITCL (Ours)": {"1%": (86.39, 76.03), "2%": (87.25, 77.38)},
}

# QaTa-COV19, MMI-UNet, 1% labels: method -> Dice (the paper gives no mIoU here)
TABLE3: dict[str, float] = {
    "Baseline": 84.58,
    "TextStrong": 84.6,
    "w/ CutMix": 83.09,
    "w/ SPC": 84.64,
    "Ours-V1": 85.89,
    "Ours-V2": 85.59,
    "Ours-V3": 85.35,
    "Ours-All": 86.39,
}
