"""The Slurm backend's pure parts, without a cluster: squeue lines, how an end is
decided, limits to sbatch options, settings."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from remo.core.errors import InvalidArgument
from remo.core.outcome import Exited, Lost, Signaled
from remo.core.spec import JobSpec, Limits
from remo.core.status import JobState
from remo.server.config import ConfigError, load
from remo.slurm import ending, script
from remo.slurm.commands import QueueEntry, parse_queue_line
from remo.slurm.settings import SlurmSettings


def test_squeue_lines_are_read_by_field_with_the_reason_last() -> None:
    line = "42|PENDING|remo-alice|1796567220|0|n/a|ReqNodeNotAvail,|odd|reason"
    entry = parse_queue_line(line)
    assert entry == QueueEntry(
        42, "PENDING", "remo-alice", 1796567220.0, None, "", "ReqNodeNotAvail,|odd|reason"
    )
    assert entry.queued and not entry.final
    assert parse_queue_line("slurm_load_jobs error: Invalid job id specified") is None
    done = parse_queue_line("7|COMPLETED|bob|1|2|vm|None")
    assert done is not None and done.final and done.reason == "" and done.node == "vm"


def entry(state: str) -> QueueEntry:
    return QueueEntry(1, state, "u", None, None, "vm", "")


def test_the_inits_wait_status_decides_the_end() -> None:
    exited = ending.InitStatus(3 << 8, 10, 0, False, 0.5, 1 << 20)
    end = ending.decide(exited, entry("RUNNING"), stop_requested=False)
    assert isinstance(end, ending.JobEnd) and end.outcome == Exited(3)
    assert end.usage.cpu_seconds == 0.5 and end.usage.peak_memory_bytes == 1 << 20
    killed = ending.InitStatus(signal.SIGKILL)
    assert ending.decide(killed, entry("COMPLETING"), False) is None  # OOM? Slurm will say
    oom = ending.decide(killed, entry("OUT_OF_MEMORY"), False)
    assert isinstance(oom, ending.JobEnd) and oom.oom_killed
    termed = ending.decide(ending.InitStatus(signal.SIGTERM), entry("CANCELLED"), True)
    assert isinstance(termed, ending.JobEnd) and termed.state is JobState.STOPPED
    assert termed.outcome == Signaled(signal.SIGTERM)


def test_without_a_wait_status_slurm_decides() -> None:
    running = ending.InitStatus(None)
    assert ending.decide(running, entry("RUNNING"), False) is None
    killed = ending.decide(running, entry("CANCELLED"), True, seen_running=True)
    assert isinstance(killed, ending.JobEnd) and killed.outcome == Signaled(signal.SIGKILL)
    assert killed.state is JobState.STOPPED
    oom = ending.decide(running, entry("OUT_OF_MEMORY"), False, seen_running=True)
    assert isinstance(oom, ending.JobEnd) and oom.oom_killed and oom.state is JobState.KILLED
    lost = ending.decide(running, None, False, seen_running=True)
    assert isinstance(lost, ending.JobEnd) and isinstance(lost.outcome, Lost)
    never = ending.decide(None, entry("CANCELLED"), True)
    assert never == ending.NeverRan(JobState.STOPPED, "stopped while queued: it never ran")
    refused = ending.decide(None, entry("FAILED"), False)
    assert isinstance(refused, ending.NeverRan) and refused.state is JobState.LOST


def test_the_status_file_is_read_as_the_init_writes_it(tmp_path: Path) -> None:
    assert ending.read_status(tmp_path) is None
    (tmp_path / ".status").touch()  # made by the server: the init has not started
    assert ending.read_status(tmp_path) is None
    (tmp_path / ".status").write_text("-".ljust(96))
    assert ending.read_status(tmp_path) == ending.InitStatus(None)
    (tmp_path / ".status").write_text("256 5 0 0 0.125 4096".ljust(96))
    assert ending.read_status(tmp_path) == ending.InitStatus(256, 5, 0, False, 0.125, 4096)


def test_limits_become_sbatch_options() -> None:
    options = script.sbatch_options(
        Limits(cpu=0.5, memory=(100 << 20) + 1), "remo:a/1", "gpu", Path("/s/a/1")
    )
    assert "--cpus-per-task=1" in options and "--mem=101M" in options
    assert "--partition=gpu" in options and "--job-name=remo:a/1" in options
    assert not [o for o in script.sbatch_options(Limits(), "n", "", Path("/x")) if "--mem" in o]
    assert script.job_name("a", 1, "0f3c9a12") == "remo:a/1@0f3c9a12"


def test_what_slurm_cannot_enforce_is_refused_in_one_line() -> None:
    spec = JobSpec(["true"], limits=Limits(io_read_bps=1 << 20, pids=5), private_tmp=True)
    with pytest.raises(InvalidArgument) as refused:
        script.refuse_unsupported(spec)
    assert str(refused.value) == (
        "the Slurm backend cannot enforce: io-read, pids, private /tmp (leave them out)"
    )
    script.refuse_unsupported(JobSpec(["true"], limits=Limits(cpu=1, memory=1 << 30)))


def test_partitions_outside_the_allowed_ones_are_refused() -> None:
    settings = SlurmSettings(partition="batch", partitions=["gpu"])
    assert script.partition_of(JobSpec(["x"]), settings) == "batch"
    assert script.partition_of(JobSpec(["x"], labels={"slurm/partition": "gpu"}), settings) == "gpu"
    with pytest.raises(InvalidArgument, match="allowed: batch, gpu"):
        script.partition_of(JobSpec(["x"], labels={"slurm/partition": "big"}), settings)


def test_the_batch_script_is_the_init_with_its_settings() -> None:
    text = script.batch_script("/usr/bin/python3", {"argv": ["echo", "it's"]}).decode()
    assert text.startswith("#!/usr/bin/python3\n")
    assert text.rstrip().endswith('main(json.loads("{\\"argv\\": [\\"echo\\", \\"it\'s\\"]}"))')


def test_slurm_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(
        'backend = "slurm"\n[slurm]\nshared_dir = "relative"\npoll_interval = "2m"\n'
        'partition = "a"\npartitions = ["b"]\n'
    )
    with pytest.raises(ConfigError) as bad:
        load(str(path))
    text = str(bad.value)
    assert "slurm.shared_dir: must be an absolute path" in text
    assert "slurm.poll_interval: must be between 0.05s and 60s" in text
    path.write_text('backend = "slurm"\n[slurm]\npartition = "a"\npartitions = ["b"]\n')
    with pytest.raises(
        ConfigError, match=re.escape("slurm.partition 'a' is not among slurm.partitions")
    ):
        load(str(path))
    path.write_text('backend = "slurm"\n[slurm]\nshared_dir = "/srv/x"\npoll_interval = "2s"\n')
    config = load(str(path))
    assert config.backend == "slurm" and config.slurm.poll_interval == 2
    assert load(None, backend="slurm").backend == "slurm"
    with pytest.raises(ConfigError, match="jobs cannot get network none"):
        path.write_text('backend = "slurm"\n[isolation]\nnetwork = "none"\n')
        load(str(path))


def test_the_init_source_needs_nothing_but_the_standard_library() -> None:
    source = (Path(script.__file__).parent / "jobinit.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports and not [line for line in imports if "remo" in line]
    assert os.path.basename(script.__file__) == "script.py"
