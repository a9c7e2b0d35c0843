"""API keys: stored as SHA-256 hashes, checked in constant time.

The keys file holds one ``<name>:<sha256 hex of the key>`` line per key (``#`` starts a comment), so a
leaked file gives away no key. A key is generated once, printed once, and only its hash is kept::

    key = add_api_key("keys.txt", name="ci")      # tell the client `key`; it is not stored
    keys = ApiKeys.from_file("keys.txt")
    keys.identify(key)                            # 'ci'
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from evalsuite.errors import ConfigError

__all__ = ["ApiKeys", "add_api_key", "hash_api_key", "load_api_keys"]

_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEADER = "# evalsuite API keys, one per line: <name>:<sha256 hex of the key>\n"


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest of a key, as the keys file stores it.

    >>> hash_api_key("secret")[:12]
    '2bb80d537b1d'
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_api_keys(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{name: hash}`` from a keys file; a malformed line is a :class:`ConfigError` naming it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the API keys file {str(file)!r}: {error.strerror}") from error
    keys: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, digest = (part.strip() for part in line.partition(":"))
        digest = digest.lower()
        if not sep or not _NAME.fullmatch(name) or not _SHA256_HEX.fullmatch(digest):
            raise ConfigError(
                f"{file}:{number}: expected '<name>:<64 hex digits of sha256>', got {raw.strip()[:80]!r}"
            )
        if name in keys:
            raise ConfigError(f"{file}:{number}: key name {name!r} appears twice")
        keys[name] = digest
    return keys


def add_api_key(path: str | os.PathLike[str], *, name: str) -> str:
    """Generate a key, append its hash to the keys file (created owner-only), and return the key.

    The key itself is stored nowhere: the caller shows it once.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"key name must be 1-64 letters, digits or any of '_.@-', got {name!r}")
    file = Path(path)
    if file.exists() and name in load_api_keys(file):
        raise ConfigError(f"{file} already has a key named {name!r}; pick another name")
    key = secrets.token_urlsafe(32)
    is_new = not file.exists()
    descriptor = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        if is_new:
            handle.write(_HEADER)
        handle.write(f"{name}:{hash_api_key(key)}\n")
    return key


class ApiKeys:
    """The accepted keys (as hashes) and the check of a presented key.

    ``identify`` compares the presented key's hash with every stored hash through
    :func:`hmac.compare_digest`, with no early exit, so its time says nothing about which key or
    how much of one matched.

    >>> keys = ApiKeys({"ci": hash_api_key("secret")})
    >>> keys.identify("secret"), keys.identify("guess")
    ('ci', None)
    """

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes = {name: digest.encode("ascii") for name, digest in hashes.items()}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ApiKeys:
        keys = load_api_keys(path)
        if not keys:
            raise ConfigError(
                f"the API keys file {str(path)!r} has no keys; add one with `evalsuite serve keys add`"
            )
        return cls(keys)

    def __len__(self) -> int:
        return len(self._hashes)

    def identify(self, presented: str | None) -> str | None:
        """The name of the key ``presented`` is, or ``None``."""
        if not presented:
            return None
        digest = hash_api_key(presented).encode("ascii")
        found: str | None = None
        for name, stored in self._hashes.items():
            if hmac.compare_digest(digest, stored):
                found = name
        return found
