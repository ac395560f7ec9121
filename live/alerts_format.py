"""Alert formatting (live room): pure functions turning results into Discord embeds and plain text.

Titles and lines follow the design document (``/work/shared/seed/multi-account-flow.md``):

* ``🎯 Order Executed - <account>`` — a filled entry, with symbol, side, entry, size (margin $), notional,
  leverage, quantity, SL and TP (and a ``⚠️ Warning`` field when e.g. the take-profit could not be placed).
* ``❌ Order Failed - <account>`` — an exchange call failed; the description is the reason.
* ``⏭️ Order Skipped - <account>`` — a rule said no and nothing was sent (low balance, risk limit, below the
  minimum). Skips get their own symbol so a failure (something broke) stands out from a skip (working as
  designed).
* ``📊 Multi-Account Execution Summary`` — ``Success: x/y``, one line per account (``✅ Account 1: $20``,
  ``❌ Account 3: <short reason>``, ``⏭️ Account 4: <short reason>``), then the totals.

Every embed is trimmed to Discord's limits (title 256, description 4096, 25 fields, field name 256 / value
1024, footer 2048, 6000 characters per message) and every free text passes :func:`redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from marketdata.times import format_time

# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
MESSAGE_CHARS_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10
SHORT_REASON_LIMIT = 80

GREEN = 0x2ECC71
RED = 0xE74C3C
GREY = 0x95A5A6
ORANGE = 0xE67E22

SUMMARY_TITLE = "📊 Multi-Account Execution Summary"

_WEBHOOK_RE = re.compile(r"(https?://[^\s/]+/api(?:/v\d+)?/webhooks/\d+/)[^\s/?#\"']+", re.IGNORECASE)
_QUERY_SECRET_RE = re.compile(
    r"((?:signature|api[_-]?key|apikey|secret|token|password|passphrase)=)[^&\s\"']+", re.IGNORECASE
)
_HEADER_SECRET_RE = re.compile(
    r"((?:X-MBX-APIKEY|Authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", re.IGNORECASE
)
_BINANCE_MSG_RE = re.compile(r"\"msg\"\s*:\s*\"([^\"]*)\"")
_ERROR_PREFIX_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s")


# ------------------------------------------------------------------ text helpers
def redact(text: Any) -> str:
    """``text`` with webhook tokens, signed-query secrets and API-key headers replaced by ``***``."""
    out = str(text)
    out = _WEBHOOK_RE.sub(r"\1***", out)
    out = _QUERY_SECRET_RE.sub(r"\1***", out)
    return _HEADER_SECRET_RE.sub(r"\1***", out)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…" if limit > 0 else ""


def short_reason(reason: str, limit: int = SHORT_REASON_LIMIT) -> str:
    """A one-line reason for summary lines: Binance's ``msg`` when the text carries one, cut to ``limit``."""
    text = " ".join(redact(reason).split())
    found = _BINANCE_MSG_RE.search(text)
    if found:
        prefix = _ERROR_PREFIX_RE.match(text)
        text = f"{prefix.group(1)}: {found.group(1)}" if prefix else found.group(1)
    return truncate(text, limit) if text else "no reason given"


def _trim_zeros(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd(value: float) -> str:
    """Dollars with thousands separators and cents only when there are any: ``$20``, ``$2,600``, ``$20.5``."""
    sign = "-" if value < 0 else ""
    return f"{sign}${_trim_zeros(f'{abs(value):,.2f}')}"


def price(value: float | None) -> str:
    """A price in dollars, 8 decimals at most, no trailing 0: ``$50,000``, ``$0.00001234``; ``—`` if None."""
    if value is None:
        return "—"
    return f"${_trim_zeros(f'{value:,.8f}')}"


def quantity(value: float) -> str:
    """A contract quantity, up to 10 decimals without float noise: 0.008 + 0.04 + 0.004 → ``0.052``."""
    return _trim_zeros(f"{value:,.10f}")


def base_asset(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTC``."""
    return symbol.split("/")[0].split(":")[0]


def display_symbol(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTC/USDT``."""
    return symbol.split(":")[0]


# ------------------------------------------------------------------ embeds
def _field(name: str, value: str, inline: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "inline": inline}


def account_embed(signal: Any, result: Any) -> dict[str, Any]:
    """The per-account embed: 🎯 executed, ❌ failed or ⏭️ skipped (see the module docstring)."""
    symbol = display_symbol(result.symbol or signal.symbol)
    base = base_asset(result.symbol or signal.symbol)
    account = redact(result.account)
    footer = {"text": f"Signal {redact(result.signal_id or signal.id)}"}
    if result.status == "success":
        entry = result.fill_price if result.fill_price is not None else signal.entry
        entry_text = price(entry)
        if result.fill_price is not None and abs(result.fill_price - signal.entry) > 1e-12:
            entry_text += f" (signal {price(signal.entry)})"
        fields = [
            _field("Symbol", symbol),
            _field("Side", result.side),
            _field("Entry", entry_text),
            _field("Size", f"{usd(result.margin)} margin"),
            _field("Notional", usd(result.notional)),
            _field("Leverage", f"{result.leverage}x"),
            _field("Quantity", f"{quantity(result.quantity)} {base}"),
            _field("SL", price(result.stop_loss if result.stop_loss is not None else signal.stop_loss)),
            _field("TP", price(result.take_profit if result.take_profit is not None else signal.take_profit)),
        ]
        if result.liquidation_price:
            fields.append(_field("Liquidation", price(result.liquidation_price)))
        if result.reason:
            fields.append(_field("⚠️ Warning", redact(result.reason), inline=False))
        embed = {"title": f"🎯 Order Executed - {account}", "color": GREEN, "fields": fields}
    elif result.status == "skipped":
        embed = {
            "title": f"⏭️ Order Skipped - {account}",
            "description": redact(result.reason) or "skipped",
            "color": GREY,
            "fields": [_field("Symbol", symbol), _field("Side", result.side)],
        }
    else:
        fields = [_field("Symbol", symbol), _field("Side", result.side)]
        if result.closed:
            fields.append(_field("Position", "closed at market (no stop-loss could be placed)", inline=False))
        embed = {
            "title": f"❌ Order Failed - {account}",
            "description": redact(result.reason) or "failed",
            "color": RED,
            "fields": fields,
        }
    embed["footer"] = footer
    if result.time:
        embed["timestamp"] = format_time(result.time, zone="+00:00")
    return fit_embed(embed)


def account_line(result: Any) -> str:
    """A summary line: ``✅ Account 1: $20``, ``❌ Account 3: <short reason>``, ``⏭️ Account 4: <reason>``."""
    name = truncate(redact(result.account), 64)
    if result.status == "success":
        line = f"✅ {name}: {usd(result.margin)}"
        return f"{line} ⚠️ {short_reason(result.reason)}" if result.reason else line
    mark = "⏭️" if result.status == "skipped" else "❌"
    return f"{mark} {name}: {short_reason(result.reason)}"


def summary_lines(signal: Any, summary: Any) -> tuple[list[str], list[str], list[str]]:
    """(header, per-account lines, totals) of the summary, as plain text lines."""
    symbol = summary.symbol or signal.symbol
    base = base_asset(symbol)
    header = [f"Signal: {display_symbol(symbol)} {summary.side}"]
    if signal is not None:
        header[0] += f" @ {price(signal.entry)}"
        header.append(f"SL: {price(signal.stop_loss)} | TP: {price(signal.take_profit)}")
    header.append(f"Success: {summary.succeeded}/{summary.total}")
    accounts = [account_line(r) for r in summary.results]
    leverages = sorted({r.leverage for r in summary.results if r.ok and r.leverage})
    if len(leverages) == 1:
        lev = f"with {leverages[0]}x"
    elif leverages:
        lev = f"with {leverages[0]}x-{leverages[-1]}x"
    else:
        lev = "no leverage used"
    totals = [
        f"Total Position: {usd(summary.total_margin)} ({usd(summary.total_notional)} notional {lev})",
        f"Total {base}: {quantity(summary.total_quantity)} {base}",
    ]
    return header, accounts, totals


def summary_embed(signal: Any, summary: Any) -> dict[str, Any]:
    """The ``📊 Multi-Account Execution Summary`` embed; too many account lines end in ``… and N more``."""
    header, accounts, totals = summary_lines(signal, summary)
    fixed = "\n".join(header) + "\n\n" + "\n\n" + "\n".join(totals)
    budget = DESCRIPTION_LIMIT - len(fixed) - 40
    kept: list[str] = []
    used = 0
    for i, line in enumerate(accounts):
        if used + len(line) + 1 > budget:
            kept.append(f"… and {len(accounts) - i} more accounts (see the per-account alerts and logs)")
            break
        kept.append(line)
        used += len(line) + 1
    description = "\n".join(header) + "\n\n" + "\n".join(kept) + "\n\n" + "\n".join(totals)
    if summary.total and summary.succeeded == summary.total:
        color = GREEN
    elif summary.succeeded:
        color = ORANGE
    else:
        color = RED
    embed = {
        "title": SUMMARY_TITLE,
        "description": redact(description),
        "color": color,
        "footer": {"text": f"Signal {redact(summary.signal_id)}"},
    }
    return fit_embed(embed)


def event_embed(title: str, text: str) -> dict[str, Any]:
    """An operational alert (failed stop-loss, reconciliation, …)."""
    return fit_embed({"title": redact(title) or "Alert", "description": redact(text), "color": ORANGE})


# ------------------------------------------------------------------ limits and batching
def fit_embed(embed: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``embed`` trimmed to Discord's per-embed limits (including 6000 characters in total)."""
    out = dict(embed)
    if "title" in out:
        out["title"] = truncate(str(out["title"]), TITLE_LIMIT)
    if "description" in out:
        out["description"] = truncate(str(out["description"]), DESCRIPTION_LIMIT)
    if "footer" in out:
        out["footer"] = {**out["footer"], "text": truncate(str(out["footer"].get("text", "")), FOOTER_LIMIT)}
    if "author" in out:
        out["author"] = {**out["author"], "name": truncate(str(out["author"].get("name", "")), AUTHOR_LIMIT)}
    if "fields" in out:
        out["fields"] = [
            {
                **f,
                "name": truncate(str(f.get("name") or "\u200b"), FIELD_NAME_LIMIT),
                "value": truncate(str(f.get("value") or "\u200b"), FIELD_VALUE_LIMIT),
            }
            for f in out["fields"][:FIELDS_LIMIT]
        ]
    excess = embed_chars(out) - MESSAGE_CHARS_LIMIT
    if excess > 0 and out.get("description"):
        out["description"] = truncate(out["description"], max(len(out["description"]) - excess, 1))
    excess = embed_chars(out) - MESSAGE_CHARS_LIMIT
    while excess > 0 and out.get("fields"):
        out["fields"] = out["fields"][:-1]
        excess = embed_chars(out) - MESSAGE_CHARS_LIMIT
    return out


def embed_chars(embed: dict[str, Any]) -> int:
    """Characters Discord counts toward the 6000 per message: title, description, fields, footer, author."""
    n = len(embed.get("title") or "") + len(embed.get("description") or "")
    n += len((embed.get("footer") or {}).get("text") or "")
    n += len((embed.get("author") or {}).get("name") or "")
    for f in embed.get("fields") or ():
        n += len(f.get("name") or "") + len(f.get("value") or "")
    return n


def pack_embeds(
    embeds: Iterable[dict[str, Any]],
    max_embeds: int = EMBEDS_PER_MESSAGE,
    max_chars: int = MESSAGE_CHARS_LIMIT,
) -> list[list[dict[str, Any]]]:
    """Split embeds, in order, into messages of at most ``max_embeds`` embeds and ``max_chars`` characters."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    chars = 0
    for embed in embeds:
        size = embed_chars(embed)
        if current and (len(current) >= max_embeds or chars + size > max_chars):
            batches.append(current)
            current, chars = [], 0
        current.append(embed)
        chars += size
    if current:
        batches.append(current)
    return batches


def message(embeds: list[dict[str, Any]], username: str | None = None) -> dict[str, Any]:
    """A webhook body: the embeds, no pings (``allowed_mentions`` empty) and an optional display name."""
    body: dict[str, Any] = {"embeds": embeds, "allowed_mentions": {"parse": []}}
    if username:
        body["username"] = truncate(username, 80)
    return body
