"""Fixtures of the Slurm backend's tests: one real cluster for the session (see
:mod:`tests.slurm.cluster`), and remo servers with ``backend = "slurm"`` in front of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from remo.slurm.settings import SlurmSettings
from tests.e2e.conftest import Server, serve
from tests.slurm.cluster import Cluster, missing_programs, start_cluster

ALICE = "remo-alice"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("the Slurm tests need root (slurmd, and submitting as test accounts)")
    missing = missing_programs()
    if missing:
        pytest.skip(
            f"Slurm is not installed ({', '.join(missing)} missing): "
            "apt-get install slurm-wlm munge (scripts/test does)"
        )
    running = start_cluster()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(running.root, ignore_errors=True)


def slurm_settings(cluster: Cluster, name: str, **overrides: Any) -> SlurmSettings:
    """Settings for one test: its own shared directory, a fast poll."""
    values: dict[str, Any] = {
        "shared_dir": cluster.shared / name,
        "slurm_conf": cluster.conf,
        "poll_interval": 0.2,
        **overrides,
    }
    return SlurmSettings(**values)


@asynccontextmanager
async def slurm_server(tmp_path: Path, cluster: Cluster, **overrides: Any) -> AsyncIterator[Server]:
    """A remo server whose backend is the cluster (state under ``tmp_path``)."""
    settings = slurm_settings(cluster, tmp_path.name, **overrides)
    async with serve(tmp_path, backend="slurm", slurm=settings) as server:
        yield server


@pytest.fixture(autouse=True)
def no_jobs_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test of a cluster leaves it empty, whatever its outcome: a job left running
    (a failed test's) would hold the node's CPUs and make the next tests wait."""
    yield
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").cancel_all()


@pytest.fixture
async def server(
    tmp_path: Path, cluster: Cluster, unix_users: tuple[str, ...]
) -> AsyncIterator[Server]:
    async with slurm_server(tmp_path, cluster) as srv:
        yield srv
