"""One list of error reasons: the proto's header, the server's errors, the client's
typed exceptions and the CLI's exit codes (docs/CLI.md) agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import grpc
import pytest

from remo.client import errors as client_errors
from remo.core import errors as core_errors
from remo.server import authn
from remo.server.errors import refusal, status_of

ROOT = Path(__file__).resolve().parents[2]
PROTO = (ROOT / "proto/remo/v1/jobs.proto").read_text()
CLI_DOC = (ROOT / "docs/CLI.md").read_text()


def proto_reasons() -> dict[str, str]:
    """Reason -> status code, from the proto's header comment."""
    header = PROTO.split("syntax =")[0]
    table = header.split("Errors:")[1]
    found: dict[str, str] = {}
    code = ""
    for line in table.splitlines():
        text = line.removeprefix("//").rstrip()
        first = re.match(r"\s+([A-Z_]{6,})\s{2,}(.*)", text)
        if first and first.group(1) in grpc.StatusCode.__members__:
            code, text = first.group(1), first.group(2)
        elif not text.startswith("     "):
            continue
        for reason in re.findall(r"\b[A-Z][A-Z_]{3,}\b", text):
            found[reason] = code
    return found


def documented_exit_codes() -> dict[str, int]:
    paragraph = CLI_DOC.split("The code of a server's refusal follows from")[1].split("\n\n")[0]
    codes: dict[str, int] = {}
    for names, code in re.findall(r"((?:`[A-Z_]+`,?\s*(?:and\s*)?)+)(?:exit\s*)?(\d)", paragraph):
        for name in re.findall(r"`([A-Z_]+)`", names):
            codes[name] = int(code)
    return codes


class FakeError(grpc.RpcError):
    """A failed call as grpc raises it, carrying ``status``."""

    def __init__(self, status: Any) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return str(self._status.details)

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata


def test_the_proto_lists_every_reason_with_its_code() -> None:
    reasons = proto_reasons()
    assert reasons["JOB_NOT_FOUND"] == "NOT_FOUND"
    assert reasons["START_FAILED"] == "FAILED_PRECONDITION"
    assert len(reasons) >= 17


def test_every_reason_the_server_sends_is_listed() -> None:
    listed = proto_reasons()
    sent = {
        cls.reason
        for cls in vars(core_errors).values()
        if isinstance(cls, type) and issubclass(cls, core_errors.RemoError)
    }
    sent |= {"LIMIT_OUT_OF_RANGE", "INVALID_PAGE_TOKEN", "SCHEDULE_NOT_FOUND"}
    sent |= {authn._reason(err) for err in _certificate_errors()}
    sent.add(authn.Unauthenticated("x").reason)
    assert sent <= set(listed), sent - set(listed)


def _certificate_errors() -> list[Any]:
    from datetime import UTC, datetime

    from remo.pki import errors as pki

    now = datetime.now(UTC)
    return [
        pki.CertificateRevoked("01", "alice", now),
        pki.AccountBanned("alice", now),
        pki.CertificateExpired("01", now),
        pki.UnknownCertificate("unknown"),
    ]


@pytest.mark.parametrize("reason", sorted(proto_reasons()))
def test_the_client_raises_the_documented_exit_code(reason: str) -> None:
    code = grpc.StatusCode[proto_reasons()[reason]]
    err = client_errors.from_rpc_error(FakeError(refusal(code, "refused", reason)))
    assert err.reason == reason
    assert err.exit_code == documented_exit_codes()[reason], type(err)


def test_bad_input_names_its_field() -> None:
    status = status_of(core_errors.InvalidArgument("no", field="limits.pids"))
    err = client_errors.from_rpc_error(FakeError(status))
    assert (type(err), err.fields, err.exit_code) == (
        client_errors.InvalidRequest,
        ("limits.pids",),
        2,
    )


def test_a_start_failure_carries_its_stage_and_errno() -> None:
    status = status_of(core_errors.StartFailed("exec", 2, "cannot run ./x"))
    err = client_errors.from_rpc_error(FakeError(status))
    assert isinstance(err, client_errors.StartFailed)
    assert err.metadata() == {"stage": "exec", "errno": "ENOENT"}
