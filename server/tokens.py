"""The tokens file: bearer token -> scope and name, reloaded without a restart.

The file is a YAML or JSON mapping; each value is a scope, or a mapping with a scope and
a name (the name is what writes are recorded under; the token itself never is):

    reader-token: read
    ci-token: {scope: write, name: ci}

``TokenTable.reload`` swaps the whole table at once, so a request checked against the old
table finishes undisturbed; a file that does not parse is refused with a log line and the
old tokens stay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    scope: str
    name: str


def _fingerprint(token: str) -> str:
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]


def load_tokens(path) -> dict[str, Principal]:
    """Parse a tokens file; ValueError (with the file and the entry) if it is malformed."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML or JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of token to scope")
    tokens = {}
    for token, value in data.items():
        token = str(token)
        if isinstance(value, dict):
            scope, name = value.get("scope"), value.get("name") or _fingerprint(token)
            unknown = set(value) - {"scope", "name"}
            if unknown:
                raise ValueError(f"{path}: unknown key(s) {sorted(unknown)} for a token "
                                 "(expected scope and name)")
        else:
            scope, name = value, _fingerprint(token)
        if scope not in SCOPES:
            raise ValueError(f"{path}: scope {scope!r} is not one of {', '.join(SCOPES)}")
        tokens[token] = Principal(scope, str(name)[:128])
    return tokens


class TokenTable:
    """The tokens in force; ``lookup`` is a dict lookup (on every request)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tokens = load_tokens(path)  # at start-up a bad file stops the server
        self._stamp = self._file_stamp()

    def lookup(self, token: str) -> Principal | None:
        return self._tokens.get(token)

    def __len__(self) -> int:
        return len(self._tokens)

    def _file_stamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> bool:
        """Read the file again; keep the old tokens if it is missing or malformed."""
        self._stamp = self._file_stamp()
        try:
            tokens = load_tokens(self.path)
        except (OSError, ValueError) as exc:
            log.error("tokens file not reloaded, the previous %d token(s) stay: %s",
                      len(self._tokens), exc)
            return False
        self._tokens = tokens  # one assignment: a request sees the old table or the new
        log.info("tokens reloaded from %s: %d token(s)", self.path, len(tokens))
        return True

    async def watch(self, interval_s: float = 1.0) -> None:
        """Reload whenever the file changes (its mtime, size or inode: editors and
        Kubernetes secret updates replace the file)."""
        while True:
            await asyncio.sleep(interval_s)
            if self._file_stamp() != self._stamp:
                await asyncio.to_thread(self.reload)
