"""remo's API in front of a real Slurm cluster: jobs run as the caller's account, their
output streams live, their ends and stops are Slurm's (tests/slurm/cluster.py)."""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

import grpc
import pytest

from remo.api.jobs import duration
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc
from tests.e2e.conftest import Server
from tests.slurm.cluster import Cluster
from tests.slurm.conftest import ALICE, slurm_server
from tests.support import wait_until

Stub = jobs_pb2_grpc.JobServiceStub


async def start(stub: Stub, *argv: str, **fields: object) -> pb.Job:
    return (await stub.Start(pb.StartRequest(argv=list(argv), **fields))).job  # type: ignore[arg-type]


async def output(stub: Stub, job_id: str, **fields: object) -> bytes:
    request = pb.OutputRequest(id=job_id, **fields)  # type: ignore[arg-type]
    return b"".join([c.data async for c in stub.Output(request)])


async def get(stub: Stub, job_id: str) -> pb.Job:
    return (await stub.GetJob(pb.GetJobRequest(id=job_id))).job


def slurm_id(server: Server, job_id: str, owner: str = ALICE) -> int:
    """The Slurm job of ``owner``'s job (shown to its owner as ``n``), from the table."""
    jobs = server.running.jobs
    seq = job_id.rpartition("/")[2]
    found = jobs.table.slurm_id(owner, int(seq))  # type: ignore[attr-defined]
    assert found is not None
    return int(found)


def squeue(cluster: Cluster, slurm_job: int, fields: str) -> str:
    done = cluster.command(
        "squeue", "--noheader", "--states=all", f"--format={fields}", f"--jobs={slurm_job}"
    )
    return done.stdout.strip()


async def slurm_final(cluster: Cluster, slurm_job: int, fields: str = "%u|%T") -> str:
    """``fields`` of the job once Slurm has finished with it too (remo records the end
    as soon as the job's init has: Slurm may still be completing it)."""

    def final() -> str:
        shown = squeue(cluster, slurm_job, f"%T|{fields}")
        state, _, wanted = shown.partition("|")
        return wanted if state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") else ""

    return await wait_until(final, 60, what=f"Slurm to finish job {slurm_job}")


async def test_a_job_runs_in_slurm_as_the_callers_account(server: Server, cluster: Cluster) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "sh", "-c", "id -un; id -u; echo $HOME; pwd; echo oops >&2")
        assert job.state == pb.JOB_STATE_QUEUED
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
        stdout = await output(alice, job.id, streams=[pb.OUTPUT_STREAM_STDOUT])
        stderr = await output(alice, job.id, streams=[pb.OUTPUT_STREAM_STDERR])
    entry = pwd.getpwnam(ALICE)
    assert ended.state == pb.JOB_STATE_SUCCEEDED and ended.exit_code == 0
    assert stdout.decode().split() == [ALICE, str(entry.pw_uid), entry.pw_dir, entry.pw_dir]
    assert stderr == b"oops\n"
    assert ended.HasField("cpu_time") and ended.peak_memory_bytes > 0
    # Slurm's own record: the job's user is the caller's account, not the server's.
    assert await slurm_final(cluster, slurm_id(server, job.id)) == f"{ALICE}|COMPLETED"


def trigger(cluster: Cluster, name: str) -> Path:
    """A file a job waits for (the tests create it; the job's account can see it)."""
    return cluster.shared / f"trigger-{name}-{os.getpid()}"


def wait_for(path: Path) -> str:
    return f"while [ ! -e {path} ]; do sleep 0.05; done"


async def test_output_is_followed_live(server: Server, cluster: Cluster) -> None:
    go = trigger(cluster, "follow")
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "sh", "-c", f"echo first; {wait_for(go)}; echo second >&2")
        seen: list[tuple[int, bytes]] = []
        async for chunk in alice.Output(pb.OutputRequest(id=job.id, follow=True)):
            seen.append((chunk.stream, chunk.data))
            if chunk.data == b"first\n":
                go.touch()  # the job goes on only once its first line has arrived
        go.unlink()
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
    assert seen == [(pb.OUTPUT_STREAM_STDOUT, b"first\n"), (pb.OUTPUT_STREAM_STDERR, b"second\n")]
    assert ended.state == pb.JOB_STATE_SUCCEEDED


async def test_several_jobs_are_followed_in_one_stream(server: Server, cluster: Cluster) -> None:
    """OutputMany reads Slurm jobs' shared directories in rounds, as the local backend's.
    (Two jobs: the test cluster's node runs two at a time.)"""
    go = trigger(cluster, "many")
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        jobs = [
            await start(alice, "sh", "-c", f"echo {n} first; {wait_for(go)}; echo {n} second")
            for n in range(2)
        ]
        request = pb.OutputManyRequest(
            jobs=[pb.OutputRequest(id=job.id, follow=True) for job in jobs]
        )
        data: dict[int, bytes] = {0: b"", 1: b""}
        ended: list[int] = []
        async for message in alice.OutputMany(request):
            for piece in message.pieces:
                if piece.end:
                    ended.append(piece.job)
                data[piece.job] += piece.data
            if all(d.endswith(b"first\n") for d in data.values()):
                go.touch()  # the jobs go on once each one's first line has arrived
        go.unlink()
    assert sorted(ended) == [0, 1]
    assert data == {n: f"{n} first\n{n} second\n".encode() for n in range(2)}


@pytest.mark.parametrize(
    ("script", "state", "code", "sig"),
    [
        ("exit 3", pb.JOB_STATE_FAILED, 3, None),
        ("kill -USR1 $$", pb.JOB_STATE_KILLED, None, signal.SIGUSR1),
        # SIGPIPE's default action again for the job (Python, the init, ignores it; a
        # shell that starts with it ignored could not undo that, and would go on)
        ("kill -PIPE $$; echo ignored", pb.JOB_STATE_KILLED, None, signal.SIGPIPE),
        ("exec /nonexistent/program", pb.JOB_STATE_FAILED, 127, None),
    ],
)
async def test_exit_codes_and_signals_are_the_jobs(
    server: Server, script: str, state: int, code: int | None, sig: int | None
) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "sh", "-c", script)
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
    assert ended.state == state
    assert (ended.exit_code if ended.HasField("exit_code") else None) == code
    assert (ended.signal if ended.HasField("signal") else None) == sig


async def test_a_command_that_cannot_run_says_why(server: Server) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "/nonexistent/program")
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
        stderr = await output(alice, job.id)
    assert ended.exit_code == 127
    assert b"remo: cannot run '/nonexistent/program': No such file or directory" in stderr


async def wait_state(stub: Stub, job_id: str, state: int) -> pb.Job:
    async def reached() -> pb.Job | None:
        job = await get(stub, job_id)
        return job if job.state == state else None

    return await wait_until(reached, 60, what=f"job {job_id} in state {state}")


async def test_stop_a_running_job_term_then_kill(server: Server, cluster: Cluster) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        polite = await start(alice, "sh", "-c", "echo ready; exec sleep 300")
        # Ignores SIGTERM (and so does its sleep, which inherits that): needs the KILL.
        stubborn = await start(alice, "sh", "-c", "trap '' TERM; echo ready; sleep 300")
        # (Slurm says running before the batch script starts: wait for the command)
        await wait_until(lambda: output(alice, polite.id), 60, what="the command to run")
        await wait_until(lambda: output(alice, stubborn.id), 60, what="the trap to be set")
        stop = pb.StopRequest(id=polite.id, grace=duration(30))
        first = (await alice.Stop(stop)).job
        stop = pb.StopRequest(id=stubborn.id, grace=duration(1))
        second = (await alice.Stop(stop)).job
    assert first.state == pb.JOB_STATE_STOPPED and first.signal == signal.SIGTERM
    assert second.state == pb.JOB_STATE_STOPPED and second.signal == signal.SIGKILL
    assert await slurm_final(cluster, slurm_id(server, stubborn.id), "%T") == "CANCELLED"


async def test_stop_a_queued_job_and_see_slurms_reason(server: Server, cluster: Cluster) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        both_cpus = pb.Limits(cpu_cores=2)
        running = await start(alice, "sleep", "300", limits=both_cpus)
        await wait_state(alice, running.id, pb.JOB_STATE_RUNNING)
        waiting = await start(alice, "sleep", "300", limits=both_cpus)
        queued = await wait_until(
            lambda: _with_reason(alice, waiting.id), 30, what="Slurm's reason for the wait"
        )
        stopped = (await alice.Stop(pb.StopRequest(id=waiting.id))).job
        assert stopped.state == pb.JOB_STATE_STOPPED
        assert stopped.reason == "stopped while queued: it never ran"
        assert not stopped.HasField("exit_code") and not stopped.HasField("signal")
        assert await slurm_final(cluster, slurm_id(server, waiting.id), "%T") == "CANCELLED"
        await alice.Stop(pb.StopRequest(id=running.id, grace=duration(5)))
    assert queued.state == pb.JOB_STATE_QUEUED and queued.reason in ("Resources", "Priority")


async def _with_reason(stub: Stub, job_id: str) -> pb.Job | None:
    job = await get(stub, job_id)
    return job if job.state == pb.JOB_STATE_QUEUED and job.reason else None


async def test_limits_are_mapped_to_slurms(server: Server, cluster: Cluster) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "true", limits=pb.Limits(cpu_cores=1.5, memory_bytes=100 << 20))
        await alice.Wait(pb.WaitRequest(id=job.id))
    # cpus per task rounded up; memory per node in MiB
    assert await slurm_final(cluster, slurm_id(server, job.id), "%c|%m") == "2|100M"


async def test_the_memory_limit_is_enforced(server: Server) -> None:
    hog = "import time; b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096])"
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "python3", "-c", hog, limits=pb.Limits(memory_bytes=100 << 20))
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
    assert ended.state == pb.JOB_STATE_KILLED and ended.signal == signal.SIGKILL
    assert ended.oom_killed


async def test_limits_slurm_cannot_enforce_are_refused_by_name(server: Server) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        limits = pb.Limits(pids=10, io_write_bps=1 << 20)
        with pytest.raises(grpc.RpcError) as refused:
            await start(alice, "true", limits=limits)
        listed = (await alice.ListJobs(pb.ListJobsRequest())).jobs
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        "the Slurm backend cannot enforce: io-write, pids (leave them out)"
    )
    assert not listed  # nothing was recorded, nothing submitted


async def test_a_partition_is_named_by_label_where_allowed(
    tmp_path: Path, cluster: Cluster, unix_users: tuple[str, ...]
) -> None:
    label = {"slurm/partition": "other"}
    async with slurm_server(tmp_path / "a", cluster) as strict:
        channel, alice = strict.stub(strict.credential(ALICE, "operator"))
        async with channel:
            with pytest.raises(grpc.RpcError) as refused:
                await start(alice, "true", labels=label)
    assert "partition 'other' is not allowed here" in (refused.value.details() or "")
    async with slurm_server(tmp_path / "b", cluster, partitions=["other"]) as open_:
        channel, alice = open_.stub(open_.credential(ALICE, "operator"))
        async with channel:
            job = await start(alice, "true", labels=label)
            await alice.Wait(pb.WaitRequest(id=job.id))
        assert await slurm_final(cluster, slurm_id(open_, job.id), "%P") == "other"


async def test_a_schedule_submits_when_due(server: Server, cluster: Cluster) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        created = await alice.Start(
            pb.StartRequest(argv=["echo", "scheduled"], when=pb.When(delay=duration(1)))
        )
        schedule = created.schedule
        due = schedule.next_run_time.ToNanoseconds() / 1e9

        async def ran() -> pb.ScheduleRun | None:
            s = (await alice.GetSchedule(pb.GetScheduleRequest(id=schedule.id))).schedule
            return next((r for r in s.recent_runs if r.job_id), None)

        run = await wait_until(ran, 30, what="the schedule's run")
        job = (await alice.Wait(pb.WaitRequest(id=run.job_id))).job
        printed = await output(alice, job.id)
    assert job.start_time.ToNanoseconds() / 1e9 >= due  # submitted when due, not before
    assert job.schedule_id == schedule.id and printed == b"scheduled\n"
    assert await slurm_final(cluster, slurm_id(server, job.id)) == f"{ALICE}|COMPLETED"


async def test_a_server_restart_mid_job_loses_nothing(
    tmp_path: Path, cluster: Cluster, unix_users: tuple[str, ...]
) -> None:
    go = trigger(cluster, "restart")
    async with slurm_server(tmp_path, cluster) as first:
        channel, alice = first.stub(first.credential(ALICE, "operator"))
        async with channel:
            job = await start(alice, "sh", "-c", f"echo before; {wait_for(go)}; echo after; exit 4")
            await wait_until(lambda: output(alice, job.id), 60, what="the first line")
    go.touch()  # the job goes on while no server runs
    try:
        async with slurm_server(tmp_path, cluster) as second:  # (on another port)
            channel, alice = second.stub(second.credential(ALICE, "operator"))
            async with channel:
                ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
                printed = await output(alice, job.id)
    finally:
        go.unlink()
    assert ended.state == pb.JOB_STATE_FAILED and ended.exit_code == 4
    assert printed == b"before\nafter\n"


async def test_kill_sends_one_signal_to_the_running_job(server: Server) -> None:
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        job = await start(alice, "sh", "-c", "echo ready; exec sleep 300")
        await wait_until(lambda: output(alice, job.id), 60, what="the command to run")
        await alice.Kill(pb.KillRequest(id=job.id, signal=signal.SIGKILL))
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
    assert ended.state == pb.JOB_STATE_KILLED and ended.signal == signal.SIGKILL


async def test_a_job_cannot_swap_its_output_files_for_links(server: Server) -> None:
    """The server reads the job's files as root: the job may write their contents, but
    not put a link to another file (/etc/shadow, say) in their place."""
    channel, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        first = await start(alice, "true")
        await alice.Wait(pb.WaitRequest(id=first.id))
        settings = server.running.jobs.settings  # type: ignore[attr-defined]
        seq = int(first.id) + 1
        job_dir = settings.shared_dir / ALICE / str(seq)
        swap = f"ln -sf /etc/shadow {job_dir}/records; touch {job_dir}/exit; echo still here"
        job = await start(alice, "sh", "-c", swap)
        assert job.id == str(seq)
        ended = (await alice.Wait(pb.WaitRequest(id=job.id))).job
        printed = await output(alice, job.id)
    assert ended.state == pb.JOB_STATE_SUCCEEDED  # (its last command's status)
    assert b"Permission denied" in printed and b"still here\n" in printed
    assert b"root:" not in printed
    assert not (job_dir / "records").is_symlink()
