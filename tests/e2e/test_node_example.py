"""examples/node against a real server: the API is usable from another language."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"


@pytest.fixture
def node_example() -> tuple[str, Path]:
    """``node`` and the example's script, its dependencies installed (``npm ci`` once)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs npm): examples/node not run")
    if not (EXAMPLE / "node_modules" / ".package-lock.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (apt-get install npm): cannot install examples/node")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed in {EXAMPLE}:\n{done.stdout}{done.stderr}"
    return node, EXAMPLE / "remo-example.js"


@pytest.mark.timeout(300)
async def test_node_example_runs_jobs_and_reads_structured_errors(
    node_example: tuple[str, Path], server: Server, credential: Path
) -> None:
    node, script = node_example
    proc = await asyncio.create_subprocess_exec(
        node,
        str(script),
        str(credential),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode()
    assert proc.returncode == 0, f"stdout:\n{text}\nstderr:\n{err.decode()}"
    lines = text.splitlines()

    def line(prefix: str) -> str:
        found = [x for x in lines if x.startswith(prefix)]
        assert found, f"no line starting {prefix!r} in:\n{text}"
        return found[0]

    assert line("connected: ").startswith(f"connected: {server.address} as ")
    assert "hello from node" in line("output: ")
    assert "done" in line("output: ")
    finished = [x for x in lines if x.startswith("job ")]
    assert len(finished) == 1 and finished[0].endswith(": JOB_STATE_SUCCEEDED exit_code=0"), text
    assert "JOB_STATE_STOPPED" in line("stopped: ")
    error = line("error: GetJob 999999: ")
    assert "NOT_FOUND (5)" in error
    assert "reason=JOB_NOT_FOUND" in error
    assert "domain=remo" in error
    assert lines[-1] == "ok"
