"""Stubs users generate from proto/ work next to an installed remo: protoc names them
``remo.v1.jobs_pb2``, the very modules remo ships at that path (docs/API.md)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import me

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]

CALLER = r"""
import sys
import grpc
from remo.v1 import jobs_pb2, jobs_pb2_grpc   # what protoc's output imports

path = sys.argv[1]
text = open(path).read()
blocks = text.split("-----BEGIN ")
address = next(l.split()[-1] for l in text.splitlines() if l.startswith("address"))
certs = [("-----BEGIN " + b).encode() for b in blocks[1:] if b.startswith("CERTIFICATE")]
key = next(("-----BEGIN " + b).encode() for b in blocks[1:] if "PRIVATE KEY" in b[:30])
creds = grpc.ssl_channel_credentials(certs[0], key, certs[1])
with grpc.secure_channel(address, creds) as channel:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    print(stub.WhoAmI(jobs_pb2.WhoAmIRequest()).user)
"""


async def test_generated_stubs_import_and_call_next_to_remo(
    tmp_path: Path, credential: Path
) -> None:
    out = tmp_path / "gen"
    out.mkdir()
    generate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        str(ROOT / "proto/remo/v1/jobs.proto"),
    )  # fmt: skip
    assert await generate.wait() == 0
    assert (out / "remo/v1/jobs_pb2_grpc.py").exists()
    env = {**os.environ, "PYTHONPATH": f"{out}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    call = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CALLER, str(credential), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    said, _ = await asyncio.wait_for(call.communicate(), 60)
    assert (call.returncode, said.decode().strip().splitlines()[-1]) == (0, me()[0]), said
