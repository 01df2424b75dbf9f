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


def existing_database(settings: Settings) -> None:
    """For commands that read what runs left (status, show, review, exports): never create a database. Say where
    none was found and exit 2; bring one that exists to the current schema."""
    from storage.db import has_schema, sqlite_file

    url = settings.database_url
    try:
        found = has_schema(url)
    except ConfigError as exc:  # a malformed URL or a driver that is not installed: the message says which
        console.print(f"[red]error:[/red] DOCFLOW_DATABASE_URL: {safe(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # unreachable server, refused password
        console.print(
            f"[red]error:[/red] cannot open the database {safe(redacted(url))}: "
            f"{safe(first_line(redact_urls(str(exc))))}",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    if not found:
        where = sqlite_file(url)
        console.print(
            f"[red]error:[/red] no docflow database found at {safe(where or redacted(url))} "
            f"(DOCFLOW_DATABASE_URL={safe(redacted(url))}): `docflow run` creates it; "
            "run it here first, or point DOCFLOW_DATABASE_URL at the database a run wrote",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    prepare_database(settings)


def database_label(url: str) -> str:
    """Which database a command read, for a person: the redacted URL, and a SQLite file's absolute path."""
    from storage.db import sqlite_file

    where = sqlite_file(url)
    return safe(redacted(url)) + (f" ({safe(where)})" if where is not None else "")


def redacted(url: str) -> str:
    """A URL to print: its password and password-like query values masked (never raises, even when malformed)."""
    return redacted_url(url)
