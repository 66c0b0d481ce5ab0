"""What a fresh clone's first commands print: ``pip install -e .`` and ``make help``."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ESCAPE = "\x1b["


def test_the_license_is_an_spdx_string_that_setuptools_reads_without_a_deprecation_warning() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    # A table ({ text = ... }) makes setuptools >= 77 print a deprecation notice three times per install.
    assert project["project"]["license"] == "Apache-2.0"
    # Older setuptools refuse the string form, so the build must not pick one.
    assert "setuptools>=77" in project["build-system"]["requires"]


make_missing = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@make_missing
def test_make_help_into_a_pipe_is_plain_text() -> None:
    out = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    assert ESCAPE not in out
    assert re.search(r"^  help +Show the targets$", out, re.MULTILINE)
    assert re.search(r"^  install +Create \.venv", out, re.MULTILINE)


@make_missing
def test_make_help_on_a_terminal_is_coloured() -> None:
    main, terminal = pty.openpty()
    try:
        subprocess.run(["make", "help"], cwd=ROOT, stdout=terminal, stderr=subprocess.DEVNULL, check=True)
        os.close(terminal)
        terminal = -1
        out = b""
        while chunk := _read(main):
            out += chunk
    finally:
        if terminal != -1:
            os.close(terminal)
        os.close(main)

    assert "  \x1b[36mhelp          \x1b[0m Show the targets" in out.decode()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other end is closed and everything was read
        return b""
