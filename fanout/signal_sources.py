"""Where live and paper signals come from: a watched signals file and an HTTP webhook (e.g. TradingView)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from engine.signal import Signal, SignalError, parse_signal
from fanout.env_values import env_int
from fanout.errors import explain
from fanout.signals_file import REQUIRED, SignalFileError, csv_fields, is_json_lines, line_data, read_text

log = logging.getLogger("fanout.sources")
Handler = Callable[[Signal, str], Awaitable[object]]
DEFAULT_WEBHOOK_HOST = "127.0.0.1"  # loopback unless WEBHOOK_HOST says otherwise
DEFAULT_WEBHOOK_PORT = 8080


class FileSignalSource:
    """Tails a CSV or JSON-lines signals file: every complete line is a signal, new lines are picked up as they
    are appended. A line without id and time gets the id ``<file>-L<line>`` so it stays unique and stable.
    Malformed lines are logged with file, line and field, and never traded. A failure to hand a signal over
    (e.g. no price) leaves its line to be read again; the same failure is logged once, not every round."""

    def __init__(self, path: str | Path, handler: Handler, *, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.handler = handler
        self.interval = interval
        self.lines_seen = 0
        self.header: list[str] | None = None
        self.jsonl = is_json_lines(self.path)
        self.rejected = 0
        self._last_error: str | None = None

    async def scan(self) -> int:
        """Process complete lines not seen yet; returns how many were handed over."""
        if not self.path.exists():
            return 0
        lines = read_text(self.path).split("\n")
        complete = lines[:-1]  # the last piece is empty or a line still being written
        handed = 0
        for lineno in range(self.lines_seen + 1, len(complete) + 1):
            line = complete[lineno - 1].strip()
            if not line or line.startswith("#"):
                self.lines_seen = lineno
                continue
            if not self.jsonl and self.header is None:
                self.header = self._header(line, lineno)
                self.lines_seen = lineno
                continue
            self.lines_seen = lineno
            try:
                data = line_data(line, path=str(self.path), lineno=lineno, header=self.header)
                if not data.get("id") and not data.get("time"):
                    data["id"] = f"{self.path.stem}-L{lineno}"
                signal = parse_signal(data)
            except SignalFileError as exc:
                self.rejected += 1
                log.error("❌ rejected signal: %s", exc)
                continue
            except SignalError as exc:
                self.rejected += 1
                log.error("❌ rejected signal at %s:%d: %s", self.path, lineno, exc)
                continue
            try:
                await self.handler(signal, f"file:{self.path.name}")
            except Exception:
                self.lines_seen = lineno - 1  # not executed (e.g. no price yet): read this line again next scan
                raise
            handed += 1
        return handed

    def _header(self, line: str, lineno: int) -> list[str]:
        header = [h.lower() for h in csv_fields(line, path=str(self.path), lineno=lineno)]
        missing = [c for c in REQUIRED if c != "time" and c not in header]
        if missing:
            raise SignalFileError(f"{self.path}:{lineno}: header misses column(s) {', '.join(missing)}; "
                                  f"found {', '.join(header) or 'none'}")
        return header

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.scan()
                if self._last_error is not None:
                    log.info("✅ signals file %s: reading again", self.path)
                    self._last_error = None
            except Exception as exc:  # noqa: BLE001 — a bad read never kills the service
                words = explain(exc)
                if words != self._last_error:  # once per distinct failure, not every second
                    log.error("❌ signals file %s: %s (retrying every %gs)", self.path, words, self.interval)
                    log.debug("signals file %s: the failure's traceback", self.path, exc_info=exc)
                    self._last_error = words
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass


class WebhookSignalSource:
    """POST /signal with a JSON signal and the shared token (header ``X-Fanout-Token``, ``?token=`` or a
    ``token`` field — TradingView cannot set headers). Bound to 127.0.0.1 unless configured otherwise.

    Replies: 202 accepted (with the signal id), 400 malformed (error names the field), 401 bad token,
    409 already processed or already accepted and still being handled.

    An accepted signal is handled in its own task after the reply; the source keeps every such task until it
    ends (:meth:`drain` awaits them, :meth:`stop` lets them finish) and logs a failed one once, by signal id."""

    def __init__(self, handler: Handler, token: str, *, host: str = DEFAULT_WEBHOOK_HOST, port: int = DEFAULT_WEBHOOK_PORT,
                 is_processed: Callable[[str], bool] | None = None) -> None:
        _check_token(token)
        self.handler = handler
        self._token = token.strip()
        self.host, self.port = host, port
        self.is_processed = is_processed or (lambda _sid: False)
        self.runner = None
        self._handling: dict[str, asyncio.Task[object]] = {}  # signal id -> its task, until the task ends

    def __repr__(self) -> str:
        return f"WebhookSignalSource(http://{self.host}:{self.port}/signal)"

    def app(self):
        from aiohttp import web

        async def receive(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except Exception:  # noqa: BLE001
                return web.json_response({"error": "body is not valid JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be a JSON object"}, status=400)
            given = request.headers.get("X-Fanout-Token") or request.query.get("token") or str(body.pop("token", ""))
            if not hmac.compare_digest(given.encode(), self._token.encode()):
                log.warning("webhook: rejected request with a missing or wrong token from %s", request.remote)
                return web.json_response({"error": "invalid token"}, status=401)
            try:
                signal = parse_signal({str(k).lower(): v for k, v in body.items()})
            except SignalError as exc:
                log.error("❌ webhook signal rejected: %s", exc)
                return web.json_response({"error": str(exc), "field": exc.field}, status=400)
            if signal.id in self._handling:
                return web.json_response({"error": f"signal {signal.id} already accepted"}, status=409)
            if self.is_processed(signal.id):
                return web.json_response({"error": f"signal {signal.id} already processed"}, status=409)
            self._handle_later(signal)
            return web.json_response({"accepted": signal.id}, status=202)

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/signal", receive)
        app.router.add_post("/webhook", receive)
        app.router.add_get("/health", health)
        return app

    def _handle_later(self, signal: Signal) -> None:
        task = asyncio.get_running_loop().create_task(self.handler(signal, "webhook"), name=f"webhook {signal.id}")
        self._handling[signal.id] = task
        task.add_done_callback(lambda t: self._handled(signal.id, t))

    def _handled(self, signal_id: str, task: asyncio.Task[object]) -> None:
        self._handling.pop(signal_id, None)
        if task.cancelled():
            log.warning("⚠️ webhook signal %s was accepted but its handling was cancelled", signal_id)
        elif task.exception() is not None:
            log.error("❌ webhook signal %s was accepted but handling it failed: %s", signal_id,
                      explain(task.exception()))
            log.debug("webhook signal %s: the failure's traceback", signal_id, exc_info=task.exception())

    @property
    def pending(self) -> int:
        """Accepted signals still being handled."""
        return len(self._handling)

    async def drain(self) -> None:
        """Wait until every accepted signal has been handled (failures are logged, not raised)."""
        while self._handling:
            await asyncio.gather(*self._handling.values(), return_exceptions=True)

    async def start(self) -> None:
        from aiohttp import web

        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:  # port taken, host not on this machine, a privileged port
            await self.runner.cleanup()
            self.runner = None
            reason = exc.strerror or str(exc)
            raise ValueError(f"WEBHOOK_HOST / WEBHOOK_PORT: cannot listen on {self.host}:{self.port} "
                             f"({reason[0].lower() + reason[1:]})") from None
        log.info("🌐 webhook listening on http://%s:%d/signal", self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting requests, then let the signals already accepted finish (an order is never cut short)."""
        if self.runner is not None:
            await self.runner.cleanup()
        await self.drain()


def _check_token(token: str) -> None:
    if not token or len(token.strip()) < 8:
        raise ValueError("WEBHOOK_TOKEN must be set (at least 8 characters) to enable the webhook")


def webhook_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """WEBHOOK_TOKEN, WEBHOOK_HOST (default loopback) and WEBHOOK_PORT (default 8080), checked before anything
    starts: keyword arguments for :class:`WebhookSignalSource` after the handler."""
    token = str(env.get("WEBHOOK_TOKEN") or "")
    _check_token(token)
    host = str(env.get("WEBHOOK_HOST") or "").strip() or DEFAULT_WEBHOOK_HOST
    return {"token": token, "host": host,
            "port": env_int(env, "WEBHOOK_PORT", DEFAULT_WEBHOOK_PORT, low=1, high=65535)}
