"""The ``remo`` command with a credential file it cannot use.

Each broken credential (truncated, garbage, key not matching the certificate, readable
by others, expired, not yet valid, missing, ...) must end the command with a non-zero
exit code and exactly one line on stderr, ``remo: ...``, that names the problem: never
a traceback, never a hang, and never an attempt to reach the server (every credential
here points at a closed port, so a connection error would show as the wrong message).

The commands run as real subprocesses (``python -m remo``), as a user would run them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remo.pki import package
from remo.pki.ca import CertificateAuthority

#: Nothing listens here: reaching the network would give a connection error instead.
CLOSED = ["127.0.0.1:9"]

EXIT_USAGE, EXIT_AUTH = 2, 4


@dataclass(frozen=True)
class Case:
    build: Callable[[Path, Path], None]  # (state dir, credential path) -> writes the file
    exit_code: int
    words: tuple[str, ...]  # what the one line must say (case-insensitive)


def issue(state: Path, **kw: object) -> tuple[CertificateAuthority, bytes, bytes]:
    ca = CertificateAuthority.load_or_create(state)
    issued = ca.issue_client("remo-alice", "operator", **kw)  # type: ignore[arg-type]
    return ca, issued.cert_pem, issued.key_pem


def good_bytes(state: Path) -> bytes:
    ca, cert, key = issue(state)
    return package.dumps(CLOSED, ca.cert_pem, cert, key)


def truncated(state: Path, path: Path) -> None:
    data = good_bytes(state)
    package.write(path, data[: len(data) * 2 // 3])


def truncated_header(state: Path, path: Path) -> None:
    package.write(path, good_bytes(state)[:10])


def garbage(state: Path, path: Path) -> None:
    package.write(path, bytes(range(256)) * 3)


def garbage_text(state: Path, path: Path) -> None:
    package.write(path, b"hello, this is not what you think\n" * 20)


def empty(state: Path, path: Path) -> None:
    package.write(path, b"")


def damaged_key(state: Path, path: Path) -> None:
    lines = good_bytes(state).split(b"\n")
    i = next(n for n, line in enumerate(lines) if line.startswith(b"-----BEGIN PRIVATE")) + 1
    lines[i] = b"!!!!" + lines[i][4:]
    package.write(path, b"\n".join(lines))


def no_key(state: Path, path: Path) -> None:
    data = good_bytes(state)
    package.write(path, data[: data.index(b"-----BEGIN PRIVATE")])


def key_mismatch(state: Path, path: Path) -> None:
    ca, cert, _ = issue(state)
    _, _, other_key = issue(state)
    package.save(path, CLOSED, ca.cert_pem, cert, other_key)


def foreign_ca(state: Path, path: Path) -> None:
    ca = CertificateAuthority.load_or_create(state)
    _, cert, key = issue(state.parent / "another-state")
    package.save(path, CLOSED, ca.cert_pem, cert, key)


def loose_permissions(state: Path, path: Path) -> None:
    ca, cert, key = issue(state)
    package.save(path, CLOSED, ca.cert_pem, cert, key)
    os.chmod(path, 0o644)


def expired(state: Path, path: Path) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    ca, cert, key = issue(state, not_before=start, validity=timedelta(days=1))
    package.save(path, CLOSED, ca.cert_pem, cert, key)


def not_yet_valid(state: Path, path: Path) -> None:
    start = datetime.now(UTC) + timedelta(days=30)
    ca, cert, key = issue(state, not_before=start, validity=timedelta(days=1))
    package.save(path, CLOSED, ca.cert_pem, cert, key)


def missing(state: Path, path: Path) -> None:
    pass


def directory(state: Path, path: Path) -> None:
    path.mkdir()


def fifo(state: Path, path: Path) -> None:
    os.mkfifo(path, 0o600)  # nobody writes to it: opening it must not block


def too_large(state: Path, path: Path) -> None:
    package.write(path, good_bytes(state) + b"#" * (2 << 20))


CASES: dict[str, Case] = {
    "truncated": Case(truncated, EXIT_AUTH, ("corrupt", "truncated")),
    "truncated-header": Case(truncated_header, EXIT_AUTH, ("not a remo credential",)),
    "garbage": Case(garbage, EXIT_AUTH, ("not a remo credential", "not text")),
    "garbage-text": Case(garbage_text, EXIT_AUTH, ("not a remo credential",)),
    "empty": Case(empty, EXIT_AUTH, ("not a remo credential",)),
    "damaged-key": Case(damaged_key, EXIT_AUTH, ("corrupt", "private key", "damaged")),
    "no-key": Case(no_key, EXIT_AUTH, ("incomplete", "no private key")),
    "key-mismatch": Case(key_mismatch, EXIT_AUTH, ("private key does not belong",)),
    "foreign-ca": Case(foreign_ca, EXIT_AUTH, ("not issued by its ca",)),
    "loose-permissions": Case(loose_permissions, EXIT_AUTH, ("mode 0644", "chmod 600")),
    "expired": Case(expired, EXIT_AUTH, ("expired on",)),
    "not-yet-valid": Case(not_yet_valid, EXIT_AUTH, ("not valid before",)),
    "missing": Case(missing, EXIT_USAGE, ("no such credential file",)),
    "directory": Case(directory, EXIT_AUTH, ("not a regular file",)),
    "fifo": Case(fifo, EXIT_AUTH, ("not a regular file",)),
    "too-large": Case(too_large, EXIT_AUTH, ("too large",)),
}

#: Verbs that connect, each with --profile in the place a user would put it.
VERBS: dict[str, Callable[[str], list[str]]] = {
    "ps": lambda p: ["ps", "--profile", p],
    "global-option": lambda p: ["--profile", p, "ps"],
    "status": lambda p: ["status", "--profile", p, "1"],
    "logs": lambda p: ["logs", "--profile", p, "1"],
    "stop": lambda p: ["stop", "--profile", p, "1"],
    "wait": lambda p: ["wait", "--profile", p, "1"],
    "rm": lambda p: ["rm", "--profile", p, "1"],
    "run": lambda p: ["run", "--profile", p, "--", "true"],
}


def run_remo(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("REMO_", "GRPC_"))}
    environ.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **env)
    return subprocess.run(
        [sys.executable, "-m", "remo", *args],
        capture_output=True,
        text=True,
        env=environ,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def check_one_line(result: subprocess.CompletedProcess[str], case: Case, path: Path) -> str:
    assert result.returncode == case.exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    line = lines[0]
    assert line.startswith("remo: "), line
    assert "internal error" not in line
    assert "cannot connect" not in line  # refused before any network I/O
    for word in case.words:
        assert word in line.lower(), f"{word!r} not in {line!r}"
    assert str(path) in line, f"the message does not name the file: {line!r}"
    assert not result.stdout
    return line


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_credential_gives_one_line(tmp_path: Path, home: Path, name: str) -> None:
    case = CASES[name]
    path = tmp_path / f"{name}.remo"
    case.build(tmp_path / "state", path)
    check_one_line(run_remo(["ps", "--profile", str(path)], home), case, path)


@pytest.mark.parametrize("verb", sorted(VERBS))
@pytest.mark.parametrize("name", ["expired", "key-mismatch", "truncated", "missing"])
def test_every_verb_reports_it_the_same_way(
    tmp_path: Path, home: Path, verb: str, name: str
) -> None:
    case = CASES[name]
    path = tmp_path / f"{name}.remo"
    case.build(tmp_path / "state", path)
    line = check_one_line(run_remo(VERBS[verb](str(path)), home), case, path)
    reference = check_one_line(run_remo(["ps", "--profile", str(path)], home), case, path)
    assert line == reference


@pytest.mark.parametrize("name", ["expired", "loose-permissions", "garbage"])
def test_remo_profile_variable_reports_it_too(tmp_path: Path, home: Path, name: str) -> None:
    case = CASES[name]
    path = tmp_path / f"{name}.remo"
    case.build(tmp_path / "state", path)
    check_one_line(run_remo(["ps"], home, REMO_PROFILE=str(path)), case, path)


def test_path_with_a_newline_stays_one_line(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "two\nlines.remo"
    expired(tmp_path / "state", path)
    result = run_remo(["ps", "--profile", str(path)], home)
    assert result.returncode == EXIT_AUTH
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("remo: ")
    assert "expired on" in result.stderr and "Traceback" not in result.stderr


def test_a_good_credential_gets_past_the_checks(tmp_path: Path, home: Path) -> None:
    """The control: the same construction, unbroken, fails only at the closed port."""
    path = tmp_path / "good.remo"
    package.write(path, good_bytes(tmp_path / "state"))
    result = run_remo(["ps", "--profile", str(path)], home)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("remo: cannot connect to 127.0.0.1:9")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
