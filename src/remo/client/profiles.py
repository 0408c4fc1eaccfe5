"""Profiles: the credential files a user installed with ``remo login``.

Layout (``$XDG_CONFIG_HOME`` defaults to ``~/.config``)::

    $XDG_CONFIG_HOME/remo/            mode 0700
        profiles/<name>.remo          mode 0600, a credential file as `remo register` wrote it
        default                       the name of the default profile, one line

A profile's name is its credential file's stem: ``remo login ./build01.remo`` installs
profile ``build01``. The first profile installed becomes the default.

Which credential a command uses (:func:`select`):

1. ``--profile FILE_OR_NAME``: a path to a credential file, or an installed profile's name;
2. the ``REMO_PROFILE`` environment variable (same forms);
3. the default profile;
4. the only installed profile;
5. otherwise an error that lists the profiles.

This module reads and writes files only; it does not import grpc.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remo.client.errors import CredentialProblem, ProfileError, UsageError
from remo.core.files import write_file_atomic

if TYPE_CHECKING:
    from remo.pki.credfile import Credential

ENV_PROFILE = "REMO_PROFILE"
SUFFIX = ".remo"
DEFAULT_FILE = "default"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,99}$")


@dataclass(frozen=True)
class Selected:
    """The credential file a command will use, and why."""

    path: Path
    #: The profile name, or ``None`` when a file was named directly.
    name: str | None
    #: ``--profile``, ``REMO_PROFILE``, ``default`` or ``only``.
    source: str


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/remo`` (``~/.config/remo`` when the variable is unset or relative)."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return Path(base) / "remo"


def profiles_dir(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "profiles"


def valid_name(name: str) -> bool:
    """Whether ``name`` can be a profile name (it becomes a file name)."""
    return bool(_NAME.match(name)) and not name.endswith(".")


def list_profiles(env: Mapping[str, str] | None = None) -> list[str]:
    """The installed profiles' names, sorted."""
    try:
        entries = os.listdir(profiles_dir(env))
    except OSError:
        return []
    names = [e[: -len(SUFFIX)] for e in entries if e.endswith(SUFFIX)]
    return sorted(n for n in names if valid_name(n))


def profile_path(name: str, env: Mapping[str, str] | None = None) -> Path:
    return profiles_dir(env) / f"{name}{SUFFIX}"


def default_profile(env: Mapping[str, str] | None = None) -> str | None:
    """The default profile's name as recorded, or ``None`` when there is none."""
    try:
        text = (config_dir(env) / DEFAULT_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and valid_name(text) else None


def _describe(names: list[str]) -> str:
    return ", ".join(names) if names else "none installed"


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith(SUFFIX) or value.startswith(("~", "."))


def resolve(value: str, source: str, env: Mapping[str, str] | None = None) -> Selected:
    """The credential for a ``--profile`` / ``REMO_PROFILE`` value: a file path or a name."""
    if not value.strip():
        raise ProfileError(f"{source} is empty: give a credential file or a profile name")
    expanded = Path(os.path.expanduser(value))
    if _looks_like_path(value) or not valid_name(value):
        if not expanded.exists():
            raise ProfileError(f"{source} {value}: no such credential file")
        return Selected(expanded, None, source)
    if valid_name(value):
        path = profile_path(value, env)
        if path.exists():
            return Selected(path, value, source)
    if expanded.is_file():
        return Selected(expanded, None, source)
    names = list_profiles(env)
    raise ProfileError(
        f"{source} {value}: no such profile or credential file (profiles: {_describe(names)})"
    )


def select(profile: str | None = None, env: Mapping[str, str] | None = None) -> Selected:
    """The credential file to use; :class:`ProfileError` when none can be chosen."""
    environ = os.environ if env is None else env
    if profile:
        return resolve(profile, "--profile", env)
    from_env = environ.get(ENV_PROFILE, "")
    if from_env:
        return resolve(from_env, ENV_PROFILE, env)
    names = list_profiles(env)
    default = default_profile(env)
    if default is not None:
        path = profile_path(default, env)
        if path.exists():
            return Selected(path, default, "default")
        if len(names) > 1:
            raise ProfileError(
                f"the default profile {default!r} is not installed any more "
                f"(profiles: {_describe(names)}); pick one with --profile or "
                "`remo login --default`"
            )
    if len(names) == 1:
        return Selected(profile_path(names[0], env), names[0], "only")
    if not names:
        raise ProfileError(
            "no remo profile: run `remo register` on the server, copy the file it writes "
            "here, then `remo login FILE` (or pass --profile FILE)"
        )
    raise ProfileError(
        f"several profiles and no default: {', '.join(names)}; pick one with --profile "
        "or `remo login --default`"
    )


# -- installing ---------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    """Create ``path`` as 0700 (parents as needed) and tighten it if it exists wider."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as err:
        raise UsageError(f"cannot create {path}: {err.strerror or err}") from None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600 from the start."""
    try:
        write_file_atomic(path, data, 0o600)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None


def set_default(name: str, env: Mapping[str, str] | None = None) -> None:
    """Make the installed profile ``name`` the default."""
    if not profile_path(name, env).exists():
        raise ProfileError(f"no profile named {name!r} (profiles: {_describe(list_profiles(env))})")
    directory = config_dir(env)
    _private_dir(directory)
    _write_private(directory / DEFAULT_FILE, f"{name}\n".encode())


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did."""

    name: str
    path: Path
    credential: Credential
    default: bool
    replaced: bool


def load_credential(path: str | os.PathLike[str]) -> Credential:
    """Load and check a credential file; :class:`CredentialProblem` with the reason."""
    from remo.client.verified import load
    from remo.pki.errors import CredentialError

    try:
        return load(path)
    except CredentialError as err:
        raise CredentialProblem(str(err)) from None


def credential_from_bytes(data: bytes, *, name: str = "<credential>") -> Credential:
    """Check and load a credential file's contents (as :func:`load_credential` does,
    but from memory: the file-mode check does not apply)."""
    from datetime import UTC, datetime

    from remo.pki.errors import CredentialError, CredentialExpired, CredentialNotYetValid
    from remo.pki.package import parse

    try:
        credential = parse(data, path=name)
        now = datetime.now(UTC)
        if now < credential.not_before:
            raise CredentialNotYetValid(name, credential.not_before, credential.not_after)
        if now > credential.not_after:
            raise CredentialExpired(name, credential.not_before, credential.not_after)
    except CredentialError as err:
        raise CredentialProblem(str(err)) from None
    return credential


def install(
    source: str | os.PathLike[str],
    *,
    make_default: bool = False,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Installed:
    """Check the credential file ``source`` and copy it into the profiles directory.

    The profile is named after the file's stem unless ``name`` is given. The copy is
    mode 0600 in a 0700 directory. The first profile installed, or any with
    ``make_default``, becomes the default. An existing profile of that name is replaced.
    """
    src = Path(source)
    profile = name if name is not None else src.name.removesuffix(SUFFIX)
    if not valid_name(profile):
        raise UsageError(
            f"cannot name a profile {profile!r} (from {src}): use letters, digits, '.', "
            "'_', '-'; rename the file"
        )
    credential = load_credential(src)
    try:
        data = src.read_bytes()
    except OSError as err:
        raise CredentialProblem(f"cannot read {src}: {err.strerror or err}") from None
    first = not list_profiles(env)
    directory = profiles_dir(env)
    _private_dir(directory.parent)
    _private_dir(directory)
    target = profile_path(profile, env)
    replaced = target.exists()
    same = replaced and _same_file(src, target)
    if not same:
        _write_private(target, data)
    elif target.stat().st_mode & 0o077:
        os.chmod(target, 0o600)
    becomes_default = make_default or first or default_profile(env) is None
    if becomes_default:
        set_default(profile, env)
    return Installed(profile, target, credential, becomes_default, replaced and not same)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
