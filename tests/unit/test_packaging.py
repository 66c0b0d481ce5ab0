"""What a fresh clone's first commands print: ``pip install -e .`` and ``make help``."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_is_an_spdx_string_that_setuptools_reads_without_a_deprecation_warning() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    # A table ({ text = ... }) makes setuptools >= 77 print a deprecation notice three times per install.
    assert project["project"]["license"] == "Apache-2.0"
    # Older setuptools refuse the string form, so the build must not pick one.
    assert "setuptools>=77" in project["build-system"]["requires"]
