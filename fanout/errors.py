"""CLI room: the one error boundary — any exception a command raises becomes one line of words and an exit code.

Every ``fanout`` command runs inside :func:`fanout.cli.main`, which hands what escapes to :func:`report`: one line
``error: …`` naming the option, variable, file or venue, never a traceback (``fanout -v …`` adds it) and never a
secret (values of the settings' key / secret / token variables are masked, even in the traceback).

Exit codes: 2 for input that has to change (an option, an environment value, a file), 1 for a failure outside
fanout (venue, database) or an unexpected one, 130 when interrupted. The table of exception → words is
:func:`explain`; background tasks use it too (fanout/tasks.py), so a failure reads the same everywhere.
"""

from __future__ import annotations

import re
import socket
import sys
import traceback
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from engine.errors import is_error

EXIT_FAILURE = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

_SECRET_VARIABLE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE|WEBHOOK_URL", re.I)
_URL = re.compile(r"\bhttps?://[^\s/'\"]+")
_VENUE_MSG = re.compile(r'"msg"\s*:\s*"([^"]*)"')
_BINANCE_HOSTS = (".binance.com", ".binance.us")


def exit_code(exc: BaseException) -> int:
    """2 when the user's input has to change, 130 for Ctrl-C, else 1."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if _is_database_error(exc) or _is_ccxt(exc) or getattr(exc, "input_error", True) is False:
        return EXIT_FAILURE
    return EXIT_INPUT if isinstance(exc, ValueError | OSError) else EXIT_FAILURE


def explain(exc: BaseException) -> str:
    """The words for ``exc``: what went wrong and what it concerns (venue host, account, variable, file).
    A venue's refusal names the account it came from (live/exchange.py tags the exception), never its key."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if _is_ccxt(exc):
        return _explain_venue(exc, getattr(exc, "account", None))
    if _is_database_error(exc):
        return f"DATABASE_URL: the database cannot be used: {_first_line(getattr(exc, 'orig', None) or exc)}"
    if isinstance(exc, OSError):
        return _explain_os_error(exc)
    if isinstance(exc, ValueError) and str(exc).strip():
        return _first_line(exc)
    text = _first_line(exc)
    return f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")


def report(exc: BaseException, *, verbose: bool = False, secrets: Iterable[str] = (), stream=None) -> int:
    """Print ``exc`` as one ``error:`` line (with ``verbose``, the traceback first); returns the exit code."""
    stream = stream or sys.stderr
    hidden = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
    if verbose and not isinstance(exc, KeyboardInterrupt):
        stream.write(mask("".join(traceback.format_exception(exc)), hidden))
    words = explain(exc)
    if not verbose and words.startswith("unexpected "):
        words += " (fanout -v … shows the traceback)"
    stream.write(f"error: {mask(words, hidden)}\n")
    stream.flush()
    return exit_code(exc)


def secret_values(*settings: Mapping[str, str]) -> list[str]:
    """Values to mask in output: every key / secret / token / password variable, and DATABASE_URL's password."""
    found: list[str] = []
    for env in settings:
        for name, value in env.items():
            if not value:
                continue
            if _SECRET_VARIABLE.search(name):
                found.append(str(value).strip())
            elif name == "DATABASE_URL":
                password = urlsplit(str(value).strip()).password if "://" in str(value) else None
                if password:
                    found.append(password)
    return found


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# --- venue (ccxt errors, recognised by class name as engine/errors.py does) ---------------------------------


def _is_ccxt(exc: BaseException) -> bool:
    return is_error(exc, "BaseError") and type(exc).__module__.startswith("ccxt")


def _explain_venue(exc: BaseException, account: str | None) -> str:
    """Network trouble concerns the venue (every account alike); a refusal concerns the account that was refused."""
    host = _venue_host(exc)
    venue = f"venue at {host}" if host else "venue"
    if is_error(exc, "RequestTimeout"):
        return f"{venue} did not answer in time{_override_hint(host)}"
    if is_error(exc, "DDoSProtection", "RateLimitExceeded"):
        return f"{venue} is rate-limiting this IP: wait a minute and retry"
    if is_error(exc, "OnMaintenance"):
        return f"{venue} is under maintenance: {_venue_message(exc)}"
    if is_error(exc, "NetworkError"):
        cause = _network_cause(exc)
        if cause is None:  # ccxt raises ExchangeNotAvailable for HTTP 5xx too: the host answered
            return f"{venue} is unavailable: {_venue_message(exc)}"
        return f"venue unreachable{f' at {host}' if host else ''}{_override_hint(host)}: {cause}"
    who = f"{account}: " if account else ""
    if is_error(exc, "AuthenticationError"):
        return (f"{who}the {venue} refused the account's API key (invalid or expired key, IP not allowed, "
                f"or no futures permission): {_venue_message(exc)}")
    if is_error(exc, "BadSymbol"):
        return f"{who}unknown symbol at the venue: {_venue_message(exc)}"
    return f"{who}the {venue} refused the request: {_venue_message(exc)}"


def _venue_host(exc: BaseException) -> str | None:
    m = _URL.search(str(exc))
    return urlsplit(m.group(0)).netloc if m else None


def _override_hint(host: str | None) -> str:
    if host is None or host.endswith(_BINANCE_HOSTS):
        return " (check the network)"
    return " (BINANCE_API_URL)"


def _venue_message(exc: BaseException) -> str:
    """Binance's own ``msg`` when the reply carried one, else ccxt's text without the exchange id prefix."""
    text = str(exc)
    m = _VENUE_MSG.search(text)
    if m:
        return m.group(1)
    text = _first_line(exc)
    return text.split(" ", 1)[1] if text.startswith(("binance", "binanceusdm")) and " " in text else text


def _network_cause(exc: BaseException) -> str | None:
    """Why a connection failed, in words, from the chain under ccxt's exception (None: no connection error)."""
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        if isinstance(seen, TimeoutError):
            return "timed out"
        if type(seen).__module__.startswith("aiohttp"):
            inner = getattr(seen, "os_error", None)
            if isinstance(inner, ConnectionRefusedError):
                return "connection refused"
            if isinstance(inner, socket.gaierror):
                return "host name not found"
            return _first_line(seen) or type(seen).__name__
        if isinstance(seen, OSError):
            return seen.strerror or _first_line(seen)
        seen = seen.__cause__ or seen.__context__
    return None


# --- database and files -------------------------------------------------------------------------------------


def _is_database_error(exc: BaseException) -> bool:
    sa = sys.modules.get("sqlalchemy.exc")  # not imported: not a database error
    return sa is not None and isinstance(exc, sa.SQLAlchemyError) and not isinstance(exc, sa.ArgumentError)


def _explain_os_error(exc: OSError) -> str:
    reason = exc.strerror or _first_line(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{exc.filename}: {reason[0].lower() + reason[1:]}"
    return _first_line(exc) or reason


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 300 else line[:297] + "..."
