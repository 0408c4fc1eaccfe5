from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remo.worker import JobManager

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for cgroups")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def manager(state_dir: Path) -> AsyncIterator[JobManager]:
    async with JobManager.open(state_dir) as jobs:
        yield jobs
