"""A job is a guest: nothing it does reaches remo's own files or changes what remo records.

Each case runs as an unprivileged registered account (``remo-alice``) through the real
server, tries one route an attacker holding an operator credential would try, and
asserts both the refusal and that nothing changed. docs/SECURITY.md names these tests.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from remo.api.jobs import duration
from remo.core.paths import STATUS_FILE
from remo.v1 import jobs_pb2 as pb
from remo.v1 import jobs_pb2_grpc
from tests.e2e.conftest import Server, needs_root, reason_of, serve
from tests.support import wait_until

pytestmark = needs_root
ALICE = "remo-alice"

#: Lists the descriptors open in the job (fcntl on 0..1023; opens none of its own).
FD_PROBE = (
    "import fcntl\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        fcntl.fcntl(fd, fcntl.F_GETFD)\n"
    "        return True\n"
    "    except OSError:\n"
    "        return False\n"
    "print([fd for fd in range(1024) if is_open(fd)])\n"
)


async def run(
    stub: jobs_pb2_grpc.JobServiceStub, argv: list[str], **request: object
) -> tuple[pb.Job, str]:
    job = (await stub.Start(pb.StartRequest(argv=argv, **request))).job  # type: ignore[arg-type]
    return await finished(stub, job.id)


async def finished(stub: jobs_pb2_grpc.JobServiceStub, job_id: str) -> tuple[pb.Job, str]:
    status = (await stub.Wait(pb.WaitRequest(id=job_id))).job
    output = b"".join([c.data async for c in stub.Output(pb.OutputRequest(id=job_id))])
    return status, output.decode(errors="replace")


def init_of(job_pid: int) -> int:
    """The job's init, as the host sees it: the parent of the job's main process."""
    stat = Path(f"/proc/{job_pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def as_account(account: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command on the host as ``account`` (the job's own account, outside remo).

    Through setpriv(1): ``subprocess``'s own ``user=`` forks this process, whose grpc
    threads do not survive a fork.
    """
    entry = pwd.getpwnam(account)
    switch = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    return subprocess.run(
        [*switch, "--", *argv], capture_output=True, text=True, check=False, timeout=60
    )


# -- descriptors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "request_fields"),
    [
        (ALICE, {}),
        (ALICE, {"network": pb.NETWORK_NONE}),
        (ALICE, {"private_tmp": True}),
        ("root", {}),
        ("root", {"network": pb.NETWORK_NONE, "private_tmp": True}),
    ],
    ids=["account", "network-none", "private-tmp", "root", "root-isolated"],
)
async def test_job_starts_with_exactly_stdin_stdout_stderr(
    server: Server, unix_users: tuple[str, ...], who: str, request_fields: dict[str, object]
) -> None:
    channel, stub = server.stub(server.credential(who, "admin" if who == "root" else "operator"))
    async with channel:
        status, output = await run(stub, ["python3", "-c", FD_PROBE], **request_fields)
    assert status.state == pb.JOB_STATE_SUCCEEDED, output
    assert output == "[0, 1, 2]\n"


async def test_scheduled_job_starts_with_exactly_stdio(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    channel, stub = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        when = pb.When(delay=duration(0.05))
        schedule = await stub.Start(pb.StartRequest(argv=["python3", "-c", FD_PROBE], when=when))
        sid = schedule.schedule.id

        async def ran() -> bool:
            runs = (await stub.GetSchedule(pb.GetScheduleRequest(id=sid))).schedule.recent_runs
            return any(r.job_id for r in runs)

        await wait_until(ran, 15)
        got = await stub.GetSchedule(pb.GetScheduleRequest(id=sid))
        run_of = got.schedule.recent_runs[0]
        status, output = await finished(stub, run_of.job_id)
    assert status.state == pb.JOB_STATE_SUCCEEDED, output
    assert output == "[0, 1, 2]\n"


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no-namespaces"])
async def test_job_after_a_supervisor_restart_starts_with_exactly_stdio(
    tmp_path: Path, unix_users: tuple[str, ...], namespaces: bool
) -> None:
    async with serve(tmp_path, namespaces=namespaces) as server:
        srv = server.running
        channel, stub = server.stub(server.credential(ALICE, "operator"))
        async with channel:
            running_job = (await stub.Start(pb.StartRequest(argv=["sleep", "0.5"]))).job
            old = srv.jobs._info["pid"]
            os.kill(old, signal.SIGKILL)
            await stub.Wait(pb.WaitRequest(id=running_job.id))  # through the new supervisor
            status, output = await run(stub, ["python3", "-c", FD_PROBE])
            assert srv.jobs._info["pid"] != old
    assert status.state == pb.JOB_STATE_SUCCEEDED, output
    assert output == "[0, 1, 2]\n"


# -- the output cap and the status record ----------------------------------------------

#: Every route to more output than the cap: stdout and stderr themselves, their /proc
#: aliases, descriptors a leak would have left, the state dir's files by name, and the
#: init's descriptors through /proc (PID 1 inside a PID namespace, its host pid outside).
CAP_ROUTES = r"""
import glob, os, sys
blob = b"x" * (1 << 20)
def attempt(what, action):
    try:
        action()
        print("WROTE", what, file=sys.stderr)
    except OSError:
        pass
for fd in range(3, 64):
    attempt(f"fd {fd}", lambda fd=fd: os.write(fd, blob))
for path in [*glob.glob("/proc/1/fd/*"), *glob.glob(f"/proc/{os.getppid()}/fd/*"),
             *glob.glob("{state}/jobs/*/*/std*"), *glob.glob("{state}/jobs/*/*/records"),
             *glob.glob("{state}/jobs/*/*/.status"), "{job_dir}/stdout", "{job_dir}/stderr",
             "{job_dir}/records", "{job_dir}/.status"]:
    attempt(path, lambda path=path: os.write(os.open(path, os.O_WRONLY | os.O_APPEND), blob))
os.write(1, blob)
os.write(2, blob)
for alias in ("/proc/self/fd/1", "/dev/stdout", "/dev/stderr"):  # allowed: still the pipe
    os.write(os.open(alias, os.O_WRONLY), blob)
"""


async def test_output_cap_holds_against_every_route(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    cap = 4096
    channel, stub = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        next_dir = server.state_dir / "jobs" / ALICE / "1"
        script = CAP_ROUTES.replace("{state}", str(server.state_dir))
        script = script.replace("{job_dir}", str(next_dir))
        status, output = await run(
            stub, ["python3", "-c", script], limits=pb.Limits(output_bytes=cap)
        )
    assert status.id == "1"
    assert status.state == pb.JOB_STATE_SUCCEEDED, output[-2000:]
    assert status.output_dropped_bytes > 0, status
    # Everything stored (both streams and their records) is within the cap, but for the
    # notice that says so, the last record.
    stored = sum((next_dir / name).stat().st_size for name in ("stdout", "stderr", "records"))
    notice = output[output.index("\n[remo: ") :]
    assert notice.startswith("\n[remo: output truncated at 4096 bytes;"), notice
    assert stored - len(notice.encode()) - 32 <= cap
    assert "WROTE" not in output


FORGE_STATUS = r"""
import glob, os, time
record = b"0 0 0".ljust(64)
for fd in range(3, 64):
    try:
        os.pwrite(fd, record, 0)
    except OSError:
        pass
for path in [*glob.glob("/proc/1/fd/*"), *glob.glob(f"/proc/{os.getppid()}/fd/*"),
             "{job_dir}/.status"]:
    try:
        with open(path, "r+b") as f:
            f.write(record)
    except OSError:
        pass
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no-namespaces"])
async def test_job_cannot_forge_its_outcome_or_touch_its_init(
    tmp_path: Path, unix_users: tuple[str, ...], namespaces: bool
) -> None:
    """The job writes a 'succeeded' record everywhere it can reach; its account then
    tries to kill, signal and trace its init. All refused; when an admin kills the
    init anyway, the job is recorded as lost, never as succeeded."""
    async with serve(tmp_path, namespaces=namespaces) as server:
        channel, stub = server.stub(server.credential(ALICE, "operator"))
        async with channel:
            job_dir = server.state_dir / "jobs" / ALICE / "1"
            script = FORGE_STATUS.replace("{job_dir}", str(job_dir))
            job = (await stub.Start(pb.StartRequest(argv=["python3", "-c", script]))).job
            async for chunk in stub.Output(pb.OutputRequest(id=job.id, follow=True)):
                if b"ready" in chunk.data:
                    break
            init = init_of(job.pid)
            assert (job_dir / STATUS_FILE).read_bytes().strip() == b""
            for sig in ("-KILL", "-TERM", "-STOP", "-USR1"):
                refused = as_account(ALICE, "kill", sig, str(init))
                assert refused.returncode != 0, f"kill {sig} of the init succeeded"
            traced = as_account(
                ALICE, "/usr/bin/python3", "-c",
                "import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
                f"sys.exit(0 if libc.ptrace(16, {init}, 0, 0) == 0 else 1)",
            )  # fmt: skip
            assert traced.returncode == 1, "the job's account attached to its init"
            for peek in ("environ", "fd/3", "mem"):
                assert as_account(ALICE, "cat", f"/proc/{init}/{peek}").returncode != 0
            got = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
            assert got.state == pb.JOB_STATE_RUNNING
            os.kill(init, signal.SIGKILL)  # the admin's kill -9, which nothing can stop
            status = (await stub.Wait(pb.WaitRequest(id=job.id))).job
    assert status.state == pb.JOB_STATE_LOST, status
    assert "init was killed by SIGKILL" in status.reason
    assert not status.HasField("exit_code")


# -- files, sockets, cgroups and mounts of remo's --------------------------------------


async def test_job_cannot_reach_remos_files_sockets_cgroups_or_mounts(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    channel_b, bob = server.stub(server.credential("remo-bob", "operator"))
    channel_a, alice = server.stub(server.credential(ALICE, "operator"))
    async with channel_a, channel_b:
        await run(bob, ["sh", "-c", "echo bob-secret"])
        bob_output = server.state_dir / "jobs" / "remo-bob" / "1" / "stdout"
        assert bob_output.read_text() == "bob-secret\n"
        before = {p: p.stat().st_mtime_ns for p in server.state_dir.rglob("*") if p.is_file()}
        sock = server.state_dir / "supervisor.sock"
        assert sock.exists()
        probes = {
            "read-ca-key": f"cat {server.state_dir}/ca.key",
            "list-state-dir": f"ls {server.state_dir}",
            "read-other-users-output": f"cat {bob_output}",
            "read-registry": f"cat {server.state_dir}/identities.db",
            "reach-supervisor-socket": (
                "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); "
                f's.connect("{sock}")\''
            ),
            "write-cgroup-limits": (
                "cg=$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup); "
                "echo max > /sys/fs/cgroup/pids$cg/pids.max"
            ),
            "leave-cgroup": (
                "cg=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup); "
                "echo $$ > /sys/fs/cgroup/memory${cg%/*}/cgroup.procs"
            ),
            "mount": "mount -t tmpfs none /tmp",
            "unmount-proc": "umount /proc",
        }
        for name, script in probes.items():
            status, output = await run(alice, ["sh", "-c", script])
            assert status.state == pb.JOB_STATE_FAILED, f"{name} succeeded: {output}"
    # Bob's job, its output and the CA are as they were (the databases change: jobs ran).
    for path in [bob_output, server.state_dir / "ca.key", server.state_dir / "ca.crt"]:
        assert path.stat().st_mtime_ns == before[path], path
    assert bob_output.read_text() == "bob-secret\n"


# -- OOM, pids and cpu ------------------------------------------------------------------


async def test_a_childs_oom_is_not_the_jobs_death(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    if server.running.cgroup_mode == "none":
        pytest.skip("needs a memory controller")
    channel, stub = server.stub(server.credential(ALICE, "operator"))
    hog = "python3 -c 'b = bytearray(200 << 20)'"
    async with channel:
        child, output = await run(
            stub, ["sh", "-c", f"{hog}; echo survived"], limits=pb.Limits(memory_bytes=64 << 20)
        )
        main, _ = await run(
            stub, ["python3", "-c", "b = bytearray(200 << 20)"],
            limits=pb.Limits(memory_bytes=64 << 20),
        )  # fmt: skip
    # ("survived" on stdout, sh's "Killed" on stderr: either may come first)
    assert child.state == pb.JOB_STATE_SUCCEEDED and "survived\n" in output, output
    assert not child.oom_killed and child.oom_kills >= 1
    assert "out-of-memory" not in child.reason
    assert main.state == pb.JOB_STATE_KILLED and main.oom_killed and main.oom_kills >= 1
    assert main.signal == signal.SIGKILL


#: Forks children that sleep until one fork is refused; prints how many it got.
FORK_UNTIL_REFUSED = r"""
import os, time
children = []
while len(children) < 20:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print(len(children) + 1)
for pid in children:
    os.kill(pid, 9)
"""


async def test_pids_limit_counts_the_jobs_processes_only(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    channel, stub = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        five, held = await run(
            stub, ["python3", "-c", FORK_UNTIL_REFUSED], limits=pb.Limits(pids=5)
        )
        one, _ = await run(stub, ["true"], limits=pb.Limits(pids=1))
    assert five.state == pb.JOB_STATE_SUCCEEDED and held == "5\n"  # 5 at once, and not 6
    assert one.state == pb.JOB_STATE_SUCCEEDED


async def test_cpu_above_the_servers_cpus_is_refused(
    server: Server, unix_users: tuple[str, ...]
) -> None:
    cpus = os.cpu_count() or 1
    channel, stub = server.stub(server.credential(ALICE, "operator"))
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Start(pb.StartRequest(argv=["true"], limits=pb.Limits(cpu_cores=1000)))
        status, _ = await run(stub, ["true"], limits=pb.Limits(cpu_cores=float(cpus)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "LIMIT_OUT_OF_RANGE"
    assert f"between 0.001 and {cpus:g} cores" in (caught.value.details() or "")
    assert status.state == pb.JOB_STATE_SUCCEEDED
