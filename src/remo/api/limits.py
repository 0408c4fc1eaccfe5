"""Limits between core and remo.v1 messages: shared by the server and the client SDK."""

from __future__ import annotations

from remo.core.spec import Limits
from remo.v1 import jobs_pb2 as pb


def limits_from_pb(msg: pb.Limits) -> Limits:
    def opt(name: str) -> int | None:
        return int(getattr(msg, name)) if msg.HasField(name) else None

    return Limits(
        cpu=msg.cpu_cores if msg.HasField("cpu_cores") else None,
        memory=opt("memory_bytes"),
        io_read_bps=opt("io_read_bps"),
        io_write_bps=opt("io_write_bps"),
        pids=opt("pids"),
        output_bytes=opt("output_bytes"),
    )


def limits_to_pb(limits: Limits) -> pb.Limits:
    msg = pb.Limits()
    if limits.cpu is not None:
        msg.cpu_cores = limits.cpu
    for field, value in (
        ("memory_bytes", limits.memory),
        ("io_read_bps", limits.io_read_bps),
        ("io_write_bps", limits.io_write_bps),
        ("pids", limits.pids),
        ("output_bytes", limits.output_bytes),
    ):
        if value is not None:
            setattr(msg, field, value)
    return msg
