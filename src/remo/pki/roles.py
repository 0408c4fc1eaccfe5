"""The roles a credential can carry (kept apart from the CA so readers need no crypto)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """What a caller may do. Carried as the subject OU of client certificates."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
