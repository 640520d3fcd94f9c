"""Passwords hashed with Argon2id (argon2-cffi's defaults: 64 MiB, 3 passes)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from errors import BadInput

_hasher = PasswordHasher()
MIN_LENGTH = 10
_dummy: list[str] = []


def _dummy_hash() -> str:
    """A hash of a password nobody has, verified when the user does not exist, so a wrong name
    takes as long as a wrong password (made on first use: it costs an Argon2 hash)."""
    if not _dummy:
        _dummy.append(_hasher.hash("no such user, no such password"))
    return _dummy[0]


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise BadInput(f"密码至少 {MIN_LENGTH} 个字符", f"a password needs at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
