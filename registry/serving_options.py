"""Per-model serving options, carried as reserved ``kerve.*`` tags on a version:

    kerve upload mlp m.keras --tag kerve.max_batch_size=64 --tag kerve.jit_compile=true

Unknown ``kerve.*`` keys and bad values are refused at upload (INVALID_ARGUMENT); options a
version does not set come from the server's settings, where every default lives.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from kerve.registry.errors import InvalidArgumentError

TAG_PREFIX = "kerve."


@dataclass(frozen=True)
class ServingOptions:
    max_batch_size: int
    """Most rows merged into one model call; 1 turns batching off for this model."""

    batch_timeout_ms: float
    """Longest a request waits for a fuller batch while another instance is busy."""

    jit_compile: bool
    """Compile the model with XLA; batches are then padded to powers of two so that each
    size compiles once, at load."""

    def batch_sizes(self) -> tuple[int, ...]:
        """Padded batch sizes under XLA: 1, 2, 4, ... up to max_batch_size."""
        sizes, n = [], 1
        while n < self.max_batch_size:
            sizes.append(n)
            n *= 2
        sizes.append(self.max_batch_size)
        return tuple(sizes)


def _parse(name: str, kind: type, text: str):
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        value = kind(text)
    except ValueError:
        raise InvalidArgumentError(
            f"tag {TAG_PREFIX}{name}={text!r}: expected {kind.__name__}") from None
    if value <= 0 or (name == "max_batch_size" and value > 4096):
        raise InvalidArgumentError(f"tag {TAG_PREFIX}{name}={text!r} is out of range")
    return value


def options_from_tags(tags: dict[str, str], defaults: ServingOptions) -> ServingOptions:
    """``defaults`` (the server's settings) with what the version's tags set."""
    return replace(defaults, **_tagged_options(tags))


def check_serving_tags(tags: dict[str, str]) -> None:
    """Refuse unknown ``kerve.*`` tags and bad values (at upload, before any byte)."""
    _tagged_options(tags)


def _tagged_options(tags: dict[str, str]) -> dict:
    known = {f.name: f.type for f in fields(ServingOptions)}
    kinds = {"int": int, "float": float, "bool": bool}
    changes = {}
    for key, text in tags.items():
        if not key.startswith(TAG_PREFIX):
            continue
        name = key[len(TAG_PREFIX):]
        if name not in known:
            raise InvalidArgumentError(
                f"unknown serving tag {key!r}; known: "
                f"{', '.join(TAG_PREFIX + k for k in known)}")
        changes[name] = _parse(name, kinds[known[name]], text)
    return changes
