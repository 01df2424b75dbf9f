"""Engine and session factories, and schema migration to head. Nothing here runs at import time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from schemas.errors import ConfigError
from schemas.redaction import redact_urls, redacted_url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # a DB-API connection (sqlite3's)
    cursor = dbapi_connection.cursor()
    # WAL lets the status command read while a run writes; foreign keys make cascades real.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def checked_database_url(url: str) -> URL:
    """The parsed database URL, or a ConfigError saying what is wrong with it (a port that is not a number from 1
    to 65535, ...), the password masked."""
    try:
        parsed = make_url(url)
    except (ValueError, ArgumentError) as exc:
        raise ConfigError(f"the database URL {redacted_url(url)} is malformed: {_url_problem(url, exc)}") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigError(f"the database URL {redacted_url(url)} has port {parsed.port}: a port is 1 to 65535")
    return parsed


def _url_problem(url: str, exc: Exception) -> str:
    rest = url.partition("://")[2]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    port = host.rpartition("]")[2].partition(":")[2]  # after an IPv6 address's brackets
    if port and not port.isdigit():
        return f"its port {port!r} is not a number (HOST:PORT, e.g. localhost:5432)"
    return redact_urls(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__


def engine_url(url: str) -> str:
    """The URL SQLAlchemy is given: a bare `postgresql://` means psycopg 3, the driver docflow installs (SQLAlchemy's
    own default for it is psycopg2, which is not installed)."""
    bare = "postgresql://"
    return "postgresql+psycopg://" + url[len(bare) :] if url.startswith(bare) else url


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per URL per process (engines own connection pools)."""
    checked_database_url(url)
    url = engine_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except ModuleNotFoundError as exc:  # e.g. postgresql+psycopg2://: say which URL works instead of the import
        raise ConfigError(
            f"DOCFLOW_DATABASE_URL names the driver {exc.name}, which is not installed: "
            "write postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE (psycopg 3)"
        ) from None


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, absolute (a relative one is relative to the working folder); None for another
    database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def has_schema(url: str) -> bool:
    """Whether the database exists and holds docflow's tables. Creates nothing: a missing SQLite file is never
    opened (connecting would create it), so commands that only read can say that no database was found."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return False
    with get_engine(url).connect() as connection:
        return inspect(connection).has_table("alembic_version")


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def unit_of_work(url: str) -> Iterator[Session]:
    """A transaction: commits on success, rolls back on any exception."""
    with session_factory(url)() as session, session.begin():
        yield session


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("storage") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", engine_url(url).replace("%", "%%"))
    return cfg


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}-migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


# Any constant shared by every docflow process: the key of the advisory lock that serialises migrations.
_MIGRATION_LOCK_KEY = 0x646F63666C6F77  # "docflow"


def migrate(url: str) -> None:
    """Bring the database schema to the newest revision (idempotent, safe when several processes start at once).

    On Postgres a transaction-scoped advisory lock serialises concurrent upgrades: the second process waits, then
    finds the schema at head. pysqlite runs DDL outside a transaction, so SQLite files get an exclusive lock on a
    file beside them instead."""
    cfg = alembic_config(url)
    with _sqlite_file_lock(url), get_engine(url).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
