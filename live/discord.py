"""Discord webhook notifier (live room): batched, asynchronous alerts that never block or fail trading.

``DiscordNotifier`` implements the engine's ``Notifier`` port:

* ``account_executed`` builds the per-account embed and buffers it under the signal id; whenever ten embeds
  (or 6000 characters) are buffered they are queued as one message, so a 50-account signal sends 5 messages.
* ``signal_summary`` queues what is left of that signal's embeds, then the ``📊`` summary.
* ``event`` queues a one-embed alert at once.

Each method only formats and queues; one background task posts the queue in order, so the engine's ``await``
returns at once. The HTTP session lives while the queue has work and is closed when it empties.

Posting: HTTP 429 waits Discord's ``retry_after`` (JSON body, else the ``Retry-After`` header, capped) and
retries; 5xx and connection errors retry with a short exponential backoff; other 4xx are logged and dropped.
An exhausted retry budget drops the message with a log line. The ``X-RateLimit-Remaining`` /
``X-RateLimit-Reset-After`` headers are honoured before the next post. Nothing is ever raised to the caller.

The webhook URL ends in a secret token: it never appears in logs, reprs or alerts (``…/webhooks/<id>/***``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from engine.ports import Notifier, NullNotifier
from live.alerts_format import (
    EMBEDS_PER_MESSAGE,
    MESSAGE_CHARS_LIMIT,
    account_embed,
    event_embed,
    message,
    pack_embeds,
    redact,
    summary_embed,
)

log = logging.getLogger("fanout.discord")

ENV_WEBHOOK = "DISCORD_WEBHOOK_URL"


def redact_webhook(url: str) -> str:
    """``https://discord.com/api/webhooks/123/TOKEN`` → ``https://discord.com/api/webhooks/123/***``."""
    head, sep, _token = url.rstrip("/").rpartition("/")
    return f"{head}/***" if sep and head else "***"


class DiscordNotifier:
    """Posts alerts to one Discord webhook from a background task (see the module docstring).

    webhook_url: the full webhook URL (secret; shown redacted everywhere).
    session_factory: makes the ``aiohttp.ClientSession`` used for posting (default: a new session, closed by
        :meth:`aclose`). A session made by the factory is owned and closed here too.
    max_embeds: embeds per message (Discord allows at most 10).
    request_timeout: seconds for one POST.
    max_retries: retries of one message after a 429, a 5xx or a connection error.
    max_retry_after: cap in seconds on any wait Discord asks for.
    backoff: first wait in seconds after a 5xx or a connection error, doubling per retry.
    drain_timeout: default bound in seconds for :meth:`flush` / :meth:`aclose`.
    queue_size: messages waiting at most; beyond it new messages are dropped with a log line.
    username: optional display name for the webhook's messages.
    sleep, clock: how the notifier waits and reads the time (``asyncio.sleep``, ``time.monotonic``); tests pass
        stand-ins to see every wait without spending it.
    """

    enabled = True  # the engine's Notifier capability: it wants every alert

    def __init__(
        self,
        webhook_url: str,
        *,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        max_embeds: int = EMBEDS_PER_MESSAGE,
        request_timeout: float = 10.0,
        max_retries: int = 5,
        max_retry_after: float = 30.0,
        backoff: float = 0.5,
        drain_timeout: float = 30.0,
        queue_size: int = 1000,
        username: str | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(webhook_url, str) or not webhook_url.startswith(("https://", "http://")):
            raise ValueError("webhook_url must be an http(s) Discord webhook URL")
        if not 1 <= max_embeds <= EMBEDS_PER_MESSAGE:
            raise ValueError(f"max_embeds must be 1 to {EMBEDS_PER_MESSAGE}, got {max_embeds!r}")
        self._url = webhook_url
        self._token = webhook_url.rstrip("/").rpartition("/")[2]
        self._session_factory = session_factory
        self.max_embeds = max_embeds
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.drain_timeout = drain_timeout
        self.queue_size = queue_size
        self.username = username
        self._sleep = sleep
        self._clock = clock
        self.sent = 0
        self.dropped = 0
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._not_before = 0.0  # clock time before which the rate-limit bucket is empty

    def __repr__(self) -> str:
        return f"DiscordNotifier(webhook={redact_webhook(self._url)!r}, max_embeds={self.max_embeds})"

    __str__ = __repr__

    # ------------------------------------------------------------ Notifier port
    async def account_executed(self, signal: Any, result: Any) -> None:
        """Buffer this account's embed; queue a full batch as soon as one is ready."""
        try:
            embed = account_embed(signal, result)
            key = str(getattr(result, "signal_id", None) or signal.id)
            buffer = self._buffers.setdefault(key, [])
            buffer.append(embed)
            batches = pack_embeds(buffer, self.max_embeds, MESSAGE_CHARS_LIMIT)
            last = batches[-1]
            ready = batches if len(last) >= self.max_embeds else batches[:-1]
            for batch in ready:
                self._enqueue(message(batch, self.username))
            self._buffers[key] = [] if ready is batches else list(last)
        except Exception as exc:  # noqa: BLE001 - an alert never fails trading
            log.warning("Discord alert not queued: %s", self._scrub(exc))

    async def signal_summary(self, signal: Any, summary: Any) -> None:
        """Queue the signal's remaining account embeds (≤10 per message), then the summary."""
        try:
            key = str(getattr(summary, "signal_id", None) or signal.id)
            self._flush_buffer(key)
            self._enqueue(message([summary_embed(signal, summary)], self.username))
        except Exception as exc:  # noqa: BLE001
            log.warning("Discord summary not queued: %s", self._scrub(exc))

    async def event(self, title: str, text: str) -> None:
        """Queue a one-embed operational alert."""
        try:
            self._enqueue(message([event_embed(title, text)], self.username))
        except Exception as exc:  # noqa: BLE001
            log.warning("Discord event not queued: %s", self._scrub(exc))

    # ------------------------------------------------------------ lifecycle
    async def flush(self, timeout: float | None = None) -> bool:
        """Queue buffered embeds, wait (at most ``timeout`` s) until the queue is posted; True if drained."""
        try:
            for key in list(self._buffers):
                self._flush_buffer(key)
            if self._queue is None or self._loop is not asyncio.get_running_loop():
                return True
            await asyncio.wait_for(self._queue.join(), self.drain_timeout if timeout is None else timeout)
            return True
        except TimeoutError:
            pending = self._queue.qsize() if self._queue is not None else 0
            log.warning("Discord queue not drained in time; %d message(s) still waiting", pending)
            return False
        except Exception as exc:  # noqa: BLE001
            log.warning("Discord flush failed: %s", self._scrub(exc))
            return False

    async def aclose(self, timeout: float | None = None) -> bool:
        """Flush (bounded), stop the background task, close the session. True if everything was posted."""
        drained = await self.flush(timeout)
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        if self._queue is not None and not drained:
            self.dropped += self._queue.qsize()
        self._queue = None
        self._loop = None
        await self._close_session()
        return drained

    async def __aenter__(self) -> DiscordNotifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ queue
    def _flush_buffer(self, key: str) -> None:
        buffered = self._buffers.pop(key, [])
        for batch in pack_embeds(buffered, self.max_embeds, MESSAGE_CHARS_LIMIT):
            self._enqueue(message(batch, self.username))

    def _enqueue(self, body: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (a new asyncio.run): start afresh
            self._loop = loop
            self._queue = asyncio.Queue(maxsize=self.queue_size)
            self._worker = None
            self._session = None
            self._not_before = 0.0
        assert self._queue is not None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name="discord-notifier")
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("Discord queue full (%d messages); alert dropped", self.queue_size)

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            body = await queue.get()
            try:
                if await self._post(body):
                    self.sent += 1
                else:
                    self.dropped += 1
            except asyncio.CancelledError:
                self.dropped += 1  # stopped by aclose() mid-post
                raise
            except Exception as exc:  # noqa: BLE001 - the worker never dies
                self.dropped += 1
                log.warning("Discord alert dropped: %s", self._scrub(exc))
            finally:
                if queue.empty():  # idle: close the connection so nothing leaks if aclose() is never called
                    await self._close_session()
                queue.task_done()

    # ------------------------------------------------------------ HTTP
    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            with contextlib.suppress(Exception):
                await session.close()

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                timeout = aiohttp.ClientTimeout(total=self.request_timeout)
                self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _post(self, body: dict[str, Any]) -> bool:
        """POST one message with retries; True when Discord accepted it."""
        session = await self._get_session()
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        for attempt in range(self.max_retries + 1):
            wait = self._not_before - self._clock()
            if wait > 0:
                await self._sleep(min(wait, self.max_retry_after))
            last = attempt >= self.max_retries
            try:
                async with session.post(self._url, json=body, timeout=timeout) as resp:
                    self._note_bucket(resp.headers)
                    if resp.status < 300:
                        log.debug("Discord message posted (%d embed(s))", len(body.get("embeds", ())))
                        return True
                    if resp.status == 429:
                        delay = min(await _retry_after(resp), self.max_retry_after)
                        log.warning("Discord rate limit (HTTP 429); retrying in %.2fs", delay)
                        if not last:
                            await self._sleep(delay)
                        continue
                    detail = self._scrub((await resp.text())[:200])
                    if resp.status >= 500:
                        log.warning("Discord server error (HTTP %d): %s", resp.status, detail)
                    else:
                        log.error("Discord rejected the alert (HTTP %d), dropped: %s", resp.status, detail)
                        return False
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("Discord unreachable (%s): %s", type(exc).__name__, self._scrub(exc))
            if not last:
                await self._sleep(self.backoff * (2**attempt))
        log.error("Discord alert dropped after %d attempts", self.max_retries + 1)
        return False

    def _note_bucket(self, headers: Mapping[str, str]) -> None:
        """Remember Discord's bucket: with none left, wait ``X-RateLimit-Reset-After`` before the next."""
        if headers.get("X-RateLimit-Remaining") != "0":
            return
        reset = _seconds(headers.get("X-RateLimit-Reset-After"))
        if reset:
            self._not_before = self._clock() + min(reset, self.max_retry_after)

    def _scrub(self, value: Any) -> str:
        """Any text with the webhook URL and its token removed."""
        text = str(value).replace(self._url, redact_webhook(self._url))
        if len(self._token) >= 8:
            text = text.replace(self._token, "***")
        return redact(text)


async def _retry_after(resp: aiohttp.ClientResponse) -> float:
    """Seconds Discord asks to wait: body's ``retry_after``, else the ``Retry-After`` header, else 1."""
    with contextlib.suppress(Exception):
        data = await resp.json(content_type=None)
        value = _seconds(data.get("retry_after")) if isinstance(data, dict) else None
        if value is not None:
            return value
    value = _seconds(resp.headers.get("Retry-After"))
    return value if value is not None else 1.0


def _seconds(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def build_notifier(env: Mapping[str, str] | None = None, **kw: Any) -> Notifier:
    """A :class:`DiscordNotifier` when ``DISCORD_WEBHOOK_URL`` is set, else a :class:`NullNotifier`.

    Extra keyword arguments go to :class:`DiscordNotifier`. A set but malformed URL raises ``ValueError``
    naming the variable (never its value), at start-up rather than silently losing alerts.
    """
    env = os.environ if env is None else env
    url = (env.get(ENV_WEBHOOK) or "").strip()
    if not url:
        return NullNotifier()
    if not url.startswith(("https://", "http://")) or "/webhooks/" not in url:
        raise ValueError(f"{ENV_WEBHOOK} must be a Discord webhook URL like https://discord.com/api/webhooks/<id>/<token>")
    return DiscordNotifier(url, **kw)
