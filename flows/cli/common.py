"""What every docflow command shares: the error console, settings loading with a clear message, and the database
brought to the current schema."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from schemas.errors import ConfigError
from schemas.redaction import redact_urls, redacted_url
from schemas.settings import Settings, load_settings
from tasks.display import first_line, printable

console = Console(stderr=True, emoji=False, highlight=False)


def safe(text: object) -> str:
    """Outside text (keys, error messages) for console.print: control characters and rich markup escaped."""
    return escape(printable(str(text)))


def settings_or_exit(source: list[str] | None = None) -> Settings:
    try:
        settings = load_settings(source=source or None)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {safe(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None
    return settings


def prepare_database(settings: Settings) -> None:
    from storage.db import migrate

    try:
        migrate(settings.database_url)
    except ConfigError as exc:  # a malformed URL: the message says what is wrong with it
        console.print(f"[red]error:[/red] DOCFLOW_DATABASE_URL: {safe(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        console.print(
            f"[red]error:[/red] cannot open the database {safe(redacted(settings.database_url))}: "
            f"{safe(first_line(redact_urls(str(exc))))}",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def redacted(url: str) -> str:
    """A URL to print: its password and password-like query values masked (never raises, even when malformed)."""
    return redacted_url(url)
