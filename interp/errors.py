"""Typed errors: every failure a user can cause says what went wrong and how to fix it, in one line each."""

from __future__ import annotations


class InterpError(Exception):
    """Base class. `message` names the problem; `hint` names the fix. The CLI prints both and exits 2."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ModelNotFoundError(InterpError):
    """A model name or folder that interp cannot resolve."""


class HubUnavailableError(InterpError):
    """A hub download was needed but no hub is reachable."""


class HookNotFoundError(InterpError):
    """A hook pattern that matches no hook point of the model."""


class CacheError(InterpError):
    """A cache directory that is missing, incompatible, locked or inconsistent."""


class CacheCorruptError(CacheError):
    """A shard whose bytes do not match the manifest's checksum (xxh3_128, or sha256 in older caches) or size."""


class CacheLockedError(CacheError):
    """Another live writer holds the cache directory's lock."""


class DataSourceError(InterpError):
    """A token source that cannot be read or tokenized."""


class ConfigError(InterpError):
    """An analysis or CLI option with an invalid value."""
