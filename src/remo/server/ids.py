"""Job ids as users type them: ``12`` is the caller's job 12, ``alice/12`` is alice's;
a name (``nightly``, ``alice/nightly``, ``nightly#3``) goes wherever a job id does and
is looked up by the servicer (:func:`is_name`).

Non-admins naming another user's job get the same :class:`JobNotFound` as for a job
that does not exist, so nobody learns that other users' jobs exist.
"""

from __future__ import annotations

import re

from remo.core.errors import InvalidArgument, JobNotFound
from remo.core.spec import ACCOUNT_NAME, JOB_NAME

_NUMBER = re.compile(r"^[0-9]{1,18}$")
_SCHEDULE = re.compile(r"^s[0-9]{1,18}$")
#: A job's name, or a schedule's run: NAME#K.
_NAME = re.compile(rf"{JOB_NAME.pattern}(#[0-9]{{1,9}})?")


def resolve(user: str, admin: bool, raw: str, *, schedule: bool = False) -> str:
    """Canonical ``owner/N`` (or ``owner/sN``) for ``raw`` as ``user`` typed it."""
    owner, sep, local = raw.rpartition("/")
    if not sep:
        owner = user
    # fullmatch: with match, '$' would also accept a trailing newline ("1\n", "root\n/1")
    if schedule:
        valid = bool(_SCHEDULE.fullmatch(local))
    else:
        valid = bool(_NUMBER.fullmatch(local)) or bool(
            _NAME.fullmatch(local) and not _SCHEDULE.fullmatch(local)
        )
    if not valid or (sep and not ACCOUNT_NAME.fullmatch(owner)):
        kind = "schedule id (sN or USER/sN)" if schedule else "job id or name (N, NAME, USER/N)"
        raise InvalidArgument(f"invalid {kind}: {raw[:64]!r}", field="id")
    if owner != user and not admin:
        raise JobNotFound(raw)
    return f"{owner}/{local}"


def shown(user: str, canonical: str) -> str:
    """How the caller sees an id: their own jobs without the owner prefix."""
    owner, _, local = canonical.partition("/")
    return local if owner == user else canonical


def is_name(canonical: str) -> bool:
    """Whether a resolved ``owner/LOCAL`` names a job by its name (not its number)."""
    return not canonical.rpartition("/")[2].isdigit()


def is_schedule_id(raw: str) -> bool:
    return bool(_SCHEDULE.fullmatch(raw.rpartition("/")[2]))
