"""The compiled relay's source: it builds without a single warning."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from remo.supervisor import init

SOURCE = init.RELAY_BINARY.with_name("relay.c")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_relay_compiles_without_warnings(tmp_path: Path) -> None:
    # setup.py builds it without -Werror (a newer compiler's new warning must not cost
    # an install its relay); here every warning fails.
    done = subprocess.run(
        [
            "cc",
            "-O2",
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(tmp_path / "r"),
            str(SOURCE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
