import asyncio, math
import grpc
from remo.api.v1 import jobs_pb2 as pb
from tests.e2e.conftest import Server


async def code(coro):
    try:
        r = await asyncio.wait_for(coro, 20)
        return "OK", r
    except grpc.aio.AioRpcError as e:
        return e.code().name, e.details()


async def test_probe(server: Server) -> None:
    channel, stub = server.stub(server.credential("root", "admin"))
    async with channel:
        job = (await stub.Start(pb.StartRequest(argv=["echo", "hi"]))).job
        await stub.Wait(pb.JobRef(id=job.id))
        reqs = [
            ("out huge", stub.Output(pb.OutputRequest(id=job.id, offset=2**63 - 1)).read()),
            (
                "out huge f",
                stub.Output(pb.OutputRequest(id=job.id, offset=2**63 - 1, follow=True)).read(),
            ),
            ("out neg", stub.Output(pb.OutputRequest(id=job.id, offset=-(2**63))).read()),
            ("at nan", stub.Start(pb.StartRequest(argv=["true"], when=pb.When(at_unix=math.nan)))),
            ("at inf", stub.Start(pb.StartRequest(argv=["true"], when=pb.When(at_unix=math.inf)))),
            ("at 1e308", stub.Start(pb.StartRequest(argv=["true"], when=pb.When(at_unix=1e308)))),
            (
                "at 9999",
                stub.Start(
                    pb.StartRequest(argv=["true"], when=pb.When(at="9999-12-31T23:59-23:59"))
                ),
            ),
            (
                "at 9999b",
                stub.Start(pb.StartRequest(argv=["true"], when=pb.When(at="9999-12-31T23:59"))),
            ),
            (
                "at 0001",
                stub.Start(
                    pb.StartRequest(argv=["true"], when=pb.When(at="0001-01-01T00:00+23:59"))
                ),
            ),
            ("at 24:00", stub.Start(pb.StartRequest(argv=["true"], when=pb.When(at="99:99")))),
            ("status nl", stub.Status(pb.JobRef(id=job.id + "\n"))),
            ("status root nl", stub.Status(pb.JobRef(id="root\n/1"))),
            ("rm sched nl", stub.Remove(pb.RemoveRequest(id="s1\n"))),
            ("sched nl", stub.ScheduleStatus(pb.JobRef(id="s1\n"))),
            ("rm sched", stub.Remove(pb.RemoveRequest(id="root\n/s1"))),
            ("cwd", stub.Start(pb.StartRequest(argv=["true"], cwd="/nonexist"))),
            ("env", stub.Start(pb.StartRequest(argv=["true"], env={"": "x"}))),
            ("env2", stub.Start(pb.StartRequest(argv=["true"], env={"A": "\0"}))),
            (
                "cpu nan",
                stub.Start(pb.StartRequest(argv=["true"], limits=pb.Limits(cpu_cores=math.nan))),
            ),
            (
                "mem max",
                stub.Start(
                    pb.StartRequest(argv=["true"], limits=pb.Limits(memory_bytes=2**63 - 1))
                ),
            ),
            ("big argv", stub.Start(pb.StartRequest(argv=["x"] * 100000))),
            ("1MiB", stub.Start(pb.StartRequest(argv=["echo", "x" * (1 << 20)]))),
            ("9MiB", stub.Start(pb.StartRequest(argv=["echo", "x" * (9 << 20)]))),
            ("grace nan", stub.Stop(pb.StopRequest(id=job.id, grace_seconds=math.nan))),
            ("net", stub.Start(pb.StartRequest(argv=["true"], network="bogus"))),
            ("list", stub.List(pb.ListRequest(limit=2**32 - 1))),
        ]
        for name, c in reqs:
            print(name, *(str(x)[:200] for x in await code(c)))
        print(await stub.List(pb.ListRequest()))
        await stub.Remove(pb.RemoveRequest(id=job.id))
