"""Tests room: vcrpy configuration for the live-exchange cassettes, plus a call-recording exchange proxy.

Cassettes live in tests/cassettes/ and are replayed with record_mode ``none`` (no server, no network).

- Requests match on method, path, the Binance parameters without the volatile ``timestamp`` / ``signature`` /
  ``recvWindow``, and the account: the ``X-MBX-APIKEY`` header is replaced, at record time and before every
  match, by ``<account name>`` (see :func:`label_keys`), so concurrent accounts get their own answers and no key
  is ever written. Host and port are not matched: a cassette recorded against a stand-in on any port, or
  against the demo venue, replays for any ``api_url``.
- ``timestamp``, ``signature`` and ``recvWindow`` are removed from stored query strings and bodies.
- A client-side timeout cannot be recorded as an HTTP exchange, so it is stored as a marker response (status
  504, header ``X-Cassette-Client-Timeout``) and replayed as the ``asyncio.TimeoutError`` aiohttp raises,
  which ccxt turns into ``RequestTimeout`` itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import vcr
import vcr.patch
from vcr.request import Request
from vcr.stubs import aiohttp_stubs

from engine.ports import Account

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
VOLATILE = ("timestamp", "signature", "recvWindow")
APIKEY_HEADER = "X-MBX-APIKEY"
TIMEOUT_HEADER = "X-Cassette-Client-Timeout"
_labels: dict[str, str] = {}


def label_keys(credentials: Iterable[Any]) -> None:
    """Map each credentials' API key to its account name for the ``X-MBX-APIKEY`` filter."""
    for c in credentials:
        _labels[c.api_key.strip()] = c.name


def _apikey_label(key: str, value: str, request: Request) -> str:
    if value.startswith("<") and value.endswith(">"):
        return value  # already a label (vcrpy filters stored requests again when it loads a cassette)
    return f"<{_labels.get(value, 'unlabelled account')}>"


CCXT_IDS = ("newClientOrderId", "clientAlgoId")  # ccxt fills these with a random "x-…" id when none is given


def _params(r: Request) -> list[tuple[str, str]]:
    items = list(r.query)
    body = r.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        items += parse_qsl(body, keep_blank_values=True)
    return sorted((k, "<ccxt id>" if k in CCXT_IDS and v.startswith("x-") else v)
                  for k, v in items if k not in VOLATILE)


def match_binance_params(r1: Request, r2: Request) -> None:
    p1, p2 = _params(r1), _params(r2)
    assert p1 == p2, f"parameters differ: {p1} != {p2}"


def match_account(r1: Request, r2: Request) -> None:
    a1, a2 = r1.headers.get(APIKEY_HEADER), r2.headers.get(APIKEY_HEADER)
    assert a1 == a2, f"account differs: {a1} != {a2}"


def _clean_response(response: dict) -> dict:
    headers = {k: v for k, v in response["headers"].items() if k.lower() not in ("set-cookie", "x-mbx-uuid")}
    return {**response, "headers": headers}


def make_vcr(record_mode: str) -> vcr.VCR:
    v = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=record_mode,
        match_on=["method", "path", "binance_params", "account"],
        filter_headers=[(APIKEY_HEADER, _apikey_label)],
        filter_query_parameters=list(VOLATILE),
        filter_post_data_parameters=list(VOLATILE),
        before_record_response=_clean_response,
        decode_compressed_response=True,
    )
    v.register_matcher("binance_params", match_binance_params)
    v.register_matcher("account", match_account)
    return v


def _timeout_marker(method: str, url: Any, kwargs: dict) -> aiohttp.ClientResponse:
    data = kwargs.get("data")
    request = Request(method, str(url), data, {})
    return aiohttp_stubs.build_response(request, {
        "status": {"code": 504, "message": "Client Timeout"},
        "headers": {TIMEOUT_HEADER: ["raised asyncio.TimeoutError at the client"]},
        "body": {"string": b""},
    }, [])


@contextmanager
def _recorded_timeouts() -> Iterator[None]:
    """While recording: a client-side timeout becomes a marker response that vcrpy records."""
    real = vcr.patch._AiohttpClientSessionRequest

    @functools.wraps(real)
    async def request(self: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        try:
            return await real(self, method, url, **kwargs)
        except TimeoutError:
            return _timeout_marker(method, url, kwargs)

    vcr.patch._AiohttpClientSessionRequest = request
    try:
        yield
    finally:
        vcr.patch._AiohttpClientSessionRequest = real


@contextmanager
def _raised_timeouts() -> Iterator[None]:
    """Over vcrpy's patch: a marker response is raised as asyncio.TimeoutError, as aiohttp would."""
    patched = aiohttp.ClientSession._request

    @functools.wraps(patched)
    async def request(self: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        response = await patched(self, method, url, **kwargs)
        if TIMEOUT_HEADER in response.headers:
            raise TimeoutError()
        return response

    aiohttp.ClientSession._request = request
    try:
        yield
    finally:
        aiohttp.ClientSession._request = patched


@contextmanager
def use_cassette(name: str, *, record: bool = False) -> Iterator[Any]:
    """Replay ``tests/cassettes/<name>.yaml`` (record_mode none), or record it afresh (record_mode all)."""
    recorder = make_vcr("all" if record else "none")
    if record:
        cassette_path(name).unlink(missing_ok=True)  # vcrpy's "all" keeps old interactions: start afresh
    with _recorded_timeouts() if record else _noop(), recorder.use_cassette(f"{name}.yaml") as cassette:
        with _raised_timeouts():
            yield cassette


@contextmanager
def _noop() -> Iterator[None]:
    yield


def cassette_path(name: str) -> Path:
    return CASSETTES / f"{name}.yaml"


def interactions(cassette: Any) -> list[tuple[Request, dict]]:
    """(request, response) pairs of a loaded cassette, in recorded order."""
    return list(cassette.data)


# ---------------------------------------------------------------------------------------------- call recording
PORT_METHODS = (
    "market", "amount_to_precision", "price_to_precision", "milliseconds", "fetch_balance", "fetch_positions",
    "fetch_market_leverage_tiers", "set_margin_mode", "set_leverage", "create_order", "fetch_order",
    "cancel_order", "fetch_open_orders",
)
ID_ARG_METHODS = ("fetch_order", "cancel_order")  # first argument is an exchange-assigned (volatile) id


class RecordingExchange:
    """Wraps an Exchange-port object and logs every port call as (method, args, params) in ``calls``.

    Exchange-assigned order ids (the ``id`` argument of fetch_order / cancel_order) are replaced by ``'<id>'``
    (``None`` stays ``None``); client order ids are the engine's deterministic ones and are kept.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple] = []
        self.errors: list[tuple[str, BaseException]] = []  # (method, exception raised to the engine)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in PORT_METHODS:
            return attr
        if inspect.iscoroutinefunction(attr):
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(_entry(name, args, kwargs))
                try:
                    return await attr(*args, **kwargs)
                except Exception as exc:
                    self.errors.append((name, exc))
                    raise
            return call_async

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(_entry(name, args, kwargs))
            return attr(*args, **kwargs)
        return call


def _entry(name: str, args: tuple, kwargs: dict) -> tuple:
    args = list(args)
    if name in ID_ARG_METHODS and args and args[0] is not None:
        args[0] = "<id>"
    norm = tuple(_norm(a) for a in args)
    return (name, norm, tuple(sorted((k, _norm(v)) for k, v in kwargs.items())))


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------------- replay
STANDIN_URL = "http://127.0.0.1:18080"  # any base works: hosts are not matched; this one exercises api_url


@dataclass
class Replay:
    """What replaying one scenario cassette produced."""

    outcome: Any
    cassette: Any
    meta: dict
    exchanges: dict[str, RecordingExchange]

    def requests(self, account: str | None = None, method: str | None = None, path: str | None = None) -> list:
        """Played (request, response) pairs, filtered by account name, HTTP method and path suffix."""
        out = []
        for i, (req, resp) in enumerate(self.cassette.data):
            if not self.cassette.play_counts[i]:
                continue
            label = req.headers.get(APIKEY_HEADER)
            if account is not None and label != f"<{account}>":
                continue
            if method is not None and req.method != method:
                continue
            if path is not None and not req.path.endswith(path):
                continue
            out.append((req, resp))
        return out


_replays: dict[tuple[str, str | None], Replay] = {}


async def replay(name: str, *, api_url: str | None = STANDIN_URL) -> Replay:
    """Replay scenario ``name`` from its cassette through create_live_exchanges and the engine.

    Replays are deterministic, so each (scenario, api_url) runs once per session and is shared read-only
    (ccxt's rate limiter makes a replay take about a second).
    """
    key = (name, api_url)
    if key not in _replays:
        _replays[key] = await _replay(name, api_url)
    return _replays[key]


async def _replay(name: str, api_url: str | None) -> Replay:
    from live.exchange import close_all, create_live_exchanges
    from tests.standin.scenarios import SCENARIOS, dummy_credentials, run_scenario

    scenario = SCENARIOS[name]
    with use_cassette(scenario.cassette) as cassette:
        meta = cassette.get_metadata("fanout", None)
        demo = meta["venue"] != "stand-in"
        creds = dummy_credentials(meta["accounts"])
        label_keys(creds)
        accounts = await create_live_exchanges(creds, demo=demo, api_url=None if demo else api_url,
                                               timeout_ms=meta["timeout_ms"])
        wrapped = [Account(a.name, RecordingExchange(a.exchange)) for a in accounts]
        try:
            outcome = await run_scenario(scenario, wrapped, meta["signal"])
        finally:
            await close_all(accounts)
    return Replay(outcome, cassette, meta, {a.name: a.exchange for a in wrapped})
