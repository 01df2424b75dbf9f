"""Error types. InputError is a property of the file (never retried); TransientError is infrastructure."""

from __future__ import annotations

from schemas.records import StageError


class InputError(Exception):
    """The input itself is bad: retrying cannot help. Carries a message meant for a person."""

    def __init__(self, stage: str, code: str, message: str) -> None:
        super().__init__(message)
        self.error = StageError(stage=stage, code=code, message=message)


class TransientError(Exception):
    """An infrastructure fault (store, database) that a retry may fix."""


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting."""


class SourceError(Exception):
    """A configured source cannot be listed for a reason a retry will not fix (missing folder or bucket, no access)."""


class ModelLoadError(ConfigError):
    """A model could not be loaded (bad path, missing package, hub unreachable): stops the run, not one file."""


class ToolMissingError(ConfigError):
    """A program docflow runs (poppler, tesseract) is not installed: stops the run before any file is blamed."""
