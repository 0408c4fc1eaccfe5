import asyncio

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
        raw = channel.unary_unary("/remo.v1.Jobs/Start")
        # field 1 (argv), wire type 2, invalid utf-8
        bad = b"\x0a\x03\xff\xfe\xfd"
        rawst = channel.unary_unary("/remo.v1.Jobs/Status")
        reqs = [
            ("raw start", raw(bad)),
            ("raw status", rawst(b"\x0a\x02\xc3\x28")),
            ("raw garbage", rawst(b"\xff\xff\xff\xff")),
            ("raw truncated", rawst(b"\x0a\x10ab")),
            ("stop nl", stub.Stop(pb.StopRequest(id="root\n/1", grace_seconds=0))),
            ("rm nl", stub.Remove(pb.RemoveRequest(id="root\n/1"))),
            ("wait nl", stub.Wait(pb.JobRef(id="root\n/1"))),
            ("out nl", stub.Output(pb.OutputRequest(id="root\n/1", follow=True)).read()),
            ("100k args 16B", stub.Start(pb.StartRequest(argv=["true"] + ["y" * 15] * 100000))),
            ("100k args true", stub.Start(pb.StartRequest(argv=["true"] + ["y"] * 100000))),
            ("200KiB arg", stub.Start(pb.StartRequest(argv=["true", "y" * (200 << 10)]))),
            ("env big", stub.Start(pb.StartRequest(argv=["true"], env={"A": "y" * (200 << 10)}))),
            ("env unicode", stub.Start(pb.StartRequest(argv=["true"], env={"é": "ü"}))),
            ("argv0 empty", stub.Start(pb.StartRequest(argv=[""]))),
            ("cwd rel", stub.Start(pb.StartRequest(argv=["true"], cwd="rel"))),
            ("cwd file", stub.Start(pb.StartRequest(argv=["true"], cwd="/etc/passwd"))),
            ("exe dir", stub.Start(pb.StartRequest(argv=["/etc"]))),
            ("exe noexec", stub.Start(pb.StartRequest(argv=["/etc/passwd"]))),
        ]
        for name, c in reqs:
            print(name, *(str(x)[:200] for x in await code(c)))
        print(await stub.List(pb.ListRequest()))
        print(await stub.WhoAmI(pb.WhoAmIRequest()))
