"""The CLI's error boundary (fanout/errors.py) and background tasks (fanout/tasks.py): exceptions in words, exit
codes, secrets masked, each task failure logged once."""

from __future__ import annotations

import asyncio
import io
import logging

import ccxt
import pytest
from sqlalchemy.exc import OperationalError

from fanout.errors import EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED, explain, report, secret_values
from fanout.tasks import BackgroundTasks

URL = "binanceusdm GET http://127.0.0.1:9/fapi/v2/balance?recvWindow=5000&timestamp=***&signature=***"


def _refused() -> ccxt.ExchangeNotAvailable:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
        except ConnectionRefusedError as cause:
            raise ccxt.ExchangeNotAvailable(URL) from cause
    except ccxt.ExchangeNotAvailable as exc:
        return exc


def _tagged(exc: Exception, account: str = "Account 2") -> Exception:
    exc.account = account  # what live/exchange.py does
    return exc


@pytest.mark.parametrize("exc, words, code", [
    (_refused(), "venue unreachable at 127.0.0.1:9 (BINANCE_API_URL): connection refused", EXIT_FAILURE),
    (ccxt.ExchangeNotAvailable("binanceusdm GET https://fapi.binance.com/fapi/v1/time 503 Service Unavailable"),
     "venue at fapi.binance.com is unavailable: GET https://fapi.binance.com/fapi/v1/time 503 Service Unavailable",
     EXIT_FAILURE),
    (ccxt.RequestTimeout("binanceusdm GET https://fapi.binance.com/fapi/v1/exchangeInfo"),
     "venue at fapi.binance.com did not answer in time (check the network)", EXIT_FAILURE),
    (ccxt.RateLimitExceeded(URL), "venue at 127.0.0.1:9 is rate-limiting this IP: wait a minute and retry", EXIT_FAILURE),
    (_tagged(ccxt.AuthenticationError('binanceusdm {"code":-2015,"msg":"Invalid API-key, IP, or permissions for '
                                      'action."}')),
     "Account 2: the venue refused the account's API key (invalid or expired key, IP not allowed, or no "
     "futures permission): Invalid API-key, IP, or permissions for action.", EXIT_FAILURE),
    (_tagged(ccxt.InsufficientFunds('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'), "Main"),
     "Main: the venue refused the request: Margin is insufficient.", EXIT_FAILURE),
    (OperationalError("SELECT 1", {}, Exception('connection to server at "db", port 5432 failed: Connection refused')),
     'DATABASE_URL: the database cannot be used: connection to server at "db", port 5432 failed: Connection refused',
     EXIT_FAILURE),
    (PermissionError(13, "Permission denied", "/srv/out/trades.csv"), "/srv/out/trades.csv: permission denied",
     EXIT_INPUT),
    (ValueError("WEBHOOK_PORT must be a whole number from 1 to 65535, got 'abc'"),
     "WEBHOOK_PORT must be a whole number from 1 to 65535, got 'abc'", EXIT_INPUT),
    (ZeroDivisionError("division by zero"),
     "unexpected ZeroDivisionError: division by zero", EXIT_FAILURE),
    (KeyboardInterrupt(), "interrupted", EXIT_INTERRUPTED),
], ids=["refused", "5xx", "timeout", "rate-limit", "auth", "refusal", "database", "file", "value", "unexpected",
        "ctrl-c"])
def test_explain_and_exit_code(exc, words, code):
    stream = io.StringIO()
    assert report(exc, stream=stream) == code
    hint = " (fanout -v … shows the traceback)" if words.startswith("unexpected") else ""
    assert stream.getvalue() == f"error: {words}{hint}\n"
    assert explain(exc) == words


async def test_a_refusal_names_the_account_never_the_key(monkeypatch):
    """live/exchange.py tags what ccxt raises with the account's name and removes the key from its text."""
    from live.exchange import LiveExchange, build_exchange
    from tests.standin.scenarios import dummy_credentials

    (cred,) = dummy_credentials(["Alpha"])

    async def refuse(self, url, method="GET", headers=None, body=None):
        raise ccxt.AuthenticationError(f'binanceusdm {method} {url} {{"code":-2015,"msg":"Invalid API-key '
                                       f'{cred.api_key}"}}')

    monkeypatch.setattr(LiveExchange.__bases__[0], "fetch", refuse)  # ccxt's own fetch, under LiveExchange's
    exchange = build_exchange(cred, api_url="http://127.0.0.1:9")
    try:
        with pytest.raises(ccxt.AuthenticationError) as info:
            await exchange.load_markets()
    finally:
        await exchange.close()
    assert explain(info.value) == ("Alpha: the venue at 127.0.0.1:9 refused the account's API key (invalid or "
                                   "expired key, IP not allowed, or no futures permission): Invalid API-key ***")


def test_secrets_are_masked_in_the_line_and_the_traceback():
    env = {"BINANCE_API_SECRET_2": "s3cr3t-value-xyz", "WEBHOOK_TOKEN": "tok-123456",
           "DATABASE_URL": "postgresql://fanout:pa55word-123@db/fanout", "LEVERAGE": "20", "BINANCE_API_KEY": ""}
    secrets = secret_values(env)
    assert sorted(secrets) == ["pa55word-123", "s3cr3t-value-xyz", "tok-123456"]
    try:
        raise RuntimeError("signed with s3cr3t-value-xyz via postgresql://fanout:pa55word-123@db")
    except RuntimeError as exc:
        stream = io.StringIO()
        report(exc, verbose=True, secrets=secrets, stream=stream)
    text = stream.getvalue()
    assert "Traceback" in text and "s3cr3t" not in text and "pa55word" not in text
    assert text.splitlines()[-1] == "error: unexpected RuntimeError: signed with *** via postgresql://fanout:***@db"


async def test_background_task_failure_is_logged_once_in_words(caplog):
    complaints = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: complaints.append(context))
    failed = []
    tasks = BackgroundTasks(on_failure=lambda what, exc: failed.append(what))

    async def boom() -> None:
        raise _refused()

    async def fine() -> None:
        return None

    with caplog.at_level(logging.ERROR, logger="fanout.tasks"):
        tasks.spawn(boom(), "webhook signal sig-1")
        tasks.spawn(fine(), "webhook signal sig-2")
        assert len(tasks) == 2  # referenced until done
        await tasks.wait()
    assert len(tasks) == 0 and tasks.failures == 1 and failed == ["webhook signal sig-1"]
    assert caplog.messages == ["❌ webhook signal sig-1 failed: venue unreachable at 127.0.0.1:9 (BINANCE_API_URL): "
                               "connection refused"]
    assert complaints == []  # nothing left for "Task exception was never retrieved"


async def test_background_tasks_close_cancels_what_is_left():
    tasks = BackgroundTasks()
    forever = tasks.spawn(asyncio.Event().wait(), "polling")
    await tasks.close()
    assert forever.cancelled() and len(tasks) == 0 and tasks.failures == 0
