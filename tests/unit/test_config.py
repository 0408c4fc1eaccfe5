"""Server settings: defaults, TOML file, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from remo.core.errors import InvalidArgument
from remo.core.spec import Limits
from remo.server.config import DEFAULT_OUTPUT_CAP, DEFAULT_RETENTION, load


def test_defaults(tmp_path: Path) -> None:
    config = load(None, state_dir=str(tmp_path))
    assert config.state_dir == tmp_path.resolve()
    assert config.retention == DEFAULT_RETENTION
    assert config.exec_timeout == 30
    assert config.default_limits == Limits(output_bytes=DEFAULT_OUTPUT_CAP)
    assert config.network == "host" and not config.force_network_none


def test_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(
        """
        listen = "127.0.0.1:9000"
        advertise = ["build01.example.com"]
        retention = "2w"
        exec_timeout = "2m"
        [roles]
        alice = "admin"
        default = "none"
        [limits.default]
        memory = "1G"
        output = "10M"
        [limits.max]
        cpu = 2
        pids = 100
        [isolation]
        network = "none"
        force_network_none = true
        namespaces = false
        """
    )
    config = load(str(path), listen="127.0.0.1:9100")
    assert config.listen == "127.0.0.1:9100"
    assert config.advertised_addresses(9100) == ["build01.example.com:9100"]
    assert config.retention == 14 * 86400
    assert config.exec_timeout == 120
    assert config.roles == {"alice": "admin"} and config.default_role is None
    assert config.default_limits == Limits(memory=1 << 30, output_bytes=10 << 20)
    assert config.max_limits == Limits(cpu=2.0, pids=100)
    assert config.force_network_none and not config.namespaces


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen = ", "not valid TOML"),
        ("colour = 'blue'", "unknown setting"),
        ("retention = '20mims'", "retention"),
        ("exec_timeout = '0s'", "exec_timeout: invalid duration"),
        ("exec_timeout = '2d'", "exec_timeout must be between"),
        ("exec_timeout = 'soon'", "exec_timeout"),
        ("[limits.max]\nmemory = 'lots'", "config"),
        ("[isolation]\nnetwork = 'bridge'", "host or none"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        load(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read config"):
        load(str(tmp_path / "nope.toml"))
