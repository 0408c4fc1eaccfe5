"""remo.pki.register over a real unix socket: the caller's uid comes from SO_PEERCRED."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from remo.pki import package
from remo.pki.ca import CertificateAuthority, Role
from remo.pki.errors import RegisterError, RegisterRefused, RegisterUnavailable
from remo.pki.register import (
    RegisterServer,
    register_socket_path,
    request_credential,
    request_credential_for_state_dir,
)
from remo.pki.registry import Registry

ADDRESS = "remo.example.org:7443"


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A socket directory every account can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="remo-run-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def ca(state: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(state)


@pytest.fixture
def registry(ca: CertificateAuthority, state: Path) -> Iterator[Registry]:
    with Registry.open(state, ca.certificate) as reg:
        yield reg


def my_name() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def test_socket_path_is_derived_from_the_state_dir(tmp_path: Path, run_dir: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "link").symlink_to(state)
    path = register_socket_path(state, run_dir)
    assert path.parent == run_dir
    assert path.name.startswith("register-") and path.name.endswith(".sock")
    assert register_socket_path(f"{state}/", run_dir) == path
    assert register_socket_path(tmp_path / "link", run_dir) == path
    assert register_socket_path(tmp_path / "other", run_dir) != path
    assert str(register_socket_path("/var/lib/remo")).startswith("/run/remo/register-")
    assert len(os.fsencode(register_socket_path("/" + "x" * 300))) < 100


async def test_register_own_account(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path, tmp_path: Path
) -> None:
    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock):
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o666
        data = await asyncio.to_thread(request_credential_for_state_dir, state, run_dir)
    assert not sock.exists()

    path = tmp_path / "me.remo"
    package.write(path, data)
    cred = package.load(path)
    expected = Role.ADMIN if os.geteuid() == 0 else Role.OPERATOR
    assert (cred.user, cred.role, cred.addresses) == (my_name(), expected, (ADDRESS,))
    assert cred.ca_pem == ca.cert_pem
    [record] = registry.list_records(user=my_name())
    assert record.serial == cred.serial
    cert_der = x509.load_pem_x509_certificate(cred.cert_pem).public_bytes(
        serialization.Encoding.DER
    )
    assert registry.check(cert_der).user == my_name()


async def test_role_mapping_is_applied(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path
) -> None:
    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock, roles={my_name(): Role.VIEWER}):
        data = await asyncio.to_thread(request_credential, sock)
    assert package.parse(data).role is Role.VIEWER


def test_role_policy(ca: CertificateAuthority, registry: Registry, run_dir: Path) -> None:
    server = RegisterServer(ca, registry, [ADDRESS], run_dir / "x.sock")
    assert server.role_for(0, "root") is Role.ADMIN
    assert server.role_for(1000, "alice") is Role.OPERATOR
    strict = RegisterServer(
        ca, registry, [ADDRESS], run_dir / "x.sock", roles={"bob": Role.VIEWER}, default_role=None
    )
    assert strict.role_for(1001, "bob") is Role.VIEWER
    assert strict.role_for(1000, "alice") is None
    nobody = pwd.getpwnam("nobody")
    with pytest.raises(RegisterRefused, match="not allowed to register"):
        strict.issue_for_uid(nobody.pw_uid)
    assert package.parse(server.issue_for_uid(nobody.pw_uid)).role is Role.OPERATOR
    unused = next(uid for uid in range(4_000_000, 4_100_000) if not _uid_exists(uid))
    with pytest.raises(RegisterRefused, match="no account name"):
        server.issue_for_uid(unused)


def _uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_no_server_running(state: Path, run_dir: Path) -> None:
    with pytest.raises(RegisterUnavailable, match="start it with `remo server`") as info:
        request_credential_for_state_dir(state, run_dir)
    assert "\n" not in str(info.value)


async def test_stale_socket_replaced_and_live_one_kept(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path
) -> None:
    sock = register_socket_path(state, run_dir)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(sock))
    stale.close()  # the file stays, nobody listens: a crashed server
    async with RegisterServer(ca, registry, [ADDRESS], sock):
        with pytest.raises(RegisterError, match="already listening"):
            await RegisterServer(ca, registry, [ADDRESS], sock).start()
        assert package.parse(await asyncio.to_thread(request_credential, sock)).user == my_name()


async def test_bad_request_is_answered_with_an_error(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path
) -> None:
    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock):
        reader, writer = await asyncio.open_unix_connection(os.fspath(sock))
        writer.write(b"give me admin please\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"error unknown request")
    assert registry.list_records() == []


async def test_untrusted_socket_directory_is_refused(
    ca: CertificateAuthority, registry: Registry, run_dir: Path
) -> None:
    open_dir = run_dir / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(RegisterError, match="owner only"):
        await RegisterServer(ca, registry, [ADDRESS], open_dir / "r.sock").start()
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.closing(planted):
        planted.bind(os.fspath(open_dir / "r.sock"))
        planted.listen()
        with pytest.raises(RegisterError, match="refusing to use"):
            request_credential(open_dir / "r.sock")


@pytest.fixture
def test_account() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("creating a test account and switching to it needs root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed")
    name = f"remotest{os.getpid() % 100000}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _request_as(account: pwd.struct_passwd, sock: Path) -> tuple[int, bytes]:
    """Fork, become ``account``, ask for a credential; returns (exit status, output)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork() in a threaded process; the child only
        # calls setuid and request_credential, then _exit()s.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            try:
                out = request_credential(sock)
                code = 0
            except RegisterError as err:
                out = f"{type(err).__name__}: {err}".encode()
                code = 2
            view = memoryview(out)
            while view:
                view = view[os.write(write_end, view) :]
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as stream:
        while chunk := stream.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


@pytest.mark.root
async def test_other_account_gets_operator(
    ca: CertificateAuthority,
    registry: Registry,
    state: Path,
    run_dir: Path,
    tmp_path: Path,
    test_account: pwd.struct_passwd,
) -> None:
    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock):
        code, out = await asyncio.to_thread(_request_as, test_account, sock)
    assert code == 0, out
    path = tmp_path / "other.remo"
    package.write(path, out)
    cred = package.load(path)
    assert (cred.user, cred.role) == (test_account.pw_name, Role.OPERATOR)
    assert [r.user for r in registry.list_records()] == [test_account.pw_name]

    # a server that only registers listed accounts refuses it, and says why
    async with RegisterServer(ca, registry, [ADDRESS], sock, default_role=None):
        code, out = await asyncio.to_thread(_request_as, test_account, sock)
    assert code == 2
    assert out.decode().startswith("RegisterRefused: the remo server refused: account")
    assert len(registry.list_records()) == 1


# -- bounds: registrations per account, connections, time ----------------------------------


def test_rate_limit_refuses_the_next_registration_until_the_window_moves(
    ca: CertificateAuthority, registry: Registry, run_dir: Path
) -> None:
    from remo.pki.register import RateLimit

    now = [1000.0]
    server = RegisterServer(
        ca, registry, [ADDRESS], run_dir / "x.sock", rate=RateLimit(2, 600.0), clock=lambda: now[0]
    )
    nobody = pwd.getpwnam("nobody")
    server.issue_for_uid(nobody.pw_uid)
    now[0] += 100
    server.issue_for_uid(nobody.pw_uid)
    now[0] += 50
    with pytest.raises(RegisterRefused) as refused:
        server.issue_for_uid(nobody.pw_uid)
    # the first one leaves the window 600 s after it was issued: 450 s from now
    assert str(refused.value) == "too many registrations for account nobody; try again in 450 s"
    assert len(registry.list_records(user="nobody")) == 2  # no key made, no row written
    now[0] += 450
    server.issue_for_uid(nobody.pw_uid)
    with pytest.raises(RegisterRefused, match="try again in 100 s"):
        server.issue_for_uid(nobody.pw_uid)
    # each account has its own count
    assert package.parse(server.issue_for_uid(0)).user == "root"


def test_a_failed_issue_does_not_use_up_the_rate(
    ca: CertificateAuthority,
    registry: Registry,
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from remo.pki.register import RateLimit

    server = RegisterServer(ca, registry, [ADDRESS], run_dir / "x.sock", rate=RateLimit(1, 600.0))
    real_issue = ca.issue_client

    def broken(*args: object, **kwargs: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(ca, "issue_client", broken)
    with pytest.raises(OSError, match="disk full"):
        server.issue_for_uid(0)
    monkeypatch.setattr(ca, "issue_client", real_issue)
    server.issue_for_uid(0)
    with pytest.raises(RegisterRefused, match="too many registrations for account root"):
        server.issue_for_uid(0)


def test_default_rate_over_the_socket_says_why_in_one_line(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path
) -> None:
    from remo.pki.register import DEFAULT_RATE

    assert DEFAULT_RATE == (5, 600.0)
    sock = register_socket_path(state, run_dir)

    async def flood() -> list[bytes | str]:
        answers: list[bytes | str] = []
        async with RegisterServer(ca, registry, [ADDRESS], sock):
            for _ in range(DEFAULT_RATE.credentials + 1):
                try:
                    answers.append(await asyncio.to_thread(request_credential, sock))
                except RegisterRefused as err:
                    answers.append(str(err))
        return answers

    *issued, refused = asyncio.run(flood())
    assert all(isinstance(a, bytes) for a in issued) and len(issued) == 5
    assert refused == (
        f"the remo server refused: too many registrations for account {my_name()}; "
        "try again in 600 s"
    )
    assert len(registry.list_records(user=my_name())) == 5


async def _read_to_eof(sock: Path, send: bytes = b"") -> bytes:
    """Connect, send ``send`` (maybe nothing), read until the server closes."""
    reader, writer = await asyncio.open_unix_connection(os.fspath(sock))
    try:
        if send:
            writer.write(send)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_connections_per_account_are_bounded(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path
) -> None:
    from remo.pki.register import MAX_CONNECTIONS_PER_ACCOUNT, REQUEST

    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock):
        # connections that send nothing yet: each holds a slot until it is done
        held = [
            await asyncio.open_unix_connection(os.fspath(sock))
            for _ in range(MAX_CONNECTIONS_PER_ACCOUNT)
        ]
        busy = (
            f"error uid {os.geteuid()} already has {MAX_CONNECTIONS_PER_ACCOUNT} register "
            "connections open; try again when they are done\n"
        )
        assert await _read_to_eof(sock, REQUEST) == busy.encode()
        for reader, writer in held:  # each finishes its exchange: a slot comes free
            writer.write(REQUEST)
            assert (await asyncio.wait_for(reader.read(), 60)).startswith(b"ok ")
            writer.close()
            await writer.wait_closed()
        assert (await _read_to_eof(sock, REQUEST)).startswith(b"ok ")


async def test_connections_in_all_are_bounded(
    ca: CertificateAuthority,
    registry: Registry,
    state: Path,
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("remo.pki.register.MAX_CONNECTIONS", 2)
    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock):
        held = [await asyncio.open_unix_connection(os.fspath(sock)) for _ in range(2)]
        assert await _read_to_eof(sock) == (
            b"error the register socket is busy; try again in a few seconds\n"
        )
        for _, writer in held:
            writer.close()
            await writer.wait_closed()


async def test_a_connection_that_never_asks_is_closed(
    ca: CertificateAuthority, registry: Registry, state: Path, run_dir: Path
) -> None:
    from remo.pki.register import MAX_REQUEST_LINE

    sock = register_socket_path(state, run_dir)
    async with RegisterServer(ca, registry, [ADDRESS], sock, timeout=0.5):
        assert await _read_to_eof(sock) == b""  # closed without an answer
        # an overlong request line is not read to its end
        assert await _read_to_eof(sock, b"x" * (MAX_REQUEST_LINE * 4)) == b""
    assert registry.list_records() == []
