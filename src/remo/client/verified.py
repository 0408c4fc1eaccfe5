"""Check a credential file fully once per content, then cheaply.

Fully checking a credential (key matches certificate, certificate issued by the CA,
role and dates read from the certificate) needs ``cryptography``, whose import costs
~30 ms: a third of a short ``remo run``. The result depends only on the file's bytes
and the clock, so remo remembers, per SHA-256 of the bytes, what the full check found
(never the key itself) in ``~/.cache/remo/verified/``. A later command with the same
bytes re-reads the file, re-checks permissions and dates, and skips cryptography. Any
change to the file changes its hash and brings the full check back. The server checks
the certificate on every call regardless.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from remo.core.files import write_file_atomic
from remo.pki.credfile import Credential, blocks, read
from remo.pki.errors import CredentialExpired, CredentialNotYetValid
from remo.pki.roles import Role


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "remo" / "verified"


def load(path: str | os.PathLike[str], *, now: datetime | None = None) -> Credential:
    """Like :func:`remo.pki.package.load`, but without cryptography when possible."""
    name = os.fspath(path)
    data = read(name)  # unreadable, not a regular file, loose mode: checked every time
    digest = hashlib.sha256(data).hexdigest()
    entry = cache_dir() / digest
    try:
        facts = json.loads(entry.read_text())
        credential = _from_facts(name, data, facts)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        from remo.pki.package import parse  # the full check (imports cryptography)

        credential = parse(data, path=name, now=now)
        _remember(entry, data, credential)
    when = now if now is not None else datetime.now(UTC)
    if when < credential.not_before:
        raise CredentialNotYetValid(name, credential.not_before, credential.not_after)
    if when > credential.not_after:
        raise CredentialExpired(name, credential.not_before, credential.not_after)
    return credential


def _from_facts(path: str, data: bytes, facts: dict[str, Any]) -> Credential:
    _, pem_blocks = blocks(path, data.decode("utf-8"))
    pems = [pem for _, pem in pem_blocks]
    return Credential(
        path=path,
        addresses=tuple(facts["addresses"]),
        ca_pem=pems[facts["ca"]],
        cert_pem=pems[facts["cert"]],
        key_pem=pems[facts["key"]],
        user=facts["user"],
        role=Role(facts["role"]),
        serial=facts["serial"],
        not_before=datetime.fromisoformat(facts["not_before"]),
        not_after=datetime.fromisoformat(facts["not_after"]),
    )


def _remember(entry: Path, data: bytes, credential: Credential) -> None:
    _, pem_blocks = blocks(credential.path, data.decode("utf-8"))
    pems = [pem for _, pem in pem_blocks]

    def body(pem: bytes) -> bytes:
        return b"".join(line for line in pem.split() if not line.startswith(b"-----"))

    def index(pem: bytes) -> int:
        # The CA PEM is re-encoded by the full check: match blocks by their base64 body.
        bodies = [body(candidate) for candidate in pems]
        return bodies.index(body(pem))

    try:
        facts = {
            "addresses": list(credential.addresses),
            "ca": index(credential.ca_pem),
            "cert": index(credential.cert_pem),
            "key": index(credential.key_pem),
            "user": credential.user,
            "role": credential.role.value,
            "serial": credential.serial,
            "not_before": credential.not_before.isoformat(),
            "not_after": credential.not_after.isoformat(),
        }
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomic(entry, json.dumps(facts).encode(), 0o600)
    except (OSError, ValueError):
        pass  # no cache (read-only home...): the next command checks fully again
