"""docs/SDK.md's examples run as written against a real server, so the guide cannot rot."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "SDK.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_guide_has_its_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
async def test_example_runs(number: int, tmp_path: Path, credential: Path) -> None:
    env = {**os.environ, "REMO_PROFILE": str(credential), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", EXAMPLES[number], env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"example {number + 1} of docs/SDK.md:\n{out.decode()}"
