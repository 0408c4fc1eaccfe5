"""Ctrl-C while the client waits inside grpc: the interrupt comes out of remo's code, the
call is cancelled, and the client closes; the CLI does this for SIGINT (and ``run`` for
SIGTERM and SIGHUP).

An exception a signal handler raises lands wherever the main thread is. Inside grpc's
Python code it could leave a call half updated that then never completed, and closing
the channel waited for it for ever (grpc/grpc#19973): `remo logs -f` hung after Ctrl-C
about once in 200 interruptions on a busy machine (bench/interrupt_bench.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from remo.client import AsyncClient

#: A process that follows a silent job in its main thread, as the CLI does, with the
#: CLI's SIGINT handler (or Python's own, given ``default``), and interrupts itself once
#: the main thread waits inside grpc for a message. It prints where the KeyboardInterrupt
#: was raised, then ``closed`` once the client is closed.
FOLLOWER = r"""
import os, signal, sys, threading, time, traceback
from remo.client import Client, calls
from remo.cli import common
credential, job_id, handler = sys.argv[1:]
main = threading.get_ident()

def waiting_for_a_message():
    if not calls.inside_grpc(main):
        return False
    frame, names = sys._current_frames().get(main), set()
    while frame is not None:
        names.add((os.path.basename(frame.f_code.co_filename), frame.f_code.co_name))
        frame = frame.f_back
    return {("threading.py", "wait"), ("sync.py", "_next")} <= names

def interrupt_inside_grpc():
    while not waiting_for_a_message():
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGINT)

with Client.from_file(credential) as remo:
    if handler == "remo":
        common.interrupt_outside_grpc()
    else:
        calls.track_calls()  # (only to see when the main thread waits inside grpc)
    threading.Thread(target=interrupt_inside_grpc, daemon=True).start()
    try:
        for chunk in remo.output(job_id, follow=True):
            pass
    except KeyboardInterrupt:
        frame = traceback.extract_tb(sys.exc_info()[2])[-1]
        print(os.path.relpath(frame.filename, os.path.dirname(calls.__file__)), flush=True)
print("closed", flush=True)
"""


async def test_ctrl_c_inside_grpc_is_raised_outside_it_and_the_client_closes(
    credential: Path,
) -> None:
    """With the CLI's handler the KeyboardInterrupt comes from remo's client code, once
    grpc's wait returned (the call cancelled). (With Python's own handler, ``default``,
    it is raised inside grpc's or threading's code.)"""
    async with AsyncClient.from_file(credential) as remo:
        job = (await remo.start(["sleep", "1000"])).job
        assert job is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                FOLLOWER,
                str(credential),
                job.id,
                "remo",  # ("default" to see the interrupt land in grpc's code)
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            await remo.stop(job.id, grace=0)
    raised_in, closed = out.decode().splitlines()
    assert closed == "closed"
    assert raised_in == "calls.py", f"the interrupt was raised in {raised_in}"
