"""The output budget: its size from the descriptor limit, one user's share, places
taken all or none and given back however the block ends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from remo.core.errors import TooManyOutputs
from remo.server.output_budget import LEAST, MOST_PER_USER, OutputBudget


@pytest.mark.parametrize(
    ("fd_limit", "total", "per_user"),
    [
        (1_048_576, (1_048_576 - 4608) // 3, MOST_PER_USER),  # the packaged unit's limit
        (20_000, (20_000 - 4608) // 3, (20_000 - 4608) // 3 // 4),
        (1024, (1024 - 256) // 3, (1024 - 256) // 3 // 4),  # a shell's: a quarter reserved
        (100, LEAST, LEAST // 4),
    ],
)
def test_the_budget_follows_the_descriptor_limit(fd_limit: int, total: int, per_user: int) -> None:
    budget = OutputBudget.for_fd_limit(fd_limit)
    assert (budget.total, budget.per_user) == (total, per_user)
    assert budget.total * 3 <= max(fd_limit, LEAST * 3)


def test_a_set_share_replaces_the_default_but_never_exceeds_the_total() -> None:
    assert OutputBudget.for_fd_limit(20_000, per_user=7).per_user == 7
    assert OutputBudget.for_fd_limit(1024, per_user=1_000_000).per_user == 256


def test_a_user_gets_its_share_and_no_more_taking_nothing_when_refused() -> None:
    budget = OutputBudget(total=10, per_user=4)
    with budget.hold("alice", 3):
        refused = pytest.raises(TooManyOutputs, match=r"reading 3 job outputs .* 2 more; at most 4")
        with refused, budget.hold("alice", 2):
            pass
        assert budget.held("alice") == 3
        with budget.hold("alice", 1), budget.hold("bob", 4):
            assert budget.in_use == 8
    assert budget.in_use == 0 and budget.held("alice") == 0 and budget.held("bob") == 0


def test_the_server_wide_total_holds_across_users() -> None:
    budget = OutputBudget(total=5, per_user=4)
    with budget.hold("alice", 4):
        with pytest.raises(TooManyOutputs, match="4 of 5 places are in use"), budget.hold("bob", 2):
            pass
        with budget.hold("bob", 1):
            assert budget.in_use == 5


def test_places_come_back_when_the_stream_fails() -> None:
    budget = OutputBudget(total=5, per_user=5)
    with pytest.raises(RuntimeError), budget.hold("alice", 5):
        raise RuntimeError("the client went away")
    assert budget.in_use == 0 and budget.held("alice") == 0


def test_the_soft_descriptor_limit_is_raised_and_the_old_one_kept_for_jobs() -> None:
    code = (
        "import os, resource; from remo.server.output_budget import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "print(raise_fd_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print(os.environ['REMO_JOB_NOFILE'] == str(min(256, hard)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "REMO_JOB_NOFILE"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["True", "True"]
