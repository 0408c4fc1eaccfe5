"""Job and schedule ids as users type them (remo.server.ids)."""

from __future__ import annotations

import pytest

from remo.core.errors import InvalidArgument, JobNotFound
from remo.server import ids


@pytest.mark.parametrize(
    ("user", "admin", "raw", "canonical"),
    [
        ("alice", False, "12", "alice/12"),
        ("alice", False, "alice/12", "alice/12"),
        ("alice", False, "007", "alice/007"),
        ("root", True, "bob/3", "bob/3"),
        ("root", True, "3", "root/3"),
        ("alice", False, "9" * 18, f"alice/{'9' * 18}"),
    ],
)
def test_job_ids_resolve_to_owner_and_number(
    user: str, admin: bool, raw: str, canonical: str
) -> None:
    assert ids.resolve(user, admin, raw) == canonical


@pytest.mark.parametrize(
    ("user", "admin", "raw", "canonical"),
    [
        ("alice", False, "s2", "alice/s2"),
        ("alice", False, "alice/s2", "alice/s2"),
        ("root", True, "bob/s2", "bob/s2"),
    ],
)
def test_schedule_ids_resolve_to_owner_and_number(
    user: str, admin: bool, raw: str, canonical: str
) -> None:
    assert ids.resolve(user, admin, raw, schedule=True) == canonical


def test_another_users_id_is_not_found_for_a_non_admin() -> None:
    """The same answer as for a job that does not exist: nobody learns it does."""
    for raw, schedule in (("bob/1", False), ("bob/s1", True)):
        with pytest.raises(JobNotFound):
            ids.resolve("alice", False, raw, schedule=schedule)


def test_names_resolve_as_written() -> None:
    """A name goes wherever an id does; the servicer looks it up (ids.is_name)."""
    assert ids.resolve("alice", False, "train") == "alice/train"
    assert ids.resolve("alice", True, "bob/nightly#3") == "bob/nightly#3"
    assert ids.is_name("alice/train") and not ids.is_name("alice/12")
    with pytest.raises(JobNotFound):
        ids.resolve("alice", False, "bob/train")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "-1",
        "1.5",
        "1e3",
        " 1",
        "1 ",
        "1\n",  # '$' would accept the newline
        "root\n/1",
        "s1",  # a schedule where a job is wanted
        "9" * 19,  # past SQLite's integers
        "alice/",
        "/1",
        "Alice/1",
        "a b/1",
        "../1",
        "alice/../1",
        "alice/1/2",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not 0-9
        "a" * 33 + "/1",
    ],
)
def test_malformed_job_ids_are_invalid_arguments(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        ids.resolve("alice", True, raw)


@pytest.mark.parametrize("raw", ["", "1", "s", "s-1", "S1", "s1\n", "alice/1", "s" + "9" * 19])
def test_malformed_schedule_ids_are_invalid_arguments(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        ids.resolve("alice", True, raw, schedule=True)


def test_the_error_quotes_at_most_64_characters() -> None:
    with pytest.raises(InvalidArgument) as caught:
        ids.resolve("alice", False, "x" * 10_000)
    assert "x" * 64 in str(caught.value) and "x" * 65 not in str(caught.value)


def test_shown_hides_only_the_callers_own_prefix() -> None:
    assert ids.shown("alice", "alice/12") == "12"
    assert ids.shown("alice", "bob/12") == "bob/12"
    assert ids.shown("alice", "alice/s3") == "s3"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("s1", True), ("bob/s12", True), ("1", False), ("bob/1", False), ("s", False), ("", False)],
)
def test_is_schedule_id(raw: str, expected: bool) -> None:
    assert ids.is_schedule_id(raw) is expected
