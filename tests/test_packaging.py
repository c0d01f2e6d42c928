"""The package installs into a lab's environment: lower bounds, no exact pins of torch."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}


def test_a_clusters_torch_build_satisfies_the_requirements():
    reqs = _requirements()
    for name, version in (("torch", "2.4.0"), ("torch", "2.4.1+cu121"), ("torch", "2.14.1"), ("torchvision", "0.19.0")):
        assert reqs[name].specifier.contains(Version(version), prereleases=True), (name, version)
    assert not any(str(s).startswith("==") for r in reqs.values() for s in r.specifier)


def test_the_makefile_installs_the_development_pair_first():
    text = (ROOT / "Makefile").read_text()
    assert "TORCH_VERSION ?= 2.14.1" in text and "TORCHVISION_VERSION ?= 0.29.1" in text
    assert text.index("torch==$(TORCH_VERSION)") < text.index("-e '.[dev]'")
