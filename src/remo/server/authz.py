"""Who may do what. Default deny: an RPC missing from :data:`RPC_PERMISSIONS` is refused.

Roles: ``viewer`` reads its own jobs; ``operator`` also starts, stops and removes its own
jobs; ``admin`` does everything, on every user's jobs.
"""

from __future__ import annotations

import enum


class Permission(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    NONE = "none"


ROLES: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "operator": frozenset({Permission.READ, Permission.WRITE}),
    "admin": frozenset({Permission.READ, Permission.WRITE}),
}

#: Every RPC of remo.v1.Jobs and the permission it needs. A test checks this table
#: covers the service descriptor exactly.
RPC_PERMISSIONS: dict[str, Permission] = {
    "Start": Permission.WRITE,
    "Stop": Permission.WRITE,
    "Remove": Permission.WRITE,
    "Status": Permission.READ,
    "List": Permission.READ,
    "Output": Permission.READ,
    "Wait": Permission.READ,
    "ScheduleStatus": Permission.READ,
    "WhoAmI": Permission.NONE,
}


def allowed(role: str, rpc: str) -> bool:
    """True when ``role`` may call ``rpc`` at all (ownership is checked separately)."""
    needed = RPC_PERMISSIONS.get(rpc)
    if needed is None:
        return False
    if needed is Permission.NONE:
        return role in ROLES
    return needed in ROLES.get(role, frozenset())


def sees_everyone(role: str) -> bool:
    """Admins act on every user's jobs; everyone else only on their own."""
    return role == "admin"
