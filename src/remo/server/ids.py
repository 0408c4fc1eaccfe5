"""Job ids as users type them: ``12`` is the caller's job 12, ``alice/12`` is alice's.

Non-admins naming another user's job get the same :class:`JobNotFound` as for a job
that does not exist, so nobody learns that other users' jobs exist.
"""

from __future__ import annotations

import re

from remo.core.errors import InvalidArgument, JobNotFound
from remo.core.spec import ACCOUNT_NAME

_NUMBER = re.compile(r"^[0-9]{1,18}$")
_SCHEDULE = re.compile(r"^s[0-9]{1,18}$")


def resolve(user: str, admin: bool, raw: str, *, schedule: bool = False) -> str:
    """Canonical ``owner/N`` (or ``owner/sN``) for ``raw`` as ``user`` typed it."""
    pattern = _SCHEDULE if schedule else _NUMBER
    owner, sep, local = raw.rpartition("/")
    if not sep:
        owner = user
    # fullmatch: with match, '$' would also accept a trailing newline ("1\n", "root\n/1")
    if not pattern.fullmatch(local) or (sep and not ACCOUNT_NAME.fullmatch(owner)):
        kind = "schedule id (sN or USER/sN)" if schedule else "job id (N or USER/N)"
        raise InvalidArgument(f"invalid {kind}: {raw[:64]!r}", field="id")
    if owner != user and not admin:
        raise JobNotFound(raw)
    return f"{owner}/{local}"


def shown(user: str, canonical: str) -> str:
    """How the caller sees an id: their own jobs without the owner prefix."""
    owner, _, local = canonical.partition("/")
    return local if owner == user else canonical


def is_schedule_id(raw: str) -> bool:
    return bool(_SCHEDULE.fullmatch(raw.rpartition("/")[2]))
