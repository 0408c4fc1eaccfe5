"""Page tokens of the List calls (AIP-158): opaque to clients, a position to the server.

A token is the key of the last item of a page and a fingerprint of the request's
filters, base64url-encoded JSON. It grants nothing: the caller's own filters (owner,
role) still apply to the next page, so a forged token can only move the position.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any

from remo.core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """The page size to use for a request's ``page_size`` (0: the default)."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def fingerprint(*filters: Any) -> str:
    """A short digest of the filters a listing was asked with."""
    text = json.dumps(filters, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(key: list[Any], filters: str) -> str:
    """The token of the page that follows the item with ``key``."""
    raw = json.dumps({"k": key, "f": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invalid_token() -> InvalidArgument:
    return InvalidArgument(
        "invalid page_token: pass the next_page_token of a previous response, with the "
        "same filters",
        field="page_token",
        reason="INVALID_PAGE_TOKEN",
    )


def position(token: str, filters: str) -> tuple[float, str, int] | None:
    """The (time, owner, number) key in ``token``, as both List calls page by."""
    key = decode(token, filters)
    if key is None:
        return None
    try:
        moment, owner, seq = float(key[0]), str(key[1]), int(key[2])
    except (TypeError, ValueError, IndexError, OverflowError):
        raise invalid_token() from None
    # A forged token may hold anything: only what SQLite can compare passes.
    if len(key) != 3 or not math.isfinite(moment) or not -(1 << 63) <= seq < 1 << 63:
        raise invalid_token()
    return (moment, owner, seq)


def decode(token: str, filters: str) -> list[Any] | None:
    """The key in ``token`` (None for an empty token). Raises :class:`InvalidArgument`
    (``INVALID_PAGE_TOKEN``) for a token that is malformed or was made for other
    filters."""
    if not token:
        return None
    bad = invalid_token()
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(data, dict)
        or data.get("f") != filters
        or not isinstance(data.get("k"), list)
    ):
        raise bad
    return list(data["k"])
