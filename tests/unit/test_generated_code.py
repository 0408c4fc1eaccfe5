"""The generated code's version stamps never ask for more than pyproject.toml declares.

The generator writes the grpcio and protobuf versions it was made with into the code, and
that code refuses older runtimes at import time. A floor in pyproject.toml below those
stamps would be a promise the package cannot keep.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
#: Where scripts/gen-proto writes the code: the module path protoc gives the proto
#: package remo.v1.
GENERATED = ROOT / "src" / "remo" / "v1"


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    return {r.name: r for r in requirements}


def floor(requirement: Requirement) -> Version:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    assert floors, f"{requirement.name} has no lower bound in pyproject.toml"
    return max(floors)


def test_grpcio_floor_covers_the_generated_stubs() -> None:
    stubs = (GENERATED / "jobs_pb2_grpc.py").read_text()
    stamp = Version(re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", stubs)[1])  # type: ignore[index]
    for name in ("grpcio", "grpcio-health-checking", "grpcio-reflection"):
        assert floor(declared()[name]) >= stamp, f"{name} floor is below the stubs' {stamp}"


def test_protobuf_range_covers_the_generated_messages() -> None:
    messages = (GENERATED / "jobs_pb2.py").read_text()
    stamp = Version(re.search(r"# Protobuf Python Version: (\S+)", messages)[1])  # type: ignore[index]
    protobuf = declared()["protobuf"]
    assert floor(protobuf) >= stamp
    # The runtime refuses gencode of another major version: the range must stop before it.
    assert not protobuf.specifier.contains(f"{stamp.major + 1}.0.0")


def test_the_generated_code_is_where_gen_proto_writes_it() -> None:
    script = (ROOT / "scripts" / "gen-proto").read_text()
    out = re.search(r'(?m)^out="([^"]+)"', script)
    assert out is not None, "scripts/gen-proto names no out= directory"
    assert ROOT / out[1] == GENERATED
    for name in ("__init__.py", "jobs_pb2.py", "jobs_pb2.pyi", "jobs_pb2_grpc.py"):
        assert (GENERATED / name).is_file(), f"{name} is missing from {GENERATED}"
    # No stale copy at the old place (remo.api.v1), which imports would still find.
    assert not (ROOT / "src" / "remo" / "api" / "v1" / "jobs_pb2.py").exists()
