"""The servers the dashboard shows: one per installed profile, each reached with an
:class:`~remo.client.AsyncClient` made on first use and kept while the dashboard runs.

The profile list is read again on every call (a directory listing), so a profile
installed or removed with ``remo login`` while the dashboard runs shows up or goes
away at the next refresh; a renewed credential file (a new modification time) gets a
new client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from remo.client import profiles
from remo.client.aio import AsyncClient
from remo.client.errors import ProfileError

#: Seconds a call may take (a start or a stop more: see AsyncClient): a server that
#: stopped answering shows as failing on the page within this, and the others are
#: shown meanwhile.
TIMEOUT = 10.0


@dataclass
class _Entry:
    client: AsyncClient
    stamp: float


class Servers:
    """The user's servers by profile name, and a client for each."""

    def __init__(self, env: Mapping[str, str] | None = None, extra: Path | None = None) -> None:
        #: The environment profiles are looked up in (``XDG_CONFIG_HOME``, ``HOME``).
        self.env = env
        #: A credential file named with --profile or $REMO_PROFILE that is not an
        #: installed profile: shown too, by its file's stem.
        self.extra = extra
        self._clients: dict[str, _Entry] = {}

    def paths(self) -> dict[str, Path]:
        """Each server's name and credential file, in the order the page shows them."""
        found = {
            name: profiles.profile_path(name, self.env) for name in profiles.list_profiles(self.env)
        }
        installed = {path.resolve() for path in found.values()}
        if self.extra is not None and self.extra.resolve() not in installed:
            name = self.extra.name.removesuffix(profiles.SUFFIX) or "profile"
            while name in found:
                name += "_"
            found[name] = self.extra
        return found

    def names(self) -> list[str]:
        return list(self.paths())

    async def client(self, name: str) -> AsyncClient:
        """The client of server ``name``; :class:`ProfileError` for an unknown name,
        :class:`~remo.client.errors.CredentialProblem` for an unusable credential."""
        path = self.paths().get(name)
        if path is None:
            raise ProfileError(f"no profile named {name[:100]!r}")
        try:
            stamp = path.stat().st_mtime
        except OSError as err:
            raise ProfileError(f"cannot read {path}: {err.strerror or err}") from None
        entry = self._clients.get(name)
        if entry is not None and entry.stamp == stamp:
            return entry.client
        if entry is not None:
            await entry.client.close()
            del self._clients[name]
        # grpc core prints handshake failures on stderr; the page explains them instead.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        client = AsyncClient.from_file(path, timeout=TIMEOUT)
        self._clients[name] = _Entry(client, stamp)
        return client

    async def close(self) -> None:
        for entry in self._clients.values():
            await entry.client.close()
        self._clients.clear()
