"""Keyed pseudonyms: stable, short, keyed, normalized per kind; key from env or a 0600 file."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import pytest

from junction.core.errors import ConfigError
from junction.core.pseudonym import ENV_KEY, KEY_FILE, Pseudonymizer, pii_kind, scrub

KEY = b"k" * 32
TOKEN = re.compile(r"^ps_[A-Za-z0-9_-]{22}$")


def test_a_pseudonym_is_short_stable_and_shaped() -> None:
    p = Pseudonymizer(KEY)
    token = p.of("email", "ann@example.com")
    assert TOKEN.match(token)
    assert token == Pseudonymizer(KEY).of("email", "ann@example.com")
    assert "ann" not in token
    assert "example" not in token


@pytest.mark.parametrize(
    ("kind", "a", "b"),
    [
        ("email", "Ann@Example.COM", " ann@example.com "),
        ("phone", "+1 (555) 010-9999", "+15550109999"),
        ("name", "Ann  Lee", "ann lee"),
    ],
    ids=["email-case-and-space", "phone-punctuation", "name-case-and-spacing"],
)
def test_values_are_normalized_per_kind(kind: str, a: str, b: str) -> None:
    p = Pseudonymizer(KEY)
    assert p.of(kind, a) == p.of(kind, b)


def test_different_values_kinds_and_keys_give_different_tokens() -> None:
    p = Pseudonymizer(KEY)
    assert p.of("email", "ann@example.com") != p.of("email", "bob@example.com")
    assert p.of("email", "ann") != p.of("name", "ann")
    assert p.of("email", "ann@example.com") != Pseudonymizer(b"j" * 32).of(
        "email", "ann@example.com"
    )
    # unlike a plain hash, the token cannot be recomputed without the key
    import hashlib

    plain = hashlib.sha256(b"ann@example.com").hexdigest()
    assert plain[:22] not in p.of("email", "ann@example.com")


def test_short_keys_and_bad_kinds_are_refused() -> None:
    with pytest.raises(ConfigError):
        Pseudonymizer(b"short")
    with pytest.raises(ValueError, match="kind"):
        Pseudonymizer(KEY).of("Email Address", "x")
    assert "k" * 32 not in repr(Pseudonymizer(KEY))


def test_key_comes_from_the_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, "e" * 40)
    p = Pseudonymizer.load(tmp_path)
    assert p.of("email", "a@b.co") == Pseudonymizer(b"e" * 40).of("email", "a@b.co")
    assert not (tmp_path / KEY_FILE).exists()


def test_key_file_is_created_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = Pseudonymizer.load(state).of("phone", "+15550100")
    path = state / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 32
    assert Pseudonymizer.load(state).of("phone", "+15550100") == first
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temporary files left behind


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    tokens: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        tokens.append(Pseudonymizer.load(tmp_path).of("email", "a@b.co"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 8
    assert len(set(tokens)) == 1


def test_an_empty_key_file_is_refused_not_used(tmp_path: Path) -> None:
    fd = os.open(tmp_path / KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(ConfigError, match="shorter than"):
        Pseudonymizer.load(tmp_path)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("email", "email"),
        ("E-Mail", "email"),
        ("contact_email", "email"),
        ("Phone", "phone"),
        ("mobile_phone", "phone"),
        ("first_name", "name"),
        ("lastName", "name"),
        ("contactEmail", "email"),
        ("ipAddress", "ip"),
        ("street", "address"),
        ("ip_address", "ip"),
        ("pipeline", None),
        ("score", None),
    ],
)
def test_pii_kind_classifies_field_names(key: str, kind: str | None) -> None:
    assert pii_kind(key) == kind


def test_scrub_replaces_personal_data_recursively_and_keeps_the_rest() -> None:
    p = Pseudonymizer(KEY)
    detail = {
        "email": "Ann@Example.com",
        "score": 0.91,
        "contact": {"phone": "+1 555 0100", "first_name": "Ann", "grade": "A"},
        "emails": ["a@b.co", "c@d.co"],
        "note": "forwarded by bob@example.org",
        "cc": "carol@example.org",
        "verified": True,
        "phone": None,
    }
    out = p.scrub(detail)
    assert out["email"] == p.of("email", "ann@example.com")
    assert out["score"] == 0.91
    assert out["contact"]["phone"] == p.of("phone", "+15550100")
    assert out["contact"]["first_name"] == p.of("name", "ann")
    assert out["contact"]["grade"] == "A"
    assert out["emails"] == [p.of("email", "a@b.co"), p.of("email", "c@d.co")]
    assert out["cc"] == p.of("email", "carol@example.org")  # an email under any key
    assert out["verified"] is True
    assert out["phone"] is None
    assert detail["email"] == "Ann@Example.com"  # the input is not modified
    assert out["note"] == f"forwarded by {p.of('email', 'bob@example.org')}"


def test_scrub_without_a_key_keeps_only_the_kind() -> None:
    assert scrub({"email": "a@b.co", "name": "Ann", "n": 3}) == {
        "email": "[email]",
        "name": "[name]",
        "n": 3,
    }
