"""Who may do what. Default deny: a method missing from :data:`RPC_PERMISSIONS` is refused.

Roles: ``viewer`` reads its own jobs; ``operator`` also starts, stops and removes its own
jobs; ``admin`` does everything, on every user's jobs. The table is keyed by the full
method name gRPC routes on, so no other service's method of the same name can match.
"""

from __future__ import annotations

import enum

#: The service every RPC below belongs to.
SERVICE = "remo.v1.JobService"


class Permission(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    NONE = "none"


ROLES: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "operator": frozenset({Permission.READ, Permission.WRITE}),
    "admin": frozenset({Permission.READ, Permission.WRITE}),
}


def method(name: str) -> str:
    """The full method name of RPC ``name`` of :data:`SERVICE`."""
    return f"/{SERVICE}/{name}"


#: Every method of remo.v1.JobService and the permission it needs. A test checks this
#: table covers the service descriptor exactly.
RPC_PERMISSIONS: dict[str, Permission] = {
    method("Start"): Permission.WRITE,
    method("Stop"): Permission.WRITE,
    method("Kill"): Permission.WRITE,
    method("Remove"): Permission.WRITE,
    method("WriteStdin"): Permission.WRITE,
    method("GetJob"): Permission.READ,
    method("ListJobs"): Permission.READ,
    method("Output"): Permission.READ,
    method("OutputMany"): Permission.READ,
    method("Wait"): Permission.READ,
    method("GetSchedule"): Permission.READ,
    method("ListSchedules"): Permission.READ,
    method("WhoAmI"): Permission.NONE,
}


def allowed(role: str, full_method: str) -> bool:
    """True when ``role`` may call ``full_method`` at all (ownership is checked
    separately)."""
    needed = RPC_PERMISSIONS.get(full_method)
    if needed is None:
        return False
    if needed is Permission.NONE:
        return role in ROLES
    return needed in ROLES.get(role, frozenset())


def sees_everyone(role: str) -> bool:
    """Admins act on every user's jobs; everyone else only on their own."""
    return role == "admin"
