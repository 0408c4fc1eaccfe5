"""The supervisor's one reaper: every child's exit status goes to its one owner.

Real child processes (``/bin/sh -c 'exit N'``), reaped with ``waitpid(-1)``; each test
reaps only after its children have exited, so no other child of the test process is
collected meanwhile.
"""

from __future__ import annotations

import asyncio
import os

from remo.supervisor.reaper import Reaper, keep_reaping


def spawn(code: int) -> int:
    return os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {code}"], os.environ)


def wait_exited(pid: int) -> None:
    """Wait until ``pid`` is a zombie, without reaping it."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def test_watched_children_go_to_their_owner() -> None:
    reaper, seen = Reaper(), {}
    a, b = spawn(1), spawn(2)
    reaper.watch(a, lambda status: seen.setdefault(a, status))
    reaper.watch(b, lambda status: seen.setdefault(b, status))
    wait_exited(a)
    wait_exited(b)
    reaper.reap()
    assert {pid: os.waitstatus_to_exitcode(s) for pid, s in seen.items()} == {a: 1, b: 2}


def test_a_held_child_keeps_its_status_until_watched() -> None:
    """A job that ends before its start has recorded it must not pass for an orphan."""
    reaper, seen = Reaper(), []
    pid = spawn(7)
    reaper.hold(pid)
    wait_exited(pid)
    reaper.reap()
    assert not seen
    reaper.watch(pid, seen.append)
    assert [os.waitstatus_to_exitcode(s) for s in seen] == [7]


def test_orphans_are_reaped_and_dropped() -> None:
    reaper = Reaper()
    pid = spawn(0)
    wait_exited(pid)
    reaper.reap()
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # reaped: no zombie left
    else:
        raise AssertionError("the orphan was not reaped")


def test_released_child_is_an_orphan() -> None:
    reaper, seen = Reaper(), []
    pid = spawn(0)
    reaper.watch(pid, seen.append)
    reaper.release(pid)
    wait_exited(pid)
    reaper.reap()
    assert not seen


def test_exit_of_settles_for_a_child_that_already_exited() -> None:
    async def scenario() -> int:
        reaper = Reaper()
        pid = spawn(5)
        reaper.hold(pid)
        wait_exited(pid)  # exited, its SIGCHLD not handled yet
        return os.waitstatus_to_exitcode(await reaper.exit_of(pid))

    assert asyncio.run(scenario()) == 5


async def test_an_exit_whose_sigchld_was_lost_is_reaped_all_the_same() -> None:
    """Nothing here handles SIGCHLD at all, as when asyncio dropped its byte: the
    periodic reap still hands the exit to its owner."""
    reaper = Reaper()
    ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    pid = spawn(4)
    reaper.watch(pid, ended.set_result)
    wait_exited(pid)
    reaping = asyncio.create_task(keep_reaping(reaper.reap, interval=0.01))
    try:
        status = await asyncio.wait_for(ended, 30)
    finally:
        reaping.cancel()
    assert os.waitstatus_to_exitcode(status) == 4
