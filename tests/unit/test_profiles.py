"""Profiles: where `remo login` puts credentials, and which one a command uses."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remo.client import profiles
from remo.client.errors import (
    EXIT_AUTH,
    EXIT_USAGE,
    CredentialProblem,
    ProfileError,
    UsageError,
)
from remo.pki import package
from remo.pki.ca import CertificateAuthority


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca") / "state")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose config dir is private to the test."""
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def credential(ca: CertificateAuthority, path: Path, **kw: object) -> Path:
    issued = ca.issue_client("alice", "operator", **kw)  # type: ignore[arg-type]
    package.save(path, ["build01.example:7443"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- where profiles live ----------------------------------------------------------------


def test_config_dir_respects_xdg(env: dict[str, str]) -> None:
    assert profiles.config_dir(env) == Path(env["XDG_CONFIG_HOME"]) / "remo"


def test_config_dir_defaults_to_home_config(env: dict[str, str]) -> None:
    del env["XDG_CONFIG_HOME"]
    assert profiles.config_dir(env) == Path(env["HOME"]) / ".config" / "remo"


def test_relative_xdg_is_ignored(env: dict[str, str]) -> None:
    env["XDG_CONFIG_HOME"] = "relative/dir"
    assert profiles.config_dir(env) == Path(env["HOME"]) / ".config" / "remo"


# -- remo login ---------------------------------------------------------------------------


def test_first_login_installs_private_copy_and_becomes_default(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]
) -> None:
    src = credential(ca, tmp_path / "build01.remo")
    done = profiles.install(src, env=env)
    assert done.name == "build01" and done.default and not done.replaced
    assert done.credential.user == "alice"
    target = profiles.profile_path("build01", env)
    assert target.read_bytes() == src.read_bytes()
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert mode(profiles.config_dir(env)) == 0o700
    assert profiles.default_profile(env) == "build01"
    assert mode(profiles.config_dir(env) / "default") == 0o600


def test_second_login_is_not_default_unless_asked(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]
) -> None:
    profiles.install(credential(ca, tmp_path / "a.remo"), env=env)
    second = profiles.install(credential(ca, tmp_path / "b.remo"), env=env)
    assert not second.default
    assert profiles.default_profile(env) == "a"
    third = profiles.install(credential(ca, tmp_path / "c.remo"), make_default=True, env=env)
    assert third.default
    assert profiles.default_profile(env) == "c"
    assert profiles.list_profiles(env) == ["a", "b", "c"]


def test_login_again_replaces_the_profile(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    profiles.install(credential(ca, tmp_path / "one" / "build01.remo"), env=env)
    renewed = credential(ca, tmp_path / "two" / "build01.remo")
    done = profiles.install(renewed, env=env)
    assert done.replaced
    assert profiles.profile_path("build01", env).read_bytes() == renewed.read_bytes()


def test_login_tightens_a_loose_config_dir(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]
) -> None:
    directory = profiles.profiles_dir(env)
    directory.mkdir(parents=True)
    os.chmod(directory, 0o755)
    profiles.install(credential(ca, tmp_path / "x.remo"), env=env)
    assert mode(directory) == 0o700


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("loose", "accessible by other users"),
        ("corrupt", "not a remo credential"),
        ("expired", "expired"),
        ("future", "not valid before"),
        ("missing", "cannot read"),
    ],
)
def test_login_refuses_unusable_credentials(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str], damage: str, needle: str
) -> None:
    path = tmp_path / "bad.remo"
    now = datetime.now(UTC)
    if damage == "expired":
        credential(ca, path, not_before=now - timedelta(days=3), validity=timedelta(days=1))
    elif damage == "future":
        credential(ca, path, not_before=now + timedelta(days=1))
    elif damage != "missing":
        credential(ca, path)
    if damage == "loose":
        os.chmod(path, 0o644)
    if damage == "corrupt":
        path.write_bytes(b"hello\n")
    with pytest.raises(CredentialProblem, match=needle) as info:
        profiles.install(path, env=env)
    assert info.value.exit_code == EXIT_AUTH
    assert "\n" not in str(info.value)
    assert profiles.list_profiles(env) == []


def test_login_refuses_an_unusable_name(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]
) -> None:
    path = credential(ca, tmp_path / ".hidden.remo")
    with pytest.raises(UsageError, match="cannot name a profile"):
        profiles.install(path, env=env)


def test_set_default_needs_an_installed_profile(env: dict[str, str]) -> None:
    with pytest.raises(ProfileError, match="no profile named 'ghost'"):
        profiles.set_default("ghost", env)


# -- selection ---------------------------------------------------------------------------


@pytest.fixture
def installed(ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]) -> dict[str, Path]:
    """Profiles a (default) and b installed; a stray credential file outside them."""
    paths = {}
    for name in ("a", "b"):
        paths[name] = profiles.install(credential(ca, tmp_path / f"{name}.remo"), env=env).path
    paths["file"] = credential(ca, tmp_path / "elsewhere.remo")
    return paths


def test_flag_wins_over_env_and_default(installed: dict[str, Path], env: dict[str, str]) -> None:
    env[profiles.ENV_PROFILE] = "a"
    chosen = profiles.select("b", env)
    assert (chosen.name, chosen.path, chosen.source) == ("b", installed["b"], "--profile")


def test_flag_may_name_a_file(installed: dict[str, Path], env: dict[str, str]) -> None:
    chosen = profiles.select(str(installed["file"]), env)
    assert (chosen.name, chosen.path) == (None, installed["file"])


def test_env_wins_over_default(installed: dict[str, Path], env: dict[str, str]) -> None:
    env[profiles.ENV_PROFILE] = "b"
    assert profiles.select(None, env).source == profiles.ENV_PROFILE
    assert profiles.select(None, env).name == "b"
    env[profiles.ENV_PROFILE] = str(installed["file"])
    assert profiles.select(None, env).path == installed["file"]


def test_default_is_used_when_nothing_is_named(
    installed: dict[str, Path], env: dict[str, str]
) -> None:
    chosen = profiles.select(None, env)
    assert (chosen.name, chosen.source) == ("a", "default")


def test_the_only_profile_is_used_without_a_default(
    ca: CertificateAuthority, tmp_path: Path, env: dict[str, str]
) -> None:
    profiles.install(credential(ca, tmp_path / "solo.remo"), env=env)
    (profiles.config_dir(env) / "default").unlink()
    chosen = profiles.select(None, env)
    assert (chosen.name, chosen.source) == ("solo", "only")


def test_several_profiles_and_no_default(installed: dict[str, Path], env: dict[str, str]) -> None:
    (profiles.config_dir(env) / "default").unlink()
    with pytest.raises(ProfileError) as info:
        profiles.select(None, env)
    assert str(info.value) == (
        "several profiles and no default: a, b; pick one with --profile or `remo login --default`"
    )
    assert info.value.exit_code == EXIT_USAGE


def test_default_that_was_deleted(installed: dict[str, Path], env: dict[str, str]) -> None:
    installed["a"].unlink()
    # Only b is left: it is the only profile, so it is used.
    assert profiles.select(None, env).name == "b"
    installed["b"].unlink()
    with pytest.raises(ProfileError, match="no remo profile"):
        profiles.select(None, env)


def test_no_profile_at_all(env: dict[str, str]) -> None:
    with pytest.raises(ProfileError, match="remo login FILE") as info:
        profiles.select(None, env)
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("value", ["nope", "./nope.remo", "/no/such/nope.remo"])
def test_unknown_profile_names_the_choices(
    installed: dict[str, Path], env: dict[str, str], value: str
) -> None:
    with pytest.raises(ProfileError, match=r"nope.*no such") as info:
        profiles.select(value, env)
    if "/" not in value:
        assert "profiles: a, b" in str(info.value)


def test_unknown_env_profile_says_where_it_came_from(
    installed: dict[str, Path], env: dict[str, str]
) -> None:
    env[profiles.ENV_PROFILE] = "ghost"
    with pytest.raises(ProfileError, match=r"^REMO_PROFILE ghost"):
        profiles.select(None, env)


def test_os_environ_is_the_default(
    installed: dict[str, Path], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(profiles.ENV_PROFILE, "b")
    assert profiles.select().name == "b"


def test_loading_a_selected_profile_checks_it(
    installed: dict[str, Path], env: dict[str, str]
) -> None:
    os.chmod(installed["a"], 0o640)
    with pytest.raises(CredentialProblem, match="chmod 600"):
        profiles.load_credential(profiles.select(None, env).path)
