"""Server settings: defaults, TOML file, overrides, and clear errors.

The file is validated whole before anything listens: unknown keys (with a suggestion),
wrong types and bad values are each one line, ``FILE:LINE: dotted.key: message``, and
all of them come out together. ``remo server --check-config`` shows the result.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner, Result

from remo.cli.main import cli
from remo.core.errors import InvalidArgument
from remo.core.spec import Limits
from remo.pki.roles import Role
from remo.server.config import (
    DEFAULT_OUTPUT_CAP,
    DEFAULT_RETENTION,
    ConfigError,
    ServerConfig,
    effective_toml,
    load,
)
from remo.server.config_schema import RoleName

FULL = """\
# every setting, as an operator would write them
state_dir = "{state}"
listen = "127.0.0.1:9000"
advertise = ["build01.example.com", "10.0.0.5:7443"]
retention = "forever"
exec_timeout = "90s"

[roles]
alice = "admin"
bob = "viewer"
"carol.x" = "operator"
default = "none"

[limits.default]
memory = "4G"
output = "1G"

[limits.max]
cpu = "150%"
memory = 17179869184
io_read = "100M"
io_write = "50MB/s"
pids = 4096
output = "10G"

[isolation]
network = "none"
force_network_none = true
namespaces = false
"""

#: The config of the bug report: each mistake used to be accepted or to fail late.
BAD = """\
# server.toml
listen = "0.0.0.0:7443"

[roles]
alice = "admn"

[limits.default]
memroy = "1G"

[limits.max]
memroy = "1G"

[isolation]
netwrok = "none"
force_network_none = "false"
"""


def write(tmp_path: Path, text: str, name: str = "server.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert str(caught.value) == "\n".join(caught.value.lines)
    return caught.value.lines


# -- what works -------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = load(None, state_dir=str(tmp_path))
    assert config.state_dir == tmp_path.resolve()
    assert config.retention == DEFAULT_RETENTION
    assert config.exec_timeout == 30
    assert config.default_limits == Limits(output_bytes=DEFAULT_OUTPUT_CAP)
    assert config.network == "host" and not config.force_network_none
    # The schema's defaults are the dataclass's: an empty file changes nothing.
    assert config == ServerConfig(state_dir=tmp_path.resolve())
    assert load(str(write(tmp_path, "")), state_dir=str(tmp_path)) == config


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


def test_full_file_gives_the_same_values_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.format(state=tmp_path / "state"))
    config = load(str(path))
    assert config == ServerConfig(
        state_dir=(tmp_path / "state").resolve(),
        listen="127.0.0.1:9000",
        advertise=["build01.example.com", "10.0.0.5:7443"],
        roles={"alice": "admin", "bob": "viewer", "carol.x": "operator"},
        default_role=None,
        default_limits=Limits(memory=4 << 30, output_bytes=1 << 30),
        max_limits=Limits(
            cpu=1.5,
            memory=16 << 30,
            io_read_bps=100 << 20,
            io_write_bps=50_000_000,
            pids=4096,
            output_bytes=10 << 30,
        ),
        network="none",
        force_network_none=True,
        namespaces=False,
        retention=None,
        exec_timeout=90.0,
        register_run_dir=config.register_run_dir,
    )
    assert config.certificate_names() == ["build01.example.com", "10.0.0.5", "127.0.0.1"]


def test_effective_settings_read_back_to_the_same_config(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, FULL.format(state=tmp_path / "state"))))
    shown = effective_toml(config)
    assert 'memory = "16 GiB"' in shown and "io_write = 17179869184" not in shown
    assert "io_write = 50000000  # 47.7 MiB/s" in shown  # not a round size: exact bytes
    assert 'retention = "forever"' in shown and 'default = "none"' in shown
    assert '"carol.x" = "operator"' in shown and "# cpu: no limit" in shown
    assert load(str(write(tmp_path, shown, "again.toml"))) == config


def test_role_names_are_the_roles() -> None:
    assert set(get_args(RoleName)) == {role.value for role in Role}


# -- what is refused --------------------------------------------------------------------


def test_the_reported_config_is_refused_with_every_mistake(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(InvalidArgument):  # what the CLI turns into exit code 2
        load(str(path))
    assert errors_of(path) == [
        f'{path}:5: roles.alice: expected "viewer", "operator" or "admin", got "admn"',
        f'{path}:8: limits.default.memroy: unknown setting (did you mean "memory"?)',
        f'{path}:11: limits.max.memroy: unknown setting (did you mean "memory"?)',
        f'{path}:14: isolation.netwrok: unknown setting (did you mean "network"?)',
        f"{path}:15: isolation.force_network_none: expected true or false (without quotes), "
        'got "false"',
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("colour = 'blue'", "server.toml:1: colour: unknown setting"),
        ("listne = 'x:1'", 'server.toml:1: listne: unknown setting (did you mean "listen"?)'),
        (
            "\n[isolaton]\nnetwork = 'none'",
            ':2: isolaton: unknown table (did you mean "isolation"?)',
        ),
        ("[limits.maximum]\ncpu = 1", ':1: limits.maximum: unknown table (did you mean "max"?)'),
        ("[limits]\ncpu = 1", ":2: limits.cpu: unknown setting"),
        ("[limits.max]\ncpus = 1", ':2: limits.max.cpus: unknown setting (did you mean "cpu"?)'),
        ("[limits.default]\nio_reed = '1M'", '(did you mean "io_read"?)'),
        (
            "limits.max.memroy = '1G'",
            ':1: limits.max.memroy: unknown setting (did you mean "memory"',
        ),
        ("isolation = { netwrok = 'none' }", ":1: isolation.netwrok: unknown setting (did you"),
        (
            "[isolation]\nnamespace = false",
            ':2: isolation.namespace: unknown setting (did you mean "',
        ),
    ],
)
def test_unknown_keys_at_any_level(tmp_path: Path, text: str, error: str) -> None:
    (line,) = errors_of(write(tmp_path, text))
    assert error in line, line


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[isolation]\nforce_network_none = 'false'", "expected true or false (without quotes)"),
        ("[isolation]\nnamespaces = 1", "isolation.namespaces: expected true or false, got 1"),
        ("listen = 7443", "listen: expected a string in quotes, got 7443"),
        ("state_dir = true", "state_dir: expected a string in quotes, got true"),
        ("advertise = 'build01'", 'advertise: expected a list, got "build01"'),
        ("advertise = ['a', 3]", "advertise[1]: expected a string in quotes, got 3"),
        ("retention = 30", 'retention: expected a duration in quotes such as "30d"'),
        ("exec_timeout = 30", 'exec_timeout: expected a duration in quotes such as "30s"'),
        ("isolation = 'none'", 'isolation: expected a table, got "none"'),
        ("roles = ['alice']", "roles: expected a table, got a list"),
        ("[roles]\nalice = true", "roles.alice: expected"),
        ("[limits.max]\npids = '4096'", 'limits.max.pids: expected a whole number, got "4096"'),
        ("[limits.max]\npids = true", "limits.max.pids: expected a whole number, got true"),
        ("[limits.max]\ncpu = true", "limits.max.cpu: expected a number of cores"),
        ("[limits.max]\nmemory = 1.5", "limits.max.memory: expected a size"),
        ("[limits.max]\noutput = false", "limits.max.output: expected a size"),
        ("[limits.default]\nio_read = [1]", "limits.default.io_read: expected a rate"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, error: str) -> None:
    (line,) = errors_of(write(tmp_path, text))
    assert error in line, line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen = ", "not valid TOML"),
        ("colour = 'blue'", "unknown setting"),
        ("retention = '20mims'", "retention: invalid duration '20mims'"),
        ("exec_timeout = '0s'", "exec_timeout: invalid duration"),
        ("exec_timeout = '2d'", "exec_timeout: must be between 1s and 1h"),
        ("exec_timeout = 'soon'", "exec_timeout"),
        ("[limits.max]\nmemory = 'lots'", "limits.max.memory: invalid size 'lots'"),
        ("[limits.max]\nmemory = 5", "limits.max.memory: memory limit must be between"),
        ("[limits.max]\ncpu = '0'", "limits.max.cpu: invalid cpu amount"),
        ("[limits.max]\ncpu = 5000", "limits.max.cpu: cpu limit must be between"),
        ("[limits.max]\npids = 0", "limits.max.pids: pids limit must be between"),
        ("[limits.max]\nio_write = '1k'", "io write limit must be at least 64 KiB/s"),
        ("[limits.max]\nio_read = '0'", "limits.max.io_read: invalid rate"),
        ("[isolation]\nnetwork = 'bridge'", 'expected "host" or "none", got "bridge"'),
        ("[roles]\ndefault = 'admn'", '"viewer", "operator", "admin" or "none", got "admn"'),
        ("[roles]\nbob = 'none'", 'got "none" ("none" is only for roles.default)'),
        ("listen = 'localhost'", "listen: must be HOST:PORT, got 'localhost'"),
        ("listen = 'localhost:99999'", "listen: must be HOST:PORT"),
        ("state_dir = ''", "state_dir:"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        load(str(path))


def test_every_error_is_reported_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [isolation]
        network = "bridge"
        [limits.max]
        memory = "lots"
        pids = "many"
        [roles]
        alice = "admn"
        """,
    )
    lines = errors_of(path)
    assert [line.split(":")[1] for line in lines] == ["2", "4", "5", "7"]


def test_syntax_errors_and_missing_files(tmp_path: Path) -> None:
    (line,) = errors_of(write(tmp_path, 'listen = "a:1"\nlisten = "b:2"\n'))
    assert line.startswith(f"{tmp_path / 'server.toml'}:2: not valid TOML"), line
    with pytest.raises(InvalidArgument, match="cannot read config"):
        load(str(tmp_path / "nope.toml"))


def test_bad_listen_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--listen must be HOST:PORT, got 'nowhere'"):
        load(None, state_dir=str(tmp_path), listen="nowhere")


def test_client_commands_do_not_import_the_schema() -> None:
    code = (
        "import sys\n"
        "from remo.cli.main import main\n"
        "import remo.server.config\n"
        "for argv in (['--help'], ['run', '--help'], ['register', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if 'pydantic' in m or 'config_schema' in m))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines()[-1] == "[]"


# -- remo server --check-config ---------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["server", *args], catch_exceptions=False)


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def start() -> None:
        raise AssertionError("the server was started")

    monkeypatch.setattr("remo.server.tls.ensure_tls13_only_env", start)


@pytest.mark.usefixtures("nothing_starts")
def test_check_config_prints_every_effective_setting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = write(tmp_path, FULL.format(state=state))
    result = invoke("--check-config", str(path), "--listen", "127.0.0.1:9300")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    shown = tomllib.loads(result.stdout)
    assert shown["listen"] == "127.0.0.1:9300"  # the flag wins over the file
    assert shown["retention"] == "forever" and shown["exec_timeout"] == "90s"
    assert shown["roles"] == {"alice": "admin", "bob": "viewer", "carol.x": "operator"} | {
        "default": "none"
    }
    assert shown["limits"]["default"] == {"memory": "4 GiB", "output": "1 GiB"}
    assert shown["limits"]["max"]["cpu"] == 1.5 and shown["limits"]["max"]["pids"] == 4096
    assert shown["limits"]["max"]["io_read"] == "100 MiB/s"
    assert shown["isolation"] == {
        "network": "none",
        "force_network_none": True,
        "namespaces": False,
    }
    assert not state.exists()


@pytest.mark.usefixtures("nothing_starts")
def test_check_config_without_a_file_shows_the_defaults(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = invoke("--check-config", "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    assert shown["state_dir"] == str(state)
    assert shown["listen"] == "0.0.0.0:7443" and shown["advertise"] == []
    assert shown["retention"] == "30d" and shown["exec_timeout"] == "30s"
    assert shown["roles"] == {"default": "operator"}
    assert shown["limits"] == {"default": {"output": "4 GiB"}, "max": {}}
    assert "# memory: no limit" in result.stdout
    assert shown["isolation"] == {
        "network": "host",
        "force_network_none": False,
        "namespaces": True,
    }
    assert not state.exists()
    # --check-config alone checks the --config file.
    path = write(tmp_path, "[isolation]\nnetwork = 'none'\n")
    result = invoke("--config", str(path), "--check-config", "--state-dir", str(state))
    assert tomllib.loads(result.stdout)["isolation"]["network"] == "none"


@pytest.mark.usefixtures("nothing_starts")
@pytest.mark.parametrize("check", [True, False])
def test_bad_config_exits_2_with_every_error_and_no_traceback(tmp_path: Path, check: bool) -> None:
    path = write(tmp_path, BAD)
    args = ["--check-config", str(path)] if check else ["--config", str(path)]
    result = invoke(*args, "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[:-1] == errors_of(path)
    assert lines[-1].startswith("remo: 5 errors in the server settings")
    for key in ("isolation.force_network_none", "isolation.netwrok", "limits.max.memroy"):
        assert any(f": {key}: " in line for line in lines), key
    assert any('"admn"' in line for line in lines)
    assert not (tmp_path / "state").exists()


def test_check_config_refuses_two_files(tmp_path: Path) -> None:
    a, b = write(tmp_path, "", "a.toml"), write(tmp_path, "", "b.toml")
    result = invoke("--check-config", str(a), "--config", str(b))
    assert result.exit_code == 2
    assert "name the file once" in result.stderr


@pytest.mark.usefixtures("nothing_starts")
def test_check_config_refuses_a_bad_flag(tmp_path: Path) -> None:
    result = invoke("--check-config", "--listen", "nowhere", "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "--listen must be HOST:PORT, got 'nowhere'"


def test_health_listen_is_off_by_default_and_a_bare_port_means_loopback(tmp_path: Path) -> None:
    from remo.server.config import load

    assert load(None).health_listen is None
    path = tmp_path / "health.toml"
    path.write_text('health_listen = "7444"\n')
    assert load(str(path)).health_listen == "127.0.0.1:7444"
    path.write_text('health_listen = "0.0.0.0:7444"\n')
    assert load(str(path)).health_listen == "0.0.0.0:7444"


# -- register_rate: credentials per account per window from `remo register` --------------


def test_register_rate_default_is_the_register_socket_default(tmp_path: Path) -> None:
    from remo.pki.register import DEFAULT_RATE

    config = load(None, state_dir=str(tmp_path))
    assert config.register_rate == DEFAULT_RATE == (5, 600.0)
    assert 'register_rate = "5/10m"' in effective_toml(config).splitlines()


@pytest.mark.parametrize(
    ("text", "rate", "shown"),
    [
        ('register_rate = "3/1h"', (3, 3600.0), "3/1h"),
        ('register_rate = "20 / 90s"', (20, 90.0), "20/90s"),
        ('register_rate = "1/1d"', (1, 86400.0), "1/1d"),
    ],
)
def test_register_rate_is_read_shown_and_read_back(
    tmp_path: Path, text: str, rate: tuple[int, float], shown: str
) -> None:
    config = load(str(write(tmp_path, text)), state_dir=str(tmp_path))
    assert config.register_rate == rate
    toml = effective_toml(config)
    assert f'register_rate = "{shown}"' in toml.splitlines()
    assert load(str(write(tmp_path, toml, "again.toml"))) == config


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("register_rate = 5", 'expected a rate in quotes such as "5/10m"'),
        ("register_rate = '5'", 'register_rate: expected a rate such as "5/10m"'),
        ("register_rate = 'five/10m'", 'expected a rate such as "5/10m"'),
        ("register_rate = '0/10m'", "the count must be between 1 and 10000, got 0"),
        ("register_rate = '10001/10m'", "the count must be between 1 and 10000"),
        ("register_rate = '5/0s'", "register_rate: invalid duration"),
        ("register_rate = '5/10'", "has no unit"),
        ("register_rate = '5/soon'", "invalid duration 'soon'"),
        ("registr_rate = '5/10m'", 'unknown setting (did you mean "register_rate"?)'),
    ],
)
def test_bad_register_rates_say_what_is_wrong(tmp_path: Path, text: str, error: str) -> None:
    (line,) = errors_of(write(tmp_path, f"# rates\n{text}\n"))
    assert line.startswith(f"{tmp_path / 'server.toml'}:2: "), line
    assert error in line, line


# -- max_outputs_per_user: job outputs one user may read at once --------------------------


def test_max_outputs_per_user_is_read_shown_and_read_back(tmp_path: Path) -> None:
    default = load(None, state_dir=str(tmp_path))
    assert default.max_outputs_per_user is None
    assert "# max_outputs_per_user: from the descriptor limit" in effective_toml(default)
    config = load(str(write(tmp_path, "max_outputs_per_user = 50")), state_dir=str(tmp_path))
    assert config.max_outputs_per_user == 50
    toml = effective_toml(config)
    assert "max_outputs_per_user = 50" in toml.splitlines()
    assert load(str(write(tmp_path, toml, "again.toml"))) == config


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("max_outputs_per_user = 0", "greater than or equal to 1"),
        ("max_outputs_per_user = '50'", "max_outputs_per_user"),
        ("max_outputs_per_user = 2000000", "less than or equal to 1000000"),
    ],
)
def test_bad_output_shares_say_what_is_wrong(tmp_path: Path, text: str, error: str) -> None:
    (line,) = errors_of(write(tmp_path, f"{text}\n"))
    assert line.startswith(f"{tmp_path / 'server.toml'}:1: "), line
    assert error in line, line


@pytest.mark.usefixtures("nothing_starts")
def test_check_config_shows_the_register_rate(tmp_path: Path) -> None:
    path = write(tmp_path, 'register_rate = "2/30m"\n')
    result = invoke("--check-config", str(path), "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["register_rate"] == "2/30m"


def test_the_embedded_defaults_are_the_schema_defaults() -> None:
    """Without a file the schema is not loaded: ServerConfig's defaults must be what an
    empty file gives."""
    from remo.server.config import ServerConfig, _from_settings
    from remo.server.config_schema import check

    settings, problems = check({})
    assert not problems and settings is not None
    assert _from_settings(settings) == ServerConfig()
