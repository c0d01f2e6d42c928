"""The data loader benchmark's tests build their tiny data sets with the data tests' builders."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("tests_data_conftest", Path(__file__).parents[1] / "data" / "conftest.py")
_DATA = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = _DATA  # its dataclasses look their module up there
_SPEC.loader.exec_module(_DATA)

qata_fixture = _DATA.qata_fixture
