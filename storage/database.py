"""Storage room: DATABASE_URL rules shared by every table fanout keeps (SQLite by default, PostgreSQL via psycopg 3)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

DEFAULT_DATABASE_URL = "sqlite:///fanout.db"
log = logging.getLogger("fanout.storage")


class DatabaseUrlError(ValueError):
    """DATABASE_URL cannot be used; ``variable`` names it (the URL itself may hold a password and is not shown)."""

    variable = "DATABASE_URL"


class DatabaseUnreachable(DatabaseUrlError):
    """The database server did not answer in time: a failure elsewhere, not input to change (exit 1)."""

    input_error = False


def require_durable(url: str) -> None:
    """A bot's journal must survive its restarts (it is how no signal is executed twice): refuse an in-memory
    SQLite database, naming DATABASE_URL."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise DatabaseUrlError("DATABASE_URL is an in-memory SQLite database, gone when the bot stops: its journal "
                               "must survive restarts (no signal executed twice, unfinished ones resumed); use a "
                               "file (sqlite:///fanout.db) or PostgreSQL")


def database_url(env: Mapping[str, Any]) -> str:
    """``DATABASE_URL`` from the settings, or the SQLite default ``sqlite:///fanout.db``."""
    return str(env.get("DATABASE_URL") or "").strip() or DEFAULT_DATABASE_URL


def normalize_url(url: str) -> str:
    """Route PostgreSQL URLs (``postgres://``, ``postgresql://``) to psycopg 3; other URLs pass unchanged."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseUrlError("DATABASE_URL is not a database URL (e.g. sqlite:///fanout.db)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgres", "postgresql"):
        raise DatabaseUrlError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {parsed.drivername}://…")
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """The URL with any password masked, for output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid DATABASE_URL>"


def sqlite_file_missing(url: str) -> bool:
    """True for a SQLite file URL whose file does not exist (reading it would create an empty file)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return False
    db = parsed.database
    return parsed.get_backend_name() == "sqlite" and db not in (None, "", ":memory:") and not Path(db).exists()


def open_engine(url: str, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url`` (normalised; ``kwargs`` go to create_engine); a missing driver or bad URL
    names DATABASE_URL."""
    try:
        return create_engine(normalize_url(url), **kwargs)
    except ModuleNotFoundError as exc:
        raise DatabaseUrlError(
            f"DATABASE_URL needs the database driver {exc.name!r}: pip install 'fanout[postgres]'") from None
    except ArgumentError as exc:
        raise DatabaseUrlError(f"DATABASE_URL is not usable: {exc}") from None


async def wait_until_reachable(url: str, *, timeout: float = 60.0, interval: float = 2.0,
                               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                               clock: Callable[[], float] = time.monotonic) -> None:
    """Wait until a database server answers (e.g. PostgreSQL still starting beside the bot), logging each retry;
    after ``timeout`` seconds raise :class:`DatabaseUnreachable` with the last error. SQLite has no server: no wait.
    ``sleep`` waits between attempts and ``clock`` tells the time (both injectable for tests)."""
    if make_url(normalize_url(url)).get_backend_name() == "sqlite":
        return
    engine = open_engine(url)
    deadline = clock() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except OperationalError as exc:
                reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
                if clock() + interval > deadline:
                    raise DatabaseUnreachable(f"DATABASE_URL {display_url(url)} did not answer within {timeout:g} s "
                                           f"(DATABASE_WAIT_SECONDS): {reason}") from None
                log.warning("⏳ database %s not ready (%s); retrying in %g s", display_url(url), reason, interval)
                await sleep(interval)
    finally:
        engine.dispose()
