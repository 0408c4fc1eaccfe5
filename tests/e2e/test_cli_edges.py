"""Rough edges a new user hit, through the real CLI in a shell, against a real server:
a closed pipe, and arguments that are not UTF-8."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

pytestmark = pytest.mark.root


async def shell(env: dict[str, str], script: str) -> tuple[int, str, str]:
    """``script`` run by bash (``remo`` on its PATH), as a user types it."""
    venv_bin = os.path.dirname(sys.executable)
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", f"set -o pipefail; {script}",
        env={**env, "PATH": f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def test_a_closed_pipe_ends_remo_quietly(cli_env: dict[str, str]) -> None:
    code, out, err = await shell(cli_env, "remo run -- seq 1 1000000 | head -1")
    assert (code, out) == (141, "1\n"), err
    assert "Traceback" not in err and "internal error" not in err
    assert "keeps running" in err and "remo stop" in err, err
    code, out, err = await shell(
        cli_env, "id=$(remo run -d -- seq 1 2000000) && remo wait $id && remo logs $id | head -1"
    )
    assert (code, out, err) == (141, "1\n", "")


async def test_arguments_that_are_not_utf8(cli_env: dict[str, str]) -> None:
    for script, option in (
        ("remo run -- echo $'\\xff'", "argument 1"),
        ("remo run --env $'X=\\xff' -- true", "--env"),
        ("remo run --cwd $'/tmp/\\xff' -- true", "--cwd"),
    ):
        code, _out, err = await shell(cli_env, script)
        assert "Traceback" not in err and "internal error" not in err, (script, err)
        assert code == 2 and option in err and "UTF-8" in err, (script, code, err)
