"""Who a job runs as: the unix account named by its owner."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from remo.core.errors import StartFailed

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Account:
    """A resolved unix account; ``switch`` is False when the job keeps our own uid.

    ``groups`` are its supplementary groups, looked up here (the supervisor's NSS
    caches are warm) rather than in the job's init.
    """

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    switch: bool
    groups: tuple[int, ...] = ()


def current_account_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def resolve(owner: str) -> Account:
    """Look up ``owner``; jobs switch to it only when we are root.

    Raises :class:`StartFailed` (stage ``user``) when we are root and the account does
    not exist: running it as anyone else would be wrong.
    """
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return Account(
            entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell, False
        )
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise StartFailed("user", None, f"there is no account {owner!r} on this server") from None
    switch = entry.pw_uid != os.geteuid()
    return Account(
        entry.pw_name,
        entry.pw_uid,
        entry.pw_gid,
        entry.pw_dir,
        entry.pw_shell or "/bin/sh",
        switch,
        tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)) if switch else (),
    )


def job_environment(account: Account, requested: dict[str, str] | None) -> dict[str, str]:
    """The job's environment: a clean base from the account, then the caller's variables.

    USER and LOGNAME always name the account the job runs as: they are identity, not
    preference.
    """
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": account.home,
        "SHELL": account.shell,
        "LANG": "C.UTF-8",
    }
    env.update(requested or {})
    env["USER"] = account.name
    env["LOGNAME"] = account.name
    return env
