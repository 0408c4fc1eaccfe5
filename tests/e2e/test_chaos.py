"""Chaos under load, CI-sized: ``bench/chaos.py --short`` with one seed finds nothing wrong.

The bench script does the work (docs/RELIABILITY.md, "Chaos under load"): a real
``remo server`` on loopback with its state dir on a tmpfs, clients following jobs of
every kind while the server is killed (SIGKILL and SIGTERM) and restarted, the
supervisor is killed and the disk fills; then every job's output, state and Start is
audited and nothing of the run may be left. It runs in a process of its own (it mounts,
signals and restarts servers); this test reads its results. ``REMO_CHAOS_SEED`` picks
another seed (default 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import needs_root

pytestmark = [needs_root, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_chaos_short_run_finds_no_mismatch(tmp_path: Path) -> None:
    seed = int(os.environ.get("REMO_CHAOS_SEED", "1"))
    results = tmp_path / "chaos.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "chaos.py"),
            "--short",
            "--seed",
            str(seed),
            "--results",
            str(results),
            "--tmp",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert results.exists(), f"no results; stdout:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    run = json.loads(results.read_text())["runs"][f"short-seed{seed}"]
    mismatches = [f"[{m['kind']}] {m['what']}: {m['detail']}" for m in run["mismatches"]]
    assert mismatches == [], "\n".join(mismatches)
    assert proc.returncode == 0, proc.stdout[-3000:]
    # It did what it is for: jobs of every kind under every kind of fault.
    figures = run["figures"]
    assert all(figures.get(f"jobs {kind}", 0) > 0 for kind in ("text", "binary", "termignore"))
    assert figures.get("server SIGKILL", 0) > 0 and figures.get("server SIGTERM", 0) > 0
    assert figures.get("supervisor SIGKILL", 0) > 0 and figures.get("disk-full windows", 0) > 0
