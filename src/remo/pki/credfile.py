"""Reading a credential file without cryptography: bytes, header, PEM blocks.

The CLI imports this on every command; :mod:`remo.pki.package` adds the checks that need
``cryptography`` (which costs ~30 ms to import) and runs once per file content (see
:mod:`remo.client.verified`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime

from remo.pki.errors import CredentialCorrupt, CredentialPermissions, CredentialUnreadable
from remo.pki.roles import Role

MAGIC = "remo-credential v1"
MAX_SIZE = 1 << 20
_PEM_BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9 ]+)-----$")
_PEM_END = re.compile(r"^-----END ([A-Z0-9 ]+)-----$")


@dataclass(frozen=True)
class Credential:
    """A loaded, checked credential file."""

    path: str
    addresses: tuple[str, ...]
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    user: str
    role: Role
    serial: str
    not_before: datetime
    not_after: datetime


def read(path: str) -> bytes:
    """The bytes of a credential file: a regular file, private (no group/other access)."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would block forever (it is then
        # refused below as not a regular file); it changes nothing for regular files.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise CredentialUnreadable(
            path, f"cannot read credential file {path}: {err.strerror or err}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialUnreadable(path, f"credential file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise CredentialPermissions(path, mode)
        if st.st_size > MAX_SIZE:
            raise CredentialCorrupt(
                path, f"credential file {path} is too large ({st.st_size} bytes) to be one"
            )
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_SIZE:
                raise CredentialCorrupt(path, f"credential file {path} is too large to be one")
        return b"".join(chunks)
    except OSError as err:
        raise CredentialUnreadable(
            path, f"cannot read credential file {path}: {err.strerror or err}"
        ) from None
    finally:
        os.close(fd)


def blocks(path: str, text: str) -> tuple[list[str], list[tuple[str, bytes]]]:
    """Split into header lines and (label, PEM bytes) blocks; detect truncation."""

    def corrupt(why: str) -> CredentialCorrupt:
        return CredentialCorrupt(path, f"credential file {path} is corrupt: {why}")

    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        first = lines[0].strip()[:40] if lines else ""
        if first.startswith("remo-credential "):
            raise CredentialCorrupt(
                path,
                f"credential file {path} has format {first!r}; this remo reads {MAGIC!r}",
            )
        raise CredentialCorrupt(
            path, f"{path} is not a remo credential file (it must start with {MAGIC!r})"
        )
    header: list[str] = []
    blocks: list[tuple[str, bytes]] = []
    label: str | None = None
    body: list[str] = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if label is None:
            begin = _PEM_BEGIN.match(line)
            if begin:
                label, body = begin.group(1), [line]
            elif blocks and line and not line.startswith("#"):
                raise corrupt(f"unexpected text on line {number}")
            elif line:
                header.append(line)
            continue
        body.append(line)
        end = _PEM_END.match(line)
        if end:
            if end.group(1) != label:
                raise corrupt(f"line {number} ends a {end.group(1)} inside a {label}")
            try:
                base64.b64decode("".join(body[1:-1]), validate=True)
            except binascii.Error:
                raise corrupt(f"the {label} block ending on line {number} is damaged") from None
            blocks.append((label, ("\n".join(body) + "\n").encode()))
            label = None
    if label is not None:
        raise corrupt(f"it is truncated (the {label} block has no end)")
    return header, blocks
