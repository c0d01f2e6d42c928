"""Zone probabilities predicted from the image by a recorded position run: the input of
`medref evaluate --text-mode soft_image` (ISPG).

The interface the image-only position predictor (`medref position train --run RUN`) fills in:

    predict_position_probs(position_run, records, ledger_url=..., device=...) -> Tensor (N, 6)

- `position_run`: the id of a recorded, finished position run;
- `records`: the samples to predict, in order (their images only are read, never their captions);
- returns float32 probabilities in [0, 1], one row per record in `records` order, columns in
  `medref_cli.text.positions.ZONES` order (left upper, left middle, left lower, right upper, right
  middle, right lower), left and right meaning what they mean in the data set's captions
  (`data.laterality`), so that a row is comparable with the record's position label;
- every failure a user can cause (no such run, not a position run, not finished, its checkpoint
  missing or altered, a data set of another image size) raises a one-line MedrefError, before
  anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medref_cli.data.records import SampleRecord
from medref_cli.errors import MedrefError


def predict_position_probs(position_run: int, records: Sequence[SampleRecord], *, ledger_url: str,
                           device: str = "auto") -> torch.Tensor:
    """(N, 6) zone probabilities of `records` from position run `position_run` (see the module doc)."""
    raise MedrefError(f"no position run {position_run}: this medref has no image-only position predictor yet "
                      "(medref position train), so --text-mode soft_image cannot run")
