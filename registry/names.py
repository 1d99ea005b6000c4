"""Model names, aliases and version references (NAME, NAME:VERSION, NAME@ALIAS)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kerve.registry.errors import InvalidArgumentError

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")
DEFAULT_ALIAS = "production"


def check_model_name(name: str) -> str:
    if not MODEL_NAME.fullmatch(name or ""):
        raise InvalidArgumentError(
            f"invalid model name {name!r}: expected {MODEL_NAME.pattern}")
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias or ""):
        raise InvalidArgumentError(f"invalid alias {alias!r}: expected {ALIAS.pattern}")
    return alias


@dataclass(frozen=True)
class VersionRef:
    """Which version of a model a request means: a number, an alias, or the default."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

    @classmethod
    def of(cls, name: str, version: int | str | None = None,
           alias: str | None = None) -> "VersionRef":
        """From protocol fields: a version number (0/None/'' = unset) and/or an alias.

        A string version follows KServe v2: digits are a version, anything else an alias.
        """
        check_model_name(name)
        if isinstance(version, str):
            if version.isdigit():
                version = int(version)
            elif version:
                if alias:
                    raise InvalidArgumentError("give a version or an alias, not both")
                alias, version = version, None
            else:
                version = None
        if version is not None and version <= 0:
            version = None
        if version is not None and alias:
            raise InvalidArgumentError("give a version or an alias, not both")
        if alias:
            check_alias(alias)
        return cls(name, version, alias or None)

    @classmethod
    def parse(cls, text: str) -> "VersionRef":
        """From the CLI's NAME, NAME:VERSION or NAME@ALIAS."""
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls.of(name, alias=check_alias(alias))
        if ":" in text:
            name, version = text.split(":", 1)
            if not version.isdigit() or int(version) <= 0:
                raise InvalidArgumentError(f"invalid version {version!r} in {text!r}")
            return cls.of(name, int(version))
        return cls.of(text)
