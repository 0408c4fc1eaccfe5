"""The CLI's credential check: full once per content, then without cryptography."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remo.client import verified
from remo.pki import package
from remo.pki.ca import CertificateAuthority
from remo.pki.errors import CredentialExpired, CredentialKeyMismatch


@pytest.fixture
def credential(tmp_path: Path) -> Path:
    ca = CertificateAuthority.load_or_create(tmp_path / "state")
    issued = ca.issue_client("alice", "operator", validity=timedelta(days=2))
    path = tmp_path / "alice.remo"
    package.save(path, ["127.0.0.1:7443"], ca.cert_pem, issued.cert_pem, issued.key_pem)
    return path


def test_second_load_matches_the_full_check_and_skips_cryptography(credential: Path) -> None:
    full = package.load(credential)
    first = verified.load(credential)
    assert first == full
    entries = list(verified.cache_dir().iterdir())
    assert entries and all(b"PRIVATE KEY" not in e.read_bytes() for e in entries)
    assert all(e.stat().st_mode & 0o077 == 0 for e in entries)
    script = (
        "import sys; from remo.client import verified; "
        f"c = verified.load({str(credential)!r}); "
        "print(c.user, c.role, 'cryptography' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["alice", "operator", "False"]


def test_dates_are_checked_every_time(credential: Path) -> None:
    verified.load(credential)
    later = datetime.now(UTC) + timedelta(days=3)
    with pytest.raises(CredentialExpired):
        verified.load(credential, now=later)


def test_a_changed_file_is_checked_fully_again(credential: Path, tmp_path: Path) -> None:
    verified.load(credential)
    other = CertificateAuthority.load_or_create(tmp_path / "other").issue_client("bob", "viewer")
    cred = package.load(credential)
    package.save(credential, cred.addresses, cred.ca_pem, cred.cert_pem, other.key_pem)
    with pytest.raises(CredentialKeyMismatch):
        verified.load(credential)
