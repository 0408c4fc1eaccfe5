"""The supervisor's settings survive the trip through its command line, and bad ones
are refused before any process starts."""

from __future__ import annotations

import argparse
import math

import pytest

from remo.core.errors import InvalidArgument
from remo.supervisor.options import SupervisorOptions


@pytest.mark.parametrize(
    "options",
    [
        SupervisorOptions(),
        SupervisorOptions(linger=2.5, namespaces=False, cgroups=False, exec_timeout=0.1),
        SupervisorOptions(linger=0, exec_timeout=3),
    ],
)
def test_options_round_trip_through_argv(options: SupervisorOptions) -> None:
    parser = argparse.ArgumentParser()
    SupervisorOptions.add_arguments(parser)
    assert SupervisorOptions.from_args(parser.parse_args(options.to_args())) == options


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exec_timeout", 0),
        ("exec_timeout", -1.0),
        ("exec_timeout", math.nan),
        ("exec_timeout", math.inf),
        ("exec_timeout", "30"),
        ("linger", -0.5),
        ("linger", math.nan),
    ],
)
def test_bad_options_are_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidArgument, match=field):
        SupervisorOptions(**{field: value})  # type: ignore[arg-type]
