"""OutputResponse written and read by hand (remo.api.output_wire) against protobuf's own
encoder and parser, both ways."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from remo.api import output_wire
from remo.v1 import jobs_pb2 as pb

offsets = st.integers(0, (1 << 63) - 1)
streams = st.sampled_from([0, 1, 2])
times = st.none() | st.integers(1, (1 << 62))


def protobuf_message(
    offset: int, data: bytes, stream: int, time_ns: int | None
) -> pb.OutputResponse:
    msg = pb.OutputResponse(offset=offset, data=data, stream=stream)  # type: ignore[arg-type]
    if time_ns:
        stamp = Timestamp()
        stamp.FromNanoseconds(time_ns)
        msg.time.CopyFrom(stamp)
    return msg


@given(offset=offsets, data=st.binary(max_size=300), stream=streams, time_ns=times)
def test_protobuf_reads_what_remo_writes(
    offset: int, data: bytes, stream: int, time_ns: int | None
) -> None:
    raw = output_wire.encode(offset, data, stream, time_ns)
    assert pb.OutputResponse.FromString(raw) == protobuf_message(offset, data, stream, time_ns)
    if data:
        assert raw.endswith(data)  # data last: joined once, sliced once


@given(offset=offsets, data=st.binary(max_size=300), stream=streams, time_ns=times)
def test_remo_reads_what_protobuf_writes(
    offset: int, data: bytes, stream: int, time_ns: int | None
) -> None:
    raw = protobuf_message(offset, data, stream, time_ns).SerializeToString()
    assert output_wire.decode(raw) == output_wire.OutputMessage(offset, data, stream, time_ns)


def test_unknown_fields_are_skipped_and_a_large_piece_is_kept_whole() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    unknown = b"\x28\x07" + b"\x32\x03abc" + b"\x3d\x01\x02\x03\x04" + b"\x39" + bytes(8)
    msg = output_wire.decode(unknown + output_wire.encode(5, data, 2, 7))
    assert msg == output_wire.OutputMessage(5, data, 2, 7)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x08",
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x12\x05ab",
        b"\x0b",
        b"\x22\x02\x08",
    ],
)
def test_malformed_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="OutputResponse"):
        output_wire.decode(raw)


def test_the_final_status_of_a_follow_is_read_whole() -> None:
    job = pb.Job(id="7", state=pb.JOB_STATE_FAILED, exit_code=3)
    msg = output_wire.decode(pb.OutputResponse(job=job).SerializeToString())
    assert (msg.data, msg.job is not None) == (b"", True)
    assert pb.Job.FromString(msg.job or b"") == job
    assert output_wire.decode(output_wire.encode(1, b"x", 1, None)).job is None
